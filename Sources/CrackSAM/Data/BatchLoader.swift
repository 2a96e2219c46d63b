import Foundation

/// A batch ready for the model: images (B, 3, S, S) float32 in [0, 1], labels (B, S, S) int64 in {0, 1}.
public struct Batch {
    public var images: Tensor
    public var labels: Tensor
    public var names: [String]
}

/// Decodes, augments and assembles batches on background threads, a bounded number ahead of the
/// consumer, in a fixed order (a seeded shuffle per epoch): the accelerator never waits on JPEG
/// decoding, and the batches do not depend on thread timing. On CUDA, batches are built in pinned memory
/// so the copy to the device can be asynchronous.
public final class BatchLoader: Sequence, IteratorProtocol {
    public let dataset: CrackDataset
    public let batchSize: Int
    public let order: [Int]
    let size: Int
    let epoch: Int
    let augmenter: Augmenter?
    let pin: Bool
    let rank: Int
    let worldSize: Int

    /// What the workers and the consumer share. The workers hold the loader weakly, and strongly only
    /// while they build a batch: a loader dropped without `stop()` is freed, and its deinit stops them.
    private final class Queue: @unchecked Sendable {
        let lock = NSCondition()
        var ready: [Int: Result<Batch, Error>] = [:]
        var nextToBuild = 0
        var nextToHand = 0
        var stopped = false
        let prefetch: Int
        let batchCount: Int

        init(prefetch: Int, batchCount: Int, start: Int) {
            self.prefetch = prefetch
            self.batchCount = batchCount
            nextToBuild = start
            nextToHand = start
        }

        /// The next batch for a worker to build, once fewer than `prefetch` wait unclaimed; nil to stop.
        func claim() -> Int? {
            lock.lock()
            defer { lock.unlock() }
            while !stopped && nextToBuild < batchCount && nextToBuild >= nextToHand + prefetch { lock.wait() }
            if stopped || nextToBuild >= batchCount { return nil }
            nextToBuild += 1
            return nextToBuild - 1
        }

        func deliver(_ b: Int, _ result: Result<Batch, Error>) {
            lock.lock()
            ready[b] = result
            lock.broadcast()
            lock.unlock()
        }

        func stop() {
            lock.lock()
            stopped = true
            lock.broadcast()
            lock.unlock()
        }
    }

    private let queue: Queue
    private var workers: [Thread] = []

    /// Batches per epoch; with data parallelism, global batches (every rank has its share of each).
    public var batchCount: Int { (order.count + batchSize * worldSize - 1) / (batchSize * worldSize) }

    /// The sample indices of this rank's part of global batch `b`. The epoch's order (padded, as
    /// PyTorch's DistributedSampler pads, by repeating its first samples up to a multiple of the world
    /// size) is cut into global batches of batchSize × worldSize; rank r takes the r-th of W equal,
    /// contiguous parts of each. One process (W = 1) takes the whole batch.
    public func indices(ofBatch b: Int) -> ArraySlice<Int> {
        let start = b * batchSize * worldSize
        let end = Swift.min(start + batchSize * worldSize, order.count)
        let share = (end - start) / worldSize
        return order[(start + rank * share)..<(start + (rank + 1) * share)]
    }

    /// `shuffleSeed` nil keeps the dataset's order; `augmenter` nil disables augmentation.
    /// `startBatch` skips that many batches without loading them (resuming mid-epoch).
    /// `rank`/`worldSize`: this process's share of each global batch (data-parallel training).
    public init(dataset: CrackDataset, size: Int, batchSize: Int, epoch: Int = 0, shuffleSeed: UInt64? = nil,
                augmenter: Augmenter? = nil, workers: Int = 2, prefetch: Int = 4, pinMemory: Bool = false, startBatch: Int = 0,
                rank: Int = 0, worldSize: Int = 1) {
        self.dataset = dataset
        self.size = size
        self.batchSize = Swift.max(batchSize, 1)
        self.epoch = epoch
        self.augmenter = augmenter
        pin = pinMemory
        self.rank = rank
        self.worldSize = Swift.max(worldSize, 1)
        var order = Array(0..<dataset.count)
        if let shuffleSeed {
            var rng = SplitMix64(shuffleSeed, UInt64(epoch), 0x5348_5546)
            order.shuffle(using: &rng)
        }
        if !order.isEmpty, order.count % self.worldSize != 0 {
            let padded = (order.count + self.worldSize - 1) / self.worldSize * self.worldSize
            order += (0..<(padded - order.count)).map { order[$0 % order.count] }
        }
        self.order = order
        let global = self.batchSize * self.worldSize
        queue = Queue(prefetch: Swift.max(prefetch, 1), batchCount: (order.count + global - 1) / global, start: startBatch)
        let queue = self.queue
        for _ in 0..<Swift.max(workers, 1) {
            let t = Thread { [weak self] in
                while let b = queue.claim() {
                    guard let loader = self else { return }  // dropped: nothing is waiting for batches
                    queue.deliver(b, Result { try loader.build(b) })
                }
            }
            t.stackSize = 1 << 22
            self.workers.append(t)
        }
        self.workers.forEach { $0.start() }
    }

    deinit { stop() }

    /// Stops the workers (they finish the batch in hand).
    public func stop() { queue.stop() }

    private func build(_ b: Int) throws -> Batch {
        let indices = indices(ofBatch: b)
        var images: [Tensor] = [], labels: [Tensor] = [], names: [String] = []
        for i in indices {
            var (image, label) = try dataset.load(i, size: size)
            if let augmenter {
                (image, label) = try augmenter.apply(augmenter.choice(epoch: epoch, index: i), image: image, label: label)
            }
            images.append(image)
            labels.append(label)
            names.append(dataset.samples[i].name)
        }
        var x = try Tensor.stack(images).to(dtype: .float32) / 255.0
        var y = try Tensor.stack(labels).to(dtype: .int64)
        if pin {
            x = try x.pinnedMemory()
            y = try y.pinnedMemory()
        }
        return Batch(images: x, labels: y, names: names)
    }

    /// The next batch in order (waiting for the workers if needed); nil after the last. A decoding error
    /// is thrown by `nextBatch()`; `next()` (for `for … in`) stops at it, so prefer `nextBatch()`.
    public func nextBatch() throws -> Batch? {
        let q = queue
        q.lock.lock()
        defer { q.lock.unlock() }
        guard q.nextToHand < q.batchCount else { return nil }
        while q.ready[q.nextToHand] == nil { q.lock.wait() }
        let result = q.ready.removeValue(forKey: q.nextToHand)!
        q.nextToHand += 1
        q.lock.broadcast()
        return try result.get()
    }

    public func next() -> Batch? { try? nextBatch() }
}
