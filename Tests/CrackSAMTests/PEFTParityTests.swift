import CrackSAM
import Foundation
import XCTest

/// Deltas against the Python reference on Meta's modules (Tests/Oracles/peft_oracle.py): logits, one
/// backward's gradients, and delta files crossing both ways in the authors' format.
final class PEFTParityTests: XCTestCase {
    struct Case {
        var peft: PEFTConfig
        var name: String
        var args: [String] {
            [peft.deltaType.rawValue, String(peft.rank), peft.targetString, String(peft.adapterDim), String(peft.adapterScale)]
        }
    }

    static let cases = [
        Case(peft: PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]), name: "lora qv r4"),
        Case(peft: PEFTConfig(deltaType: .lora, rank: 8, loraTargets: [.q, .k, .v, .o]), name: "lora qkvo r8"),
        Case(peft: PEFTConfig(deltaType: .adapter, adapterDim: 32, adapterScale: 0.2), name: "adapter m32 s0.2"),
        Case(peft: PEFTConfig(deltaType: .both, rank: 4, loraTargets: [.q, .v], adapterDim: 32, adapterScale: 0.2), name: "both"),
    ]

    func relativeMaxError(_ a: Tensor, _ b: Tensor) throws -> Double {
        XCTAssertEqual(a.shape, b.shape)
        let diff = try (a.to(dtype: .float64) - b.to(dtype: .float64)).abs().amax().item()
        return diff / max(try b.to(dtype: .float64).abs().amax().item(), 1e-30)
    }

    func run(_ c: Case, config: SAMConfig, oracleName: String) throws {
        let dir = try Oracle.scratch(oracleName + c.peft.deltaType.rawValue + c.peft.targetString)
        let common = [oracleName, String(config.imageSize)] + c.args + [dir]
        try Oracle.run("peft_oracle.py", ["make"] + common)
        let expected = try SafeTensors.load(at: dir + "/outputs.safetensors").tensors

        let model = try SAMModel(config: config)
        try model.loadStateDict(try PyTorchCheckpoint.loadStateDict(at: dir + "/base.pth"), source: "base.pth")
        try model.applyPEFT(c.peft)
        let (deltaTensors, description) = try DeltaFile.read(at: dir + "/delta.pth")
        if c.peft.loraTargets == [.q, .v] || !c.peft.usesLoRA {
            // The authors' files carry no description: type, rank and dim are inferred from the keys.
            XCTAssertEqual(description?.peft.deltaType, c.peft.deltaType, c.name)
            if c.peft.usesLoRA { XCTAssertEqual(description?.peft.rank, c.peft.rank, c.name) }
            if c.peft.usesAdapter { XCTAssertEqual(description?.peft.adapterDim, c.peft.adapterDim, c.name) }
        }
        try model.loadDelta(deltaTensors, source: "delta.pth")

        // Forward and one backward, the same loss as the reference.
        let images = expected["images"]!, target = expected["target"]!
        let out = try model(images)
        let logitsError = try relativeMaxError(out.logits, expected["logits"]!)
        print("peft \(oracleName) \(c.name): logits relative max error \(logitsError)")
        XCTAssertLessThanOrEqual(logitsError, 1e-4, "\(c.name) logits")
        // One backward, in float64 like the reference (see peft_oracle.py for why).
        try model.move(to: .cpu, dtype: .float64)
        let logits64 = try model(images.to(dtype: .float64)).logits
        let loss = try logits64.crossEntropy(target: target) + logits64.softmax(dim: 1).pow(2).mean()
        try loss.backward()
        try assertClose(loss.detach(), expected["loss"]!, rtol: 1e-9, atol: 0, "\(c.name) loss")

        let deltaKeys = Set(model.deltaStateDict().keys)
        for (key, p) in model.imageEncoder.namedSlots(prefix: "image_encoder.") where !p.isTrainable {
            XCTAssertNil(try p.tensor.grad, "\(c.name): frozen \(key) got a gradient")
        }
        // A gradient that is zero in exact arithmetic (a key bias shifts a whole softmax row equally) is
        // float64 rounding noise (~1e-20); its error is measured against 1e-12 of the largest gradient.
        let scale = try expected.filter { $0.key.hasPrefix("grad.") }.values.map { try $0.abs().amax().item() }.max() ?? 1
        var worst = 0.0
        var compared = 0
        for (key, tensor) in model.deltaStateDict() {
            let g = try tensor.grad
            if let e = expected["grad." + key] {
                guard let g else { XCTFail("\(c.name): \(key) has no gradient; Python's has one"); continue }
                let diff = try (g.to(dtype: .float64) - e.to(dtype: .float64)).abs().amax().item()
                let err = diff / max(try e.abs().amax().item(), 1e-12 * scale)
                worst = max(worst, err)
                compared += 1
                XCTAssertLessThanOrEqual(err, 1e-4, "\(c.name): gradient of \(key)")
            } else if let g {
                XCTAssertEqual(try g.abs().amax().item(), 0, "\(c.name): \(key) has a gradient; Python's has none")
            }
        }
        XCTAssertGreaterThan(compared, deltaKeys.count / 2, c.name)
        print("peft \(oracleName) \(c.name): \(compared) gradients, worst relative max error \(worst)")

        try model.move(to: .cpu, dtype: .float32)
        // Swift writes a changed delta; Python loads it (.pth and .safetensors) and gets Swift's logits.
        try Torch.withNoGrad {
            for (key, t) in model.deltaStateDict() where key.hasPrefix("w_") { try t.add_(try Tensor.randn(t.shape) * 0.01) }
        }
        let swiftLogits = try Torch.withInferenceMode { try model(images).logits }
        for file in ["swift_delta.pth", "swift_delta.safetensors"] {
            try model.saveDelta(to: dir + "/" + file)
            try Oracle.run("peft_oracle.py", ["check"] + common + [dir + "/" + file])
            let python = try SafeTensors.load(at: dir + "/check.safetensors").tensors["logits"]!
            XCTAssertLessThanOrEqual(try relativeMaxError(swiftLogits, python), 1e-4, "\(c.name): \(file) in Python")
        }
        // And our own files describe themselves: a fresh model from the description reproduces the logits.
        let (tensors, own) = try DeltaFile.read(at: dir + "/swift_delta.pth")
        XCTAssertEqual(own?.peft, c.peft, c.name)
        let reloaded = try SAMModel(config: config)
        try reloaded.loadStateDict(try PyTorchCheckpoint.loadStateDict(at: dir + "/base.pth"))
        try reloaded.applyPEFT(own!.peft)
        try reloaded.loadDelta(tensors, source: "swift_delta.pth")
        let again = try Torch.withInferenceMode { try reloaded(images).logits }
        XCTAssertLessThanOrEqual(try relativeMaxError(again, swiftLogits), 1e-6, c.name)
    }

    static let small = SAMConfig(backbone: .custom, embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3], imageSize: 272)

    func testSmallConfigLoRAqvMatchesReference() throws { try run(Self.cases[0], config: Self.small, oracleName: "small") }
    func testSmallConfigLoRAqkvoMatchesReference() throws { try run(Self.cases[1], config: Self.small, oracleName: "small") }
    func testSmallConfigAdapterMatchesReference() throws { try run(Self.cases[2], config: Self.small, oracleName: "small") }
    func testSmallConfigBothMatchesReference() throws { try run(Self.cases[3], config: Self.small, oracleName: "small") }

    func testViTBAt448EveryDeltaMatchesReference() throws {
        for c in Self.cases { try run(c, config: .vitB(), oracleName: "vit_b") }
    }
}
