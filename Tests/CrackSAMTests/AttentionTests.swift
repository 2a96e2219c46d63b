import CrackSAM
import XCTest

/// The encoder's attention on its own, against Meta's image_encoder.Attention (Tests/Oracles/attention_oracle.py),
/// which adds the relative-position bias to explicit logits: ours folds it into extra query and key
/// columns of one fused attention call, so the forward and every gradient must still be Meta's.
final class AttentionTests: XCTestCase {
    func oracle() throws -> StateDict { try Oracle.tensors(from: "attention_oracle.py") }

    /// "win": a 6×6 grid with tables made for it; "odd": a 5×7 grid with tables made for 6 (resized).
    func testForwardAndGradientsMatchMetasExplicitBias() throws {
        let o = try oracle()
        for name in ["win", "odd"] {
            let attn = try Attention(dim: 32, heads: 2, gridSize: 6)
            try attn.move(to: .cpu, dtype: .float64)
            var params = StateDict()
            for (key, value) in o where key.hasPrefix("\(name).param.") { params[String(key.dropFirst("\(name).param.".count))] = value }
            try attn.loadStateDict(params, source: "attention_oracle \(name)")
            let x = try o["\(name).x"]!.clone().requiresGrad(true)
            let y = try attn(x)
            try y.backward(gradient: o["\(name).grad"]!)
            try assertClose(y.detach(), o["\(name).y"]!, rtol: 1e-10, atol: 1e-12, "\(name) output")
            try assertClose(try XCTUnwrap(x.grad), o["\(name).grad_x"]!, rtol: 1e-10, atol: 1e-12, "\(name) grad x")
            for (key, p) in attn.namedParameters() {
                let grad = try XCTUnwrap(p.tensor.grad, "\(name) \(key) got no gradient")
                try assertClose(grad, o["\(name).grad.\(key)"]!, rtol: 1e-10, atol: 1e-12, "\(name) grad \(key)")
            }
        }
    }

    /// Frozen tables (CrackSAM's encoder) are resized, gathered and scaled once, not in every forward; a
    /// checkpoint loaded over them is seen at the next forward, which then equals a fresh module's.
    func testFrozenTablesAreKeptUntilTheyChange() throws {
        let o = try oracle()
        func attention(_ params: StateDict) throws -> Attention {
            let attn = try Attention(dim: 32, heads: 2, gridSize: 6)
            try attn.move(to: .cpu, dtype: .float64)
            try attn.loadStateDict(params, source: "attention_oracle odd")
            return attn
        }
        var params = StateDict()
        for (key, value) in o where key.hasPrefix("odd.param.") { params[String(key.dropFirst("odd.param.".count))] = value }
        let attn = try attention(params)
        try attn.freeze()
        let x = try XCTUnwrap(o["odd.x"])  // a 5×7 grid with tables made for 6: both are resized
        let first = try attn(x)
        try assertClose(first, o["odd.y"]!, rtol: 1e-10, atol: 1e-12, "frozen, first forward")
        let (second, profile) = try Profiler.record(cuda: false) { try attn(x) }
        let calls = Dictionary(uniqueKeysWithValues: profile.opsBySelfHostTime().map { ($0.name, $0.calls) })
        XCTAssertNil(calls["aten::index_select"], "the tables were gathered again")
        XCTAssertNil(calls["aten::upsample_bilinear2d"], "the tables were resized again")
        try assertClose(second, first, rtol: 0, atol: 0, "the kept tables give the same output")

        params["rel_pos_h"] = try params["rel_pos_h"]! * 2
        params["rel_pos_w"] = try params["rel_pos_w"]! - 0.5
        try attn.loadStateDict(params, source: "changed tables")
        let changed = try attn(x)
        try assertClose(changed, try attention(params)(x), rtol: 0, atol: 0, "after a load, as a fresh module")
        let moved = try (changed - first).abs().amax().to(dtype: .float64).item()
        XCTAssertGreaterThan(moved, 1e-3, "the changed tables changed nothing")

        // Loading replaces the tensors; a change in place (the same tensor) must be seen too.
        try attn.relPosW.tensor.mul_(3)
        try assertClose(try attn(x), try attention(attn.stateDict())(x), rtol: 0, atol: 0, "after an in-place change")
    }

    /// With the bias folded in, training takes the fused kernel (on the CPU: the flash kernel, forward
    /// and backward). A bias that needs a gradient sends libtorch to its unfused path instead (explicit
    /// softmax), and keeps an L × L tensor per head for the backward.
    func testTrainingTakesTheFusedKernel() throws {
        let attn = try Attention(dim: 32, heads: 2, gridSize: 6)
        let x = try Tensor.randn([2, 6, 6, 32]).requiresGrad(true)
        let (_, profile) = try Profiler.record(cuda: false) { try attn(x).sum().backward() }
        let calls = Dictionary(uniqueKeysWithValues: profile.opsBySelfHostTime().map { ($0.name, $0.calls) })
        XCTAssertEqual(calls["aten::_scaled_dot_product_flash_attention_for_cpu"], 1, "\(calls.keys.filter { $0.contains("attention") }.sorted())")
        XCTAssertEqual(calls["aten::_scaled_dot_product_flash_attention_for_cpu_backward"], 1, "\(calls.keys.filter { $0.contains("attention") }.sorted())")
        XCTAssertNil(calls["aten::_softmax"], "the unfused path ran")
        XCTAssertNotNil(try x.grad)
    }

    /// The attention caches constants (the tables' row indices, the keys' one-hot columns); ones made
    /// while evaluating in inference mode must not end up in a later training step's graph.
    func testTrainsAfterEvaluatingInInferenceMode() throws {
        let attn = try Attention(dim: 32, heads: 2, gridSize: 6)
        let x = try Tensor.randn([2, 5, 7, 32])
        let evaluated = try Torch.withInferenceMode {
            XCTAssertTrue(Torch.isInferenceMode)
            return try attn(x)
        }
        XCTAssertFalse(Torch.isInferenceMode)
        let input = try x.clone().requiresGrad(true)
        let trained = try attn(input)
        try trained.sum().backward()
        XCTAssertNotNil(try input.grad)
        try assertClose(trained.detach(), evaluated, rtol: 0, atol: 0, "the same output either way")
    }
}
