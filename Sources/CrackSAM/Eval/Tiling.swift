import Foundation

/// Per-pixel crack probabilities for S×S RGB images (row-major, S·S values each): what tiling blends.
public protocol ProbabilityPredictor {
    var inputSize: Int { get }
    func probabilities(_ images: [Image]) throws -> [[Float]]
}

extension SAMPredictor: ProbabilityPredictor {
    /// P(crack) = 1 − P(background) from the softmax over the logits' channels.
    public func probabilities(_ images: [Image]) throws -> [[Float]] {
        let s = inputSize
        let flat = try Torch.withInferenceMode {
            try (1.0 - logits(images).to(dtype: .float32).softmax(dim: 1).select(dim: 1, index: 0)).to(device: .cpu)
                .contiguous().toArray(of: Float.self)
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

    /// Σ raw weights over the tiles covering each image pixel (the normaliser).
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

    /// Segments an RGB image tile by tile (in batches) and returns the blended crack probability per pixel.
    public func run(_ image: Image, with predictor: ProbabilityPredictor, batch: Int = 4) throws -> [Double] {
        precondition(predictor.inputSize == tile, "the plan's tile must be the predictor's input size")
        var acc = [Double](repeating: 0, count: width * height)
        let sums = weightSums()
        for start in stride(from: 0, to: origins.count, by: max(batch, 1)) {
            let ids = Array(start..<min(start + max(batch, 1), origins.count))
            let probs = try predictor.probabilities(ids.map { crop(image, $0) })
            for (k, i) in ids.enumerated() {
                let o = origins[i]
                for ty in 0..<tile where o.y + ty < height {
                    for tx in 0..<tile where o.x + tx < width {
                        let p = (o.y + ty) * width + o.x + tx
                        acc[p] += rawWeight(tx, ty) / sums[p] * Double(probs[k][ty * tile + tx])
                    }
                }
            }
        }
        return acc
    }
}
