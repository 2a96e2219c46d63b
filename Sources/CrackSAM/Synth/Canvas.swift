import Foundation

/// A float RGB canvas (0…255 per channel) with the drawing primitives the generator needs.
struct Canvas {
    let width: Int
    let height: Int
    var r: [Float], g: [Float], b: [Float]

    init(width: Int, height: Int, fill: (Float, Float, Float)) {
        self.width = width
        self.height = height
        r = [Float](repeating: fill.0, count: width * height)
        g = [Float](repeating: fill.1, count: width * height)
        b = [Float](repeating: fill.2, count: width * height)
    }

    /// Blends colour `c` into pixel p with opacity a (0…1).
    @inline(__always)
    mutating func blend(_ p: Int, _ c: (Float, Float, Float), _ a: Float) {
        r[p] += (c.0 - r[p]) * a
        g[p] += (c.1 - g[p]) * a
        b[p] += (c.2 - b[p]) * a
    }

    /// Multiplies pixel p's brightness by f.
    @inline(__always)
    mutating func scale(_ p: Int, _ f: Float) {
        r[p] *= f; g[p] *= f; b[p] *= f
    }

    /// Calls body(p, distance from centre / radius) for pixels inside an axis-aligned ellipse rotated by θ.
    /// (Static, so a closure may draw on the canvas while the shape is walked.)
    static func forEllipse(_ width: Int, _ height: Int, cx: Double, cy: Double, rx: Double, ry: Double, angle: Double,
                           _ body: (Int, Double) -> Void) {
        let reach = max(rx, ry)
        let (c, s) = (cos(angle), sin(angle))
        let (y0, y1) = (max(0, Int(cy - reach)), min(height - 1, Int(cy + reach) + 1))
        let (x0, x1) = (max(0, Int(cx - reach)), min(width - 1, Int(cx + reach) + 1))
        guard y0 <= y1, x0 <= x1 else { return }
        for y in y0...y1 {
            for x in x0...x1 {
                let dx = Double(x) - cx, dy = Double(y) - cy
                let u = (dx * c + dy * s) / max(rx, 1e-6), v = (-dx * s + dy * c) / max(ry, 1e-6)
                let d = (u * u + v * v).squareRoot()
                if d <= 1 { body(y * width + x, d) }
            }
        }
    }

    /// Pixels within `halfWidth` of segment (x0, y0)–(x1, y1), with their distance.
    static func forSegment(_ width: Int, _ height: Int, _ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, halfWidth: Double,
                           _ body: (Int, Double) -> Void) {
        let minX = max(0, Int(min(x0, x1) - halfWidth - 1)), maxX = min(width - 1, Int(max(x0, x1) + halfWidth + 1))
        let minY = max(0, Int(min(y0, y1) - halfWidth - 1)), maxY = min(height - 1, Int(max(y0, y1) + halfWidth + 1))
        guard minX <= maxX, minY <= maxY else { return }
        let (dx, dy) = (x1 - x0, y1 - y0)
        let len2 = max(dx * dx + dy * dy, 1e-12)
        for y in minY...maxY {
            for x in minX...maxX {
                let t = min(max(((Double(x) - x0) * dx + (Double(y) - y0) * dy) / len2, 0), 1)
                let (px, py) = (x0 + t * dx - Double(x), y0 + t * dy - Double(y))
                let d = (px * px + py * py).squareRoot()
                if d <= halfWidth { body(y * width + x, d) }
            }
        }
    }

    func image() -> Image {
        var px = [UInt8](repeating: 0, count: width * height * 3)
        for p in 0..<(width * height) {
            px[3 * p] = UInt8(min(max(r[p].rounded(), 0), 255))
            px[3 * p + 1] = UInt8(min(max(g[p].rounded(), 0), 255))
            px[3 * p + 2] = UInt8(min(max(b[p].rounded(), 0), 255))
        }
        return Image(width: width, height: height, channels: 3, pixels: px)
    }
}

/// Smooth 2-D value noise (hash-based, deterministic per seed) and its fractal sum.
struct ValueNoise {
    let seed: UInt64

    @inline(__always)
    func hash(_ x: Int, _ y: Int) -> Float {
        var h = seed ^ (UInt64(bitPattern: Int64(x)) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(bitPattern: Int64(y)) &* 0xC2B2_AE3D_27D4_EB4F)
        h = (h ^ (h >> 31)) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 29
        return Float(h >> 40) / Float(1 << 24)
    }

    func value(_ x: Double, _ y: Double) -> Float {
        let (xi, yi) = (Int(x.rounded(.down)), Int(y.rounded(.down)))
        let (fx, fy) = (Float(x - Double(xi)), Float(y - Double(yi)))
        let (sx, sy) = (fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy))
        let a = hash(xi, yi), b = hash(xi + 1, yi), c = hash(xi, yi + 1), d = hash(xi + 1, yi + 1)
        return (a + (b - a) * sx) + ((c + (d - c) * sx) - (a + (b - a) * sx)) * sy
    }

    /// Fractal sum in 0…1 of `octaves` octaves starting at `scale` pixels per cell.
    func fbm(_ x: Double, _ y: Double, scale: Double, octaves: Int) -> Float {
        var total: Float = 0, amplitude: Float = 0.5, norm: Float = 0, s = scale
        for o in 0..<octaves {
            total += amplitude * ValueNoise(seed: seed &+ UInt64(o) &* 7919).value(x / s, y / s)
            norm += amplitude
            amplitude *= 0.5
            s /= 2
        }
        return total / norm
    }
}
