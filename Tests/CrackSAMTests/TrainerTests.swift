import CrackSAM
import Foundation
import XCTest

/// The training loop on a tiny model and dataset (CPU): resuming is exact, run directories are complete.
final class TrainerTests: XCTestCase {
    static let tiny = SAMConfig(backbone: .custom, embedDim: 32, depth: 2, heads: 2, globalBlocks: [1], imageSize: 32)

    func dataset() throws -> CrackDataset {
        let dir = try Oracle.scratch("data")
        try makeTestDataset(dir, count: 6)
        return try CrackDataset(root: dir)
    }

    func model() throws -> SAMModel {
        try Torch.manualSeed(11)
        let m = try SAMModel(config: Self.tiny)
        try m.applyPEFT(PEFTConfig(deltaType: .lora, rank: 2))
        return m
    }

    /// The recipe these tests train with: short (3 epochs, batch 2), validating every epoch.
    static func options(maxSteps: Int? = nil) -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = 3
        o.stopEpoch = nil
        o.batch = 2
        o.warmup = 2
        o.valEvery = 1
        o.saveEvery = 2
        o.workers = 1
        o.maxSteps = maxSteps
        return o
    }

    func options(maxSteps: Int? = nil) -> TrainingOptions { Self.options(maxSteps: maxSteps) }

    func testInterruptedAndResumedEqualsStraightThrough() throws {
        let data = try dataset()
        // 6 steps straight (two epochs of three batches, augmentation on)…
        let straightDir = try Oracle.scratch("straight")
        let straight = try Trainer(model: try model(), train: data, validation: nil, options: options(maxSteps: 6), runDirectory: straightDir,
                                   log: { _ in })
        XCTAssertEqual(try straight.run(), .interrupted(step: 6))
        // …versus 3, stop, resume in a new trainer (new model from scratch), 3 more.
        let splitDir = try Oracle.scratch("split")
        let first = try Trainer(model: try model(), train: data, validation: nil, options: options(maxSteps: 3), runDirectory: splitDir,
                                log: { _ in })
        XCTAssertEqual(try first.run(), .interrupted(step: 3))
        let second = try Trainer(model: try model(), train: data, validation: nil, options: options(maxSteps: 3), runDirectory: splitDir,
                                 log: { _ in })
        try second.resume()
        XCTAssertEqual(second.step, 3)
        XCTAssertEqual(try second.run(), .interrupted(step: 6))
        for (key, a) in straight.model.deltaStateDict() {
            let b = second.model.deltaStateDict()[key]!
            XCTAssertEqual(try a.bytes(), try b.bytes(), "\(key) differs after resume")
        }
        // The metrics file continues where it stopped.
        let rows = try String(contentsOfFile: splitDir + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 7)
        XCTAssertTrue(rows[0].hasPrefix("step,epoch,loss,ce,dice,lr,images_per_s,skipped_steps"))
        XCTAssertTrue(rows[6].hasPrefix("6,2,"))
    }

    func testARunWritesEveryArtefact() throws {
        let data = try dataset()
        let dir = try Oracle.scratch("run")
        var lines: [String] = []
        let trainer = try Trainer(model: try model(), train: data, validation: data, options: options(), runDirectory: dir,
                                  log: { lines.append($0) })
        XCTAssertEqual(try trainer.run(), .finished)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: dir))
        for f in ["metrics.csv", "val.csv", "state.safetensors", "best.pth", "best.pth.json", "epoch_2.pth", "epoch_3.pth",
                  "loss.png", "val_iou.png"] {
            XCTAssertTrue(files.contains(f), "\(f) missing from \(files.sorted())")
        }
        XCTAssertFalse(files.contains { $0.contains(".tmp-") })
        let val = try String(contentsOfFile: dir + "/val.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(val.count, 4, "header + one row per epoch")
        XCTAssertTrue(lines.contains { $0.contains("validation: Pr") })
        // The best delta loads by its own description.
        let (tensors, description) = try DeltaFile.read(at: dir + "/best.pth")
        XCTAssertEqual(description?.peft.deltaType, .lora)
        XCTAssertEqual(description?.peft.rank, 2)
        try (try model()).loadDelta(tensors, source: "best.pth")
        XCTAssertEqual(try Image.read(at: dir + "/loss.png").width, 640)
        // A second run into the same directory is refused.
        XCTAssertThrowsError(try Trainer.prepareNewRun(at: dir)) { error in
            XCTAssertEqual(error as? TrainingError, .runDirectoryInUse(path: dir))
        }
    }

    func testMixedPrecisionStepsOnTheCPU() throws {
        let data = try dataset()
        for amp in [TrainingOptions.AMP.fp16, .bf16] {
            var o = options(maxSteps: 3)
            o.amp = amp
            let m = try model()
            let before = try m.deltaStateDict()["w_b_000"]!.clone()
            let trainer = try Trainer(model: m, train: data, validation: data, options: o, runDirectory: try Oracle.scratch("amp"),
                                      log: { _ in })
            XCTAssertEqual(try trainer.run(), .interrupted(step: 3), "\(amp)")
            let rows = try String(contentsOfFile: trainer.runDirectory + "/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            for row in rows { XCTAssertTrue(Double(row.split(separator: ",")[2])?.isFinite ?? false, "\(amp): \(row)") }
            // fp16 uses the loss scaler (2^16 at first); the delta moved unless every step overflowed.
            XCTAssertNotEqual(try m.deltaStateDict()["w_b_000"]!.bytes(), try before.bytes(), "\(amp): no update")
            XCTAssertGreaterThan(try trainer.validate(data).iou, -1)
        }
    }

    /// A dataset of `count` samples read, then its image `name` truncated to half (a file broken on disk
    /// after the run's check); the image's path and its good bytes come back, to mend it.
    func datasetBrokenAfterReading(_ folder: String, count: Int, image name: String) throws -> (CrackDataset, String, Data) {
        let dir = try Oracle.scratch(folder)
        try makeTestDataset(dir, count: count)
        let data = try CrackDataset(root: dir)
        let image = dir + "/images/" + name
        let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: image))
        return (data, image, bytes)
    }

    /// A sample that breaks on disk during a run (it passed the check at the start) stops the run with the
    /// file named, after the steps done are saved: mended, the run resumes from there.
    func testASampleBrokenMidRunKeepsTheStepsDone() throws {
        let (data, image, bytes) = try datasetBrokenAfterReading("data", count: 6, image: "s3.png")
        let run = try Oracle.scratch("run")
        var o = options()
        o.workers = 2
        let trainer = try Trainer(model: try model(), train: data, validation: nil, options: o, runDirectory: run, log: { _ in })
        XCTAssertThrowsError(try trainer.run()) { error in
            guard case TrainingError.batchFailed(let reason, let step, let checkpoint, nil) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains(image), reason)
            XCTAssertEqual(checkpoint, run + "/state.safetensors")
            XCTAssertEqual(step, trainer.step)
            XCTAssertTrue("\(error)".hasSuffix("is saved in \(run)/state.safetensors: mend the file and --resume"), "\(error)")
        }
        XCTAssertLessThan(trainer.step, 9, "it stopped at the broken sample's batch")
        XCTAssertEqual(try SafeTensors.load(at: run + "/state.safetensors").metadata["step"], String(trainer.step))
        try bytes.write(to: URL(fileURLWithPath: image))
        let resumed = try Trainer(model: try model(), train: data, validation: nil, options: o, runDirectory: run, log: { _ in })
        try resumed.resume()
        XCTAssertEqual(resumed.step, trainer.step)
        XCTAssertEqual(try resumed.run(), .finished)
        XCTAssertEqual(resumed.step, 9)
    }

    /// The same for a validation file: the epoch's steps are kept, and the resumed run validates that
    /// epoch before going on.
    func testAValidationFileBrokenMidRunKeepsTheEpoch() throws {
        let data = try dataset()
        let (validation, image, bytes) = try datasetBrokenAfterReading("val", count: 2, image: "s1.png")
        let run = try Oracle.scratch("run")
        let trainer = try Trainer(model: try model(), train: data, validation: validation, options: options(), runDirectory: run, log: { _ in })
        XCTAssertThrowsError(try trainer.run()) { error in
            guard case TrainingError.batchFailed(let reason, 3, _, nil) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains(image), reason)
        }
        XCTAssertEqual(try SafeTensors.load(at: run + "/state.safetensors").metadata["step"], "3", "epoch 1's three steps are kept")
        try bytes.write(to: URL(fileURLWithPath: image))
        let resumed = try Trainer(model: try model(), train: data, validation: validation, options: options(), runDirectory: run, log: { _ in })
        try resumed.resume()
        XCTAssertEqual(resumed.step, 3)
        XCTAssertEqual(try resumed.run(), .finished)
        XCTAssertEqual(resumed.step, 9)
        let epochs = try String(contentsOfFile: run + "/val.csv", encoding: .utf8).split(separator: "\n").dropFirst().map { $0.split(separator: ",")[0] }
        XCTAssertEqual(epochs, ["1", "2", "3"], "epoch 1 validated on resume")
    }

    /// Every loss NaN (a frozen encoder weight poisoned): the NaN steps are skipped, every one is in
    /// metrics.csv, and the still-finite weights are saved.
    func testNonFiniteLossStopsAndKeepsTheLastGoodWeights() throws {
        let data = try dataset()
        let dir = try Oracle.scratch("nan")
        let m = try poisonedEncoder()
        let before = try m.deltaStateDict()["w_a_000"]!.clone()
        var o = options()
        o.maxNonFiniteSteps = 2
        let trainer = try Trainer(model: m, train: data, validation: nil, options: o, runDirectory: dir, log: { _ in })
        XCTAssertThrowsError(try trainer.run()) { error in
            XCTAssertEqual(error as? TrainingError, .nonFiniteLoss(steps: 2, atStep: 2, checkpoint: dir + "/state.safetensors"))
            XCTAssertTrue("\(error)".contains("inf/NaN for 2 steps"), "\(error)")
        }
        XCTAssertEqual(try m.deltaStateDict()["w_a_000"]!.bytes(), try before.bytes(), "no NaN step was applied")
        let saved = try SafeTensors.load(at: dir + "/state.safetensors")
        XCTAssertEqual(saved.metadata["step"], "2")
        XCTAssertEqual(try saved.tensors["delta.w_a_000"]!.bytes(), try before.bytes())
        let rows = try String(contentsOfFile: dir + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 3, rows.joined(separator: "\n"))
        XCTAssertTrue(rows[1].hasPrefix("1,1,") && rows[2].hasPrefix("2,1,") && rows.dropFirst().allSatisfy { $0.split(separator: ",")[2].hasSuffix("nan") },
                      rows.joined(separator: "\n"))
    }

    /// fp16: a NaN loss skipped before its backward still backs the loss scale off, as torch's GradScaler
    /// does after such a step, read back every step or every few.
    func testNonFiniteLossesBackTheFP16ScaleOff() throws {
        let data = try dataset()
        for every in [1, 3] {
            var o = options()
            o.amp = .fp16
            o.maxNonFiniteSteps = 2
            o.syncEvery = every
            let trainer = try Trainer(model: try poisonedEncoder(), train: data, validation: nil, options: o,
                                      runDirectory: try Oracle.scratch("fp16-nan"), log: { _ in })
            XCTAssertThrowsError(try trainer.run())
            // Two NaN steps with every 1; three with every 3 (the read-back comes after the window).
            let halvings = every == 1 ? 2 : 3
            XCTAssertEqual(try XCTUnwrap(trainer.stepper.scaler).scale.item(), 65536 / pow(2, Double(halvings)), "sync every \(every)")
        }
    }

    /// The model of `model()` with the encoder's neck (frozen) poisoned: every loss and gradient is NaN
    /// while the trainable weights stay finite.
    func poisonedEncoder() throws -> SAMModel {
        let m = try model()
        let neck = try XCTUnwrap(m.namedParameters().first { $0.key == "image_encoder.neck.0.weight" }).parameter
        XCTAssertFalse(neck.isTrainable)
        try Torch.withNoGrad { try neck.tensor.fill_(.nan) }
        return m
    }

    /// An update that makes the trainable weights non-finite (here: poisoned after a good save) never
    /// replaces the last good state: the run stops with an error naming the step that state holds.
    func testDivergedWeightsNeverReplaceTheLastGoodState() throws {
        let data = try dataset()
        let dir = try Oracle.scratch("diverged")
        let m = try model()
        var o = options(maxSteps: 2)
        o.maxNonFiniteSteps = 2
        let trainer = try Trainer(model: m, train: data, validation: nil, options: o, runDirectory: dir, log: { _ in })
        XCTAssertEqual(try trainer.run(), .interrupted(step: 2))
        let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/state.safetensors"))
        try Torch.withNoGrad { try m.maskDecoder.maskTokens.weight.tensor.fill_(.infinity) }
        XCTAssertThrowsError(try trainer.run()) { error in
            // Step 3 ends the epoch, where weights that are not finite stop the run (no epoch delta from them).
            XCTAssertEqual(error as? TrainingError, .nonFiniteWeights(steps: 1, atStep: 3, checkpoint: dir + "/state.safetensors", savedStep: 2,
                                                                  tensor: "mask_decoder.mask_tokens.weight"))
            XCTAssertTrue("\(error)".contains("it holds step 2"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/state.safetensors")), good)
        // Diverged before anything was saved: nothing is written, and the error says so.
        let fresh = try Oracle.scratch("diverged-fresh")
        let m2 = try model()
        try Torch.withNoGrad { try m2.maskDecoder.maskTokens.weight.tensor.fill_(.nan) }
        var o2 = options()
        o2.maxNonFiniteSteps = 2
        let t2 = try Trainer(model: m2, train: data, validation: nil, options: o2, runDirectory: fresh, log: { _ in })
        XCTAssertThrowsError(try t2.run()) { error in
            XCTAssertEqual(error as? TrainingError, .nonFiniteWeights(steps: 2, atStep: 2, checkpoint: fresh + "/state.safetensors", savedStep: nil,
                                                                  tensor: "mask_decoder.mask_tokens.weight"))
            XCTAssertTrue("\(error)".contains("No resumable state had been saved yet"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh + "/state.safetensors"))
    }

    /// A moment that overflows while its weight stays finite (exp_avg_sq inf makes that weight's updates 0
    /// from then on) stops the run as a diverged weight does, naming it: such a state was written before,
    /// and --resume then refused it, so the run could only start over.
    func testANonFiniteOptimizerMomentStopsTheRunLikeAWeight() throws {
        let data = try dataset()
        let dir = try Oracle.scratch("moments")
        let m = try model()
        let trainer = try Trainer(model: m, train: data, validation: nil, options: options(maxSteps: 2), runDirectory: dir, log: { _ in })
        XCTAssertEqual(try trainer.run(), .interrupted(step: 2))
        let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/state.safetensors"))
        let (key, weight) = try XCTUnwrap(m.trainableParameters().first { $0.key == "mask_decoder.iou_prediction_head.layers.0.weight" })
        let i = try XCTUnwrap(trainer.stepper.optimizer.parameters.firstIndex { $0 === weight })
        try Torch.withNoGrad { try trainer.stepper.optimizer.expAvgSq[i].fill_(.infinity) }
        XCTAssertThrowsError(try trainer.run()) { error in
            XCTAssertEqual(error as? TrainingError, .nonFiniteWeights(steps: 0, atStep: 3, checkpoint: dir + "/state.safetensors", savedStep: 2,
                                                                      tensor: "the optimizer's exp_avg_sq of \(key)"))
            XCTAssertTrue("\(error)".hasPrefix("at step 3, the optimizer's exp_avg_sq of \(key) is no longer finite"), "\(error)")
        }
        XCTAssertEqual(try weight.tensor.isFinite().to(dtype: .float32).amin().item(), 1)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/state.safetensors")), good)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/epoch_1.pth"))
    }

    /// Reading the loss back every 4 steps (no host synchronisation inside a step) trains exactly like
    /// reading it every step, and writes the same metrics; a read-back shows its progress line once (each
    /// of its rows showed the same line, labelled with the step the run was at).
    func testLossReadBackEveryFewStepsTrainsTheSame() throws {
        let data = try dataset()
        var runs: [Trainer] = []
        for every in [1, 4] {
            var o = options(maxSteps: 6)
            o.syncEvery = every
            let dir = try Oracle.scratch("every\(every)")
            var lines: [String] = []
            let t = try Trainer(model: try model(), train: data, validation: nil, options: o, runDirectory: dir, log: { lines.append($0) })
            XCTAssertEqual(try t.run(), .interrupted(step: 6))
            let progress = lines.filter { $0.contains("  step ") }.map { $0.components(separatedBy: "  loss")[0] }
            XCTAssertEqual(progress.count, Set(progress).count, "every \(every): \(lines)")
            runs.append(t)
        }
        for (key, a) in runs[0].model.deltaStateDict() {
            XCTAssertEqual(try a.bytes(), try runs[1].model.deltaStateDict()[key]!.bytes(), "\(key) differs")
        }
        func losses(_ t: Trainer) throws -> [String] {
            try String(contentsOfFile: t.runDirectory + "/metrics.csv", encoding: .utf8).split(separator: "\n")
                .map { $0.split(separator: ",").prefix(5).joined(separator: ",") }
        }
        XCTAssertEqual(try losses(runs[0]), try losses(runs[1]))
        XCTAssertEqual(try losses(runs[1]).count, 7)
    }

    /// With read-backs every 3 steps, NaN steps are skipped on the device and the run stops at the
    /// read-back with the last good weights, every step of the window in metrics.csv (the state saved
    /// holds step 3: a row 3 left out would stay missing after a resume).
    func testNonFiniteLossWithDeferredReadBack() throws {
        let data = try dataset()
        let dir = try Oracle.scratch("nan-deferred")
        let m = try poisonedEncoder()
        let before = try m.deltaStateDict()["w_a_000"]!.clone()
        var o = options()
        o.maxNonFiniteSteps = 2
        o.syncEvery = 3
        let trainer = try Trainer(model: m, train: data, validation: nil, options: o, runDirectory: dir, log: { _ in })
        XCTAssertThrowsError(try trainer.run()) { error in
            XCTAssertEqual(error as? TrainingError, .nonFiniteLoss(steps: 3, atStep: 3, checkpoint: dir + "/state.safetensors"))
        }
        XCTAssertEqual(try m.deltaStateDict()["w_a_000"]!.bytes(), try before.bytes(), "no NaN step was applied")
        let rows = try String(contentsOfFile: dir + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 4, rows.joined(separator: "\n"))
        XCTAssertTrue(rows[1].hasPrefix("1,1,") && rows[1].split(separator: ",")[2].hasSuffix("nan"), rows.joined(separator: "\n"))
        XCTAssertTrue(rows[3].hasPrefix("3,1,") && rows[3].hasSuffix(",3"), "three steps skipped on the device by the read-back: \(rows[3])")
        let saved = try SafeTensors.load(at: dir + "/state.safetensors").metadata["step"]
        XCTAssertEqual(saved, "3")
    }

    /// The x axis of a plot labels whole steps or epochs where they are: the epoch-8 label and tick sit at
    /// epoch 8's point (found by the user-journey round: labels were drawn at quarters of the span,
    /// "8" at epoch 7.69), and a label is drawn once.
    func testPlotTicksSitAtTheirValues() {
        let plot = LinePlot(title: "iou", xLabel: "epoch", series: [.init(points: (1...10).map { (Double($0), Double($0) / 10) }, color: (0, 0, 200))])
        let image = plot.render()
        let (left, right, bottom) = (60, plot.width - 20, plot.height - 40)
        func black(_ x: Int, _ y: Int) -> Bool { (0..<3).allSatisfy { image.pixels[(y * plot.width + x) * 3 + $0] == 0 } }
        // Ticks at 1, 3, 6, 8 and 10 (the quarters 3.25, 5.5 and 7.75 rounded), each below its epoch's x.
        for epoch in [1, 3, 6, 8, 10] {
            XCTAssertTrue(black(left + (right - left) * (epoch - 1) / 9, bottom + 2), "tick at epoch \(epoch)")
        }
        XCTAssertFalse(black(left + Int(Double(right - left) * 6.75 / 9), bottom + 2), "no tick at 7.75")
    }

    /// Every letter and digit has a glyph of 5×7 (the blur-sweep plot's title lost its B, K and Z:
    /// "GAUSSIAN  LUR  ERNEL SI E"), and no two letters share one.
    func testThePlotFontHasTheWholeAlphabet() {
        for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" {
            guard let glyph = LinePlot.font[ch] else { XCTFail("no glyph for \(ch)"); continue }
            XCTAssertEqual(glyph.count, 7, "\(ch)")
            XCTAssertTrue(glyph.allSatisfy { $0.count == 5 && $0.allSatisfy { "#.".contains($0) } }, "\(ch)")
        }
        let shapes = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".compactMap { LinePlot.font[$0] }
        XCTAssertEqual(Set(shapes.map { $0.joined() }).count, 26)
    }
}
