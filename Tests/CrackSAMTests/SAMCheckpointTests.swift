import CrackSAM
import XCTest

/// Official-checkpoint loading under the CrackSAM rules, against PyTorch applying REFERENCE's rule.
final class SAMCheckpointTests: XCTestCase {
    let small448 = SAMConfig(backbone: .custom, embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3], imageSize: 448)

    func testOfficialStyleCheckpointResizesLikeTheReferenceRule() throws {
        let dir = try Oracle.scratch()
        try Oracle.run("sam_resize_oracle.py", ["small", "448", dir])
        let expected = try SafeTensors.load(at: dir + "/expected.safetensors").tensors
        let model = try SAMModel(config: small448)
        let fresh = try model.stateDict().mapValues { try $0.clone() }
        let report = try model.loadSAMCheckpoint(at: dir + "/official.pth")
        XCTAssertTrue(report.isClean, "\(report)")
        let loaded = model.stateDict()
        XCTAssertEqual(loaded["image_encoder.pos_embed"]?.shape, [1, 28, 28, 48])
        XCTAssertEqual(loaded["image_encoder.blocks.1.attn.rel_pos_h"]?.shape, [55, 12], "global block: 2·28−1 rows")
        XCTAssertEqual(loaded["image_encoder.blocks.0.attn.rel_pos_h"]?.shape, [27, 12], "window block keeps 27 rows")
        for (key, value) in loaded {
            if let e = expected[key] {
                try assertClose(value, e, rtol: 1e-6, atol: 1e-7, key)
            } else {
                // Class-dependent decoder keys were dropped: they keep the fresh initialisation.
                XCTAssertTrue(["mask_tokens", "output_hypernetworks_mlps", "iou_prediction_head"].contains { key.contains($0) }, key)
                try assertClose(value, fresh[key]!, rtol: 0, atol: 0, key)
            }
        }
    }

    func testCheckpointOfAnotherBackboneNamesWhatItHolds() throws {
        let dir = try Oracle.scratch()
        // The keys that identify a ViT-L (width 1024, 24 blocks), nothing else: detection must come first.
        var sd = StateDict()
        sd["image_encoder.patch_embed.proj.weight"] = try Tensor.zeros([1024, 3, 16, 16])
        for i in 0..<24 { sd["image_encoder.blocks.\(i).norm1.weight"] = try Tensor.ones([1024]) }
        try PyTorchCheckpoint.save(sd, to: dir + "/sam_vit_l.pth")
        let vitH = try SAMModel(config: .vitH(), device: .meta)
        XCTAssertThrowsError(try vitH.loadSAMCheckpoint(at: dir + "/sam_vit_l.pth")) { error in
            XCTAssertEqual(error as? TorchError, .wrongBackbone(path: dir + "/sam_vit_l.pth", expected: "vit_h", found: "vit_l"))
            XCTAssertTrue("\(error)".contains("--vit l"), "\(error)")
        }
        // A custom model asked for: the sizes found are said, and no --vit value made of them.
        let custom = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 64, depth: 4, heads: 4, globalBlocks: [1, 3], imageSize: 64), device: .meta)
        XCTAssertThrowsError(try custom.loadSAMCheckpoint(at: dir + "/sam_vit_l.pth")) { error in
            XCTAssertEqual("\(error)", "\(dir)/sam_vit_l.pth holds a width 1024, 24 blocks backbone, but width 64, 4 blocks was asked for")
        }
    }

    func testMissingAndMisshapedKeysAreReportedByName() throws {
        let dir = try Oracle.scratch()
        let model = try SAMModel(config: small448)
        var sd = model.stateDict()
        sd.removeValue(forKey: "mask_decoder.transformer.norm_final_attn.bias")
        sd["image_encoder.neck.0.weight"] = try Tensor.zeros([256, 48, 3, 3])
        sd["image_encoder.extra"] = try Tensor.zeros([1])
        try PyTorchCheckpoint.save(sd, to: dir + "/bad.pth")
        XCTAssertThrowsError(try model.loadSAMCheckpoint(at: dir + "/bad.pth")) { error in
            guard case TorchError.stateDictMismatch(let source, let report) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(source, dir + "/bad.pth")
            XCTAssertEqual(report.missing, ["mask_decoder.transformer.norm_final_attn.bias"])
            XCTAssertEqual(report.unexpected, ["image_encoder.extra"])
            XCTAssertEqual(report.mismatched, [.init(key: "image_encoder.neck.0.weight", expected: [256, 48, 1, 1], actual: [256, 48, 3, 3])])
        }
        // Non-strict: loads what fits and reports the rest.
        let report = try model.loadSAMCheckpoint(at: dir + "/bad.pth", strict: false)
        XCTAssertEqual(report.missing.count, 1)
        XCTAssertEqual(report.unexpected.count, 1)
        XCTAssertEqual(report.mismatched.count, 1)
    }

    func testParameterCountsMatchTheReferenceTable() throws {
        // Built on the meta device: shapes only, so ViT-H costs no memory.
        let expected: [(SAMConfig, Int)] = [(.vitB(), 90_874_350), (.vitL(), 308_633_838), (.vitH(), 636_524_526)]
        for (config, total) in expected {
            let model = try SAMModel(config: config, device: .meta)
            XCTAssertEqual(model.parameterCount, total, config.backbone.rawValue)
            XCTAssertEqual(model.trainableParameterCount, 3_783_918, "\(config.backbone.rawValue): head only (encoder frozen)")
        }
    }
}
