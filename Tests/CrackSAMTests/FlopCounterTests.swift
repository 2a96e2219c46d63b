import CrackSAM
import Foundation
import XCTest

/// The FLOP count behind `bench`'s TFLOP/s and MFU, against PyTorch's own FlopCounterMode.
final class FlopCounterTests: XCTestCase {
    func testProductsAndTheirGradients() throws {
        let x = try Tensor.randn([2, 5, 3])
        let w = try Tensor.randn([4, 3]).requiresGrad(true)
        // forward 2·(2·5·4)·3 = 240; backward: only the weight needs a gradient → 240 more.
        var (_, c) = try FlopCounter.count { try x.linear(weight: w) }
        XCTAssertEqual(c, FlopCounter.Count(forward: 240, backward: 240))
        (_, c) = try FlopCounter.count { try Torch.withNoGrad { try x.linear(weight: w) } }
        XCTAssertEqual(c, FlopCounter.Count(forward: 240, backward: 0))
        // conv 3→8, 3×3, on 1×3×10×10 with padding 1: 2·(8·10·10)·(3·3·3) = 43,200, no gradients.
        (_, c) = try FlopCounter.count { try Tensor.randn([1, 3, 10, 10]).conv2d(weight: Tensor.randn([8, 3, 3, 3]), padding: (1, 1)) }
        XCTAssertEqual(c, FlopCounter.Count(forward: 43_200, backward: 0))
        // Outside `count` nothing is counted (and nothing breaks).
        _ = try x.linear(weight: w)
    }

    /// CrackSAM with LoRA (q, v, r 4) on the small config (17×17 grid, window and global blocks): our
    /// counts equal FlopCounterMode's on Meta's modules, for inference and for one training step.
    func testSAMCountMatchesPyTorchsFlopCounter() throws {
        let dir = try Oracle.scratch()
        try Oracle.run("flops_oracle.py", ["small", "272", "2", dir + "/flops.json"])
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/flops.json"))) as! [String: Double]
        let config = SAMConfig(backbone: .custom, embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3], imageSize: 272)
        let model = try SAMModel(config: config)
        try model.applyPEFT(PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        let images = try Tensor.rand([2, 3, 272, 272])
        let inference = try FlopCounter.count { try Torch.withInferenceMode { try model(images) } }.flops
        let training = try FlopCounter.count { try model(images) }.flops
        print("FLOPs (small, 272 px, batch 2): inference ours \(inference.total) vs FlopCounterMode \(expected["inference"]!); "
            + "training ours \(training.total) vs \(expected["training"]!)")
        XCTAssertEqual(inference.total, expected["inference"]!, accuracy: expected["inference"]! * 1e-9)
        XCTAssertEqual(training.total, expected["training"]!, accuracy: expected["training"]! * 1e-9)
    }
}

/// `crack-cli bench train|infer` on the CPU (the figures themselves belong in docs/BENCHMARKS.md).
final class StepBenchTests: XCTestCase {
    func testBenchTrainAndInferReportTheirFigures() throws {
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32",
                    "--batch", "2", "--steps", "3", "--warmup", "2", "--peak-size", "256", "--json"]
        for mode in ["train", "infer"] {
            let out = try crackCLI(["bench", mode] + tiny)
            let r = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
            XCTAssertEqual(r["mode"] as? String, mode)
            let flops = try XCTUnwrap(r["flops_per_step"] as? Double)
            let rate = try XCTUnwrap(r["images_per_s"] as? Double)
            let ms = try XCTUnwrap(r["ms_per_step"] as? Double)
            XCTAssertEqual(rate, 2 / (ms / 1000), accuracy: rate * 1e-9)
            XCTAssertEqual(try XCTUnwrap(r["achieved_tflops"] as? Double), flops / (ms / 1000) / 1e12, accuracy: 1e-12)
            XCTAssertGreaterThan(try XCTUnwrap(r["mfu"] as? Double), 0)
            if mode == "train" {
                // Training counts the backward products too: more than the forward alone.
                XCTAssertGreaterThan(flops, try XCTUnwrap(r["forward_flops_per_step"] as? Double))
                XCTAssertTrue(try XCTUnwrap(r["last_loss"] as? Double).isFinite)
            }
            XCTAssertNil(r["profile_ops"])
            XCTAssertEqual(r["peak_matmul_dtype"] as? String, "float32")
        }
        // Under autocast the MFU's denominator is a product in the autocast dtype, on the CPU too: a bf16
        // step against a float32 peak came out above 100 %.
        let out = try crackCLI(["bench", "train"] + tiny + ["--amp", "bf16"])
        let r = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
        XCTAssertEqual(r["amp"] as? String, "bf16")
        XCTAssertEqual(r["peak_matmul_dtype"] as? String, "bfloat16")
        // fp16 runs on the CPU too, but is said to be slow there (it runs in software on most CPUs).
        let fp16 = try crackCLI(["bench", "train"] + tiny + ["--amp", "fp16", "--steps", "1", "--warmup", "0"])
        XCTAssertTrue(fp16.hasPrefix("warning: --amp fp16 on the CPU"), fp16)
        let json = fp16[try XCTUnwrap(fp16.firstIndex(of: "{"), fp16)...]
        let r16 = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], fp16)
        XCTAssertEqual(r16["peak_matmul_dtype"] as? String, "float16")
        XCTAssertFalse(out.contains("warning"), out)
    }

    /// `--profile-steps`: the profiled steps' ops, in the JSON and as tables (with a Chrome trace).
    func testBenchProfilesItsSteps() throws {
        let dir = try Oracle.scratch()
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32",
                    "--batch", "2", "--steps", "1", "--warmup", "1", "--peak-size", "256", "--profile-steps", "2"]
        let out = try crackCLI(["bench", "train"] + tiny + ["--json"])
        // Kineto writes a line or two to stderr (which crackCLI merges in) before the JSON.
        let json = out[try XCTUnwrap(out.firstIndex(of: "{"), out)...]
        let r = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], out)
        XCTAssertEqual(r["profile_steps"] as? Int, 2)
        let ops = try XCTUnwrap(r["profile_ops"] as? [[String: Any]])
        let names = ops.compactMap { $0["name"] as? String }
        // A training step runs the fused optimizer once and the convolutions' backward (patch embedding, neck, upscaling).
        let adam = try XCTUnwrap(ops.first { $0["name"] as? String == "aten::_fused_adamw_" }, "\(names)")
        XCTAssertEqual(adam["calls_per_step"] as? Double, 1)
        XCTAssertTrue(names.contains("aten::convolution_backward"), "\(names)")
        let times = ops.compactMap { $0["ms_per_step"] as? Double }
        XCTAssertEqual(times, times.sorted(by: >))

        let text = try crackCLI(["bench", "infer"] + tiny + ["--trace", dir + "/trace.json"])
        XCTAssertTrue(text.contains("self host time by op"), text)
        XCTAssertTrue(text.contains("aten::mm") || text.contains("aten::addmm"), text)
        XCTAssertFalse(text.contains("aten::_fused_adamw_"), text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/trace.json"))

        // The trace carries the ops' input shapes, which scripts/trace-report turns into traffic per tensor:
        // here the windowed block crops its one padded 14×14 window back to the (2, 2, 2, 32) tokens.
        let report = try Oracle.runProcess(Oracle.python, [Oracle.root + "/scripts/trace-report", dir + "/trace.json", "--steps", "2", "--top", "100"])
        XCTAssertEqual(report.status, 0, report.output)
        XCTAssertTrue(report.output.hasPrefix("memory-bound ops read and wrote about"), report.output)
        XCTAssertTrue(report.output.contains("aten::copy_  (aten::clone < aten::contiguous)  float[2, 2, 2, 32], float[2, 2, 2, 32]"), report.output)
        try Data(#"{"traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "aten::add", "tid": 1, "ts": 0, "dur": 1, "args": {}}]}"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/bare.json"))
        // A CUDA trace ranks by the device time of the kernels each op launched (matched by External id).
        try Data(#"""
            {"traceEvents": [
             {"ph": "X", "cat": "cpu_op", "name": "aten::to", "tid": 1, "ts": 0, "dur": 50, "args": {"External id": 1, "Input Dims": [[8, 1280]], "Input type": ["float"]}},
             {"ph": "X", "cat": "cpu_op", "name": "aten::copy_", "tid": 1, "ts": 10, "dur": 20, "args": {"External id": 2, "Input Dims": [[8, 1280], [8, 1280]], "Input type": ["c10::BFloat16", "float"]}},
             {"ph": "X", "cat": "kernel", "name": "elementwise_copy", "tid": 7, "ts": 40, "dur": 300, "args": {"External id": 2}},
             {"ph": "X", "cat": "kernel", "name": "elementwise_copy", "tid": 7, "ts": 400, "dur": 100, "args": {"External id": 2}}]}
            """#.utf8).write(to: URL(fileURLWithPath: dir + "/cuda.json"))
        let cuda = try Oracle.runProcess(Oracle.python, [Oracle.root + "/scripts/trace-report", dir + "/cuda.json", "--steps", "2"])
        XCTAssertEqual(cuda.status, 0, cuda.output)
        XCTAssertTrue(cuda.output.hasPrefix("device time of the kernels launched by ops: 0.20 ms/step"), cuda.output)
        XCTAssertTrue(cuda.output.contains("    0.200     0.5  aten::copy_  (aten::to)  BFloat16[8, 1280], float[8, 1280]"), cuda.output)
        let bare = try Oracle.runProcess(Oracle.python, [Oracle.root + "/scripts/trace-report", dir + "/bare.json"])
        XCTAssertNotEqual(bare.status, 0)
        XCTAssertTrue(bare.output.contains("has no input shapes"), bare.output)
        let refused = try crackCLI(["bench", "infer", "--trace", dir + "/t.json"] + tiny.dropLast(2), expectSuccess: false)
        XCTAssertTrue(refused.contains("--trace needs --profile-steps"), refused)
    }

    /// `bench agree`: a float32 model compared with itself under bf16 autocast (CPU autocast here).
    func testBenchAgreeComparesMixedPrecisionMasks() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 3)
        let out = try crackCLI(["bench", "agree", "--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2",
                                "--global-blocks", "1", "--image-size", "32", "--data", dir + "/data", "--count", "3", "--json"])
        let r = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
        XCTAssertEqual(r["images"] as? Int, 3)
        let pooled = try XCTUnwrap(r["pooled_iou"] as? Double), worst = try XCTUnwrap(r["min_image_iou"] as? Double)
        XCTAssertTrue((0...1).contains(pooled) && (0...1).contains(worst) && worst <= pooled + 1e-12, out)
    }
}
