import Foundation

/// The noisy test sets of the paper (REFERENCE "Evaluation"), computed as OpenCV computes them on 8-bit
/// images (each stage rounded back to 8 bits, reflect-101 borders):
/// - case 1: HSV value − 50 (saturating at 0), back to RGB, Gaussian blur 9×9;
/// - case 2: Gaussian blur 21×21, resize to ½ with bicubic interpolation, back to full size with bicubic;
/// - blur K: Gaussian blur K×K (the Figure 12 sweep).
/// σ follows OpenCV's rule for σ = 0: 0.3·((K−1)/2 − 1) + 0.8, with its fixed tables for K ≤ 7.
public enum Degradation: Equatable, Hashable, Sendable, CustomStringConvertible {
    case case1
    case case2
    case blur(Int)

    /// The largest Gaussian kernel: σ ≈ 150 px, far past Figure 12's sweep. The blur costs K operations
    /// per pixel and its tables K entries, so a K of 2³¹ − 1 ran out of memory and aborted.
    public static let maxBlurSize = 1001

    /// "case1", "case2", "blur:9" (K odd, 1…maxBlurSize).
    public init?(_ text: String) {
        switch text.lowercased() {
        case "case1", "noisy1", "1": self = .case1
        case "case2", "noisy2", "2": self = .case2
        default:
            let t = text.lowercased()
            guard t.hasPrefix("blur:"), let k = Int(t.dropFirst(5)), (1...Self.maxBlurSize).contains(k), k % 2 == 1 else { return nil }
            self = .blur(k)
        }
    }

    public var description: String {
        switch self {
        case .case1: return "case1"
        case .case2: return "case2"
        case .blur(let k): return "blur:\(k)"
        }
    }

    /// The narrowest image (in pixels, either side) it applies to: case2 halves the image, and one pixel
    /// has no half (OpenCV refuses a 0-pixel size too).
    public var minimumSize: Int { self == .case2 ? 2 : 1 }

    /// Applies the degradation to an 8-bit grey or RGB image.
    public func apply(to image: Image) throws -> Image {
        switch self {
        case .case1: return try Degrade.gaussianBlur(Degrade.darken(image, by: 50), size: 9)
        case .case2:
            guard min(image.width, image.height) >= minimumSize else {
                throw TorchError.invalidArgument("case2 halves the image, and a \(image.width)×\(image.height) image has no half")
            }
            let blurred = try Degrade.gaussianBlur(image, size: 21)
            let half = try Degrade.resizeBicubic(blurred, width: image.width / 2, height: image.height / 2)
            return try Degrade.resizeBicubic(half, width: image.width, height: image.height)
        case .blur(let k): return try Degrade.gaussianBlur(image, size: k)
        }
    }
}

public enum Degrade {
    /// OpenCV's Gaussian kernel for size k and σ = 0 (its fixed tables for k ≤ 7, else the σ rule), in
    /// floating point.
    public static func gaussianKernel(size k: Int) -> [Double] {
        switch k {
        case 1: return [1]
        case 3: return [0.25, 0.5, 0.25]
        case 5: return [0.0625, 0.25, 0.375, 0.25, 0.0625]
        case 7: return [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]
        default:
            // σ = 0.15·k + 0.35 = 0.3·((k − 1)/2 − 1) + 0.8; taps exp(−x²/(2σ²)) normalised so the centre is 1/sum.
            let sigma = 0.15 * Double(k) + 0.35
            let scale2 = -0.125 / (sigma * sigma)
            let half = (k - 1) / 2
            let values = (0..<half).map { i -> Double in let x = Double(1 - k + 2 * i); return Foundation.exp(x * x * scale2) }
            let mul = 1 / (values.reduce(0, +) * 2 + 1)
            let side = values.map { $0 * mul }
            return side + [mul] + side.reversed()
        }
    }

    /// The kernel as OpenCV applies it to 8-bit images: 8 fractional bits, rounded with error diffusion
    /// from the outside in so the taps sum to exactly 256.
    static func fixedPointKernel(size k: Int) -> [Int] {
        let exact = gaussianKernel(size: k)
        var out = [Int](repeating: 0, count: k)
        var err = 0.0
        var total = 0
        for i in 0..<(k / 2) {
            let adjusted = exact[i] * 256 + err
            let v = Int(adjusted.rounded(.toNearestOrEven))
            err = adjusted - Double(v)
            out[i] = v
            out[k - 1 - i] = v
            total += v
        }
        out[k / 2] = 256 - 2 * total
        return out
    }

    /// Reflect-101 index (…, 2, 1 | 0, 1, 2, … n−1 | n−2, …), as OpenCV's BORDER_DEFAULT.
    @inline(__always)
    static func reflect101(_ i: Int, _ n: Int) -> Int {
        if n == 1 { return 0 }
        var j = i
        while j < 0 || j >= n { j = j < 0 ? -j : 2 * (n - 1) - j }
        return j
    }

    /// OpenCV's bit-exact Gaussian blur of 8-bit images: fixed-point kernel, horizontal then vertical
    /// integer passes with reflect-101 borders, one rounding at the end.
    public static func gaussianBlur(_ image: Image, size k: Int) throws -> Image {
        guard (1...Degradation.maxBlurSize).contains(k), k % 2 == 1 else {
            throw TorchError.invalidArgument("Gaussian kernel size must be odd, 1 to \(Degradation.maxBlurSize) (got \(k))")
        }
        if k == 1 { return image }
        let kernel = fixedPointKernel(size: k)
        let (w, h, c) = (image.width, image.height, image.channels)
        let r = k / 2
        let columns = (0..<(w + 2 * r)).map { reflect101($0 - r, w) }
        let rowsIndex = (0..<(h + 2 * r)).map { reflect101($0 - r, h) }
        var horizontal = [Int32](repeating: 0, count: w * h * c)
        image.pixels.withUnsafeBufferPointer { src in
            for y in 0..<h {
                let base = y * w * c
                for x in 0..<w {
                    for ch in 0..<c {
                        var sum: Int32 = 0
                        for t in 0..<k { sum += Int32(src[base + columns[x + t] * c + ch]) * Int32(kernel[t]) }
                        horizontal[base + x * c + ch] = sum
                    }
                }
            }
        }
        var out = [UInt8](repeating: 0, count: w * h * c)
        for y in 0..<h {
            for i in 0..<(w * c) {
                var sum: Int64 = 0
                for t in 0..<k { sum += Int64(horizontal[rowsIndex[y + t] * w * c + i]) * Int64(kernel[t]) }
                out[y * w * c + i] = UInt8(clamping: (sum + (1 << 15)) >> 16)
            }
        }
        return Image(width: w, height: h, channels: c, pixels: out)
    }

    /// Bicubic resize exactly as OpenCV's INTER_CUBIC on 8-bit images: a = −0.75 coefficients computed in
    /// float32 at half-pixel centres, rounded to 11-bit fixed point, clamped borders, a horizontal then a
    /// vertical integer pass, and one rounding at the end (three roundings would drift by a grey level).
    /// This is OpenCV's generic path; its optional Intel IPP path differs by a level on some pixels.
    public static func resizeBicubic(_ image: Image, width: Int, height: Int) throws -> Image {
        guard width > 0, height > 0 else { throw TorchError.invalidArgument("cannot resize to \(width)×\(height)") }
        let c = image.channels
        let (xIndex, xCoef) = cubicTaps(source: image.width, destination: width)
        let (yIndex, yCoef) = cubicTaps(source: image.height, destination: height)
        // Horizontal pass over every source row (the vertical taps touch most of them anyway).
        var rows = [Int32](repeating: 0, count: image.height * width * c)
        image.pixels.withUnsafeBufferPointer { src in
            for y in 0..<image.height {
                let rowBase = y * image.width * c
                for dx in 0..<width {
                    for ch in 0..<c {
                        var sum: Int32 = 0
                        for k in 0..<4 {
                            sum += Int32(src[rowBase + xIndex[dx * 4 + k] * c + ch]) * Int32(xCoef[dx * 4 + k])
                        }
                        rows[(y * width + dx) * c + ch] = sum
                    }
                }
            }
        }
        var out = [UInt8](repeating: 0, count: width * height * c)
        for dy in 0..<height {
            for i in 0..<(width * c) {
                var sum: Int64 = 0
                for k in 0..<4 { sum += Int64(rows[yIndex[dy * 4 + k] * width * c + i]) * Int64(yCoef[dy * 4 + k]) }
                // Round half to even, as OpenCV's vectorised float pass does.
                var q = (sum + (1 << 21)) >> 22
                if sum & ((1 << 22) - 1) == 1 << 21 && q & 1 == 1 { q -= 1 }
                out[dy * width * c + i] = UInt8(clamping: q)
            }
        }
        return Image(width: width, height: height, channels: c, pixels: out)
    }

    /// For each destination index: the 4 clamped source indices and their 11-bit fixed-point weights.
    static func cubicTaps(source: Int, destination: Int) -> ([Int], [Int16]) {
        let scale = 1.0 / (Double(destination) / Double(source))
        var index = [Int](repeating: 0, count: destination * 4)
        var coef = [Int16](repeating: 0, count: destination * 4)
        let a: Float = -0.75
        for d in 0..<destination {
            var fx = Float((Double(d) + 0.5) * scale - 0.5)
            let sx = Int(fx.rounded(.down))
            fx -= Float(sx)
            var w = [Float](repeating: 0, count: 4)
            w[0] = ((a * (fx + 1) - 5 * a) * (fx + 1) + 8 * a) * (fx + 1) - 4 * a
            w[1] = ((a + 2) * fx - (a + 3)) * fx * fx + 1
            w[2] = ((a + 2) * (1 - fx) - (a + 3)) * (1 - fx) * (1 - fx) + 1
            w[3] = 1 - w[0] - w[1] - w[2]
            for k in 0..<4 {
                index[d * 4 + k] = min(max(sx - 1 + k, 0), source - 1)
                coef[d * 4 + k] = Int16(clamping: Int((w[k] * 2048).rounded(.toNearestOrEven)))
            }
        }
        return (index, coef)
    }

    /// Lowers the HSV value by `amount` (saturating at 0) through OpenCV's 8-bit HSV conversions
    /// (hue in 0…180), as the authors' noisy sets went through them. RGB → HSV is OpenCV's fixed-point
    /// arithmetic exactly; HSV → RGB computes in Double and truncates, where OpenCV's SIMD body works in
    /// float32 (and its scalar tail rounds): about 2% of colours come out one grey level apart
    /// (DegradeTests holds case 1 to within 1 of cv2).
    public static func darken(_ image: Image, by amount: Int) -> Image {
        guard image.channels == 3 else {
            return Image(width: image.width, height: image.height, channels: image.channels,
                         pixels: image.pixels.map { UInt8(max(Int($0) - amount, 0)) })
        }
        var out = image.pixels
        for i in stride(from: 0, to: out.count, by: 3) {
            let (h, s, v) = rgbToHSV(Int(out[i]), Int(out[i + 1]), Int(out[i + 2]))
            let (r, g, b) = hsvToRGB(h, s, max(v - amount, 0))
            (out[i], out[i + 1], out[i + 2]) = (r, g, b)
        }
        return Image(width: image.width, height: image.height, channels: 3, pixels: out)
    }

    static let shift = 12
    static let sdiv: [Int] = [0] + (1..<256).map { Int((Double(255 << shift) / Double($0)).rounded()) }
    static let hdiv: [Int] = [0] + (1..<256).map { Int((Double(180 << shift) / (6.0 * Double($0))).rounded()) }

    /// OpenCV's fixed-point RGB → HSV for 8 bits (H in 0…179).
    static func rgbToHSV(_ r: Int, _ g: Int, _ b: Int) -> (Int, Int, Int) {
        let v = max(r, g, b), vmin = min(r, g, b), diff = v - vmin
        let vr = v == r ? -1 : 0, vg = v == g ? -1 : 0
        let s = (diff * sdiv[v] + (1 << (shift - 1))) >> shift
        var h = (vr & (g - b)) + (~vr & ((vg & (b - r + 2 * diff)) + (~vg & (r - g + 4 * diff))))
        h = (h * hdiv[diff] + (1 << (shift - 1))) >> shift
        if h < 0 { h += 180 }
        return (h, s, v)
    }

    static let sectors = [[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]]

    /// HSV (H in 0…179) → RGB for 8 bits.
    static func hsvToRGB(_ hIn: Int, _ sIn: Int, _ vIn: Int) -> (UInt8, UInt8, UInt8) {
        var h = Double(hIn) * 6.0 / 180.0
        let s = Double(sIn) / 255.0, v = Double(vIn) / 255.0
        var rgb = (v, v, v)
        if s != 0 {
            if h >= 6 { h -= 6 }
            let sector = Int(h.rounded(.down))
            h -= Double(sector)
            let tab = [v, v * (1 - s), v * (1 - s * h), v * (1 - s * (1 - h))]
            let idx = sectors[min(max(sector, 0), 5)]
            rgb = (tab[idx[2]], tab[idx[1]], tab[idx[0]])
        }
        func q(_ x: Double) -> UInt8 { UInt8(min(max((x * 255).rounded(.down), 0), 255)) }
        return (q(rgb.0), q(rgb.1), q(rgb.2))
    }
}
