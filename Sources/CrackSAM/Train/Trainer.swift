import Foundation

/// Every value of the training recipe (REFERENCE "Training recipe" gives the defaults).
public struct TrainingOptions: Codable, Equatable, Sendable {
    public enum AMP: String, Codable, Sendable, CaseIterable {
        case fp16, bf16, off

        /// Autocast's dtype; nil for off.
        public var dtype: DType? {
            switch self {
            case .fp16: return .float16
            case .bf16: return .bfloat16
            case .off: return nil
            }
        }
    }

    public var epochs = 140
    /// The authors' released command stops after epoch 100 of a 140-epoch schedule.
    public var stopEpoch: Int? = 100
    public var batch = 8
    public var lr = 4e-4
    public var warmup = 300
    public var polyPower = 6.0
    public var weightDecay = 0.01
    public var amp: AMP = .off
    public var tf32 = true
    public var valEvery = 5
    public var saveEvery = 5
    public var seed: UInt64 = 3407
    public var device = "cpu"
    public var augment = true
    public var workers = 2
    /// Stop (keeping the last good checkpoint) when the loss is inf/NaN this many steps in a row.
    public var maxNonFiniteSteps = 10
    /// Stop after this many steps in this invocation, resumably (a time box; also what tests use).
    public var maxSteps: Int?
    /// Weights, activations and optimizer state in float64: for numerical checks only (runs that are
    /// equal in exact arithmetic, e.g. 1 rank × batch 4 and 2 ranks × batch 2, then agree to ~1e-12
    /// instead of to float32 rounding amplified by Adam). Optional so older config.json files decode.
    public var float64: Bool?
    /// Recompute the encoder's activations in the backward (less memory; ViT-H batch 8 on a 24 GB card).
    public var checkpointActivations: Bool?
    /// Read the loss back every N steps instead of every step (no host synchronisation inside a step on
    /// a GPU). With N > 1 a step whose gradients are not finite is skipped on the device, and the
    /// non-finite-loss stop is decided at each read-back. nil: 1.
    public var syncEvery: Int?

    public init() {}

    public var lastEpoch: Int { min(stopEpoch ?? epochs, epochs) }

    public static let maxEpochs = 1_000_000

    /// Values no run can use, named by their command-line flag.
    public func validate() throws {
        func require(_ ok: Bool, _ message: String) throws { if !ok { throw TorchError.invalidArgument(message) } }
        // The bound keeps epochs × steps per epoch (the schedule's length) far from Int overflow.
        try require((1...TrainingOptions.maxEpochs).contains(epochs), "--epochs must be between 1 and \(TrainingOptions.maxEpochs) (got \(epochs))")
        try require((stopEpoch ?? 1) >= 1, "--stop-epoch must be at least 1 (got \(stopEpoch ?? 0))")
        try require((1...65536).contains(batch), "--batch must be between 1 and 65536 (got \(batch))")
        // (0 is not refused here: runs saved with it still resume; the flag asks for at least 1.)
        try require((0...1024).contains(workers), "--workers must be between 1 and 1024 (got \(workers))")
        try require(lr.isFinite && lr > 0, "--lr must be a positive number (got \(lr))")
        try require(warmup >= 0, "--warmup must be 0 or more (got \(warmup))")
        try require(polyPower.isFinite && polyPower >= 0, "--poly-power must be 0 or more (got \(polyPower))")
        try require(weightDecay.isFinite && weightDecay >= 0, "--weight-decay must be 0 or more (got \(weightDecay))")
        try require(valEvery >= 1, "--val-every must be at least 1 (got \(valEvery))")
        try require(saveEvery >= 1, "--save-every must be at least 1 (got \(saveEvery))")
        try require(maxNonFiniteSteps >= 1, "the non-finite-loss limit must be at least 1 (got \(maxNonFiniteSteps))")
        try require((maxSteps ?? 1) >= 1, "--max-steps must be at least 1 (got \(maxSteps ?? 0))")
        try require((syncEvery ?? 1) >= 1, "--sync-every must be at least 1 (got \(syncEvery ?? 0))")
    }
}

public enum TrainingError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case runDirectoryInUse(path: String)
    case notARun(path: String, reason: String)
    /// The losses of `steps` steps in a row, up to step `atStep` (metrics.csv's numbering), were inf/NaN;
    /// those steps were skipped and the trainable weights, still finite, were saved to `checkpoint`.
    case nonFiniteLoss(steps: Int, atStep: Int, checkpoint: String)
    /// The training state itself is no longer finite (an update blew it up, e.g. a learning rate far too
    /// high): `tensor` names the first such one (a trainable weight, or the optimizer's moment of one).
    /// `checkpoint` was left as it was, holding step `savedStep`, or nothing when none had been saved yet.
    /// `steps`: the inf/NaN losses in a row before it (0 when the losses were finite).
    case nonFiniteWeights(steps: Int, atStep: Int, checkpoint: String, savedStep: Int?, tensor: String)
    /// A batch could not be made (an image or mask that changed or broke on disk during the run): the
    /// state after step `atStep` was saved to `checkpoint` first, so the run resumes once it is mended.
    /// With several ranks, the rank whose file broke throws this, and every rank stops at the same step.
    /// `diverged`: the training state was no longer finite, so nothing was saved (it says what
    /// `checkpoint` holds instead).
    case batchFailed(reason: String, atStep: Int, checkpoint: String, diverged: String? = nil)
    /// The same, seen from the other ranks: `rank` (nil when several did) could not make its batch, and
    /// its own error says why.
    case batchFailedOnAnotherRank(rank: Int?, atStep: Int, checkpoint: String, diverged: String? = nil)

    public var description: String {
        switch self {
        case .runDirectoryInUse(let path):
            return "\(path) holds another run; pass --resume \(path) to continue it, or choose another --out"
        case .notARun(let path, let reason): return "\(path): cannot resume: \(reason)"
        case .nonFiniteLoss(let n, let step, let ckpt):
            return "the loss was inf/NaN for \(n) steps in a row (up to step \(step)); stopped. Those steps were skipped: "
                + "the last good weights are in \(ckpt)"
        case .nonFiniteWeights(let n, let step, let ckpt, let saved, let tensor):
            let what = "\(tensor) is no longer finite (an update diverged: is the learning rate too high?); stopped. "
            return (n > 0 ? "the loss was inf/NaN for \(n) steps in a row (up to step \(step)) and " : "at step \(step), ") + what
                + (saved.map { "\(ckpt) was left as it was: it holds step \($0), the last state saved" }
                    ?? "No resumable state had been saved yet")
        case .batchFailed(let reason, let step, let ckpt, let diverged):
            return "\(reason); stopped. " + TrainingError.saved(step, ckpt, diverged, "mend the file and --resume")
        case .batchFailedOnAnotherRank(let rank, let step, let ckpt, let diverged):
            return (rank.map { "rank \($0) could not make its batch" } ?? "several ranks could not make their batches")
                + " (its output says why); stopped. " + TrainingError.saved(step, ckpt, diverged, "mend what it names and --resume")
        }
    }

    public var errorDescription: String? { description }

    /// Where a stopped run's state is, and what to do: `diverged` when nothing could be saved.
    static func saved(_ step: Int, _ checkpoint: String, _ diverged: String?, _ then: String) -> String {
        if let diverged { return "After step \(step), \(diverged)" }
        return "The state after step \(step) is saved in \(checkpoint): \(then)"
    }
}

/// Trains a CrackSAM model's delta and head, writing everything into a run directory:
/// `config.json` (written by the caller), `metrics.csv`, `val.csv`, `epoch_N.pth` / `best.pth` deltas in the
/// authors' format (with sidecars), `state.safetensors` (delta, optimizer moments, scaler, counters: one
/// atomic file, so a resume never sees half a checkpoint), and `loss.png` / `val_iou.png`.
public final class Trainer {
    public enum Outcome: Equatable {
        case finished
        /// Stopped early at `maxSteps`, with a resumable checkpoint written.
        case interrupted(step: Int)
        /// Stopped early by a signal (Ctrl-C, SIGTERM; on any rank), with a resumable checkpoint written.
        case stoppedBySignal(step: Int)
    }

    public let model: SAMModel
    public let train: CrackDataset
    public let validation: CrackDataset?
    public let options: TrainingOptions
    public let runDirectory: String
    let device: Device
    let log: (String) -> Void
    let progress: ((String) -> Void)?

    public private(set) var step = 0
    public private(set) var epoch = 0
    private var batchInEpoch = 0
    private var bestIoU = -1.0
    private var bestEpoch = 0
    private var nonFiniteStreak = 0
    /// The step state.safetensors holds (nil before the first save or resume).
    public private(set) var savedStep: Int?
    private var skippedSteps = 0
    private var lossHistory: [(x: Double, y: Double)] = []
    private var iouHistory: [(x: Double, y: Double)] = []
    /// Forward, loss and update (shared with `crack-cli bench train`).
    public let stepper: TrainingStep
    private var optimizer: AdamW { stepper.optimizer }
    private var scaler: GradScaler? { stepper.scaler }
    private var schedule: LRSchedule
    /// Data parallelism: this process is one rank; nil for a single process.
    public let parallel: DataParallel?
    /// After every step, check that all ranks hold identical trainable weights (and log the largest
    /// difference); a difference stops the run.
    public var verifySync = false
    /// Rank 0 alone writes logs, checkpoints and plots.
    var isLeader: Bool { (parallel?.rank ?? 0) == 0 }
    var worldSize: Int { parallel?.worldSize ?? 1 }

    public init(model: SAMModel, train: CrackDataset, validation: CrackDataset?, options: TrainingOptions, runDirectory: String,
                parallel: DataParallel? = nil, log: @escaping (String) -> Void = { print($0) }, progress: ((String) -> Void)? = nil) throws {
        guard let device = Device(options.device) else { throw TorchError.invalidArgument("bad device '\(options.device)'") }
        try options.validate()
        self.model = model
        self.train = train
        self.validation = validation
        self.options = options
        self.runDirectory = runDirectory
        self.device = device
        self.parallel = parallel
        let leader = (parallel?.rank ?? 0) == 0
        self.log = leader ? log : { _ in }
        self.progress = leader ? progress : nil
        if options.float64 == true {
            try model.move(to: device, dtype: .float64)
        } else if device != .cpu {
            try model.move(to: device)
        }
        // Every rank starts from rank 0's weights, whatever each loaded or drew.
        if let parallel { try parallel.broadcastState(of: model) }
        stepper = try TrainingStep(model: model, amp: options.amp, weightDecay: options.weightDecay, device: device, parallel: parallel,
                                   float64: options.float64 == true)
        stepper.checkpointActivations = options.checkpointActivations == true
        schedule = Trainer.schedule(options, batchesPerEpoch: Trainer.batchesPerEpoch(train.count, batch: options.batch, worldSize: parallel?.worldSize ?? 1))
        Torch.allowTF32 = options.tf32
        try Torch.manualSeed(options.seed)
    }

    var statePath: String { runDirectory + "/state.safetensors" }

    /// Optimizer steps per epoch: global batches of batch × worldSize (the epoch padded to a multiple of
    /// the world size, see BatchLoader).
    public static func batchesPerEpoch(_ count: Int, batch: Int, worldSize: Int) -> Int {
        let w = max(worldSize, 1)
        let padded = (count + w - 1) / w * w
        return (padded + batch * w - 1) / (batch * w)
    }

    static func schedule(_ options: TrainingOptions, batchesPerEpoch: Int) -> LRSchedule {
        LRSchedule(base: options.lr, warmup: options.warmup, maxIterations: options.epochs * batchesPerEpoch, power: options.polyPower)
    }

    // MARK: - Resumable state

    /// Writes state.safetensors, unless what it would hold is no longer finite (the trainable weights, the
    /// optimizer's moments or the fp16 scale): a diverged update never replaces the last good state, and
    /// no state is written that --resume would refuse. Returns whether the state (on rank 0) was written.
    @discardableResult
    func saveState() throws -> Bool {
        // The same weights and moments on every rank, so every rank takes the same branch.
        if let bad = try nonFiniteState() {
            log("step \(step): \(bad) is not finite; \(statePath) " + (savedStep.map { "keeps step \($0)" } ?? "is not written"))
            return false
        }
        guard isLeader else { return true }
        var tensors = StateDict()
        for (k, t) in model.deltaStateDict() { tensors["delta." + k] = t }
        for (k, t) in optimizer.stateDict() { tensors["optimizer." + k] = t }
        if let scaler { for (k, t) in scaler.stateDict() { tensors["scaler." + k] = t } }
        let meta: [String: String] = [
            "step": String(step), "epoch": String(epoch), "batch_in_epoch": String(batchInEpoch), "best_iou": String(bestIoU),
            "best_epoch": String(bestEpoch), "skipped_steps": String(skippedSteps), "seed": String(options.seed),
            "world_size": String(worldSize), "samples_in_epoch": String(batchInEpoch * options.batch * worldSize),
            "train_samples": String(train.count),
            "rng": "augmentation and shuffling are derived from (seed, epoch, sample); no other randomness in a step",
        ]
        try SafeTensors.save(tensors, metadata: meta, to: statePath)
        savedStep = step
        return true
    }

    /// The first tensor of the training state that holds NaN or inf, named (a trainable weight by its key,
    /// a moment by its weight's), or nil when all are finite; one read-back for all of them. A weight can
    /// stay finite while its moment does not (a gradient past 1.8e19 makes exp_avg_sq inf, and from then on
    /// the weight's updates are 0): the run would go on learning nothing there, and its state could not be
    /// resumed. The name is kept in `nonFiniteTensor` for the error that stops the run.
    func nonFiniteState() throws -> String? {
        let keys = Dictionary(model.trainableParameters().map { (ObjectIdentifier($0.parameter), $0.key) }, uniquingKeysWith: { a, _ in a })
        var named: [(String, Tensor)] = []
        for (i, p) in optimizer.parameters.enumerated() {
            let key = keys[ObjectIdentifier(p)] ?? "trainable weight \(i)"
            named.append((key, p.tensor))
            named.append(("the optimizer's exp_avg of \(key)", optimizer.expAvg[i]))
            named.append(("the optimizer's exp_avg_sq of \(key)", optimizer.expAvgSq[i]))
        }
        if let scaler { named.append(("the fp16 loss scale", scaler.scale)) }
        let flags = try Tensor.stack(named.map { try $0.1.detach().isFinite().to(dtype: .float32).amin() }).toArray(of: Float.self)
        nonFiniteTensor = flags.firstIndex { $0 != 1 }.map { named[$0].0 }
        return nonFiniteTensor
    }
    /// What nonFiniteState found last.
    private var nonFiniteTensor: String?

    /// Ends a run of `maxNonFiniteSteps` non-finite losses (the last at step `atStep`), saving the state
    /// when the weights are still finite (the NaN steps were skipped).
    private func stopForNonFiniteLosses(steps: Int, atStep: Int) throws -> Never {
        if try saveState() { throw TrainingError.nonFiniteLoss(steps: steps, atStep: atStep, checkpoint: statePath) }
        throw TrainingError.nonFiniteWeights(steps: steps, atStep: atStep, checkpoint: statePath, savedStep: savedStep, tensor: nonFiniteTensor ?? "?")
    }

    func loadState() throws {
        let contents = try SafeTensors.load(at: statePath)
        // Counters outside what a run can reach (a damaged or edited file) are named, not met as a crash
        // or as a run that goes on from nowhere.
        func int(_ key: String, in range: ClosedRange<Int> = 0...Int(Int32.max)) throws -> Int {
            guard let v = contents.metadata[key].flatMap(Int.init) else { throw TrainingError.notARun(path: statePath, reason: "no \(key)") }
            guard range.contains(v) else {
                throw TrainingError.notARun(path: statePath, reason: "\(key) \(v) is outside \(range.lowerBound)…\(range.upperBound)")
            }
            return v
        }
        // The delta is checked as it loads (checkDelta); the optimizer's and scaler's tensors here.
        try contents.tensors.filter { !$0.key.hasPrefix("delta.") }.requireFinite(source: statePath)
        var delta = StateDict(), opt = StateDict()
        for (k, t) in contents.tensors {
            if k.hasPrefix("delta.") { delta[String(k.dropFirst(6))] = t }
            if k.hasPrefix("optimizer.") { opt[String(k.dropFirst(10))] = t }
        }
        try model.loadDelta(delta, source: statePath)
        try optimizer.loadStateDict(opt, source: statePath)
        let savedWorld = try contents.metadata["world_size"].map { _ in try int("world_size", in: 1...65536) } ?? 1
        let trainSamples = try contents.metadata["train_samples"].map { _ in try int("train_samples") }
        let savedBatchCount = Trainer.batchesPerEpoch(trainSamples ?? train.count, batch: options.batch, worldSize: savedWorld)
        // Every counter is checked before anything is changed on disk.
        let savedStepCount = try int("step"), savedEpoch = try int("epoch", in: 0...options.epochs)
        let savedBatch = try int("batch_in_epoch", in: 0...max(savedBatchCount, 0))
        let savedBestEpoch = try int("best_epoch", in: 0...savedEpoch), savedSkips = try int("skipped_steps")
        let savedBestIoU = Double(contents.metadata["best_iou"] ?? "-1") ?? -1
        guard savedBestIoU == -1 || (0...1).contains(savedBestIoU) else {
            throw TrainingError.notARun(path: statePath, reason: "best_iou \(savedBestIoU) is neither -1 (none yet) nor in 0…1")
        }
        let samples = try contents.metadata["samples_in_epoch"].map { _ in try int("samples_in_epoch") } ?? savedBatch * options.batch * savedWorld
        (step, epoch, batchInEpoch, bestEpoch, skippedSteps, bestIoU) = (savedStepCount, savedEpoch, savedBatch, savedBestEpoch, savedSkips, savedBestIoU)
        savedStep = step
        // Rows written after this state (steps of a crashed epoch, a validation whose epoch was not saved)
        // are run again from here: dropped, so metrics.csv and val.csv hold each step and epoch once.
        try dropRows(of: "metrics.csv", column: "step", after: step)
        try dropRows(of: "val.csv", column: "epoch", after: epoch)
        // The training set may have changed on disk (images removed, a list file edited) under the same
        // --data: the run goes on, but the schedule's length and each epoch's order follow the new count.
        if let saved = trainSamples, saved != train.count {
            log("warning: the run trained on \(saved) samples and its training set now has \(train.count): the learning-rate "
                + "schedule's length and the epochs' order change with it")
        }
        // A run saved with another world size continues at the same sample of the epoch: batches are
        // counted anew in global batches of this world size, and the step count (which drives the
        // learning-rate schedule) is placed at the same point of the run.
        let perEpoch = Trainer.batchesPerEpoch(train.count, batch: options.batch, worldSize: worldSize)
        if savedWorld == worldSize {
            // A training set that shrank since: its epoch ends where its batches do.
            batchInEpoch = min(batchInEpoch, perEpoch)
        } else {
            batchInEpoch = min(samples / (options.batch * worldSize), perEpoch)
            let savedAt = step
            step = epoch * perEpoch + batchInEpoch
            log("the run was saved with \(savedWorld) rank(s) and continues on \(worldSize): sample \(batchInEpoch * options.batch * worldSize) "
                + "of epoch \(epoch + 1) (saved at sample \(samples)), step \(step)")
            // More ranks count fewer, larger steps: the rows numbered past the new count would sit before
            // the rows to come, so metrics.csv continues from the new count.
            if step < savedAt {
                try dropRows(of: "metrics.csv", column: "step", after: step, because: "(steps \(step + 1)…\(savedAt), counted on \(savedWorld) rank(s)) "
                    + "are dropped: steps are now counted in global batches of \(worldSize) rank(s)")
            }
        }
        if let scaler, let s = contents.tensors["scaler.scale"], let g = contents.tensors["scaler.growth_tracker"] {
            try scaler.load(scale: s, growthTracker: g, skippedSteps: skippedSteps)
        }
        lossHistory = Trainer.readCSV(runDirectory + "/metrics.csv", x: "step", y: "loss")
        iouHistory = Trainer.readCSV(runDirectory + "/val.csv", x: "epoch", y: "iou")
    }

    /// Rewrites a log CSV of the run without its rows whose `column` is above `limit` (rank 0 only), and
    /// says why (by default: they were written after the state the run continues from, and run again).
    func dropRows(of file: String, column: String, after limit: Int, because reason: String? = nil) throws {
        guard isLeader else { return }
        let path = runDirectory + "/" + file
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard let header = lines.first, let index = header.split(separator: ",").firstIndex(where: { $0 == column }) else { return }
        let kept = lines.dropFirst().filter { row in
            let fields = row.split(separator: ",", omittingEmptySubsequences: false)
            return fields.count > index && (Int(fields[index]) ?? Int.max) <= limit
        }
        guard kept.count < lines.count - 1 else { return }
        try AtomicFile.write(Data(([header] + kept).map { $0 + "\n" }.joined().utf8), to: path)
        log("\(file): \(lines.count - 1 - kept.count) row(s) after \(column) \(limit) " + (reason ?? "were written after the last checkpoint; dropped, they run again"))
    }

    static func readCSV(_ path: String, x: String, y: String) -> [(x: Double, y: Double)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        let lines = text.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        guard let header = lines.first, let xi = header.firstIndex(of: x), let yi = header.firstIndex(of: y) else { return [] }
        return lines.dropFirst().compactMap { row in
            guard row.count > max(xi, yi), let a = Double(row[xi]), let b = Double(row[yi]) else { return nil }
            return (a, b)
        }
    }

    private func append(_ file: String, header: String, _ line: String) throws {
        guard isLeader else { return }
        let path = runDirectory + "/" + file
        if !FileManager.default.fileExists(atPath: path) {
            try (header + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw DataError.cannotWrite(path: path, reason: "cannot open") }
        defer { try? h.close() }
        try h.seekToEnd()
        try h.write(contentsOf: Data((line + "\n").utf8))
    }

    // MARK: - The loop

    /// A step whose loss has not been read back yet (syncEvery > 1).
    struct Unread {
        var step: Int
        var epoch: Int
        var lr: Double
        var value: CrackLoss.Value
        var images: Int
        /// The fp16 scaler's state before the step, kept with data parallelism: a step that turns out to
        /// have had a stand-in batch is undone at the read-back, and it had backed the scale off.
        var scalerBefore: (scale: Tensor, growthTracker: Tensor)?
    }
    private var unread: [Unread] = []
    private var windowStart = DispatchTime.now().uptimeNanoseconds
    private var skippedAtStart = 0
    var syncWindow: Int { max(options.syncEvery ?? 1, 1) }

    /// One step's row of metrics.csv, its point of the loss plot, and the progress line, which a read-back
    /// shows for its last row only (each row of a window would show the step the run is at, the same line
    /// over and over).
    private func record(step: Int, epoch: Int, loss: Double, ce: Double, dice: Double, lr: Double, imagesPerSecond: Double,
                        batches: Int, shown: Bool = true) throws {
        try append("metrics.csv", header: "step,epoch,loss,ce,dice,lr,images_per_s,skipped_steps",
                   String(format: "%ld,%ld,%.6f,%.6f,%.6f,%.8g,%.2f,%ld", step, epoch + 1, loss, ce, dice, lr, imagesPerSecond, skippedSteps))
        lossHistory.append((Double(step), loss))
        if shown { report(loss, imagesPerSecond, batches) }
    }

    /// Reads the losses of the steps since the last read-back in one transfer and records them; a run of
    /// non-finite losses stops training with the last good weights (those steps were skipped on the device).
    /// With data parallelism it is also where the ranks learn of a stand-in batch (see `nextBatch`).
    private func readBack(batches: Int) throws {
        guard !unread.isEmpty else { return }
        // loss, ce, dice, and with data parallelism the stand-in count and rank sum, per step.
        let width = parallel == nil ? 3 : 5
        var scalars: [Tensor] = []
        for u in unread {
            for t in [u.value.loss, u.value.ce, u.value.dice] { scalars.append(try t.detach().to(dtype: .float64).reshape([1])) }
            if width == 5 {
                guard let flags = u.value.standIns else { throw TorchError.invalidArgument("a data-parallel step without its stand-in count") }
                scalars.append(try flags.detach().to(dtype: .float64).reshape([2]))
            }
        }
        let values = try Tensor.cat(scalars).to(device: .cpu).toArray(of: Double.self)
        let skippedOnDevice = try stepper.stepsSkippedOnDevice()
        let now = DispatchTime.now().uptimeNanoseconds
        let imagesPerSecond = Double(unread.reduce(0) { $0 + $1.images }) / max(Double(now - windowStart) / 1e9, 1e-9)
        windowStart = now
        var steps = unread
        unread = []
        // The first step in which some rank stood in a NaN batch: it and every later step of the window
        // were skipped on every rank's device (their gradients summed to NaN), so they are undone here,
        // counters and fp16 scale included, and the state saved is the one before it.
        var standIn: (count: Int, rankSum: Int)?
        if width == 5, let first = steps.indices.first(where: { values[width * $0 + 3] > 0 }) {
            standIn = (Int(values[width * first + 3]), Int(values[width * first + 4]))  // (count, rank sum)
            let undone = steps.count - first
            if let scaler, let before = steps[first].scalerBefore {
                try scaler.load(scale: before.scale, growthTracker: before.growthTracker, skippedSteps: scaler.skippedSteps)
            }
            steps.removeLast(undone)
            step -= undone
            batchInEpoch -= undone
            stepsThisRun -= undone
            skippedSteps = skippedAtStart + skippedOnDevice - undone
        } else {
            skippedSteps = skippedAtStart + skippedOnDevice
        }
        var limit: (steps: Int, atStep: Int)?
        for (i, u) in steps.enumerated() {
            let loss = values[width * i]
            nonFiniteStreak = loss.isFinite ? 0 : nonFiniteStreak + 1
            try record(step: u.step, epoch: u.epoch, loss: loss, ce: values[width * i + 1], dice: values[width * i + 2], lr: u.lr,
                       imagesPerSecond: imagesPerSecond, batches: batches, shown: i == steps.count - 1)
            if nonFiniteStreak >= options.maxNonFiniteSteps { limit = (nonFiniteStreak, u.step) }
        }
        // Only after every row of the window is written: the state saved on stopping holds all of its steps,
        // and a resume keeps rows up to that state, so a row not written now would be missing for good.
        if let standIn { try stopForUnmadeBatch(otherRank: ProcessGroup.failedRank(count: Double(standIn.count), rankSum: Double(standIn.rankSum))) }
        if let limit { try stopForNonFiniteLosses(steps: limit.steps, atStep: limit.atStep) }
    }

    /// Trains from the current state (call `resume()` first to continue a run).
    public func run() throws -> Outcome {
        // A file that broke in an earlier call may have been mended since.
        ownFailure = nil
        skippedAtStart = skippedSteps
        let lastEpoch = options.lastEpoch
        let augmenter = options.augment ? Augmenter(seed: options.seed) : nil
        stepsThisRun = 0
        while epoch < lastEpoch {
            let loader = BatchLoader(dataset: train, size: model.config.imageSize, batchSize: options.batch, epoch: epoch,
                                     shuffleSeed: options.seed, augmenter: augmenter, workers: options.workers,
                                     pinMemory: device != .cpu, startBatch: batchInEpoch, rank: parallel?.rank ?? 0, worldSize: worldSize)
            defer { loader.stop() }
            windowStart = DispatchTime.now().uptimeNanoseconds
            while let batch = try nextBatch(loader) {
                let lr = schedule.rate(at: step)
                let images = try batch.images.to(device: device, nonBlocking: true)
                let labels = try batch.labels.to(device: device, nonBlocking: true)
                let standIn = ownFailure != nil
                if syncWindow > 1 {
                    // The fast path: nothing read back; the device skips a step with non-finite gradients.
                    let scalerBefore = try parallel == nil ? nil : scaler.map { (try $0.scale.clone(), try $0.growthTracker.clone()) }
                    let value = try stepper.step(images: images, labels: labels, lr: lr, standIn: standIn)
                    reportCapture()
                    step += 1
                    batchInEpoch += 1
                    stepsThisRun += 1
                    unread.append(Unread(step: step, epoch: epoch, lr: lr, value: value, images: batch.names.count * worldSize,
                                         scalerBefore: scalerBefore))
                    if unread.count >= syncWindow || batchInEpoch == loader.batchCount { try readBack(batches: loader.batchCount) }
                } else {
                    let value = try stepper.forward(images: images, labels: labels, standIn: standIn)
                    // The global loss: the same number on every rank, so all ranks take the same branch.
                    // With data parallelism the stand-in count comes in the same read.
                    let lossValue: Double
                    if let standIns = value.standIns {
                        let read = try Tensor.cat([value.loss.detach().to(dtype: .float64).reshape([1]), standIns.detach().to(dtype: .float64)])
                            .to(device: .cpu).toArray(of: Double.self)
                        // A rank stood a NaN batch in (see nextBatch): nothing was updated yet; stop here.
                        if read[1] > 0 { try stopForUnmadeBatch(otherRank: ProcessGroup.failedRank(count: read[1], rankSum: read[2])) }
                        lossValue = read[0]
                    } else {
                        lossValue = try value.loss.item()
                    }
                    if !lossValue.isFinite {
                        nonFiniteStreak += 1
                        skippedSteps += 1
                        try scaler?.recordNonFiniteLoss()
                        try optimizer.zeroGrad()
                    } else {
                        nonFiniteStreak = 0
                        // With data parallelism the ranks' gradients are summed before the step, so the
                        // scaler's inf check and the update are the same everywhere.
                        if try !stepper.update(value, lr: lr) { skippedSteps += 1 }
                    }
                    if case .cuda(let i) = device { try CUDA.synchronize(device: i) }
                    let now = DispatchTime.now().uptimeNanoseconds
                    let imagesPerSecond = Double(batch.names.count * worldSize) / max(Double(now - windowStart) / 1e9, 1e-9)
                    windowStart = now
                    step += 1
                    batchInEpoch += 1
                    stepsThisRun += 1
                    try record(step: step, epoch: epoch, loss: lossValue, ce: value.ce.item(), dice: value.dice.item(), lr: lr,
                               imagesPerSecond: imagesPerSecond, batches: loader.batchCount)
                    // Recorded first, so metrics.csv shows every step of the streak.
                    if nonFiniteStreak >= options.maxNonFiniteSteps { try stopForNonFiniteLosses(steps: nonFiniteStreak, atStep: step) }
                }
                if let parallel, verifySync {
                    let worst = try parallel.divergence(optimizer.parameters)
                    log(String(format: "step %ld: trainable weights of %ld ranks differ by at most %g", step, worldSize, worst))
                    if worst != 0 {
                        throw DistributedError.collective(operation: "weight check", rank: parallel.rank, worldSize: worldSize,
                                                          message: "ranks hold different weights after step \(step) (max |Δ| \(worst))")
                    }
                }
                // A signal is checked where the host has caught up anyway (every step, or at each
                // read-back with --sync-every): with data parallelism agreeing on it is a collective.
                let reachedMax = options.maxSteps.map { stepsThisRun >= $0 } ?? false
                let signalled = try !reachedMax && unread.isEmpty && stopAgreed()
                if reachedMax || signalled {
                    try readBack(batches: loader.batchCount)
                    guard try saveState() else {
                        throw TrainingError.nonFiniteWeights(steps: nonFiniteStreak, atStep: step, checkpoint: statePath, savedStep: savedStep,
                                                             tensor: nonFiniteTensor ?? "?")
                    }
                    try writePlots()
                    return signalled ? .stoppedBySignal(step: step) : .interrupted(step: step)
                }
            }
            // Weights an update blew up (a learning rate far too high) are no epoch's result: no delta, no
            // state is written from them, and the run does not go on as if it had an epoch behind it.
            if let bad = try nonFiniteState() {
                try writePlots()
                throw TrainingError.nonFiniteWeights(steps: nonFiniteStreak, atStep: step, checkpoint: statePath, savedStep: savedStep, tensor: bad)
            }
            epoch += 1
            batchInEpoch = 0
            if let validation, epoch % options.valEvery == 0 || epoch == lastEpoch {
                let scores: SegmentationScores
                do {
                    scores = try validate(validation)
                } catch {
                    // A validation file that broke during the run: the epoch's steps are kept, saved as its
                    // last batch done, so that a resume (once the file is mended) validates the epoch again.
                    epoch -= 1
                    batchInEpoch = loader.batchCount
                    if case DistributedError.failedOnAnotherRank(let rank, _) = error { try stopForUnmadeBatch(otherRank: rank) }
                    try stopForUnmadeBatch(error)
                }
                try append("val.csv", header: "epoch,precision,recall,f1,iou",
                           String(format: "%ld,%.6f,%.6f,%.6f,%.6f", epoch, scores.precision, scores.recall, scores.f1, scores.iou))
                iouHistory.append((Double(epoch), scores.iou))
                log(String(format: "epoch %ld validation: Pr %.4f  Re %.4f  F1 %.4f  IoU %.4f", epoch, scores.precision,
                           scores.recall, scores.f1, scores.iou))
                if scores.iou > bestIoU {
                    bestIoU = scores.iou
                    bestEpoch = epoch
                    if isLeader { try model.saveDelta(to: runDirectory + "/best.pth") }
                }
            }
            if isLeader, epoch % options.saveEvery == 0 || epoch == lastEpoch { try model.saveDelta(to: runDirectory + "/epoch_\(epoch).pth") }
            try saveState()
            try writePlots()
            // A signal during the validation stops here, its state just saved, not after one more step.
            if epoch < lastEpoch, try stopAgreed() { return .stoppedBySignal(step: step) }
        }
        // Every step of this call inf/NaN (fewer than the limit that stops a run): nothing was learnt, and
        // "done" would say otherwise.
        // (A resumed call counts from the run's start: its few last steps NaN after epochs that trained are
        // not "nothing learnt".)
        if stepsThisRun > 0, nonFiniteStreak >= min(options.maxNonFiniteSteps, step) {
            try stopForNonFiniteLosses(steps: nonFiniteStreak, atStep: step)
        }
        return .finished
    }

    /// The loader's next batch. A sample that fails now passed the check before the run, so it changed on
    /// disk since: the steps done are kept (read back and saved) before the run stops with its reason.
    ///
    /// With data parallelism this rank cannot just stop: the others would wait for it in the step's
    /// collectives and the steps since the last checkpoint would be lost. It stands a NaN batch in instead,
    /// until the ranks next read their losses back (after this step, or at the end of the --sync-every
    /// window), where all of them learn it from the loss's all-reduce, undo the steps from that one on
    /// (skipped on the device anyway) and stop together with the state saved. No collective is added.
    private func nextBatch(_ loader: BatchLoader) throws -> Batch? {
        if ownFailure != nil { return try standInBatch(loader) }
        do {
            return try loader.nextBatch()
        } catch {
            guard parallel != nil else {
                try readBack(batches: loader.batchCount)
                try stopForUnmadeBatch(error)
            }
            ownFailure = error
            return try standInBatch(loader)
        }
    }

    /// This rank's error while a stand-in batch is in use (data parallelism).
    private var ownFailure: Error?

    /// A batch of NaN images the shape of this rank's share of the current global batch, on the device.
    private func standInBatch(_ loader: BatchLoader) throws -> Batch? {
        guard batchInEpoch < loader.batchCount else { return nil }
        let n = loader.indices(ofBatch: batchInEpoch).count
        let size = model.config.imageSize
        return Batch(images: try Tensor.full([n, 3, size, size], value: .nan, device: device),
                     labels: try Tensor.zeros([n, size, size], dtype: .int64, device: device),
                     names: Array(repeating: "", count: n))
    }

    /// Saves the state (the steps done) and stops for a batch that could not be made: `error` on this
    /// rank (nil: on another, `otherRank`, or on several). Every rank calls it at the same step.
    private func stopForUnmadeBatch(_ error: Error? = nil, otherRank: Int? = nil) throws -> Never {
        let own = error ?? ownFailure
        let saved = try saveState()
        // No rank leaves before rank 0 has written the state (a launcher stops the rest when one exits).
        if let parallel { try? parallel.group.barrier() }
        guard saved else {
            // A diverged update made the state non-finite: the last state saved stays as it was.
            let kept = "\(nonFiniteTensor ?? "the training state") is not finite (an update diverged), so "
                + (savedStep.map { "\(statePath) was left as it was: it holds step \($0)" } ?? "no resumable state had been saved yet")
            if let own { throw TrainingError.batchFailed(reason: "\(own)", atStep: step, checkpoint: statePath, diverged: kept) }
            throw TrainingError.batchFailedOnAnotherRank(rank: otherRank, atStep: step, checkpoint: statePath, diverged: kept)
        }
        if let own { throw TrainingError.batchFailed(reason: "\(own)", atStep: step, checkpoint: statePath) }
        throw TrainingError.batchFailedOnAnotherRank(rank: otherRank, atStep: step, checkpoint: statePath)
    }

    private var captureReported = false
    /// One log line when the step has been captured in a CUDA graph, or when that failed.
    private func reportCapture() {
        guard stepper.cudaGraph, !captureReported else { return }
        if let failure = stepper.cudaGraphFailure {
            log("CUDA graph capture failed; training goes on without it: \(failure)")
        } else if stepper.isCaptured {
            log("step \(step): the training step is captured in a CUDA graph and replayed from here on")
        } else {
            return
        }
        captureReported = true
    }

    /// Whether to stop now (a `StopRequest`: finish the step, checkpoint, return `.interrupted`); a signal
    /// on any rank stops every rank at the same step.
    func stopAgreed() throws -> Bool { try StopRequest.agreed(across: parallel?.group) }

    /// Mean per-image Pr, Re, F1, IoU of argmax predictions, scored as `eval` scores (REFERENCE
    /// "Evaluation"): each image at its own size is brought to S (the authors' spline zoom; an S×S image
    /// as it is), segmented, its prediction brought back (order 0) and scored against the label at the
    /// original size. (The training loader's S×S images and labels made val.csv, and the epoch that became
    /// best.pth, differ from eval's scores on a set of other sizes.) With data parallelism each rank
    /// scores every worldSize-th image and the sums are all-reduced.
    public func validate(_ dataset: CrackDataset) throws -> SegmentationScores {
        let part = parallel.map { dataset.subset(DataParallel.shard(dataset.count, rank: $0.rank, worldSize: $0.worldSize)) } ?? dataset
        let s = model.config.imageSize
        var all: [SegmentationScores] = []
        var broken: Error?
        try Torch.withInferenceMode {
            do {
                for start in stride(from: 0, to: part.count, by: options.batch) {
                    let indices = Array(start..<min(start + options.batch, part.count))
                    let originals = try concurrentMap(indices.count) { try part.loadOriginal(indices[$0]) }
                    // The step's own forward (its autocast, float64 for checks), on eval's input and masks.
                    let input = try SAMPredictor.inputBatch(originals.map(\.0), size: s, resize: .spline, device: device)
                    let masks = try SAMPredictor.masks(fromLogits: stepper.logits(input))
                    for (mask, (image, label)) in zip(masks, originals) {
                        let back = ResizeMethod.spline.maskBack(mask, from: (s, s), to: (image.width, image.height))
                        let c = Evaluator.pixelCounts(predicted: back, truth: label)
                        all.append(SegmentationScores(predicted: c.predicted, truth: c.truth, intersection: c.intersection))
                    }
                }
            } catch where parallel != nil {
                // Not thrown yet: the other ranks wait in the all-reduce below and learn of it there.
                broken = error
            }
        }
        if let parallel {
            let merged = try SegmentationScores.mean(all, across: parallel.group, alsoSum: parallel.group.failureFlags(broken))
            try parallel.group.throwIfAnyFailed(own: broken, flags: merged.sums[...], work: "its share of the validation set")
            return merged.mean
        }
        return SegmentationScores.mean(all)
    }

    private var stepsThisRun = 0
    private var lastReport = DispatchTime.now().uptimeNanoseconds
    private let started = DispatchTime.now().uptimeNanoseconds

    private func report(_ loss: Double, _ imagesPerSecond: Double, _ batches: Int) {
        let total = options.lastEpoch * batches
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let eta = elapsed / Double(max(stepsThisRun, 1)) * Double(max(total - step, 0))
        let line = String(format: "epoch %ld/%ld  step %ld/%ld  loss %.4f  %.1f img/s  ETA %@", epoch + 1, options.lastEpoch, step, total,
                          loss, imagesPerSecond, Trainer.duration(eta))
        if let progress {
            let done = Double(step) / Double(max(total, 1))
            let width = 24
            // Clamped: a training set that shrank before a resume puts the step past this total.
            let filled = min(max(Int(done * Double(width)), 0), width)
            progress("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + line)
        } else {
            let now = DispatchTime.now().uptimeNanoseconds
            if now - lastReport > 10_000_000_000 || step == 1 || batchInEpoch == batches {
                lastReport = now
                log(line)
            }
        }
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0, s < 1e12 else { return "?" }
        let t = Int(s)
        return t >= 3600 ? String(format: "%ldh%02ldm", t / 3600, t % 3600 / 60) : String(format: "%ldm%02lds", t / 60, t % 60)
    }

    func writePlots() throws {
        guard isLeader else { return }
        if !lossHistory.isEmpty {
            try LinePlot(title: "training loss", xLabel: "step", series: [.init(points: lossHistory, color: (200, 60, 40))])
                .render().write(to: runDirectory + "/loss.png")
        }
        if !iouHistory.isEmpty {
            try LinePlot(title: "validation IoU", xLabel: "epoch", series: [.init(points: iouHistory, color: (40, 90, 200))])
                .render().write(to: runDirectory + "/val_iou.png")
        }
    }

    // MARK: - Run directories

    /// Makes a fresh run directory, refusing one that holds another run.
    public static func prepareNewRun(at path: String) throws {
        try checkNewRun(at: path)
        if !FileManager.default.fileExists(atPath: path) { try Folder.make(path) }
    }

    /// Refuses a folder that holds another run, or a file where the folder goes; writes nothing (checked
    /// again before the data check, which takes a while on a large set).
    public static func checkNewRun(at path: String) throws {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isFolder) else { return }
        guard isFolder.boolValue else { throw DataError.cannotWrite(path: path, reason: "a file is in the way of this run folder") }
        let entries = (try? fm.contentsOfDirectory(atPath: path)) ?? []
        if entries.contains(where: { ["config.json", "state.safetensors", "metrics.csv"].contains($0) || $0.hasPrefix("epoch_") }) {
            throw TrainingError.runDirectoryInUse(path: path)
        }
    }

    /// Continues a run from its state file. A run stopped before its first checkpoint (a bad image or an
    /// out-of-memory error in the first epoch), or killed while writing it, has nothing to continue from:
    /// it starts again at step 0, and the rows it had logged are dropped.
    public func resume() throws {
        guard FileManager.default.fileExists(atPath: statePath) else {
            // A run saves its state at every epoch's end, after the epoch's validation and deltas: anything
            // past the first epoch without a state means it was removed, and starting over would rewrite
            // that run's history (metrics.csv, val.csv, best.pth). A run killed before its first checkpoint,
            // or while writing it (its validation and deltas of epoch 1 written, the state not yet: a kill -9,
            // a second Ctrl-C), starts again from its first step, which writes them anew.
            let files = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []
            let deltas = files.filter { $0 == "best.pth" || ($0.hasPrefix("epoch_") && $0.hasSuffix(".pth")) }.sorted()
            let validated = Trainer.readCSV(runDirectory + "/val.csv", x: "epoch", y: "iou").map(\.x)
            let saved = deltas.compactMap { Double($0.dropFirst(6).dropLast(4)) }
            let logged = Trainer.readCSV(runDirectory + "/metrics.csv", x: "step", y: "loss").map(\.x).max() ?? 0
            let firstEpoch = Double(Trainer.batchesPerEpoch(train.count, batch: options.batch, worldSize: worldSize))
            if (validated + saved).contains(where: { $0 > 1 }) || logged > firstEpoch {
                let trained = (deltas.isEmpty ? [] : ["\(deltas.joined(separator: ", "))"])
                    + (validated.isEmpty ? [] : ["\(validated.count) validation(s) in val.csv"]) + ["\(Int(logged)) step(s) in metrics.csv"]
                throw TrainingError.notARun(path: runDirectory, reason: "no state.safetensors, yet the run trained (\(trained.joined(separator: "; "))): "
                    + "its state was removed, and starting over would rewrite its history. Put state.safetensors back, or start a new run with --out")
            }
            try dropRows(of: "metrics.csv", column: "step", after: 0)
            try dropRows(of: "val.csv", column: "epoch", after: 0)
            log("\(runDirectory) was stopped before its first checkpoint was written: the run starts from its first step")
            return
        }
        try loadState()
        log("resuming at epoch \(epoch + 1), step \(step)")
    }
}
