import CrackSAM
import Foundation
import XCTest

/// The training recipe against PyTorch: one step, the schedule, the metrics' edge rules.
final class TrainingTests: XCTestCase {
    func relativeMaxError(_ a: Tensor, _ b: Tensor) throws -> Double {
        let diff = try (a.to(dtype: .float64) - b.to(dtype: .float64)).abs().amax().item()
        return diff / max(try b.to(dtype: .float64).abs().amax().item(), 1e-30)
    }

    func testOneTrainingStepMatchesPyTorch() throws {
        let dir = try Oracle.scratch()
        try Oracle.run("train_step_oracle.py", ["small", "64", "lora", "4", "qv", "32", "0.2", dir])
        let expected = try SafeTensors.load(at: dir + "/outputs.safetensors").tensors
        let config = SAMConfig(backbone: .custom, embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3], imageSize: 64)
        let model = try SAMModel(config: config)
        try model.loadStateDict(try PyTorchCheckpoint.loadStateDict(at: dir + "/base.pth"))
        try model.applyPEFT(PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        try model.loadDelta(try PyTorchCheckpoint.loadStateDict(at: dir + "/delta.pth"), source: "delta.pth")

        let optimizer = try AdamW(parameters: model.trainableParameters().map(\.parameter), weightDecay: 0.01)
        let schedule = LRSchedule(base: 4e-4, warmup: 300, maxIterations: 1000)
        let out = try model(expected["images"]!)
        let loss = try CrackLoss()(logits: out.logits, target: expected["target"]!)
        try loss.loss.backward()
        try optimizer.step(lr: schedule.rate(at: 0))

        for (name, value) in [("loss", loss.loss), ("ce", loss.ce), ("dice", loss.dice)] {
            XCTAssertLessThanOrEqual(try relativeMaxError(value, expected[name]!), 1e-5, name)
        }
        var worst = 0.0
        for (key, tensor) in model.deltaStateDict() {
            guard let e = expected["after." + key] else { XCTFail("no reference for \(key)"); continue }
            let err = try relativeMaxError(tensor, e)
            worst = max(worst, err)
            XCTAssertLessThanOrEqual(err, 1e-5, key)
        }
        print("train step: loss \(try loss.loss.item()), worst updated-tensor relative error \(worst)")
        // The step moved the delta: the update is real, not a no-op that trivially matches.
        let before = try PyTorchCheckpoint.loadStateDict(at: dir + "/delta.pth")
        XCTAssertGreaterThan(try (model.deltaStateDict()["w_a_000"]! - before["w_a_000"]!).abs().amax().item(), 0)
    }

    func testScheduleFollowsTheReferenceFormula() {
        let base = 4e-4, warmup = 300, maxIter = 140 * 1200
        let s = LRSchedule(base: base, warmup: warmup, maxIterations: maxIter, power: 6)
        // REFERENCE: step 0 at base/300; after step i < 300 the rate is base·(i+1)/300; afterwards
        // base·(1 − (i−300)/max_iter)^6 — "after step i" is the rate step i+1 runs at.
        func reference(_ step: Int) -> Double {
            if step == 0 { return base / 300 }
            let i = step - 1
            return i < warmup ? base * Double(i + 1) / 300 : base * pow(1 - Double(i - 300) / Double(maxIter), 6)
        }
        for step in Array(0...305) + [maxIter - 1] {
            XCTAssertEqual(s.rate(at: step), reference(step), accuracy: 1e-18, "step \(step)")
        }
        XCTAssertEqual(s.rate(at: 1), base / 300)
        XCTAssertEqual(s.rate(at: 300), base, accuracy: 1e-18)
        XCTAssertEqual(s.rate(at: 301), base, accuracy: 1e-18)
        XCTAssertLessThan(s.rate(at: 302), base)
    }

    func testMetricEdgeRulesAndPooledVersusMean() throws {
        // P and G both empty → all 1; one empty → all 0; otherwise the ratios.
        XCTAssertEqual(SegmentationScores(predicted: 0, truth: 0, intersection: 0), .init(precision: 1, recall: 1, f1: 1, iou: 1))
        XCTAssertEqual(SegmentationScores(predicted: 5, truth: 0, intersection: 0), .init(precision: 0, recall: 0, f1: 0, iou: 0))
        XCTAssertEqual(SegmentationScores(predicted: 0, truth: 7, intersection: 0), .init(precision: 0, recall: 0, f1: 0, iou: 0))
        let s = SegmentationScores(predicted: 4, truth: 6, intersection: 3)
        XCTAssertEqual(s.precision, 0.75)
        XCTAssertEqual(s.recall, 0.5)
        XCTAssertEqual(s.f1, 0.6)
        XCTAssertEqual(s.iou, 3.0 / 7.0)
        // Hand-made masks: image 0 both empty, image 1 one pixel missed, image 2 half right.
        let pred = try Tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0] as [UInt8], shape: [3, 2, 2])
        let truth = try Tensor([0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0] as [UInt8], shape: [3, 2, 2])
        let scores = try SegmentationScores.perImage(predicted: pred, truth: truth)
        XCTAssertEqual(scores[0].iou, 1)
        XCTAssertEqual(scores[1].iou, 0)
        XCTAssertEqual(scores[2].iou, 1.0 / 3.0)
        XCTAssertEqual(SegmentationScores.mean(scores).iou, (1 + 0 + 1.0 / 3.0) / 3, accuracy: 1e-12)
    }

    func testGradScalerSkipsInfiniteStepsAndBacksOff() throws {
        let p = try Parameter(try Tensor([1, 2] as [Float]))
        let optimizer = try AdamW(parameters: [p])
        let scaler = try GradScaler(initialScale: 1024)
        try scaler.scaled(try (p.tensor * p.tensor).sum()).backward()
        XCTAssertTrue(try scaler.step(optimizer, lr: 0.1))
        XCTAssertNotEqual(try p.tensor.floats(), [1, 2])
        let moved = try p.tensor.floats()
        try optimizer.zeroGrad()
        try scaler.scaled(try (p.tensor * .infinity).sum()).backward()
        XCTAssertFalse(try scaler.step(optimizer, lr: 0.1), "an inf gradient skips the step")
        XCTAssertEqual(try p.tensor.floats(), moved)
        XCTAssertEqual(try scaler.scale.item(), 512)
        XCTAssertEqual(scaler.skippedSteps, 1)
    }

    /// The fused step skipped on the device (found_inf = 1) changes neither the weights nor the step
    /// counters that drive bias correction; a taken step advances every counter by one.
    func testSkippedFusedStepLeavesWeightsAndCountersAlone() throws {
        let a = try Parameter(try Tensor([1, 2] as [Float])), b = try Parameter(try Tensor([3, 4, 5] as [Float]))
        let optimizer = try AdamW(parameters: [a, b])
        for (flag, expected) in [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
            let before = try [a, b].map { try $0.tensor.floats() }
            try ((a.tensor * a.tensor).sum() + (b.tensor * b.tensor).sum()).backward()
            try optimizer.step(lr: 0.1, foundInf: try Tensor.full([1], value: flag))
            try optimizer.zeroGrad()
            XCTAssertEqual(try optimizer.steps.map { try $0.item() }, [expected, expected], "found_inf \(flag)")
            if flag == 1 { XCTAssertEqual(try [a, b].map { try $0.tensor.floats() }, before) }
        }
    }
}
