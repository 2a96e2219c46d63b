import Foundation

/// Procedural crack images with exact pixel masks, for demos and tests without downloads
/// (`crack-cli synth`). Surfaces: asphalt pavement, concrete, building facades. Cracks: branching random
/// walks with tapering width, hairlines, longitudinal/transverse runs, alligator networks. Distractors
/// that look crack-like but are never labelled. Everything is a function of (seed, sample index).
public enum SynthStyle: String, CaseIterable, Sendable {
    case pavement, concrete, facade, mixed
}

public enum Distractor: String, CaseIterable, Sendable {
    case shadow, lane, joint, stain, oil, leaves, manhole, tire, lowlight, blur, jpeg
}

public struct SynthOptions: Sendable {
    public var size = 448
    public var style: SynthStyle = .mixed
    public var seed: UInt64 = 0
    public var distractors: Set<Distractor> = Set(Distractor.allCases)
    /// Fraction of images without any crack.
    public var crackFree = 0.1
    /// false renders surfaces and distractors only (every mask empty).
    public var cracks = true

    public init() {}
}

public struct SynthSample {
    public var image: Image
    /// 0 or 255 per pixel.
    public var mask: [UInt8]
    public var style: SynthStyle
}

public enum Synth {
    public static func render(index: Int, options o: SynthOptions) -> SynthSample {
        var rng = SplitMix64(o.seed, UInt64(index), 0x5359_4E54)
        let n = o.size
        let style: SynthStyle = o.style == .mixed ? [.pavement, .concrete, .facade][Int.random(in: 0..<3, using: &rng)] : o.style
        let noise = ValueNoise(seed: rng.next())
        var canvas = surface(style, n, &rng, noise)
        let allowed: [Distractor]
        switch style {
        case .pavement: allowed = [.shadow, .lane, .joint, .stain, .oil, .leaves, .manhole, .tire, .lowlight, .blur, .jpeg]
        case .concrete: allowed = [.shadow, .joint, .stain, .oil, .leaves, .lowlight, .blur, .jpeg]
        default: allowed = [.shadow, .joint, .stain, .lowlight, .blur, .jpeg]
        }
        let active = Set(allowed.filter { o.distractors.contains($0) && Double.random(in: 0..<1, using: &rng) < 0.35 })
        // Painted or built features first: cracks run through them.
        if active.contains(.lane) { lane(&canvas, &rng) }
        if active.contains(.joint) { joint(&canvas, &rng) }
        if active.contains(.tire) { tireMarks(&canvas, &rng) }
        if active.contains(.stain) { stain(&canvas, &rng, noise, oil: false) }
        if active.contains(.oil) { stain(&canvas, &rng, noise, oil: true) }
        // Cracks: a depth per pixel, applied once; the mask is exactly where depth > 0.
        var depth = [Float](repeating: 0, count: n * n)
        if o.cracks && Double.random(in: 0..<1, using: &rng) >= o.crackFree {
            let count = Int.random(in: 1...3, using: &rng)
            for _ in 0..<count {
                let kind = Double.random(in: 0..<1, using: &rng)
                if kind < 0.15 { alligator(&depth, n, &rng) } else { walk(&depth, n, &rng, hairline: kind < 0.35) }
            }
        }
        var mask = [UInt8](repeating: 0, count: n * n)
        for p in 0..<(n * n) where depth[p] > 0 {
            canvas.scale(p, 1 - depth[p] * Float.random(in: 0.85...1, using: &rng))
            mask[p] = 255
        }
        // Objects lying on top hide the cracks below them: the mask follows what is visible.
        if active.contains(.manhole) { manhole(&canvas, &mask, &rng) }
        if active.contains(.leaves) { leaves(&canvas, &mask, &rng) }
        // Lighting and camera last.
        if active.contains(.shadow) { shadow(&canvas, &rng) }
        if active.contains(.lowlight) {
            let f = Float.random(in: 0.35...0.6, using: &rng)
            for p in 0..<(n * n) { canvas.scale(p, f * (1 + 0.06 * (noise.hash(p, 17) - 0.5))) }
        }
        if active.contains(.blur) { motionBlur(&canvas, &rng) }
        var image = canvas.image()
        if active.contains(.jpeg) {
            let tmp = NSTemporaryDirectory() + "cracksam-synth-\(getpid())-\(o.seed)-\(index).jpg"
            if (try? image.write(to: tmp, jpegQuality: Int.random(in: 15...45, using: &rng))) != nil, let decoded = try? Image.read(at: tmp) {
                image = decoded
            }
            try? FileManager.default.removeItem(atPath: tmp)
        }
        return SynthSample(image: image, mask: mask, style: style)
    }

    /// Writes `count` samples as images/NAME.png and masks/NAME.png plus train.txt / val.txt / test.txt
    /// (80 / 10 / 10), rendering in parallel (the output does not depend on the thread count).
    /// `shouldStop` is asked before each image (StopRequest.Interrupted when it says so). When the write fails or is stopped, the samples it wrote
    /// are removed again: a part of a dataset, with no split lists, is of no use
    /// (the same seed makes the same bytes), and it stood in the way of the rerun ("already holds a
    /// dataset").
    public static func write(to dir: String, count: Int, options: SynthOptions, shouldStop: () -> Bool = { false }) throws {
        try Folder.make(dir + "/images")
        try Folder.make(dir + "/masks")
        var written: [Int] = []
        let lock = NSLock()
        do {
            _ = try concurrentMap(count) { i in
                if shouldStop() { throw StopRequest.Interrupted() }
                let s = render(index: i, options: options)
                let name = String(format: "synth_%05ld", i)
                lock.lock(); written.append(i); lock.unlock()
                try s.image.write(to: "\(dir)/images/\(name).png")
                try Image(width: options.size, height: options.size, channels: 1, pixels: s.mask).write(to: "\(dir)/masks/\(name).png")
            }
        } catch {
            for i in written {
                let name = String(format: "synth_%05ld", i)
                for sub in ["images", "masks"] { unlink("\(dir)/\(sub)/\(name).png") }
            }
            throw error
        }
        let names = (0..<count).map { String(format: "synth_%05ld", $0) }
        let nTrain = Int((Double(count) * 0.8).rounded()), nVal = Int((Double(count) * 0.1).rounded())
        try (names[0..<nTrain].joined(separator: "\n") + "\n").write(toFile: dir + "/train.txt", atomically: true, encoding: .utf8)
        try (names[nTrain..<min(nTrain + nVal, count)].joined(separator: "\n") + "\n").write(toFile: dir + "/val.txt", atomically: true, encoding: .utf8)
        try (names[min(nTrain + nVal, count)...].joined(separator: "\n") + "\n").write(toFile: dir + "/test.txt", atomically: true, encoding: .utf8)
    }

    /// A grid of images (each resized to `tile` px, with its mask outline in red) for showing what the
    /// generator makes.
    public static func montage(_ samples: [SynthSample], columns: Int = 4, tile: Int = 160) throws -> Image {
        let rows = (samples.count + columns - 1) / columns
        let (w, h) = (columns * tile + (columns + 1) * 4, rows * tile + (rows + 1) * 4)
        var px = [UInt8](repeating: 255, count: w * h * 3)
        for (i, s) in samples.enumerated() {
            let small = try Degrade.resizeBicubic(s.image, width: tile, height: tile)
            let mask = Evaluator.resizeNearest(s.mask, from: (s.image.width, s.image.height), to: (tile, tile))
            let (ox, oy) = (4 + (i % columns) * (tile + 4), 4 + (i / columns) * (tile + 4))
            for y in 0..<tile {
                for x in 0..<tile {
                    let q = y * tile + x
                    // Outline: a mask pixel with a background neighbour.
                    let edge = mask[q] != 0 && [(1, 0), (-1, 0), (0, 1), (0, -1)].contains { dx, dy in
                        let (nx, ny) = (x + dx, y + dy)
                        return nx < 0 || ny < 0 || nx >= tile || ny >= tile || mask[ny * tile + nx] == 0
                    }
                    let o = ((oy + y) * w + ox + x) * 3
                    if edge {
                        (px[o], px[o + 1], px[o + 2]) = (255, 30, 30)
                    } else {
                        (px[o], px[o + 1], px[o + 2]) = (small.pixels[q * 3], small.pixels[q * 3 + 1], small.pixels[q * 3 + 2])
                    }
                }
            }
        }
        return Image(width: w, height: h, channels: 3, pixels: px)
    }

    // MARK: - Surfaces

    static func surface(_ style: SynthStyle, _ n: Int, _ rng: inout SplitMix64, _ noise: ValueNoise) -> Canvas {
        switch style {
        case .pavement:
            let base = Float.random(in: 70...115, using: &rng)
            var c = Canvas(width: n, height: n, fill: (base, base, base * 0.98))
            let wear = ValueNoise(seed: rng.next())
            for y in 0..<n {
                for x in 0..<n {
                    let p = y * n + x
                    let large = noise.fbm(Double(x), Double(y), scale: Double(n) / 3, octaves: 3) - 0.5
                    let grain = noise.hash(x, y) - 0.5
                    let worn = max(wear.fbm(Double(x), Double(y), scale: Double(n) / 4, octaves: 2) - 0.6, 0)
                    let v = base * (1 + 0.25 * large) + 14 * grain + 120 * worn
                    (c.r[p], c.g[p], c.b[p]) = (v, v, v * 0.98)
                }
            }
            // Aggregate: stones lighter and darker than the binder.
            for _ in 0..<(n * n / 55) {
                let (cx, cy) = (Double.random(in: 0..<Double(n), using: &rng), Double.random(in: 0..<Double(n), using: &rng))
                let r = Double.random(in: 0.8...3.2, using: &rng)
                let shade = Float.random(in: 0.55...1.6, using: &rng)
                Canvas.forEllipse(c.width, c.height, cx: cx, cy: cy, rx: r, ry: r * Double.random(in: 0.6...1, using: &rng), angle: Double.random(in: 0..<3.14, using: &rng)) { p, d in
                    c.scale(p, 1 + (shade - 1) * Float(1 - 0.4 * d))
                }
            }
            // Tar patches: darker, smoother.
            for _ in 0..<Int.random(in: 0...2, using: &rng) {
                let (cx, cy) = (Double.random(in: 0..<Double(n), using: &rng), Double.random(in: 0..<Double(n), using: &rng))
                Canvas.forEllipse(c.width, c.height, cx: cx, cy: cy, rx: Double(n) * Double.random(in: 0.08...0.25, using: &rng), ry: Double(n) * Double.random(in: 0.05...0.15, using: &rng),
                             angle: Double.random(in: 0..<3.14, using: &rng)) { p, d in c.blend(p, (35, 35, 37), Float(0.75 * (1 - d * d))) }
            }
            return c
        case .concrete:
            let base = Float.random(in: 145...195, using: &rng)
            let tint = Float.random(in: -6...6, using: &rng)
            var c = Canvas(width: n, height: n, fill: (base, base, base))
            for y in 0..<n {
                for x in 0..<n {
                    let p = y * n + x
                    let v = base * (1 + 0.12 * (noise.fbm(Double(x), Double(y), scale: Double(n) / 2, octaves: 4) - 0.5)) + 8 * (noise.hash(x, y) - 0.5)
                    (c.r[p], c.g[p], c.b[p]) = (v + tint, v, v - tint)
                }
            }
            // Pores and formwork: tie holes in rows, faint panel seams.
            for _ in 0..<(n * n / 400) {
                let (cx, cy) = (Double.random(in: 0..<Double(n), using: &rng), Double.random(in: 0..<Double(n), using: &rng))
                let r = Double.random(in: 0.6...2.2, using: &rng)
                Canvas.forEllipse(c.width, c.height, cx: cx, cy: cy, rx: r, ry: r, angle: 0) { p, _ in c.scale(p, 0.55) }
            }
            if Bool.random(using: &rng) {
                let spacing = Double(n) / Double(Int.random(in: 2...4, using: &rng))
                for k in 1..<Int(Double(n) / spacing + 1) {
                    let y = Double(k) * spacing
                    Canvas.forSegment(c.width, c.height, 0, y, Double(n), y, halfWidth: 1.2) { p, _ in c.scale(p, 0.93) }
                    for hx in stride(from: spacing / 2, to: Double(n), by: spacing) {
                        Canvas.forEllipse(c.width, c.height, cx: hx, cy: y - spacing / 2, rx: 4, ry: 4, angle: 0) { p, d in c.scale(p, Float(0.7 + 0.2 * d)) }
                    }
                }
            }
            return c
        case .facade, .mixed:
            let paint: (Float, Float, Float) = [(232, 224, 205), (210, 205, 200), (236, 214, 170), (190, 205, 215), (225, 190, 170)][Int.random(in: 0..<5, using: &rng)]
            var c = Canvas(width: n, height: n, fill: paint)
            let tiles = Bool.random(using: &rng)
            let tw = Int.random(in: 28...70, using: &rng), th = tiles ? Int.random(in: 20...50, using: &rng) : 0
            for y in 0..<n {
                for x in 0..<n {
                    let p = y * n + x
                    let plaster = 1 + 0.08 * (noise.fbm(Double(x), Double(y), scale: 24, octaves: 4) - 0.5) + 0.03 * (noise.hash(x, y) - 0.5)
                    var f = plaster
                    if tiles {
                        let row = y / th
                        let off = row % 2 == 0 ? 0 : tw / 2
                        let (gx, gy) = ((x + off) % tw, y % th)
                        f *= 1 + 0.1 * (noise.hash((x + off) / tw, row) - 0.5)
                        if gx < 2 || gy < 2 { f *= 0.8 }
                    }
                    c.r[p] = paint.0 * f; c.g[p] = paint.1 * f; c.b[p] = paint.2 * f
                }
            }
            return c
        }
    }

    // MARK: - Cracks

    /// Marks a disc of the crack with depth (darkening 0…1); the deepest mark wins.
    static func stamp(_ depth: inout [Float], _ n: Int, _ x: Double, _ y: Double, width: Double, darkness: Float) {
        let r = max(width / 2, 0.5)
        let (ya, yb) = (max(0, Int(y - r - 1)), min(n - 1, Int(y + r + 1)))
        let (xa, xb) = (max(0, Int(x - r - 1)), min(n - 1, Int(x + r + 1)))
        guard ya <= yb, xa <= xb else { return }
        for py in ya...yb {
            for px in xa...xb {
                let d = ((Double(px) - x) * (Double(px) - x) + (Double(py) - y) * (Double(py) - y)).squareRoot()
                if d <= r {
                    let v = darkness * Float(1 - 0.35 * d / (r + 1))
                    if v > depth[py * n + px] { depth[py * n + px] = v }
                }
            }
        }
    }

    /// A branching random walk with a tapering width.
    static func walk(_ depth: inout [Float], _ n: Int, _ rng: inout SplitMix64, hairline: Bool, from start: (Double, Double, Double)? = nil,
                     width initial: Double? = nil, generation: Int = 0) {
        let scale = Double(n) / 448
        var (x, y, heading) = start ?? {
            // Longitudinal or transverse runs start at an edge; others anywhere.
            let kind = Int.random(in: 0..<3, using: &rng)
            switch kind {
            case 0: return (Double.random(in: 0..<Double(n), using: &rng), 0.0, Double.pi / 2 + Double.random(in: -0.3...0.3, using: &rng))
            case 1: return (0.0, Double.random(in: 0..<Double(n), using: &rng), Double.random(in: -0.3...0.3, using: &rng))
            default: return (Double.random(in: 0..<Double(n), using: &rng), Double.random(in: 0..<Double(n), using: &rng), Double.random(in: 0..<(2 * Double.pi), using: &rng))
            }
        }()
        let w0 = initial ?? (hairline ? Double.random(in: 1...1.6, using: &rng) : Double.random(in: 2...15, using: &rng) * max(scale, 0.35))
        let length = Double(n) * Double.random(in: generation == 0 ? 0.5...1.3 : 0.15...0.45, using: &rng)
        let darkness: Float = hairline ? Float.random(in: 0.25...0.4, using: &rng) : Float.random(in: 0.45...0.75, using: &rng)
        var turn = 0.0
        var travelled = 0.0
        while travelled < length {
            let t = travelled / length
            let w = max(1, w0 * pow(1 - t, 0.6) + (hairline ? 0 : 0.8))
            stamp(&depth, n, x, y, width: w, darkness: darkness)
            // Slow drift plus step-to-step jaggedness: real cracks wander but rarely curl.
            turn = 0.6 * turn + Double.random(in: -0.04...0.04, using: &rng)
            if Double.random(in: 0..<1, using: &rng) < 0.01 { heading += Double.random(in: -0.5...0.5, using: &rng) }
            heading += turn * 0.3 + Double.random(in: -0.12...0.12, using: &rng)
            x += Double.random(in: -0.3...0.3, using: &rng)
            x += cos(heading) * 1.2
            y += sin(heading) * 1.2
            travelled += 1.2
            if x < -5 || y < -5 || x > Double(n) + 5 || y > Double(n) + 5 { break }
            if generation < 2 && !hairline && Double.random(in: 0..<1, using: &rng) < 0.004 {
                let side: Double = Bool.random(using: &rng) ? 1 : -1
                walk(&depth, n, &rng, hairline: false, from: (x, y, heading + side * Double.random(in: 0.5...1.2, using: &rng)),
                     width: max(1, w * 0.6), generation: generation + 1)
            }
        }
    }

    /// Alligator (fatigue) cracking: a network of small polygons in a patch, from a jittered grid whose
    /// neighbours are joined by wiggly thin cracks.
    static func alligator(_ depth: inout [Float], _ n: Int, _ rng: inout SplitMix64) {
        let cell = Double(n) * Double.random(in: 0.06...0.11, using: &rng)
        let (cx, cy) = (Double.random(in: 0.25...0.75, using: &rng) * Double(n), Double.random(in: 0.25...0.75, using: &rng) * Double(n))
        let radius = Double(n) * Double.random(in: 0.2...0.35, using: &rng)
        let k = Int(2 * radius / cell) + 1
        var points = [[(Double, Double)]](repeating: [], count: k)
        for i in 0..<k {
            for j in 0..<k {
                points[i].append((cx - radius + Double(j) * cell + Double.random(in: -0.3...0.3, using: &rng) * cell,
                                  cy - radius + Double(i) * cell + Double.random(in: -0.3...0.3, using: &rng) * cell))
            }
        }
        let darkness = Float.random(in: 0.45...0.7, using: &rng)
        let width = Double.random(in: 1...3.5, using: &rng) * max(Double(n) / 448, 0.5)
        func inside(_ p: (Double, Double)) -> Bool { ((p.0 - cx) * (p.0 - cx) + (p.1 - cy) * (p.1 - cy)).squareRoot() < radius }
        for i in 0..<k {
            for j in 0..<k {
                for (di, dj) in [(0, 1), (1, 0)] where i + di < k && j + dj < k {
                    let (a, b) = (points[i][j], points[i + di][j + dj])
                    guard inside(a) || inside(b), Double.random(in: 0..<1, using: &rng) < 0.9 else { continue }
                    let steps = Int(((b.0 - a.0) * (b.0 - a.0) + (b.1 - a.1) * (b.1 - a.1)).squareRoot()) + 1
                    let bend = Double.random(in: -0.15...0.15, using: &rng) * cell
                    for s in 0...steps {
                        let t = Double(s) / Double(steps)
                        let off = bend * sin(t * Double.pi)
                        let (nx, ny) = (-(b.1 - a.1), b.0 - a.0)
                        let norm = max((nx * nx + ny * ny).squareRoot(), 1e-9)
                        stamp(&depth, n, a.0 + (b.0 - a.0) * t + off * nx / norm, a.1 + (b.1 - a.1) * t + off * ny / norm, width: width, darkness: darkness)
                    }
                }
            }
        }
    }

    // MARK: - Distractors (never labelled)

    static func lane(_ c: inout Canvas, _ rng: inout SplitMix64) {
        let n = Double(c.width)
        let colour: (Float, Float, Float) = Bool.random(using: &rng) ? (235, 235, 230) : (230, 190, 60)
        let vertical = Bool.random(using: &rng)
        let pos = Double.random(in: 0.15...0.85, using: &rng) * n, half = Double.random(in: 5...12, using: &rng) * n / 448
        let dashed = Bool.random(using: &rng)
        let (x0, y0, x1, y1) = vertical ? (pos, 0.0, pos + Double.random(in: -20...20, using: &rng), n) : (0.0, pos, n, pos + Double.random(in: -20...20, using: &rng))
        let segments = dashed ? 4 : 1
        for s in 0..<segments {
            let t0 = Double(s) / Double(segments), t1 = dashed ? t0 + 0.6 / Double(segments) : 1
            Canvas.forSegment(c.width, c.height, x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0, x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1, halfWidth: half) { p, _ in
                c.blend(p, colour, 0.8)
            }
        }
    }

    /// A sawn or formed construction joint: perfectly straight, uniform, edge to edge.
    static func joint(_ c: inout Canvas, _ rng: inout SplitMix64) {
        let n = Double(c.width)
        let half = Double.random(in: 1...2.5, using: &rng)
        let f = Float.random(in: 0.55...0.75, using: &rng)
        if Bool.random(using: &rng) {
            let x = Double.random(in: 0.1...0.9, using: &rng) * n
            Canvas.forSegment(c.width, c.height, x, 0, x, n, halfWidth: half) { p, _ in c.scale(p, f) }
        } else {
            let y = Double.random(in: 0.1...0.9, using: &rng) * n
            Canvas.forSegment(c.width, c.height, 0, y, n, y, halfWidth: half) { p, _ in c.scale(p, f) }
        }
    }

    static func tireMarks(_ c: inout Canvas, _ rng: inout SplitMix64) {
        let n = Double(c.width)
        let x = Double.random(in: 0.2...0.6, using: &rng) * n, gap = Double.random(in: 0.15...0.3, using: &rng) * n
        let half = Double.random(in: 6...14, using: &rng) * n / 448, drift = Double.random(in: -40...40, using: &rng)
        for dx in [0, gap] {
            Canvas.forSegment(c.width, c.height, x + dx, 0, x + dx + drift, n, halfWidth: half) { p, d in c.scale(p, Float(0.75 + 0.15 * d / half)) }
        }
    }

    static func stain(_ c: inout Canvas, _ rng: inout SplitMix64, _ noise: ValueNoise, oil: Bool) {
        let n = Double(c.width)
        let (cx, cy) = (Double.random(in: 0..<n, using: &rng), Double.random(in: 0..<n, using: &rng))
        let (rx, ry) = (n * Double.random(in: 0.05...0.18, using: &rng), n * Double.random(in: 0.04...0.14, using: &rng))
        let f = Float.random(in: oil ? 0.45...0.65 : 0.7...0.85, using: &rng)
        let w = c.width
        Canvas.forEllipse(c.width, c.height, cx: cx, cy: cy, rx: rx, ry: ry, angle: Double.random(in: 0..<3.14, using: &rng)) { p, d in
            let ragged = noise.fbm(Double(p % w), Double(p / w), scale: 12, octaves: 3)
            guard d < 0.55 + 0.6 * Double(ragged) else { return }
            c.scale(p, f + (1 - f) * Float(d * d))
            if oil { c.blend(p, (60, 45, 80), 0.12 * Float(1 - d)) }
        }
    }

    /// A manhole cover: it hides whatever cracks lie under it.
    static func manhole(_ c: inout Canvas, _ mask: inout [UInt8], _ rng: inout SplitMix64) {
        let n = Double(c.width)
        let r = n * Double.random(in: 0.07...0.13, using: &rng)
        let (cx, cy) = (Double.random(in: r...(n - r), using: &rng), Double.random(in: r...(n - r), using: &rng))
        let w = c.width
        Canvas.forEllipse(c.width, c.height, cx: cx, cy: cy, rx: r + 3, ry: r + 3, angle: 0) { p, d in
            let (x, y) = (Double(p % w) - cx, Double(p / w) - cy)
            var v: Float = d * (r + 3) > r ? 50 : 85
            if d * (r + 3) <= r && (Int((x + 1000) / 6) + Int((y + 1000) / 6)) % 2 == 0 { v = 70 }
            c.blend(p, (v, v, v * 1.02), 1)
            mask[p] = 0
        }
    }

    static func leaves(_ c: inout Canvas, _ mask: inout [UInt8], _ rng: inout SplitMix64) {
        let n = Double(c.width)
        for _ in 0..<Int.random(in: 1...6, using: &rng) {
            let colour: (Float, Float, Float) = [(150, 110, 40), (190, 120, 30), (90, 120, 40), (120, 70, 30)][Int.random(in: 0..<4, using: &rng)]
            let size = Double.random(in: 8...20, using: &rng) * n / 448
            Canvas.forEllipse(c.width, c.height, cx: Double.random(in: 0..<n, using: &rng), cy: Double.random(in: 0..<n, using: &rng), rx: size, ry: size * 0.5,
                         angle: Double.random(in: 0..<3.14, using: &rng)) { p, d in
                c.blend(p, colour, Float(0.95 - 0.2 * d))
                mask[p] = 0
            }
        }
    }

    static func shadow(_ c: inout Canvas, _ rng: inout SplitMix64) {
        let n = Double(c.width)
        let f = Float.random(in: 0.45...0.7, using: &rng)
        let (cx, cy) = (Double.random(in: -0.2...1.2, using: &rng) * n, Double.random(in: -0.2...1.2, using: &rng) * n)
        Canvas.forEllipse(c.width, c.height, cx: cx, cy: cy, rx: n * Double.random(in: 0.3...0.7, using: &rng), ry: n * Double.random(in: 0.2...0.5, using: &rng),
                     angle: Double.random(in: 0..<3.14, using: &rng)) { p, d in
            c.scale(p, d > 0.85 ? f + (1 - f) * Float((d - 0.85) / 0.15) : f)
        }
    }

    static func motionBlur(_ c: inout Canvas, _ rng: inout SplitMix64) {
        let length = Int.random(in: 3...9, using: &rng)
        let angle = Double.random(in: 0..<Double.pi, using: &rng)
        let offsets = (0..<length).map { i -> (Int, Int) in
            let t = Double(i) - Double(length - 1) / 2
            return (Int((t * cos(angle)).rounded()), Int((t * sin(angle)).rounded()))
        }
        let n = c.width
        var r = c.r, g = c.g, b = c.b
        for y in 0..<n {
            for x in 0..<n {
                var (sr, sg, sb): (Float, Float, Float) = (0, 0, 0)
                for (dx, dy) in offsets {
                    let q = min(max(y + dy, 0), n - 1) * n + min(max(x + dx, 0), n - 1)
                    sr += c.r[q]; sg += c.g[q]; sb += c.b[q]
                }
                let k = Float(offsets.count)
                (r[y * n + x], g[y * n + x], b[y * n + x]) = (sr / k, sg / k, sb / k)
            }
        }
        c.r = r; c.g = g; c.b = b
    }
}
