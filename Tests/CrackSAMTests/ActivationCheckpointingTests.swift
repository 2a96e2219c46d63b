import CrackSAM
import XCTest

/// Activation checkpointing gives the gradients of the ordinary backward (float64, so that only the
/// order of additions could differ), on a config with window and global blocks and LoRA + adapters.
final class ActivationCheckpointingTests: XCTestCase {
    func makeModel() throws -> SAMModel {
        try Torch.manualSeed(5)
        let model = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 32, depth: 3, heads: 2, globalBlocks: [1], imageSize: 48))
        try model.applyPEFT(PEFTConfig(deltaType: .both, rank: 4, loraTargets: [.q, .v], adapterDim: 8, adapterScale: 0.2))
        // LoRA's B starts at zero, which would leave A without a gradient: make every delta weight matter.
        try Torch.withNoGrad {
            for (key, p) in model.trainableParameters() where key.contains("lora") || key.hasPrefix("image_encoder") {
                try p.tensor.copy_(Tensor.randn(p.shape) * 0.05)
            }
        }
        try model.move(to: .cpu, dtype: .float64)
        return model
    }

    func testGradientsEqualTheOrdinaryBackward() throws {
        try Torch.manualSeed(9)
        let images = try Tensor.rand([2, 3, 48, 48]).to(dtype: .float64)
        let labels = try Tensor.randint(0, 2, shape: [2, 48, 48])
        var grads: [[String: [Double]]] = []
        for checkpointing in [false, true] {
            let model = try makeModel()
            let step = try TrainingStep(model: model, amp: .off, weightDecay: 0, device: .cpu, float64: true)
            step.checkpointActivations = checkpointing
            let value = try step.forward(images: images, labels: labels)
            try value.objective.backward()
            if checkpointing {
                // The decoder's backward stopped at the embedding; the encoder's delta has no gradient yet.
                let encoderGrads = try model.trainableParameters().filter { $0.key.hasPrefix("image_encoder") }.compactMap { try $0.parameter.tensor.grad }
                XCTAssertTrue(encoderGrads.isEmpty)
                try step.finishBackward()
            }
            var g: [String: [Double]] = [:]
            // (Unused parameters, e.g. the point embeddings without prompts, have no gradient either way.)
            for (key, p) in model.trainableParameters() { if let t = try p.tensor.grad { g[key] = try t.toArray(of: Double.self) } }
            grads.append(g)
        }
        XCTAssertEqual(grads[0].keys.sorted(), grads[1].keys.sorted())
        XCTAssertTrue(grads[0].keys.contains { $0.contains("lora") || $0.contains("adapter") })
        // Each gradient is compared relative to its own size, but not below a millionth of the largest
        // one: the decoder's k_proj biases have a gradient that is zero in exact arithmetic (softmax
        // ignores a per-row constant), and their rounding noise (~1e-20) changes with the embedding's last
        // ulp, which libtorch may compute with another kernel in the graph-free forward than in the
        // recorded one (it chooses per call, by shapes, dtypes and whether a gradient is needed).
        let largest = grads[0].values.map { $0.map(abs).max() ?? 0 }.max() ?? 0
        var worst = 0.0
        for (key, a) in grads[0] {
            let b = grads[1][key]!
            let scale = max(a.map(abs).max() ?? 0, largest * 1e-6, 1e-300)
            worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()! / scale)
        }
        print("activation checkpointing: \(grads[0].count) gradients, worst relative max difference \(worst)")
        XCTAssertLessThan(worst, 1e-9)  // float64: a wrong gradient is off by far more
    }

    /// Only the head trains (delta none), or only the last block has a delta: checkpointing recomputes
    /// nothing below what trains, so a step costs what the ordinary one does (counted FLOPs), plus the
    /// recomputed blocks that do train.
    func testNothingBelowTheDeltaIsRecomputed() throws {
        try Torch.manualSeed(9)
        let images = try Tensor.rand([2, 3, 48, 48]), labels = try Tensor.randint(0, 2, shape: [2, 48, 48])
        func flops(_ model: SAMModel, checkpointing: Bool) throws -> Double {
            let step = try TrainingStep(model: model, amp: .off, weightDecay: 0, device: .cpu)
            step.checkpointActivations = checkpointing
            return try FlopCounter.count {
                let value = try step.forward(images: images, labels: labels)
                try value.objective.backward()
                try step.finishBackward()
            }.flops.total
        }
        let config = SAMConfig(backbone: .custom, embedDim: 32, depth: 3, heads: 2, globalBlocks: [1], imageSize: 48)
        let head = try SAMModel(config: config)
        XCTAssertEqual(try flops(head, checkpointing: true), try flops(head, checkpointing: false))
        // A delta in the last block only: the recomputation is that block's forward (and the neck's).
        let last = try SAMModel(config: config)
        try last.applyPEFT(PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        for i in 0..<2 { try last.imageEncoder.blocks.items[i].freeze() }
        XCTAssertTrue(last.trainableParameters().contains { $0.key.hasPrefix("image_encoder.blocks.2.") })
        XCTAssertFalse(last.trainableParameters().contains { $0.key.hasPrefix("image_encoder.blocks.1.") })
        let recomputed = try FlopCounter.count {
            try Torch.withNoGrad {
                let h = try last.imageEncoder.blocks.items[2](Tensor.randn([2, 3, 3, 32]))
                _ = try last.imageEncoder.neck(h.permute([0, 3, 1, 2]))
            }
        }.flops.total
        let plain = try flops(last, checkpointing: false), checkpointed = try flops(last, checkpointing: true)
        XCTAssertEqual(checkpointed, plain + recomputed, accuracy: plain * 1e-12)
    }
}

/// Channels-last convolutions are the same convolutions in another memory order.
final class ChannelsLastTests: XCTestCase {
    func testLogitsMatchTheDefaultLayout() throws {
        try Torch.manualSeed(3)
        let model = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 32, depth: 2, heads: 2, globalBlocks: [1], imageSize: 48))
        let images = try Tensor.rand([2, 3, 48, 48])
        let plain = try Torch.withInferenceMode { try model(images).logits }
        Torch.channelsLastConvolutions = true
        defer { Torch.channelsLastConvolutions = false }
        let nhwc = try Torch.withInferenceMode { try model(images).logits }
        let diff = try (plain - nhwc).abs().amax().item() / max(try plain.abs().amax().item(), 1e-30)
        print("channels-last vs default logits: relative max difference \(diff)")
        XCTAssertLessThan(diff, 1e-5)
    }
}
