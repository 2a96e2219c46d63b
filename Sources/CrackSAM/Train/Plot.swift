import Foundation

/// Minimal line plots written as PNG (training loss, validation IoU): axes, grid, one or more series,
/// a title and tick labels in a built-in 5×7 pixel font. No plotting library is needed on a server.
public struct LinePlot {
    public struct Series {
        public var points: [(x: Double, y: Double)]
        public var color: (UInt8, UInt8, UInt8)
        public init(points: [(x: Double, y: Double)], color: (UInt8, UInt8, UInt8)) {
            self.points = points
            self.color = color
        }
    }

    public var title: String
    public var xLabel: String
    public var series: [Series]
    public var width = 640
    public var height = 400

    public init(title: String, xLabel: String, series: [Series]) {
        self.title = title
        self.xLabel = xLabel
        self.series = series
    }

    public func render() -> Image {
        var px = [UInt8](repeating: 255, count: width * height * 3)
        func put(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
            guard x >= 0, x < width, y >= 0, y < height else { return }
            let i = (y * width + x) * 3
            px[i] = c.0; px[i + 1] = c.1; px[i + 2] = c.2
        }
        func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8)) {
            let n = max(abs(x1 - x0), abs(y1 - y0), 1)
            for i in 0...n {
                put(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n, c)
            }
        }
        func text(_ s: String, _ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8) = (40, 40, 40)) {
            var cx = x
            for ch in s.uppercased() {
                if let glyph = LinePlot.font[ch] {
                    for (row, bits) in glyph.enumerated() {
                        for (col, b) in bits.enumerated() where b == "#" { put(cx + col, y + row, c) }
                    }
                }
                cx += 6
            }
        }
        let (left, right, top, bottom) = (60, width - 20, 30, height - 40)
        let all = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        text(title, left, 10)
        text(xLabel, (left + right) / 2 - xLabel.count * 3, height - 14)
        line(left, bottom, right, bottom, (0, 0, 0))
        line(left, top, left, bottom, (0, 0, 0))
        guard let minX = all.map(\.x).min(), let maxX = all.map(\.x).max(), var minY = all.map(\.y).min(),
              var maxY = all.map(\.y).max() else { return Image(width: width, height: height, channels: 3, pixels: px) }
        if maxY == minY { maxY += 0.5; minY -= 0.5 }
        let spanX = max(maxX - minX, 1e-12)
        func sx(_ x: Double) -> Int { left + Int(Double(right - left) * (x - minX) / spanX) }
        func sy(_ y: Double) -> Int { bottom - Int(Double(bottom - top) * (y - minY) / (maxY - minY)) }
        var ticks: Set<Double> = []
        for k in 0...4 {
            let y = minY + (maxY - minY) * Double(k) / 4
            let yy = sy(y)
            for x in stride(from: left + 1, to: right, by: 4) { put(x, yy, (215, 215, 215)) }
            text(String(format: y.magnitude < 10 ? "%.3f" : "%.1f", y), 2, yy - 3)
            // Steps and epochs are whole: a label sits at its own value (at a quarter of the span, "8" was
            // drawn at epoch 7.69, left of the epoch-8 point), once.
            let x = (minX + spanX * Double(k) / 4).rounded()
            guard ticks.insert(x).inserted else { continue }
            line(sx(x), bottom, sx(x), bottom + 3, (0, 0, 0))
            text(String(format: "%.0f", x), sx(x) - 3 * String(format: "%.0f", x).count, bottom + 6)
        }
        for s in series {
            let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            for (a, b) in zip(pts, pts.dropFirst()) { line(sx(a.x), sy(a.y), sx(b.x), sy(b.y), s.color) }
            if pts.count == 1 { for d in -2...2 { put(sx(pts[0].x) + d, sy(pts[0].y), s.color); put(sx(pts[0].x), sy(pts[0].y) + d, s.color) } }
        }
        return Image(width: width, height: height, channels: 3, pixels: px)
    }

    /// The 5×7 glyphs text is drawn in (upper case; a character without one is left as a space).
    public static let font: [Character: [String]] = [
        "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
        "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
        "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
        "3": ["####.", "....#", "....#", ".###.", "....#", "....#", "####."],
        "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
        "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
        "6": [".###.", "#....", "#....", "####.", "#...#", "#...#", ".###."],
        "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
        "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
        "9": [".###.", "#...#", "#...#", ".####", "....#", "....#", ".###."],
        ".": [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."],
        "-": [".....", ".....", ".....", "#####", ".....", ".....", "....."],
        "(": ["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."],
        ")": [".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."],
        "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
        "C": [".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."],
        "D": ["####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."],
        "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
        "G": [".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".###."],
        "H": ["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
        "I": [".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
        "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
        "N": ["#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"],
        "O": [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
        "P": ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."],
        "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
        "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
        "T": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
        "U": ["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."],
        "V": ["#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."],
        "Y": ["#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."],
        // The rest of the alphabet: titles and labels name models, datasets and kernels ("GAUSSIAN BLUR
        // KERNEL SIZE" came out "GAUSSIAN  LUR  ERNEL SI E").
        "B": ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."],
        "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
        "J": ["..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."],
        "K": ["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"],
        "M": ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"],
        "Q": [".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"],
        "W": ["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "##.##", "#...#"],
        "X": ["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"],
        "Z": ["#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"],
        "/": [".....", "....#", "...#.", "..#..", ".#...", "#....", "....."],
        ":": [".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."],
        "=": [".....", ".....", "#####", ".....", "#####", ".....", "....."],
        "_": [".....", ".....", ".....", ".....", ".....", ".....", "#####"],
        ",": [".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."],
        "%": ["##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"],
        "+": [".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."],
    ]
}
