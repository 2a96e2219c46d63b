import Foundation

/// Every value of the training recipe (REFERENCE "Training recipe" gives the defaults).
public struct TrainingOptions: Codable, Equatable, Sendable {
    public enum AMP: String, Codable, Sendable, CaseIterable {
        case fp16, bf16, off
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

    public init() {}

    public var lastEpoch: Int { min(stopEpoch ?? epochs, epochs) }
}

public enum TrainingError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case runDirectoryInUse(path: String)
    case notARun(path: String, reason: String)
    case nonFiniteLoss(steps: Int, atStep: Int, checkpoint: String)

    public var description: String {
        switch self {
        case .runDirectoryInUse(let path):
            return "\(path) holds another run; pass --resume \(path) to continue it, or choose another --out"
        case .notARun(let path, let reason): return "\(path): cannot resume: \(reason)"
        case .nonFiniteLoss(let n, let step, let ckpt):
            return "the loss was inf/NaN for \(n) steps in a row (up to step \(step)); stopped. The last good weights are in \(ckpt)"
        }
    }

    public var errorDescription: String? { description }
}

/// Trains a CrackSAM model's delta and head, writing everything into a run directory:
/// `config.json` (written by the caller), `metrics.csv`, `val.csv`, `epoch_N.pth` / `best.pth` deltas in the
/// authors' format (with sidecars), `state.safetensors` (delta, optimizer moments, scaler, counters: one
/// atomic file, so a resume never sees half a checkpoint), and `loss.png` / `val_iou.png`.
public final class Trainer {
    public enum Outcome: Equatable {
        case finished
        /// Stopped early by a signal or `maxSteps`, with a resumable checkpoint written.
        case interrupted(step: Int)
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
    private var skippedSteps = 0
    private var lossHistory: [(x: Double, y: Double)] = []
    private var iouHistory: [(x: Double, y: Double)] = []
    private let optimizer: AdamW
    private let scaler: GradScaler?
    private let schedule: LRSchedule

    /// Set from a signal handler: finish the step, checkpoint, return `.interrupted`.
    nonisolated(unsafe) public static var stopRequested: Int32 = 0

    public init(model: SAMModel, train: CrackDataset, validation: CrackDataset?, options: TrainingOptions, runDirectory: String,
                log: @escaping (String) -> Void = { print($0) }, progress: ((String) -> Void)? = nil) throws {
        guard let device = Device(options.device) else { throw TorchError.invalidArgument("bad device '\(options.device)'") }
        self.model = model
        self.train = train
        self.validation = validation
        self.options = options
        self.runDirectory = runDirectory
        self.device = device
        self.log = log
        self.progress = progress
        if device != .cpu { try model.move(to: device) }
        optimizer = try AdamW(parameters: model.trainableParameters().map(\.parameter), weightDecay: options.weightDecay)
        scaler = options.amp == .fp16 ? try GradScaler(device: device) : nil
        let perEpoch = (train.count + options.batch - 1) / options.batch
        schedule = LRSchedule(base: options.lr, warmup: options.warmup, maxIterations: options.epochs * perEpoch, power: options.polyPower)
        Torch.allowTF32 = options.tf32
        Torch.manualSeed(options.seed)
    }

    var statePath: String { runDirectory + "/state.safetensors" }

    // MARK: - Resumable state

    func saveState() throws {
        var tensors = StateDict()
        for (k, t) in model.deltaStateDict() { tensors["delta." + k] = t }
        for (k, t) in optimizer.stateDict() { tensors["optimizer." + k] = t }
        if let scaler { for (k, t) in scaler.stateDict() { tensors["scaler." + k] = t } }
        let meta: [String: String] = [
            "step": String(step), "epoch": String(epoch), "batch_in_epoch": String(batchInEpoch), "best_iou": String(bestIoU),
            "best_epoch": String(bestEpoch), "skipped_steps": String(skippedSteps), "seed": String(options.seed),
            "rng": "augmentation and shuffling are derived from (seed, epoch, sample); no other randomness in a step",
        ]
        try SafeTensors.save(tensors, metadata: meta, to: statePath)
    }

    func loadState() throws {
        let contents = try SafeTensors.load(at: statePath)
        func int(_ key: String) throws -> Int {
            guard let v = contents.metadata[key].flatMap(Int.init) else { throw TrainingError.notARun(path: statePath, reason: "no \(key)") }
            return v
        }
        var delta = StateDict(), opt = StateDict()
        for (k, t) in contents.tensors {
            if k.hasPrefix("delta.") { delta[String(k.dropFirst(6))] = t }
            if k.hasPrefix("optimizer.") { opt[String(k.dropFirst(10))] = t }
        }
        try model.loadDelta(delta, source: statePath)
        try optimizer.loadStateDict(opt, source: statePath)
        step = try int("step")
        epoch = try int("epoch")
        batchInEpoch = try int("batch_in_epoch")
        bestEpoch = try int("best_epoch")
        skippedSteps = try int("skipped_steps")
        bestIoU = Double(contents.metadata["best_iou"] ?? "-1") ?? -1
        if let scaler, let s = contents.tensors["scaler.scale"], let g = contents.tensors["scaler.growth_tracker"] {
            try scaler.load(scale: s, growthTracker: g, skippedSteps: skippedSteps)
        }
        lossHistory = Trainer.readCSV(runDirectory + "/metrics.csv", x: "step", y: "loss")
        iouHistory = Trainer.readCSV(runDirectory + "/val.csv", x: "epoch", y: "iou")
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

    /// Trains from the current state (call `resume()` first to continue a run).
    public func run() throws -> Outcome {
        let lastEpoch = options.lastEpoch
        let augmenter = options.augment ? Augmenter(seed: options.seed) : nil
        stepsThisRun = 0
        let loss = CrackLoss()
        while epoch < lastEpoch {
            let loader = BatchLoader(dataset: train, size: model.config.imageSize, batchSize: options.batch, epoch: epoch,
                                     shuffleSeed: options.seed, augmenter: augmenter, workers: options.workers,
                                     pinMemory: device != .cpu, startBatch: batchInEpoch)
            defer { loader.stop() }
            var windowStart = DispatchTime.now().uptimeNanoseconds
            while let batch = try loader.nextBatch() {
                let lr = schedule.rate(at: step)
                let images = try batch.images.to(device: device, nonBlocking: true)
                let labels = try batch.labels.to(device: device, nonBlocking: true)
                let value = try forward(images: images, labels: labels, loss: loss)
                let lossValue = try value.loss.item()
                if !lossValue.isFinite {
                    nonFiniteStreak += 1
                    skippedSteps += 1
                    try optimizer.zeroGrad()
                    if nonFiniteStreak >= options.maxNonFiniteSteps {
                        try saveState()
                        throw TrainingError.nonFiniteLoss(steps: nonFiniteStreak, atStep: step, checkpoint: statePath)
                    }
                } else {
                    nonFiniteStreak = 0
                    if let scaler {
                        try scaler.scaled(value.loss).backward()
                        if try !scaler.step(optimizer, lr: lr) { skippedSteps += 1 }
                    } else {
                        try value.loss.backward()
                        try optimizer.step(lr: lr)
                    }
                    try optimizer.zeroGrad()
                }
                if case .cuda(let i) = device { try CUDA.synchronize(device: i) }
                let now = DispatchTime.now().uptimeNanoseconds
                let imagesPerSecond = Double(batch.names.count) / max(Double(now - windowStart) / 1e9, 1e-9)
                windowStart = now
                step += 1
                batchInEpoch += 1
                stepsThisRun += 1
                try append("metrics.csv", header: "step,epoch,loss,ce,dice,lr,images_per_s,skipped_steps",
                           String(format: "%d,%d,%.6f,%.6f,%.6f,%.8g,%.2f,%d", step, epoch + 1, lossValue, try value.ce.item(),
                                  try value.dice.item(), lr, imagesPerSecond, skippedSteps))
                lossHistory.append((Double(step), lossValue))
                report(lossValue, imagesPerSecond, loader.batchCount)
                if Trainer.stopRequested != 0 || (options.maxSteps.map { stepsThisRun >= $0 } ?? false) {
                    try saveState()
                    try writePlots()
                    return .interrupted(step: step)
                }
            }
            epoch += 1
            batchInEpoch = 0
            if let validation, epoch % options.valEvery == 0 || epoch == lastEpoch {
                let scores = try validate(validation)
                try append("val.csv", header: "epoch,precision,recall,f1,iou",
                           String(format: "%d,%.6f,%.6f,%.6f,%.6f", epoch, scores.precision, scores.recall, scores.f1, scores.iou))
                iouHistory.append((Double(epoch), scores.iou))
                log(String(format: "epoch %d validation: Pr %.4f  Re %.4f  F1 %.4f  IoU %.4f", epoch, scores.precision,
                           scores.recall, scores.f1, scores.iou))
                if scores.iou > bestIoU {
                    bestIoU = scores.iou
                    bestEpoch = epoch
                    try model.saveDelta(to: runDirectory + "/best.pth")
                }
            }
            if epoch % options.saveEvery == 0 || epoch == lastEpoch { try model.saveDelta(to: runDirectory + "/epoch_\(epoch).pth") }
            try saveState()
            try writePlots()
        }
        return .finished
    }

    func forward(images: Tensor, labels: Tensor, loss: CrackLoss) throws -> CrackLoss.Value {
        switch options.amp {
        case .off:
            return try loss(logits: model(images).logits, target: labels)
        case .fp16, .bf16:
            let logits = try Torch.withAutocast(device: device, dtype: options.amp == .fp16 ? .float16 : .bfloat16) {
                try model(images).logits
            }
            // The loss in float32, outside autocast, as the authors' loop computes it.
            return try loss(logits: logits.to(dtype: .float32), target: labels)
        }
    }

    /// Mean per-image Pr, Re, F1, IoU of argmax predictions (REFERENCE "Evaluation").
    public func validate(_ dataset: CrackDataset) throws -> SegmentationScores {
        let loader = BatchLoader(dataset: dataset, size: model.config.imageSize, batchSize: options.batch, workers: options.workers)
        defer { loader.stop() }
        var all: [SegmentationScores] = []
        try Torch.withInferenceMode {
            while let batch = try loader.nextBatch() {
                let images = try batch.images.to(device: device)
                let logits: Tensor
                if options.amp == .off {
                    logits = try model(images).logits
                } else {
                    logits = try Torch.withAutocast(device: device, dtype: options.amp == .fp16 ? .float16 : .bfloat16) { try model(images).logits }
                }
                all += try SegmentationScores.perImage(predicted: logits.argmax(dim: 1).to(device: .cpu), truth: batch.labels)
            }
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
        let line = String(format: "epoch %d/%d  step %d/%d  loss %.4f  %.1f img/s  ETA %@", epoch + 1, options.lastEpoch, step, total,
                          loss, imagesPerSecond, Trainer.duration(eta))
        if let progress {
            let done = Double(step) / Double(max(total, 1))
            let width = 24
            let filled = Int(done * Double(width))
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
        guard s.isFinite else { return "?" }
        let t = Int(s)
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t % 3600 / 60) : String(format: "%dm%02ds", t / 60, t % 60)
    }

    func writePlots() throws {
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
        let fm = FileManager.default
        if fm.fileExists(atPath: path) {
            let entries = (try? fm.contentsOfDirectory(atPath: path)) ?? []
            if entries.contains(where: { ["config.json", "state.safetensors", "metrics.csv"].contains($0) || $0.hasPrefix("epoch_") }) {
                throw TrainingError.runDirectoryInUse(path: path)
            }
        } else {
            try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
    }

    /// Continues a run from its state file.
    public func resume() throws {
        guard FileManager.default.fileExists(atPath: statePath) else {
            throw TrainingError.notARun(path: runDirectory, reason: "no state.safetensors (nothing was checkpointed yet)")
        }
        try loadState()
        log("resuming at epoch \(epoch + 1), step \(step)")
    }
}
