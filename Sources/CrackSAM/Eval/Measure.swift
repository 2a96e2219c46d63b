import Foundation

/// Geometry of segmented cracks, per connected crack and per image: area, skeleton length, mean width
/// (area / length: exact on average for a band at any angle), maximum width (across the crack at each
/// skeleton pixel, edge to edge along the normal to the skeleton's local direction), and
/// orientation (principal axis of the skeleton, degrees from the image x axis, counter-clockwise, 0…180).
/// With a pixel size, lengths and widths are in millimetres and areas in mm².
public struct CrackMeasurement: Codable, Equatable, Sendable {
    public var id: Int
    public var area: Double
    public var length: Double
    public var meanWidth: Double
    public var maxWidth: Double
    public var orientation: Double
    public var pixels: Int
}

public struct ImageMeasurement: Codable, Equatable, Sendable {
    public var image: String
    public var unit: String
    public var cracks: [CrackMeasurement]
    public var totalArea: Double
    public var totalLength: Double
    public var meanWidth: Double
    public var maxWidth: Double
}

public enum CrackGeometry {
    /// 8-connected components of a binary mask; labels 1…n (0 = background).
    public static func components(_ mask: [UInt8], width w: Int, height h: Int) -> (labels: [Int32], count: Int) {
        var labels = [Int32](repeating: 0, count: w * h)
        var next: Int32 = 0
        var stack: [Int] = []
        for start in 0..<(w * h) where mask[start] != 0 && labels[start] == 0 {
            next += 1
            labels[start] = next
            stack.append(start)
            while let p = stack.popLast() {
                let (x, y) = (p % w, p / w)
                for dy in -1...1 {
                    for dx in -1...1 where dx != 0 || dy != 0 {
                        let nx = x + dx, ny = y + dy
                        guard nx >= 0, nx < w, ny >= 0, ny < h else { continue }
                        let q = ny * w + nx
                        if mask[q] != 0 && labels[q] == 0 { labels[q] = next; stack.append(q) }
                    }
                }
            }
        }
        return (labels, Int(next))
    }

    /// Zhang–Suen thinning to a one-pixel-wide skeleton.
    public static func skeleton(_ mask: [UInt8], width w: Int, height h: Int) -> [UInt8] {
        var img = mask.map { $0 != 0 ? UInt8(1) : 0 }
        func at(_ x: Int, _ y: Int) -> UInt8 { x < 0 || y < 0 || x >= w || y >= h ? 0 : img[y * w + x] }
        var changed = true
        while changed {
            changed = false
            for pass in 0..<2 {
                var remove: [Int] = []
                for y in 0..<h {
                    for x in 0..<w where img[y * w + x] == 1 {
                        // Neighbours P2…P9 clockwise from north.
                        let n = [at(x, y - 1), at(x + 1, y - 1), at(x + 1, y), at(x + 1, y + 1), at(x, y + 1), at(x - 1, y + 1),
                                 at(x - 1, y), at(x - 1, y - 1)]
                        let b = n.reduce(0) { $0 + Int($1) }
                        guard b >= 2 && b <= 6 else { continue }
                        var a = 0
                        for i in 0..<8 where n[i] == 0 && n[(i + 1) % 8] == 1 { a += 1 }
                        guard a == 1 else { continue }
                        if pass == 0 {
                            guard n[0] * n[2] * n[4] == 0, n[2] * n[4] * n[6] == 0 else { continue }
                        } else {
                            guard n[0] * n[2] * n[6] == 0, n[0] * n[4] * n[6] == 0 else { continue }
                        }
                        remove.append(y * w + x)
                    }
                }
                for p in remove { img[p] = 0 }
                if !remove.isEmpty { changed = true }
            }
        }
        return img
    }

    /// Exact Euclidean distance from each foreground pixel to the nearest background pixel
    /// (Felzenszwalb–Huttenlocher); pixels outside the image count as background.
    public static func distanceTransform(_ mask: [UInt8], width w: Int, height h: Int) -> [Double] {
        let inf = 1e20
        // Pad by one pixel of background on every side.
        let (pw, ph) = (w + 2, h + 2)
        var f = [Double](repeating: 0, count: pw * ph)
        for y in 0..<h { for x in 0..<w where mask[y * w + x] != 0 { f[(y + 1) * pw + x + 1] = inf } }
        func edt1d(_ g: [Double]) -> [Double] {
            let n = g.count
            var d = [Double](repeating: 0, count: n), v = [Int](repeating: 0, count: n), z = [Double](repeating: 0, count: n + 1)
            var k = 0
            z[0] = -inf; z[1] = inf
            for q in 1..<n {
                var s = ((g[q] + Double(q * q)) - (g[v[k]] + Double(v[k] * v[k]))) / Double(2 * q - 2 * v[k])
                while s <= z[k] {
                    k -= 1
                    s = ((g[q] + Double(q * q)) - (g[v[k]] + Double(v[k] * v[k]))) / Double(2 * q - 2 * v[k])
                }
                k += 1
                v[k] = q; z[k] = s; z[k + 1] = inf
            }
            k = 0
            for q in 0..<n {
                while z[k + 1] < Double(q) { k += 1 }
                d[q] = Double((q - v[k]) * (q - v[k])) + g[v[k]]
            }
            return d
        }
        for x in 0..<pw {
            let col = edt1d((0..<ph).map { f[$0 * pw + x] })
            for y in 0..<ph { f[y * pw + x] = col[y] }
        }
        for y in 0..<ph {
            let row = edt1d(Array(f[(y * pw)..<((y + 1) * pw)]))
            for x in 0..<pw { f[y * pw + x] = row[x] }
        }
        var out = [Double](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { out[y * w + x] = f[(y + 1) * pw + x + 1].squareRoot() } }
        return out
    }

    /// Measures every crack of a binary mask. `mmPerPixel` nil keeps pixels.
    public static func measure(_ mask: [UInt8], width w: Int, height h: Int, image: String, mmPerPixel: Double? = nil,
                               minimumArea: Int = 1) -> ImageMeasurement {
        let scale = mmPerPixel ?? 1
        let (labels, count) = components(mask, width: w, height: h)
        let skel = skeleton(mask, width: w, height: h)
        let dist = distanceTransform(mask, width: w, height: h)
        // Per crack, in one pass over the image: area, skeleton pixels, the deepest pixel (the centre of a
        // blob thinning removes entirely) and the moments of its pixels (its principal axis).
        var areas = [Int](repeating: 0, count: count + 1)
        var skelPixels = [[Int]](repeating: [], count: count + 1)
        var deepest = [Int](repeating: -1, count: count + 1)
        var moments = [(x: Double, y: Double, xx: Double, yy: Double, xy: Double)](repeating: (0, 0, 0, 0, 0), count: count + 1)
        for p in 0..<(w * h) where labels[p] != 0 {
            let id = Int(labels[p])
            areas[id] += 1
            if skel[p] != 0 { skelPixels[id].append(p) }
            if deepest[id] < 0 || dist[p] > dist[deepest[id]] { deepest[id] = p }
            let (x, y) = (Double(p % w), Double(p / w))
            moments[id].x += x; moments[id].y += y; moments[id].xx += x * x; moments[id].yy += y * y; moments[id].xy += x * y
        }
        var cracks: [CrackMeasurement] = []
        var allWidths: [Double] = []
        for id in 1...max(count, 1) where count > 0 && areas[id] >= minimumArea {
            // A blob thinning removed entirely: its deepest pixel stands for its centre.
            let points = skelPixels[id].isEmpty ? [deepest[id]] : skelPixels[id]
            let set = Set(points)
            /// How far the crack reaches from pixel p's centre along the unit direction (dx, dy), to the edge
            /// of its last pixel. Quarter-pixel steps sampled between boundaries (at 1/8, 3/8, …), so that no
            /// sample sits on a pixel edge, where rounding would favour one side; the edge is half a step
            /// before the first sample off the crack.
            func reach(_ p: Int, _ dx: Double, _ dy: Double) -> Double {
                let (cx, cy) = (Double(p % w), Double(p / w))
                var t = 0.125
                while true {
                    let x = Int((cx + t * dx).rounded()), y = Int((cy + t * dy).rounded())
                    if x < 0 || y < 0 || x >= w || y >= h || labels[y * w + x] != Int32(id) { return t - 0.125 }
                    t += 0.25
                }
            }
            /// The crack's width through p across direction θ, edge to edge. (Twice the distance to the
            /// background is 1 px short for every even width: there the skeleton lies half a pixel off the
            /// centre line.)
            func across(_ p: Int, theta: Double) -> Double { reach(p, -sin(theta), cos(theta)) + reach(p, sin(theta), -cos(theta)) }
            // The crack's principal axis, for a skeleton of one pixel (a blob, a short stub).
            let n = Double(areas[id]), m = moments[id]
            let axis = 0.5 * atan2(2 * (m.xy / n - m.x / n * m.y / n), (m.xx / n - m.x * m.x / (n * n)) - (m.yy / n - m.y * m.y / (n * n)))

            // Length: each skeleton pixel contributes the length of skeleton it stands for, from the skeleton
            // around it (radius 4, direction θ by PCA); plain link counting would be off by up to 8 % at 22.5°.
            // Each free end adds what thinning took off the crack's extent beyond it: from the end pixel's own
            // edge (it counts its one pixel) to where the crack ends, straight on along the skeleton.
            var length = 0.0
            var widths: [Double] = []
            for p in points {
                let (x, y) = (p % w, p / w)
                var neighbours = 0
                var local: [(Double, Double)] = []
                for dy in -4...4 {
                    for dx in -4...4 {
                        let qx = x + dx, qy = y + dy
                        guard qx >= 0, qx < w, qy >= 0, qy < h, set.contains(qy * w + qx) else { continue }
                        local.append((Double(dx), Double(dy)))
                        if abs(dx) <= 1 && abs(dy) <= 1 && (dx != 0 || dy != 0) { neighbours += 1 }
                    }
                }
                let count = Double(local.count)
                let (mx, my) = (local.reduce(0) { $0 + $1.0 } / count, local.reduce(0) { $0 + $1.1 } / count)
                var sxx = 0.0, syy = 0.0, sxy = 0.0
                for (a, b) in local { sxx += (a - mx) * (a - mx); syy += (b - my) * (b - my); sxy += (a - mx) * (b - my) }
                // A lone skeleton pixel has no direction of its own: the crack's axis stands in.
                let theta = local.count > 1 ? 0.5 * atan2(2 * sxy, sxx - syy) : axis
                let (ux, uy) = (cos(theta), sin(theta))
                // Extent of the local skeleton along θ per pixel in it: 1/max(|cos θ|, |sin θ|) on a clean
                // one-pixel line, less where thinning left the line two pixels thick.
                let projections = local.map { $0.0 * ux + $0.1 * uy }
                length += local.count > 1 ? (projections.max()! - projections.min()!) / (count - 1) : 1
                if neighbours == 1 {
                    // Outward: away from the rest of the skeleton (the local mean lies inward).
                    let out = mx * ux + my * uy > 0 ? -1.0 : 1.0
                    length += max(reach(p, out * ux, out * uy) - 0.5, 0)
                } else if neighbours == 0 {
                    length += max(reach(p, ux, uy) - 0.5, 0) + max(reach(p, -ux, -uy) - 0.5, 0)
                }
                widths.append(across(p, theta: theta))
            }
            allWidths += widths
            // Orientation from the covariance of skeleton coordinates (y up for counter-clockwise angles);
            // a one-pixel skeleton takes the crack's axis.
            var angle: Double
            if points.count > 1 {
                let xs = points.map { Double($0 % w) }, ys = points.map { -Double($0 / w) }
                let mx = xs.reduce(0, +) / Double(xs.count), my = ys.reduce(0, +) / Double(ys.count)
                var sxx = 0.0, syy = 0.0, sxy = 0.0
                for (x, y) in zip(xs, ys) { sxx += (x - mx) * (x - mx); syy += (y - my) * (y - my); sxy += (x - mx) * (y - my) }
                angle = 0.5 * atan2(2 * sxy, sxx - syy) * 180 / Double.pi
            } else {
                angle = -axis * 180 / Double.pi
            }
            angle = (angle + 180).truncatingRemainder(dividingBy: 180)  // 0 ≤ angle < 180 (and no −0)
            cracks.append(CrackMeasurement(id: cracks.count + 1, area: Double(areas[id]) * scale * scale, length: length * scale,
                                           meanWidth: Double(areas[id]) / length * scale,
                                           maxWidth: (widths.max() ?? 0) * scale, orientation: angle, pixels: areas[id]))
        }
        func lengthInPixels(_ cracks: [CrackMeasurement], _ scale: Double) -> Double { cracks.reduce(0) { $0 + $1.length } / scale }
        return ImageMeasurement(image: image, unit: mmPerPixel == nil ? "px" : "mm", cracks: cracks,
                                totalArea: cracks.reduce(0) { $0 + $1.area }, totalLength: cracks.reduce(0) { $0 + $1.length },
                                meanWidth: cracks.isEmpty ? 0 : Double(cracks.reduce(0) { $0 + $1.pixels }) / lengthInPixels(cracks, scale) * scale,
                                maxWidth: (allWidths.max() ?? 0) * scale)
    }
}
