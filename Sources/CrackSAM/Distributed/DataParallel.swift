import Foundation

/// Data parallelism as tree operations on a model: the same starting weights everywhere, gradients
/// summed across ranks in buckets, and a check that the ranks still agree. One object per training run.
public struct DataParallel {
    public let group: ProcessGroup
    /// Gradients are flattened into buckets of at most this many bytes, one collective each (as
    /// PyTorch's DDP does): few, large messages instead of one per tensor.
    public var bucketBytes: Int

    public init(group: ProcessGroup, bucketBytes: Int = 25 << 20) {
        self.group = group
        self.bucketBytes = bucketBytes
    }

    public var rank: Int { group.rank }
    public var worldSize: Int { group.worldSize }

    /// Groups tensors into runs of one dtype and device, each at most `bucketBytes` (a larger tensor is
    /// a bucket of its own).
    func buckets(_ tensors: [Tensor]) -> [[Tensor]] {
        var out: [[Tensor]] = []
        var current: [Tensor] = [], bytes = 0
        for t in tensors {
            let size = t.count * t.dtype.itemSize
            if let first = current.first, first.dtype != t.dtype || first.device != t.device || bytes + size > bucketBytes {
                out.append(current)
                current = []
                bytes = 0
            }
            current.append(t)
            bytes += size
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Runs `collective` on each bucket flattened into one buffer, then copies the result back.
    func bucketed(_ tensors: [Tensor], _ collective: (Tensor) throws -> Void) throws {
        try Torch.withNoGrad {
            for bucket in buckets(tensors) {
                let flat = try Tensor.cat(bucket.map { try $0.reshape([-1]) })
                try collective(flat)
                var offset = 0
                for t in bucket {
                    try t.copy_(flat.narrow(dim: 0, start: offset, length: t.count).reshape(t.shape))
                    offset += t.count
                }
            }
        }
    }

    /// Every parameter and buffer of `model` takes rank `root`'s value, so all ranks start identical
    /// whatever each loaded or initialised on its own.
    public func broadcastState(of model: Module, from root: Int = 0) throws {
        try bucketed(model.namedSlots().map(\.parameter.tensor)) { try group.broadcast($0, from: root) }
    }

    /// Sums the gradients of `parameters` over all ranks (in place). Parameters without a gradient are
    /// skipped: every rank runs the same graph, so they are the same ones everywhere.
    public func sumGradients(_ parameters: [Parameter]) throws {
        try bucketed(parameters.compactMap { try $0.tensor.grad }) { try group.allReduce($0) }
    }

    /// The largest |difference| between this rank's `parameters` and rank 0's, the same number on every
    /// rank (0 when the ranks agree bit for bit).
    public func divergence(_ parameters: [Parameter]) throws -> Double {
        try Torch.withNoGrad {
            var worst = 0.0
            for bucket in buckets(parameters.map(\.tensor)) {
                let mine = try Tensor.cat(bucket.map { try $0.reshape([-1]).to(dtype: .float64) })
                let reference = try mine.clone()
                try group.broadcast(reference, from: 0)
                let diff = try (mine - reference).abs().amax().reshape([1])
                try group.allReduce(diff, op: .max)
                worst = Swift.max(worst, try diff.item())
            }
            return worst
        }
    }

    /// The indices of `count` items that rank `rank` of `worldSize` takes when work is split without
    /// repeats (evaluation): every worldSize-th item.
    public static func shard(_ count: Int, rank: Int, worldSize: Int) -> [Int] {
        Array(stride(from: rank, to: count, by: Swift.max(worldSize, 1)))
    }
}

extension SegmentationScores {
    /// The mean over every rank's images: the sums and the count are all-reduced (in float64), in one
    /// collective with `alsoSum` (other per-rank totals, e.g. pooled pixel counts), returned summed.
    public static func mean(_ scores: [SegmentationScores], across group: ProcessGroup, alsoSum: [Double] = [])
        throws -> (mean: SegmentationScores, count: Int, sums: [Double]) {
        var local: [Double] = [0, 0, 0, 0, Double(scores.count)] + alsoSum
        for s in scores {
            local[0] += s.precision
            local[1] += s.recall
            local[2] += s.f1
            local[3] += s.iou
        }
        let sums = try Tensor(local, shape: [local.count])
        try group.allReduce(sums)
        let v = try sums.toArray(of: Double.self)
        let n = Swift.max(v[4], 1)
        return (SegmentationScores(precision: v[0] / n, recall: v[1] / n, f1: v[2] / n, iou: v[3] / n), Int(v[4]), Array(v[5...]))
    }
}
