import CrackSAM
import XCTest

/// Autograd, optimizer kernels, grad scaler and autocast against PyTorch (Tests/Oracles/training_oracle.py).
final class AutogradTests: XCTestCase {
    func oracle() throws -> StateDict { try Oracle.tensors(from: "training_oracle.py") }

    func testGradientsThroughAttentionGraphMatchPyTorch() throws {
        let o = try oracle()
        let x = try o["attn.x"]!.clone().requiresGrad(true)
        let w = try o["attn.w"]!.clone().requiresGrad(true)
        let lnw = try o["attn.lnw"]!.clone().requiresGrad(true)
        let b = o["attn.b"]!, lnb = o["attn.lnb"]!
        XCTAssertTrue(x.requiresGrad && x.isLeaf)
        let h = try x.linear(weight: w, bias: b).gelu().layerNorm([8], weight: lnw, bias: lnb, eps: 1e-6)
        let q = try h.view([2, 5, 2, 4]).transpose(1, 2)
        let a = try Tensor.scaledDotProductAttention(query: q, key: q, value: q, bias: o["attn.bias"]!)
            .transpose(1, 2).reshape([2, 5, 8])
        let logits = try a.permute([0, 2, 1]).slice(dim: 1, start: 0, end: 3)
        let loss = try logits.crossEntropy(target: o["attn.target"]!)
        try loss.backward()
        try assertClose(loss.detach(), o["attn.loss"]!, rtol: 1e-5, atol: 1e-6, "loss")
        try assertClose(try XCTUnwrap(try x.grad), o["attn.grad_x"]!, rtol: 1e-4, atol: 1e-6, "grad x")
        try assertClose(try XCTUnwrap(try w.grad), o["attn.grad_w"]!, rtol: 1e-4, atol: 1e-6, "grad w")
        try assertClose(try XCTUnwrap(try lnw.grad), o["attn.grad_lnw"]!, rtol: 1e-4, atol: 1e-6, "grad lnw")
        XCTAssertNil(try b.grad, "a tensor that does not require grad gets none")
    }

    func testGradientsThroughConvolutionsAndResizeMatchPyTorch() throws {
        let o = try oracle()
        let img = try o["conv.img"]!.clone().requiresGrad(true)
        let cw = try o["conv.cw"]!.clone().requiresGrad(true)
        let tw = try o["conv.tw"]!.clone().requiresGrad(true)
        var y = try img.conv2d(weight: cw, bias: o["conv.cb"]!, padding: (1, 1))
        y = try y.convTranspose2d(weight: tw, bias: o["conv.tb"]!, stride: (2, 2)).relu()
        y = try y.interpolate(size: (20, 20), mode: .bilinear)
        let loss = try y.softmax(dim: 1).pow(2).mean() + y.abs().mean()
        try loss.backward()
        try assertClose(loss.detach(), o["conv.loss"]!, rtol: 1e-5, atol: 1e-7, "loss")
        try assertClose(try XCTUnwrap(try img.grad), o["conv.grad_img"]!, rtol: 1e-4, atol: 1e-7, "grad img")
        try assertClose(try XCTUnwrap(try cw.grad), o["conv.grad_cw"]!, rtol: 1e-4, atol: 1e-7, "grad conv w")
        try assertClose(try XCTUnwrap(try tw.grad), o["conv.grad_tw"]!, rtol: 1e-4, atol: 1e-7, "grad convT w")
    }

    func testGradientsAccumulateAndClear() throws {
        let x = try Tensor([1, 2, 3] as [Float]).requiresGrad(true)
        try (x * x).sum().backward()
        try (x * 3.0).sum().backward()
        XCTAssertEqual(try XCTUnwrap(try x.grad).floats(), [5, 7, 9], "2x + 3, accumulated")
        try x.clearGrad()
        XCTAssertNil(try x.grad)
        let y = try (x * 2.0).detach()
        XCTAssertFalse(y.requiresGrad)
        XCTAssertThrowsError(try y.sum().backward(), "backward through a detached tensor is a libtorch error, not a crash")
    }

    func testNoGradAndInferenceModeRecordNoGraph() throws {
        let x = try Tensor.randn([3]).requiresGrad(true)
        let y = try Torch.withNoGrad { try x * 2.0 }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue(Torch.isGradEnabled, "mode restored after the scope")
        let z = try Torch.withInferenceMode { try x * 2.0 }
        XCTAssertFalse(z.requiresGrad)
        XCTAssertTrue(Torch.isGradEnabled)
        struct Boom: Error {}
        XCTAssertThrowsError(try Torch.withNoGrad { throw Boom() })
        XCTAssertTrue(Torch.isGradEnabled, "restored even when the body throws")
        let w = try Torch.withNoGrad { try Torch.withGrad { try x * 2.0 } }
        XCTAssertTrue(w.requiresGrad)
    }

    func testFusedAdamWMatchesTorchOptimAdamW() throws {
        let o = try oracle()
        let params = [try o["adamw.p0"]!.clone(), try o["adamw.p1"]!.clone()]
        let grads = [o["adamw.g0"]!, o["adamw.g1"]!]
        let m = try params.map { try Tensor.zeros($0.shape) }
        let v = try params.map { try Tensor.zeros($0.shape) }
        let steps = try params.map { _ in try Tensor.zeros([]) }
        for _ in 0..<3 {
            try FusedKernels.adamW(params: params, grads: grads, expAvgs: m, expAvgSqs: v, steps: steps, lr: 4e-4,
                                   beta1: 0.9, beta2: 0.999, weightDecay: 0.01, eps: 1e-8)
        }
        try assertClose(params[0], o["adamw.p0_after"]!, rtol: 1e-6, atol: 1e-7, "param 0")
        try assertClose(params[1], o["adamw.p1_after"]!, rtol: 1e-6, atol: 1e-7, "param 1")
        try assertClose(m[0], o["adamw.exp_avg0"]!, rtol: 1e-6, atol: 1e-8, "exp_avg")
        try assertClose(v[1], o["adamw.exp_avg_sq1"]!, rtol: 1e-6, atol: 1e-10, "exp_avg_sq")
        XCTAssertEqual(try steps[0].item(), 3)
        // A step with inf/NaN gradients (found_inf = 1) changes nothing, step counters included.
        let before = try params[0].clone()
        try FusedKernels.adamW(params: params, grads: grads, expAvgs: m, expAvgSqs: v, steps: steps, lr: 4e-4,
                               beta1: 0.9, beta2: 0.999, weightDecay: 0.01, eps: 1e-8, foundInf: try Tensor.ones([1]))
        try assertClose(params[0], before, rtol: 0, atol: 0, "skipped step")
        XCTAssertEqual(try steps[0].item(), 3)
    }

    func testGradScalerKernelsMatchPyTorch() throws {
        let o = try oracle()
        let ga = try o["amp.ga"]!.clone(), gb = try o["amp.gb"]!.clone()
        let found = try Tensor.zeros([1]), inv = try Tensor([Float(1.0 / 1024)])
        try FusedKernels.unscale(grads: [ga, gb], foundInf: found, invScale: inv)
        try assertClose(ga, o["amp.ga_unscaled"]!, "unscaled a")
        try assertClose(gb, o["amp.gb_unscaled"]!, "unscaled b")
        try assertClose(found, o["amp.found_clean"]!, "no inf")
        let bad = try Tensor.zeros([1])
        try FusedKernels.unscale(grads: [try o["amp.ga"]!.clone(), try o["amp.gb_bad"]!.clone()], foundInf: bad, invScale: inv)
        try assertClose(bad, o["amp.found_bad"]!, "inf found")
        let scale = try Tensor([Float(1024)]), tracker = try Tensor([Int32(0)])
        try FusedKernels.updateScale(scale, growthTracker: tracker, foundInf: bad, growth: 2, backoff: 0.5, interval: 2000)
        try assertClose(scale, o["amp.scale_after_bad"]!, "backoff")
        try assertClose(tracker, o["amp.tracker_after_bad"]!, "tracker reset")
        let scale2 = try Tensor([Float(1024)]), tracker2 = try Tensor([Int32(1)])
        try FusedKernels.updateScale(scale2, growthTracker: tracker2, foundInf: try Tensor.zeros([1]), interval: 2)
        try assertClose(scale2, o["amp.scale_after_growth"]!, "growth")
        try assertClose(tracker2, o["amp.tracker_after_growth"]!, "tracker after growth")
    }

    func testCPUAutocastMatchesTorchAutocast() throws {
        let o = try oracle()
        let x = o["autocast.x"]!, w = o["autocast.w"]!, b = o["autocast.b"]!
        let img = o["autocast.img"]!, cw = o["autocast.cw"]!
        for (name, dtype) in [("bf16", DType.bfloat16), ("fp16", DType.float16)] {
            XCTAssertFalse(Torch.isAutocastEnabled(device: .cpu))
            let (lin, conv, sm) = try Torch.withAutocast(device: .cpu, dtype: dtype) {
                XCTAssertTrue(Torch.isAutocastEnabled(device: .cpu))
                return (try x.linear(weight: w, bias: b), try img.conv2d(weight: cw, padding: (1, 1)),
                        try x.linear(weight: w, bias: b).softmax(dim: -1))
            }
            XCTAssertFalse(Torch.isAutocastEnabled(device: .cpu), "autocast state restored")
            try assertClose(lin, o["autocast.\(name).linear"]!, rtol: 0, atol: 0, "\(name) linear")
            try assertClose(conv, o["autocast.\(name).conv"]!, rtol: 1e-2, atol: 1e-2, "\(name) conv")
            try assertClose(sm, o["autocast.\(name).softmax_of_linear"]!, rtol: 0, atol: 0, "\(name) softmax")
            // Outside the scope the same op runs in float32 again.
            XCTAssertEqual(try x.linear(weight: w, bias: b).dtype, .float32)
        }
        XCTAssertThrowsError(try Torch.withAutocast(device: .cpu, dtype: .int64) { () }, "autocast to int64 is refused")
    }

    func testManualSeedMakesStreamsRepeatable() throws {
        try Torch.manualSeed(42)
        let a = try Tensor.randn([8]).floats()
        try Torch.manualSeed(42)
        XCTAssertEqual(try Tensor.randn([8]).floats(), a)
        try Torch.manualSeed(43)
        XCTAssertNotEqual(try Tensor.randn([8]).floats(), a)
    }

    func testThreadCountAndTF32Settings() throws {
        let before = Torch.threads
        Torch.threads = 1
        XCTAssertEqual(Torch.threads, 1)
        Torch.threads = before
        XCTAssertEqual(Torch.threads, before)
        let tf32 = Torch.allowTF32
        Torch.allowTF32 = !tf32
        XCTAssertEqual(Torch.allowTF32, !tf32)
        Torch.allowTF32 = tf32
    }

    func testCUDAReportsItselfConsistently() throws {
        // No GPU on CI: then every CUDA request is a clear error, never a crash. With a GPU, memory stats work.
        if CUDA.isAvailable {
            XCTAssertGreaterThan(CUDA.deviceCount, 0)
            let t = try Tensor.ones([1024], device: .cuda(0))
            XCTAssertEqual(t.device, .cuda(0))
            XCTAssertGreaterThan(try CUDA.memory(device: 0).allocated, 0)
            try CUDA.synchronize()
        } else {
            XCTAssertEqual(CUDA.deviceCount, 0)
            XCTAssertThrowsError(try Tensor.ones([2], device: .cuda(0)))
            XCTAssertThrowsError(try Tensor.ones([2]).to(device: .cuda(0)))
            XCTAssertThrowsError(try CUDA.memory(device: 0))
            XCTAssertThrowsError(try CUDA.synchronize())
        }
    }
}
