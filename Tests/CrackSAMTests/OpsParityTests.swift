import CrackSAM
import XCTest

/// Every op family against PyTorch on the same inputs (Tests/Oracles/ops_oracle.py writes both).
final class OpsParityTests: XCTestCase {
    typealias Op = ([Tensor]) throws -> [Tensor]

    /// Case name → the same computation in Swift. Must list exactly the oracle's cases.
    static let ops: [String: Op] = {
        var o: [String: Op] = [:]
        func one(_ name: String, _ f: @escaping ([Tensor]) throws -> Tensor) { o[name] = { [try f($0)] } }
        func seeded(_ seed: UInt64, _ f: @escaping () throws -> Tensor) -> ([Tensor]) throws -> Tensor {
            { _ in try Torch.manualSeed(seed); return try f() }
        }
        // creation
        one("zeros") { _ in try .zeros([2, 3]) }
        one("ones_i64") { _ in try .ones([4], dtype: .int64) }
        one("full") { _ in try .full([2, 2], value: 3.5) }
        one("arange") { _ in try .arange(0, 10, step: 0.5) }
        one("arange_i64") { _ in try .arange(0, 7, step: 2, dtype: .int64) }
        one("rand_seeded", seeded(123) { try .rand([3, 4]) })
        one("randn_seeded", seeded(123) { try .randn([3, 4]) })
        one("randint_seeded", seeded(5) { try .randint(0, 10, shape: [6]) })
        one("uniform_seeded", seeded(7) { try .uniform([5], low: -2, high: 3) })
        one("normal_seeded", seeded(9) { try .normal([5], mean: 1, std: 0.5) })
        one("to_f16") { try $0[0].to(dtype: .float16) }
        one("to_bf16") { try $0[0].to(dtype: .bfloat16) }
        one("to_f64") { try $0[0].to(dtype: .float64) }
        one("to_i64") { try $0[0].to(dtype: .int64) }
        one("to_u8") { try $0[0].to(dtype: .uint8) }
        one("to_bool") { try $0[0].to(dtype: .bool) }
        // shapes and views
        one("view") { try $0[0].view([6, 4]) }
        one("reshape") { try $0[0].reshape([4, -1]) }
        one("permute") { try $0[0].permute([2, 0, 1]) }
        one("transpose") { try $0[0].transpose(0, 2) }
        one("contiguous") { try $0[0].transpose(1, 2).contiguous() }
        one("narrow") { try $0[0].narrow(dim: 2, start: 1, length: 2) }
        one("slice_step") { try $0[0].slice(dim: 1, start: 0, end: 3, step: 2) }
        one("select") { try $0[0].select(dim: 1, index: 2) }
        one("unbind") { try .cat($0[0].unbind(dim: 1), dim: -1) }
        one("index_select") { try $0[0].indexSelect(dim: 2, index: $0[1]) }
        one("gather") { try $0[0].gather(dim: 2, index: $0[1]) }
        one("cat") { try .cat([$0[0], $0[1]], dim: 1) }
        one("stack") { try .stack([$0[0], $0[1]], dim: 1) }
        one("pad_constant") { try $0[0].pad([1, 2, 3, 0], value: 0.5) }
        one("pad_reflect") { try $0[0].pad([2, 1, 1, 2], mode: .reflect) }
        one("pad_replicate") { try $0[0].pad([1, 1, 2, 0], mode: .replicate) }
        one("expand") { try $0[0].expand([3, 4]) }
        one("repeat") { try $0[0].repeated([2, 3]) }
        one("repeat_interleave") { try $0[0].repeatInterleave(2, dim: 1) }
        one("flip") { try $0[0].flip([0, 2]) }
        one("rot90") { try $0[0].rot90(1, dims: (2, 3)) }
        one("rot90_k3") { try $0[0].rot90(3, dims: (2, 3)) }
        one("squeeze") { try $0[0].squeeze(dim: 1) }
        one("unsqueeze") { try $0[0].unsqueeze(dim: 1) }
        one("flatten") { try $0[0].flatten(startDim: 1) }
        one("as_strided") { try $0[0].asStrided([3, 2], strides: [2, 5], offset: 1) }
        // element-wise
        one("add") { try $0[0] + $0[1] }
        one("sub") { try $0[0] - $0[1] }
        one("mul") { try $0[0] * $0[1] }
        one("div") { try $0[0] / $0[1] }
        one("add_scalar") { try $0[0] + 1.5 }
        one("mul_scalar") { try $0[0] * -2.0 }
        one("rsub_scalar") { try 2.0 - $0[0] }
        one("rdiv_scalar") { try 3.0 / $0[0] }
        one("pow_scalar") { try $0[0].pow(2.5) }
        one("pow_tensor") { try $0[0].pow($0[1]) }
        one("maximum") { try $0[0].maximum($0[1]) }
        one("minimum") { try $0[0].minimum($0[1]) }
        one("eq") { try $0[0].eq($0[1]) }
        one("lt") { try $0[0].lt($0[1]) }
        one("ge_scalar") { try $0[0].ge(0.2) }
        one("logical_and") { try $0[0].logicalAnd($0[1]) }
        one("neg") { try -$0[0] }
        one("abs") { try $0[0].abs() }
        one("exp") { try $0[0].exp() }
        one("log") { try $0[0].log() }
        one("sqrt") { try $0[0].sqrt() }
        one("rsqrt") { try $0[0].rsqrt() }
        one("sin") { try $0[0].sin() }
        one("cos") { try $0[0].cos() }
        one("tanh") { try $0[0].tanh() }
        one("sigmoid") { try $0[0].sigmoid() }
        one("relu") { try $0[0].relu() }
        one("gelu") { try $0[0].gelu() }
        one("gelu_tanh") { try $0[0].geluTanh() }
        one("floor") { try $0[0].floor() }
        one("round") { try $0[0].round() }
        one("sign") { try $0[0].sign() }
        one("erf") { try $0[0].erf() }
        one("square") { try $0[0].square() }
        one("where") { try .where($0[0], $0[1], $0[2]) }
        one("clamp") { try $0[0].clamp(min: -0.5, max: 0.5) }
        one("clamp_min") { try $0[0].clamp(min: 0.1) }
        one("masked_fill") { try $0[0].maskedFill($0[1], value: -9) }
        one("isnan") { try $0[0].isNaN() }
        // linear algebra and nn
        one("matmul_broadcast") { try $0[0].matmul($0[1]) }
        one("bmm") { try $0[0].bmm($0[1]) }
        one("linear") { try $0[0].linear(weight: $0[1], bias: $0[2]) }
        one("linear_nobias") { try $0[0].linear(weight: $0[1]) }
        one("add_linear_inplace") {
            let c = try $0[0].clone()
            try c.addLinear_($0[1], weight: $0[2])
            return c
        }
        one("conv2d") { try $0[0].conv2d(weight: $0[1], bias: $0[2], stride: (2, 2), padding: (1, 1), groups: 2) }
        one("conv2d_dilated") { try $0[0].conv2d(weight: $0[1], padding: (2, 2), dilation: (2, 2)) }
        one("conv_transpose2d") { try $0[0].convTranspose2d(weight: $0[1], bias: $0[2], stride: (2, 2)) }
        one("conv_transpose2d_pad") {
            try $0[0].convTranspose2d(weight: $0[1], stride: (2, 2), padding: (1, 1), outputPadding: (1, 1))
        }
        one("layer_norm") { try $0[0].layerNorm([8], weight: $0[1], bias: $0[2], eps: 1e-6) }
        one("softmax") { try $0[0].softmax(dim: -1) }
        one("log_softmax") { try $0[0].logSoftmax(dim: 1) }
        one("interp_nearest") { try $0[0].interpolate(size: (9, 12), mode: .nearest) }
        one("interp_nearest_exact") { try $0[0].interpolate(size: (9, 12), mode: .nearestExact) }
        one("interp_bilinear") { try $0[0].interpolate(size: (20, 28), mode: .bilinear) }
        one("interp_bilinear_ac") { try $0[0].interpolate(size: (9, 13), mode: .bilinear, alignCorners: true) }
        one("interp_bicubic") { try $0[0].interpolate(size: (11, 6), mode: .bicubic) }
        one("interp_bicubic_ac") { try $0[0].interpolate(size: (10, 14), mode: .bicubic, alignCorners: true) }
        one("sdpa_bias") { try .scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], bias: $0[3]) }
        one("sdpa_scale") { try .scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], scale: 0.3) }
        // The explicit formula computed in Swift: the test below also checks sdpa+bias equals it.
        one("attention_explicit") {
            let logits = try ($0[0] * (1 / 8.0.squareRoot())).matmul($0[1].transpose(-2, -1)) + $0[3]
            return try logits.softmax(dim: -1).matmul($0[2])
        }
        one("cross_entropy") { try $0[0].crossEntropy(target: $0[1]) }
        one("cross_entropy_none") { try $0[0].crossEntropy(target: $0[1], reduction: .none) }
        one("cross_entropy_weight_ignore") { try $0[0].crossEntropy(target: $0[1], weight: $0[2]) }
        one("one_hot") { try $0[0].oneHot(classes: 3) }
        // reductions
        one("sum_all") { try $0[0].sum() }
        one("sum_dims") { try $0[0].sum(dims: [0, 2], keepDim: true) }
        one("mean_all") { try $0[0].mean() }
        one("mean_dim") { try $0[0].mean(dims: [1]) }
        one("amax") { try $0[0].amax(dims: [2]) }
        one("amin") { try $0[0].amin(dims: [0, 1]) }
        o["max_dim"] = { let (v, i) = try $0[0].max(dim: 1); return [v, i] }
        one("argmax") { try $0[0].argmax(dim: 2) }
        one("sum_bool") { try $0[0].sum() }
        // in-place (on clones, as the oracle does)
        func inplace(_ name: String, _ f: @escaping (Tensor, [Tensor]) throws -> Void) {
            one(name) { let d = try $0[0].clone(); try f(d, $0); return d }
        }
        inplace("add_") { try $0.add_($1[1], alpha: 0.3) }
        inplace("mul_") { d, _ in try d.mul_(-1.5) }
        inplace("addcmul_") { try $0.addcmul_($1[1], $1[2], value: 0.7) }
        inplace("addcdiv_") { try $0.addcdiv_($1[1], $1[2], value: -0.2) }
        inplace("copy_") { try $0.copy_($1[1]) }
        inplace("fill_") { d, _ in try d.fill_(2.25) }
        inplace("zero_") { d, _ in try d.zero_() }
        return o
    }()

    func loadFixtures() throws -> StateDict { try Oracle.tensors(from: "ops_oracle.py") }

    func cases(_ fixtures: StateDict) -> [String: (inputs: [Tensor], outputs: [Tensor])] {
        var grouped: [String: (inputs: [(Int, Tensor)], outputs: [(Int, Tensor)])] = [:]
        for (key, t) in fixtures {
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            let (name, slot) = (parts[0], parts[1])
            var entry = grouped[name] ?? ([], [])
            if slot.hasPrefix("in") {
                entry.inputs.append((Int(slot.dropFirst(2))!, t))
            } else {
                entry.outputs.append((Int(slot.dropFirst(3)) ?? 0, t))
            }
            grouped[name] = entry
        }
        return grouped.mapValues { e in
            (e.inputs.sorted { $0.0 < $1.0 }.map(\.1), e.outputs.sorted { $0.0 < $1.0 }.map(\.1))
        }
    }

    func testEveryOracleCaseHasASwiftCounterpartAndViceVersa() throws {
        let names = Set(cases(try loadFixtures()).keys)
        XCTAssertGreaterThan(names.count, 100)
        XCTAssertEqual(names.subtracting(Self.ops.keys).sorted(), [], "oracle cases with no Swift op")
        XCTAssertEqual(Set(Self.ops.keys).subtracting(names).sorted(), [], "Swift ops the oracle does not cover")
    }

    func testEveryOpMatchesPyTorch() throws {
        for (name, c) in cases(try loadFixtures()).sorted(by: { $0.key < $1.key }) {
            guard let op = Self.ops[name] else { continue }
            let outputs = try op(c.inputs)
            XCTAssertEqual(outputs.count, c.outputs.count, "\(name): number of outputs")
            // float32 kernels are the same libtorch's, so differences are summation-order noise at most.
            for (o, e) in zip(outputs, c.outputs) { try assertClose(o, e, rtol: 1e-5, atol: 1e-6, name) }
        }
    }

    func testSDPAWithBiasEqualsTheExplicitSoftmaxFormula() throws {
        let c = cases(try loadFixtures())["sdpa_bias"]!
        let fused = try Self.ops["sdpa_bias"]!(c.inputs)[0]
        let explicit = try Self.ops["attention_explicit"]!(c.inputs)[0]
        try assertClose(fused, explicit, rtol: 1e-5, atol: 1e-6, "sdpa vs explicit")
    }

    func testBuffersRoundTripForEveryDType() throws {
        try assertClose(try Tensor([1.5, -2, 3] as [Float]), try Tensor([1.5, -2, 3] as [Float]), "f32")
        XCTAssertEqual(try Tensor([1.5, -2, 3] as [Float16]).toArray(of: Float16.self), [1.5, -2, 3])
        XCTAssertEqual(try Tensor([7, -8] as [Int64]).toArray(of: Int64.self), [7, -8])
        XCTAssertEqual(try Tensor([0, 255] as [UInt8]).toArray(of: UInt8.self), [0, 255])
        XCTAssertEqual(try Tensor([true, false] as [Bool]).toArray(of: Bool.self), [true, false])
        // bfloat16 has no Swift type: raw bits in, raw bits out. 0x3FC0 = 1.5, 0xC000 = -2.
        let bits: [UInt16] = [0x3FC0, 0xC000]
        let bf = try bits.withUnsafeBytes { try Tensor(bytes: $0, dtype: .bfloat16, shape: [2]) }
        XCTAssertEqual(try bf.floats(), [1.5, -2])
        XCTAssertEqual(try bf.bytes(), [0xC0, 0x3F, 0x00, 0xC0])
        XCTAssertEqual(try Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3]).transpose(0, 1).floats(), [1, 4, 2, 5, 3, 6])
    }
}
