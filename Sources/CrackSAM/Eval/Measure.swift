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

    /// Guo–Hall parallel thinning to a one-pixel-wide skeleton (their algorithm A1, in the conditions
    /// G1, G2, G3/G3′ of Lam, Lee and Suen's survey). Zhang–Suen, used before, peels a two-pixel-thick
    /// diagonal run away from its free end until two pixels are left: a 2-px crack at 45° measured 2 px
    /// long. Only pixels on the border can go (an interior pixel has n1 = n2 = 4, outside G2), so each
    /// subiteration looks at the border alone, which a removal extends to the pixels it uncovers: the work
    /// grows with the area, not with area × thickness (as it did, scanning the whole image each time).
    public static func skeleton(_ mask: [UInt8], width w: Int, height h: Int) -> [UInt8] {
        var img = mask.map { $0 != 0 ? UInt8(1) : 0 }
        // Neighbours x1…x8 counter-clockwise from east, as bits 0…7 (y grows downwards: north is y − 1).
        let offsets = [(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)]
        func code(_ p: Int) -> Int {
            let (x, y) = (p % w, p / w)
            var c = 0
            for (k, (dx, dy)) in offsets.enumerated() {
                let nx = x + dx, ny = y + dy
                if nx >= 0, ny >= 0, nx < w, ny < h, img[ny * w + nx] != 0 { c |= 1 << k }
            }
            return c
        }
        var border: [Int] = [], onBorder = [Bool](repeating: false, count: w * h)
        for p in 0..<(w * h) where img[p] != 0 && code(p) != 0xFF {
            border.append(p)
            onBorder[p] = true
        }
        var changed = true
        while changed {
            changed = false
            for pass in 0..<2 {
                let removable = pass == 0 ? guoHallFirst : guoHallSecond
                let remove = border.filter { removable[code($0)] }
                guard !remove.isEmpty else { continue }
                changed = true
                for p in remove { img[p] = 0 }
                for p in remove {
                    let (x, y) = (p % w, p / w)
                    for (dx, dy) in offsets {
                        let nx = x + dx, ny = y + dy
                        guard nx >= 0, ny >= 0, nx < w, ny < h else { continue }
                        let q = ny * w + nx
                        if img[q] != 0 && !onBorder[q] { onBorder[q] = true; border.append(q) }
                    }
                }
                border.removeAll { img[$0] == 0 }
            }
        }
        return img
    }

    /// Whether a pixel with neighbour bits `c` (x1…x8 as bits 0…7) is removed in Guo–Hall's first and
    /// second subiteration.
    static let guoHallFirst: [Bool] = (0..<256).map { guoHallRemovable($0, second: false) }
    static let guoHallSecond: [Bool] = (0..<256).map { guoHallRemovable($0, second: true) }
    static func guoHallRemovable(_ c: Int, second: Bool) -> Bool {
        func x(_ i: Int) -> Bool { c & (1 << ((i - 1) % 8)) != 0 }  // x(9) is x(1)
        // G1: one 8-connected run of neighbours (the crossing number X_H is 1), so removing p joins no
        // two parts and splits none.
        let crossing = (1...4).filter { !x(2 * $0 - 1) && (x(2 * $0) || x(2 * $0 + 1)) }.count
        // G2: 2 ≤ min(n1, n2) ≤ 3: not an end point (which keeps the skeleton's ends), not interior.
        let n1 = (1...4).filter { x(2 * $0 - 1) || x(2 * $0) }.count
        let n2 = (1...4).filter { x(2 * $0) || x(2 * $0 + 1) }.count
        // G3 (first): (x2 ∨ x3 ∨ ¬x8) ∧ x1 = 0; G3′ (second): (x6 ∨ x7 ∨ ¬x4) ∧ x5 = 0.
        let g3 = second ? !((x(6) || x(7) || !x(4)) && x(5)) : !((x(2) || x(3) || !x(8)) && x(1))
        return crossing == 1 && (2...3).contains(min(n1, n2)) && g3
    }

    /// p's neighbours on a skeleton, less a diagonal one that a 4-neighbour of both also joins to p: on a
    /// staircase (a thinned line at a shallow angle) that corner is one step of the line, not a branch.
    static func links(_ p: Int, on skel: [UInt8], width w: Int, height h: Int) -> [Int] {
        let (x, y) = (p % w, p / w)
        func on(_ qx: Int, _ qy: Int) -> Bool { qx >= 0 && qx < w && qy >= 0 && qy < h && skel[qy * w + qx] != 0 }
        var out: [Int] = []
        for dy in -1...1 {
            for dx in -1...1 where (dx != 0 || dy != 0) && on(x + dx, y + dy) {
                if dx != 0 && dy != 0 && (on(x + dx, y) || on(x, y + dy)) { continue }
                out.append((y + dy) * w + x + dx)
            }
        }
        return out
    }

    /// A pixel of ragged edge more than the crack's inscribed width: a predicted crack's comb-like edges
    /// (teeth a few pixels long every few pixels) left spurs one pixel past it, each adding its length
    /// and marking the line around it as branched.
    static let spurSlack = 1.0

    /// The skeleton without its spurs: a branch from a free end to a branching no longer than the crack
    /// is wide there (twice the branching's distance to the background, plus `spurSlack`) is where
    /// thinning reached for a corner of the crack's outline (a band's square end forks to both its
    /// corners) or a tooth of a ragged edge, not a crack of its own; it would add its length and an end.
    static func prunedSpurs(_ skeleton: [UInt8], dist: [Double], width w: Int, height h: Int) -> [UInt8] {
        var skel = skeleton
        for end in 0..<(w * h) where skel[end] != 0 && links(end, on: skel, width: w, height: h).count == 1 {
            var path = [end], previous = -1, current = end
            while true {
                let next = links(current, on: skel, width: w, height: h).filter { $0 != previous }
                if next.count != 1 { break }
                if links(next[0], on: skel, width: w, height: h).count >= 3 {
                    if Double(path.count) <= 2 * dist[next[0]] + spurSlack { for p in path { skel[p] = 0 } }
                    break
                }
                // Longer than any crack is wide: a branch, not a spur.
                guard path.count < 512 else { break }
                previous = current
                current = next[0]
                path.append(current)
            }
        }
        return skel
    }

    /// The mask (0/1) with its pinholes filled: background regions that crack encloses (4-connected, the
    /// dual of 8-connected cracks) of at most `maxArea` pixels and no wider, either way, than their depth
    /// inside the crack (its distance to the background there, with them filled): the specks a
    /// segmentation leaves inside a crack. The skeleton runs round each such hole, counting the crack
    /// twice there (a predicted crack with 214 pinholes measured 59 % longer than it is). A sliver between
    /// two strands of a crack that splits and rejoins is longer than the strands are wide, and a crack
    /// network's cells are larger: they stay background. `maxArea` 0 fills nothing.
    public static func fillingHoles(_ mask: [UInt8], width w: Int, height h: Int, maxArea: Int) -> [UInt8] {
        pinholesFilled(mask, width: w, height: h, maxArea: maxArea).mask
    }

    /// `fillingHoles`, and the distance transform of its result when it was computed on the way (every
    /// hole it looked at was filled): `measure` needs the same one, a full pass over a large photo.
    static func pinholesFilled(_ mask: [UInt8], width w: Int, height h: Int, maxArea: Int) -> (mask: [UInt8], dist: [Double]?) {
        // 0 background not yet reached, 1 crack, 2 background reached.
        var out = mask.map { $0 != 0 ? UInt8(1) : 0 }
        guard maxArea > 0 else { return (out, nil) }
        var stack: [Int32] = [], region: [Int32] = []
        var holes: [(pixels: [Int32], side: Int)] = []
        for start in 0..<(w * h) where out[start] == 0 {
            out[start] = 2
            stack.append(Int32(start))
            region.removeAll(keepingCapacity: true)
            var area = 0, open = false
            var (x0, y0, x1, y1) = (w, h, -1, -1)
            while let q = stack.popLast() {
                let p = Int(q), (x, y) = (p % w, p / w)
                area += 1
                if area <= maxArea {
                    region.append(q)
                    (x0, y0, x1, y1) = (min(x0, x), min(y0, y), max(x1, x), max(y1, y))
                }
                if x == 0 || y == 0 || x == w - 1 || y == h - 1 { open = true }
                if x > 0 && out[p - 1] == 0 { out[p - 1] = 2; stack.append(Int32(p - 1)) }
                if x < w - 1 && out[p + 1] == 0 { out[p + 1] = 2; stack.append(Int32(p + 1)) }
                if y > 0 && out[p - w] == 0 { out[p - w] = 2; stack.append(Int32(p - w)) }
                if y < h - 1 && out[p + w] == 0 { out[p + w] = 2; stack.append(Int32(p + w)) }
            }
            if !open && area <= maxArea { holes.append((region, max(x1 - x0, y1 - y0) + 1)) }
        }
        for p in 0..<(w * h) where out[p] == 2 { out[p] = 0 }
        guard !holes.isEmpty else { return (out, nil) }
        for hole in holes { for p in hole.pixels { out[Int(p)] = 1 } }
        let depth = distanceTransform(out, width: w, height: h)
        var kept = false
        for hole in holes where Double(hole.side) > hole.pixels.reduce(0.0, { max($0, depth[Int($1)]) }) {
            for p in hole.pixels { out[Int(p)] = 0 }
            kept = true
        }
        return (out, kept ? nil : depth)
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

    /// Pinholes of at most this many pixels are taken as crack when it is measured (`fillingHoles`);
    /// scikit-image's `remove_small_holes` fills up to 64 by default too.
    public static let defaultMaxHoleArea = 64

    /// Measures every crack of a binary mask, its pinholes of at most `maxHoleArea` pixels filled.
    /// `mmPerPixel` nil keeps pixels.
    public static func measure(_ predicted: [UInt8], width w: Int, height h: Int, image: String, mmPerPixel: Double? = nil,
                               minimumArea: Int = 1, maxHoleArea: Int = defaultMaxHoleArea) -> ImageMeasurement {
        let scale = mmPerPixel ?? 1
        let (mask, filledDist) = pinholesFilled(predicted, width: w, height: h, maxArea: maxHoleArea)
        let (labels, count) = components(mask, width: w, height: h)
        let dist = filledDist ?? distanceTransform(mask, width: w, height: h)
        let skel = prunedSpurs(skeleton(mask, width: w, height: h), dist: dist, width: w, height: h)
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
        for id in 1...max(count, 1) where count > 0 && areas[id] >= minimumArea {
            // A blob thinning removed entirely: its deepest pixel stands for its centre.
            let points = skelPixels[id].isEmpty ? [deepest[id]] : skelPixels[id]
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
            // The window holds only the skeleton joined to p inside it: another strand passing within 4 px
            // (the two sides of a thin loop) is not p's. Where that skeleton branches (a pixel with three
            // or more skeleton neighbours) or folds back, the extent along one axis no longer measures it
            // (a cross of 1-px lines lost 8.5 px at its centre, a thin loop much of its length): there p counts
            // its links, half of each (1, or √2 diagonally), as a run's pixel counts 1 or √2, and a free end
            // its whole link. Each free end adds what thinning took off the crack's extent beyond it: from the end
            // pixel's own edge (it counts its one pixel) to where the crack ends, straight on along the skeleton.
            func skeletonLinks(_ p: Int) -> [Int] { links(p, on: skel, width: w, height: h) }
            /// p's share of the skeleton's length by its links: half of each, or the whole of a free end's one.
            func linkShare(_ p: Int, _ links: [Int]) -> Double {
                let total = links.reduce(0.0) { $0 + ($1 % w != p % w && $1 / w != p / w ? 2.0.squareRoot() : 1) }
                return links.count == 1 ? total : total / 2
            }
            var length = 0.0
            var widths: [Double] = [], irregularWidths: [Double] = []
            for p in points {
                let (x, y) = (p % w, p / w)
                let links = skeletonLinks(p)
                // The skeleton joined to p within the 9 × 9 window around it.
                var local: [(Double, Double)] = [(0, 0)]
                // (Each pixel's links are found once, when it is reached, and kept for its own turn.)
                var seen: Set<Int> = [p], queue = [links], branched = links.count >= 3
                while let next = queue.popLast() {
                    for r in next where !seen.contains(r) && abs(r % w - x) <= 4 && abs(r / w - y) <= 4 {
                        seen.insert(r)
                        let rLinks = skeletonLinks(r)
                        queue.append(rLinks)
                        local.append((Double(r % w - x), Double(r / w - y)))
                        if rLinks.count >= 3 { branched = true }
                    }
                }
                let count = Double(local.count)
                let (mx, my) = (local.reduce(0) { $0 + $1.0 } / count, local.reduce(0) { $0 + $1.1 } / count)
                var sxx = 0.0, syy = 0.0, sxy = 0.0
                for (a, b) in local { sxx += (a - mx) * (a - mx); syy += (b - my) * (b - my); sxy += (a - mx) * (b - my) }
                // A lone skeleton pixel has no direction of its own: the crack's axis stands in.
                let theta = local.count > 1 ? 0.5 * atan2(2 * sxy, sxx - syy) : axis
                let (ux, uy) = (cos(theta), sin(theta))
                // Extent of the local skeleton per pixel in it: 1/max(|cos θ|, |sin θ|) on a clean one-pixel
                // line at angle θ. Under 1 where it curves or folds back within the window (a thin loop's end,
                // a U-turn: about ½), which one chord cannot measure: then, as at a branching, the links.
                // Measured between the two skeleton pixels farthest apart, not along θ: a line that only
                // wavers (a ragged crack's skeleton dips a row every few pixels) has a θ tilted off its run,
                // along which it came a little under 1 and was taken for a fold, counted link by link (each
                // dip's diagonals added length: 5 % on such a crack). Any path that runs one way spans at
                // least 1 per pixel between its farthest two.
                var span = 0.0
                for i in local.indices {
                    for j in local.indices where j > i {
                        span = max(span, (local[i].0 - local[j].0) * (local[i].0 - local[j].0) + (local[i].1 - local[j].1) * (local[i].1 - local[j].1))
                    }
                }
                let extent = local.count > 1 ? span.squareRoot() / (count - 1) : 1
                let irregular = branched || extent < 0.999
                length += irregular ? linkShare(p, links) : extent
                if links.count == 1 {
                    // Outward: away from the rest of the skeleton (the local mean lies inward).
                    let out = mx * ux + my * uy > 0 ? -1.0 : 1.0
                    length += max(reach(p, out * ux, out * uy) - 0.5, 0)
                } else if links.count == 0 {
                    length += max(reach(p, ux, uy) - 0.5, 0) + max(reach(p, -ux, -uy) - 0.5, 0)
                }
                // Across the local direction, but never wider than the crack's inscribed diameter at p
                // (twice its distance to the background, which an axis-aligned band's width never exceeds).
                let width = min(across(p, theta: theta), 2 * dist[p])
                if irregular { irregularWidths.append(width) } else { widths.append(width) }
            }
            // Near a branching or a fold the local direction is no crack's own, and the chord along it runs
            // down a branch (a cross of 3-px cracks measured 81 px wide): the maximum is taken where the
            // skeleton runs as one line, unless it never does (a short, branched crack).
            if widths.isEmpty { widths = irregularWidths }
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
            // A chord through pixel centres can squeeze between pixels at their corners (across a thin 45°
            // band, less than its area per length): the maximum width is never below the mean.
            let meanWidth = Double(areas[id]) / length
            cracks.append(CrackMeasurement(id: cracks.count + 1, area: Double(areas[id]) * scale * scale, length: length * scale,
                                           meanWidth: meanWidth * scale, maxWidth: max(widths.max() ?? 0, meanWidth) * scale,
                                           orientation: angle, pixels: areas[id]))
        }
        func lengthInPixels(_ cracks: [CrackMeasurement], _ scale: Double) -> Double { cracks.reduce(0) { $0 + $1.length } / scale }
        return ImageMeasurement(image: image, unit: mmPerPixel == nil ? "px" : "mm", cracks: cracks,
                                totalArea: cracks.reduce(0) { $0 + $1.area }, totalLength: cracks.reduce(0) { $0 + $1.length },
                                meanWidth: cracks.isEmpty ? 0 : Double(cracks.reduce(0) { $0 + $1.pixels }) / lengthInPixels(cracks, scale) * scale,
                                maxWidth: cracks.map(\.maxWidth).max() ?? 0)
    }
}
