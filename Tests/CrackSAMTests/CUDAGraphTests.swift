import CrackSAM
import XCTest

/// What of the CUDA-graph path runs without a GPU: the optimizer reading its rate from a device tensor
/// (what a captured step replays with), the step falling back to eager steps when no graph can be made,
/// and the CLI refusing --cuda-graph where it cannot work. The capture itself is checked on a GPU by
/// `crack-cli bench graph-agree` (scripts/gpu-bench).
final class CUDAGraphTests: XCTestCase {
    func testAdamWReadsItsRateFromATensor() throws {
        try Torch.manualSeed(21)
        let start = try Tensor.randn([5, 7])
        let grads = try (0..<3).map { _ in try Tensor.randn([5, 7]) }
        func train(rateInTensor: Bool) throws -> Tensor {
            let p = try Parameter(try start.clone())
            let optimizer = try AdamW(parameters: [p], weightDecay: 0.01)
            // Powers of two: exact in the float32 tensor as in the double argument.
            let rate = try Tensor.full([1], value: 0, dtype: .float32)
            for (k, g) in grads.enumerated() {
                try (p.tensor * g).sum().backward()  // the gradient is g
                let lr = pow(0.5, Double(8 + k))
                if rateInTensor {
                    try rate.fill_(lr)
                    try optimizer.step(rate: .tensor(rate))
                } else {
                    try optimizer.step(lr: lr)
                }
                try optimizer.zeroGrad()
            }
            return p.tensor
        }
        let byNumber = try train(rateInTensor: false), byTensor = try train(rateInTensor: true)
        XCTAssertGreaterThan(try (byNumber - start).abs().amax().item(), 1e-4, "the steps moved the weights")
        XCTAssertEqual(try byTensor.bytes(), try byNumber.bytes())
    }

    func makeModel() throws -> SAMModel {
        try Torch.manualSeed(5)
        let model = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 32, depth: 2, heads: 2, globalBlocks: [1], imageSize: 48))
        try model.applyPEFT(PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        return model
    }

    /// Without a GPU the capture cannot be made: the step says why once and every step runs eagerly,
    /// giving exactly the steps of a stepper that never asked for a graph.
    func testStepFallsBackToEagerWhenNoGraphCanBeMade() throws {
        let graphed = try TrainingStep(model: makeModel(), amp: .off, weightDecay: 0.01, device: .cpu)
        let plain = try TrainingStep(model: makeModel(), amp: .off, weightDecay: 0.01, device: .cpu)
        graphed.cudaGraph = true
        try Torch.manualSeed(6)
        for k in 0..<4 {
            let images = try Tensor.rand([2, 3, 48, 48]), labels = try Tensor.randint(0, 2, shape: [2, 48, 48])
            let lr = 1e-3 * Double(k + 1)
            let a = try graphed.step(images: images, labels: labels, lr: lr), b = try plain.step(images: images, labels: labels, lr: lr)
            XCTAssertEqual(try a.loss.item(), try b.loss.item(), "step \(k + 1)")
            // Steps hand back no autograd graph (one kept alive breaks a later capture on CUDA).
            for t in [a.loss, a.ce, a.dice, a.objective, b.loss] { XCTAssertFalse(t.requiresGrad, "step \(k + 1)") }
            // The capture is attempted after the eager warm-up steps, not before.
            if k < TrainingStep.eagerStepsBeforeCapture { XCTAssertNil(graphed.cudaGraphFailure, "step \(k + 1)") }
        }
        XCTAssertFalse(graphed.isCaptured)
        XCTAssertTrue(graphed.cudaGraphFailure?.contains("CUDA graphs need a CUDA device") == true, graphed.cudaGraphFailure ?? "nil")
        for (x, y) in zip(graphed.model.trainableParameters(), plain.model.trainableParameters()) {
            XCTAssertEqual(try x.parameter.tensor.bytes(), try y.parameter.tensor.bytes(), x.key)
        }
    }

    func testGraphNeedsACUDADevice() {
        XCTAssertThrowsError(try CUDAGraph(device: .cpu)) { error in
            XCTAssertEqual(error as? TorchError, .invalidArgument("CUDA graphs need a CUDA device (got cpu)"))
        }
    }

    func testCLIRefusesCUDAGraphWhereItCannotWork() throws {
        let m = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "48"]
        let dir = try Oracle.scratch("cuda-graph-cli")
        try makeTestDataset(dir + "/data", count: 2)
        let onCPU = try crackCLI(["train"] + m + ["--data", dir + "/data", "--out", dir + "/run", "--cuda-graph"], expectSuccess: false)
        XCTAssertTrue(onCPU.contains("--cuda-graph needs a CUDA device"), onCPU)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/config.json"), "nothing written for a refused run")
        // Refused before any model is built (it trained three models for every step, then refused).
        var bench = try crackCLI(["bench", "graph-agree"] + m + ["--batch", "1", "--steps", "4"], expectSuccess: false)
        XCTAssertTrue(bench.contains("graph-agree replays a CUDA graph: pass --device cuda (the default is cpu)"), bench)
        bench = try crackCLI(["bench", "train"] + m + ["--batch", "1", "--cuda-graph"], expectSuccess: false)
        XCTAssertTrue(bench.contains("--cuda-graph captures the step on a CUDA device: pass --device cuda") && !bench.contains("images/s"), bench)
        bench = try crackCLI(["bench", "graph-agree"] + m + ["--device", "cuda", "--trace", dir + "/t.json", "--profile-steps", "1"], expectSuccess: false)
        XCTAssertTrue(bench.contains("--profile-steps, --trace: not used by graph-agree"), bench)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/t.json"))
    }
}
