import Foundation

/// A small deterministic generator (SplitMix64): augmentation draws depend only on (seed, epoch,
/// sample), never on thread scheduling, so runs and resumed runs see the same augmented data.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    public init(seed: UInt64) { state = seed }

    public init(_ parts: UInt64...) {
        state = 0x9E37_79B9_7F4A_7C15
        for p in parts {
            var g = SplitMix64(seed: state ^ p)
            state = g.next()
        }
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// CrackSAM's augmentation (REFERENCE): with p = 0.5 rotate by k·90° (k ∈ 0…3) then flip along a random
/// axis; otherwise with p = 0.5 rotate by an integer angle in [−20, 20) degrees, nearest neighbour, same
/// size, zero fill (image and mask alike); otherwise leave the sample as it is.
public struct Augmenter: Sendable {
    public var seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    public enum Choice: Equatable, Sendable {
        case none
        case rotFlip(k: Int, axis: Int)
        case rotate(degrees: Int)
    }

    public func choice(epoch: Int, index: Int) -> Choice {
        var rng = SplitMix64(seed, UInt64(epoch), UInt64(index))
        if Double.random(in: 0..<1, using: &rng) < 0.5 {
            return .rotFlip(k: Int.random(in: 0..<4, using: &rng), axis: Int.random(in: 0..<2, using: &rng))
        }
        if Double.random(in: 0..<1, using: &rng) < 0.5 { return .rotate(degrees: Int.random(in: -20..<20, using: &rng)) }
        return .none
    }

    /// image (C, H, W), label (H, W).
    public func apply(_ choice: Choice, image: Tensor, label: Tensor) throws -> (Tensor, Tensor) {
        switch choice {
        case .none:
            return (image, label)
        case .rotFlip(let k, let axis):
            let i = try image.rot90(k, dims: (1, 2)).flip([axis + 1]).contiguous()
            let l = try label.rot90(k, dims: (0, 1)).flip([axis]).contiguous()
            return (i, l)
        case .rotate(let degrees):
            return (try Self.rotate(image, degrees: Double(degrees)), try Self.rotate(label.unsqueeze(dim: 0), degrees: Double(degrees)).squeeze(dim: 0))
        }
    }

    /// Rotates (C, H, W) counter-clockwise (as displayed, rows downward) about the image centre
    /// ((n−1)/2), nearest neighbour, pixels from outside the image are 0: scipy.ndimage.rotate(order=0,
    /// reshape=False), which the authors' loader calls, to the pixel. 90° equals rot90.
    public static func rotate(_ x: Tensor, degrees: Double) throws -> Tensor {
        let (c, h, w) = (x.size(0), x.size(1), x.size(2))
        let theta = degrees * Double.pi / 180
        let (cosT, sinT) = (Foundation.cos(theta), Foundation.sin(theta))
        let (cy, cx) = (Double(h - 1) / 2, Double(w - 1) / 2)
        var index = [Int64](repeating: 0, count: h * w)
        var valid = [UInt8](repeating: 0, count: h * w)
        for y in 0..<h {
            for xo in 0..<w {
                // Inverse map: the source of output (y, x) is the output point rotated back.
                let dy = Double(y) - cy, dx = Double(xo) - cx
                let sx = cosT * dx - sinT * dy + cx
                let sy = sinT * dx + cosT * dy + cy
                // As scipy's constant mode: a source point outside [0, n−1] is 0, even when it would round
                // onto the edge pixel (a one-pixel ring otherwise). The tolerance absorbs cos/sin rounding
                // at multiples of 90°, where the points fall exactly on the edge.
                let rx = Int((sx + 0.5).rounded(.down)), ry = Int((sy + 0.5).rounded(.down))
                let inside = sx >= -1e-9 && sx <= Double(w - 1) + 1e-9 && sy >= -1e-9 && sy <= Double(h - 1) + 1e-9
                if inside && rx >= 0 && rx < w && ry >= 0 && ry < h {
                    index[y * w + xo] = Int64(ry * w + rx)
                    valid[y * w + xo] = 1
                }
            }
        }
        let flat = try x.reshape([c, h * w])
        let gathered = try flat.indexSelect(dim: 1, index: try Tensor(index))
        let mask = try Tensor(valid, shape: [1, h * w]).to(dtype: x.dtype)
        return try (gathered * mask).reshape([c, h, w])
    }
}
