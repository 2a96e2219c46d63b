import Foundation

/// Per-pixel crack probabilities for S×S RGB images (row-major, S·S values each): what tiling blends.
public protocol ProbabilityPredictor {
    var inputSize: Int { get }
    func probabilities(_ images: [Image]) throws -> [[Float]]
}

extension SAMPredictor: ProbabilityPredictor {
    /// The crack probability from the softmax over the logits' channels: P(crack) with one crack class;
    /// with several, 0.5 + (P(likeliest crack class) − P(background)) / 2, which is above 0.5 exactly
    /// where the argmax is a crack class, the rule of resize mode. (1 − P(background) is not: with
    /// P = 0.38, 0.31, 0.31 it says crack where the argmax says background.) Where tiles overlap, the
    /// blend thresholded at 0.5 is their weighted vote on that margin, the same rule for one class as for
    /// several (with one class it is the blended P(crack) itself).
    public func probabilities(_ images: [Image]) throws -> [[Float]] {
        let s = inputSize
        let flat = try Torch.withInferenceMode {
            let p = try logits(images).to(dtype: .float32).softmax(dim: 1)
            let background = try p.select(dim: 1, index: 0)
            let crack = try p.size(1) == 2 ? p.select(dim: 1, index: 1) : p.narrow(dim: 1, start: 1, length: p.size(1) - 1).amax(dims: [1])
            return try ((crack - background) * 0.5 + 0.5).to(device: .cpu).contiguous().toArray(of: Float.self)
        }
        return (0..<images.count).map { Array(flat[($0 * s * s)..<(($0 + 1) * s * s)]) }
    }
}

/// Sliding-window segmentation of images of any size (4000×3000 phone or UAV photos) at the model's
/// native resolution: S×S tiles with overlap, blended with weights that fall off towards tile edges
/// (where the model sees the least context) and are normalised to sum to 1 at every pixel.
public struct TilePlan: Sendable {
    public let width: Int
    public let height: Int
    public let tile: Int
    public let overlap: Int
    /// Top-left corners of the tiles.
    public let origins: [(x: Int, y: Int)]

    public init(width: Int, height: Int, tile: Int, overlap: Int) {
        self.width = width
        self.height = height
        self.tile = tile
        self.overlap = min(max(overlap, 0), tile - 1)
        let xs = TilePlan.starts(width, tile, self.overlap), ys = TilePlan.starts(height, tile, self.overlap)
        origins = ys.flatMap { y in xs.map { (x: $0, y: y) } }
    }

    /// Starts along one axis: every `tile − overlap`, the last tile flush with the end.
    static func starts(_ length: Int, _ tile: Int, _ overlap: Int) -> [Int] {
        guard length > tile else { return [0] }
        var out: [Int] = []
        var p = 0
        while p + tile < length { out.append(p); p += tile - overlap }
        out.append(length - tile)
        return out
    }

    /// Weight of tile pixel (x, y): 1 + distance to the nearest tile edge, capped where overlaps end.
    /// Positive everywhere, so every covered pixel has a defined blend.
    public func rawWeight(_ x: Int, _ y: Int) -> Double {
        let ramp = Double(max(overlap, 1))
        let dx = Double(min(x, tile - 1 - x)) + 1, dy = Double(min(y, tile - 1 - y)) + 1
        return min(dx, ramp) * min(dy, ramp)
    }

    /// Σ raw weights over the tiles covering each image pixel (the normaliser), pixel by pixel.
    public func weightSums() -> [Double] {
        var sums = [Double](repeating: 0, count: width * height)
        for o in origins {
            for ty in 0..<tile where o.y + ty < height {
                for tx in 0..<tile where o.x + tx < width { sums[(o.y + ty) * width + o.x + tx] += rawWeight(tx, ty) }
            }
        }
        return sums
    }

    /// Cuts tile `i` out of an RGB image, zero-padding where the image is smaller than the tile.
    public func crop(_ image: Image, _ i: Int) -> Image {
        let o = origins[i]
        var px = [UInt8](repeating: 0, count: tile * tile * 3)
        for ty in 0..<tile where o.y + ty < height {
            for tx in 0..<tile where o.x + tx < width {
                for c in 0..<3 { px[(ty * tile + tx) * 3 + c] = image.pixels[((o.y + ty) * width + o.x + tx) * 3 + c] }
            }
        }
        return Image(width: tile, height: tile, channels: 3, pixels: px)
    }

    /// The same normaliser as two lines, one per axis: a raw weight is a product of an x and a y factor,
    /// and the tiles are every x start with every y start, so the sum at (x, y) is columns[x] · rows[y].
    /// (A plane of sums for a 16000 × 16000 photo is 2 GB of Doubles; these are 16000 each.)
    public func axisWeightSums() -> (columns: [Double], rows: [Double]) {
        let ramp = max(overlap, 1)
        func sums(_ length: Int, _ starts: [Int]) -> [Double] {
            var out = [Double](repeating: 0, count: length)
            for o in starts {
                for t in 0..<tile where o + t < length { out[o + t] += Double(min(min(t, tile - 1 - t) + 1, ramp)) }
            }
            return out
        }
        return (sums(width, TilePlan.starts(width, tile, overlap)), sums(height, TilePlan.starts(height, tile, overlap)))
    }

    /// Segments an RGB image tile by tile (in batches) and returns the blended crack probability per pixel.
    public func run(_ image: Image, with predictor: ProbabilityPredictor, batch: Int = 4) throws -> [Double] {
        guard predictor.inputSize == tile else {
            throw TorchError.invalidArgument("tiling: the plan's tiles are \(tile) px, the model takes \(predictor.inputSize) px")
        }
        guard image.channels == 3, image.width == width, image.height == height else {
            throw TorchError.invalidArgument("tiling: the plan is for \(width)×\(height) RGB images, this one is "
                + "\(image.width)×\(image.height) with \(image.channels) channel(s)")
        }
        var acc = [Double](repeating: 0, count: width * height)
        let (columns, rows) = axisWeightSums()
        for start in stride(from: 0, to: origins.count, by: max(batch, 1)) {
            // A large photo is hundreds of batches: Ctrl-C (once StopRequest catches signals) stops between
            // them, not after the whole photo.
            if StopRequest.isRequested { throw StopRequest.Interrupted() }
            let ids = Array(start..<min(start + max(batch, 1), origins.count))
            let probs = try predictor.probabilities(ids.map { crop(image, $0) })
            for (k, i) in ids.enumerated() {
                let o = origins[i]
                for ty in 0..<tile where o.y + ty < height {
                    for tx in 0..<tile where o.x + tx < width {
                        let p = (o.y + ty) * width + o.x + tx
                        acc[p] += rawWeight(tx, ty) / (columns[o.x + tx] * rows[o.y + ty]) * Double(probs[k][ty * tile + tx])
                    }
                }
            }
        }
        return acc
    }
}
