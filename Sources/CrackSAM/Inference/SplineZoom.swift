import Foundation

/// How an image whose size is not S×S is brought to S×S, and its prediction back to the image's size.
public enum ResizeMethod: String, CaseIterable, Sendable {
    /// The authors' evaluation (`scipy.ndimage.zoom`): a cubic B-spline (order 3, prefiltered) through
    /// the [0, 1] float image, corner pixels mapped onto corner pixels, nothing rounded to 8 bits; the
    /// prediction back with zoom's order 0.
    case spline
    /// OpenCV's bicubic (INTER_CUBIC) on the 8-bit image, INTER_NEAREST back.
    case opencv

    /// A (height × width) 0/1 mask predicted at S×S, back at the image's size.
    public func maskBack(_ mask: [UInt8], from: (Int, Int), to: (Int, Int)) -> [UInt8] {
        switch self {
        case .spline: return SplineZoom.nearest(mask, from: from, to: to)
        case .opencv: return Evaluator.resizeNearest(mask, from: from, to: to)
        }
    }
}

/// `scipy.ndimage.zoom` with its defaults (grid_mode false, mode 'constant', prefilter on), written from
/// the mathematics of B-spline interpolation: output sample k along an axis of n inputs and m outputs
/// sits at x = k·(n−1)/(m−1); order 3 interpolates the cubic B-spline whose coefficients the recursive
/// prefilter (pole √3−2, mirror-symmetric boundaries) computes from the samples; order 0 takes the
/// sample at floor(x + 0.5). Where rounding puts the last x an ulp beyond n−1 (749·(447/749) =
/// 447.00000000000006), 'constant' mode makes that whole output row or column 0; so does this, since
/// that is what the published numbers went through.
public enum SplineZoom {
    /// An RGB (or any-channel) 8-bit image, scaled to [0, 1] and zoomed to width × height with order 3:
    /// planar (C, height, width) float32, unclipped (a spline overshoots a little at sharp edges, as the
    /// authors' input did).
    public static func cubic(_ image: Image, width: Int, height: Int) -> [Float] {
        let (w, h, c) = (image.width, image.height, image.channels)
        var out = [Float](repeating: 0, count: c * width * height)
        var plane = [Double](repeating: 0, count: w * h)
        let columns = weights(from: w, to: width), rows = weights(from: h, to: height)
        for ch in 0..<c {
            for p in 0..<(w * h) { plane[p] = Double(image.pixels[p * c + ch]) / 255.0 }
            // The prefilter is separable: along each row, then along each column.
            for y in 0..<h { prefilter(&plane, start: y * w, count: w, stride: 1) }
            for x in 0..<w { prefilter(&plane, start: x, count: h, stride: w) }
            // So is the interpolation: rows to the new width first, then columns to the new height.
            var wide = [Double](repeating: 0, count: h * width)
            for y in 0..<h {
                for (k, taps) in columns.enumerated() {
                    var sum = 0.0
                    for (i, weight) in taps { sum += weight * plane[y * w + i] }
                    wide[y * width + k] = sum
                }
            }
            for (k, taps) in rows.enumerated() {
                for x in 0..<width {
                    var sum = 0.0
                    for (i, weight) in taps { sum += weight * wide[i * width + x] }
                    out[(ch * height + k) * width + x] = Float(sum)
                }
            }
        }
        return out
    }

    /// A single-channel mask zoomed with order 0 (what the authors did to their predictions).
    public static func nearest(_ mask: [UInt8], from: (Int, Int), to: (Int, Int)) -> [UInt8] {
        let (sw, sh) = from, (dw, dh) = to
        if sw == dw && sh == dh { return mask }
        let xs = (0..<dw).map { source(of: $0, from: sw, to: dw) }, ys = (0..<dh).map { source(of: $0, from: sh, to: dh) }
        var out = [UInt8](repeating: 0, count: dw * dh)
        for y in 0..<dh {
            guard let sy = ys[y] else { continue }
            for x in 0..<dw { if let sx = xs[x] { out[y * dw + x] = mask[sy * sw + sx] } }
        }
        return out
    }

    /// zoom's ratio along one axis: (n−1)/(m−1), or 1 where either side has one sample.
    static func ratio(from n: Int, to m: Int) -> Double { m > 1 ? Double(n - 1) / Double(m - 1) : 1 }

    /// Where output k samples the input axis, or nil beyond its last sample (the output is then 0).
    static func position(of k: Int, from n: Int, to m: Int) -> Double? {
        let x = Double(k) * ratio(from: n, to: m)
        return x > Double(n - 1) ? nil : x
    }

    /// The input sample order 0 takes for output k (nil: none, the output is 0).
    static func source(of k: Int, from n: Int, to m: Int) -> Int? {
        position(of: k, from: n, to: m).map { min(Int(($0 + 0.5).rounded(.down)), n - 1) }
    }

    /// Reflection about the end samples (…, 2, 1 | 0, 1, …, n−1 | n−2, …), the spline's boundary.
    static func mirror(_ i: Int, _ n: Int) -> Int {
        guard n > 1 else { return 0 }
        let period = 2 * (n - 1)
        var j = i % period
        if j < 0 { j += period }
        return j < n ? j : period - j
    }

    /// For each of m outputs along an axis of n coefficients: the four (index, cubic B-spline weight) taps
    /// (none beyond the last sample: the output is 0).
    static func weights(from n: Int, to m: Int) -> [[(Int, Double)]] {
        (0..<m).map { k in
            guard let x = position(of: k, from: n, to: m) else { return [] }
            let f = x.rounded(.down), t = x - f
            let base = Int(f) - 1
            let u = 1 - t
            let w = [u * u * u / 6, (4 - 6 * t * t + 3 * t * t * t) / 6, (4 - 6 * u * u + 3 * u * u * u) / 6, t * t * t / 6]
            return (0..<4).map { (mirror(base + $0, n), w[$0]) }
        }
    }

    /// In place: interpolation coefficients of the cubic B-spline through `count` samples (a row or a
    /// column of `data`), by the causal and anti-causal recursions of the pole z = √3−2 with the gain
    /// (1−z)(1−1/z) = 6, the boundaries as if the samples continued mirror-symmetrically.
    static func prefilter(_ data: inout [Double], start: Int, count n: Int, stride s: Int) {
        guard n > 1 else { return }
        let z = 3.0.squareRoot() - 2
        @inline(__always) func at(_ i: Int) -> Int { start + i * s }
        for i in 0..<n { data[at(i)] *= (1 - z) * (1 - 1 / z) }
        // c⁺[0] = Σ_k z^k x[k] over the mirrored sequence, in closed form over one period.
        let zn = pow(z, Double(n - 1))
        var c0 = data[at(0)] + zn * data[at(n - 1)]
        var zi = z
        for i in 1..<(n - 1) {
            c0 += zi * (data[at(i)] + zn * data[at(n - 1 - i)])
            zi *= z
        }
        data[at(0)] = c0 / (1 - zn * zn)
        for i in 1..<n { data[at(i)] += z * data[at(i - 1)] }
        data[at(n - 1)] = (z * data[at(n - 2)] + data[at(n - 1)]) * z / (z * z - 1)
        for i in stride(from: n - 2, through: 0, by: -1) { data[at(i)] = z * (data[at(i + 1)] - data[at(i)]) }
    }
}
