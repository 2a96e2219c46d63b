import CrackSAM
import XCTest

/// Our SAM graph against Meta's segment_anything modules with the same random weights
/// (Tests/Oracles/sam_oracle.py): image embedding, two-way transformer and CrackSAM logits.
final class SAMParityTests: XCTestCase {
    /// max |a − b| / max |b|: the "relative max error".
    func relativeMaxError(_ a: Tensor, _ b: Tensor, _ what: String = "") throws -> Double {
        XCTAssertEqual(a.shape, b.shape, what)
        let diff = try (a.to(dtype: .float64) - b.to(dtype: .float64)).abs().amax().item()
        let error = diff / max(try b.to(dtype: .float64).abs().amax().item(), 1e-30)
        print("parity \(what): relative max error \(error)")
        return error
    }

    func check(config: SAMConfig, oracleName: String, batch: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try Oracle.scratch(oracleName)
        try Oracle.run("sam_oracle.py", [oracleName, String(config.imageSize), String(batch), dir])
        let expected = try SafeTensors.load(at: dir + "/outputs.safetensors").tensors
        let model = try SAMModel(config: config)
        let report = try model.loadStateDict(try PyTorchCheckpoint.loadStateDict(at: dir + "/sam.pth"), source: "sam.pth")
        XCTAssertTrue(report.isClean, "\(report)", file: file, line: line)

        try Torch.withInferenceMode {
            let out = try model(expected["images"]!)
            let tolerance = 1e-4
            XCTAssertLessThanOrEqual(try relativeMaxError(out.imageEmbedding, expected["embedding"]!, "\(oracleName) embedding"), tolerance, "embedding",
                                     file: file, line: line)
            XCTAssertLessThanOrEqual(try relativeMaxError(model.promptEncoder.densePositionalEncoding(), expected["dense_pe"]!, "\(oracleName) dense PE"),
                                     tolerance, "dense positional encoding", file: file, line: line)
            // The transformer on Meta's exact inputs, so its error is its own.
            let (hs, keys) = try model.maskDecoder.transformer(image: expected["src"]!, imagePE: expected["pos"]!,
                                                               tokens: expected["tokens"]!)
            XCTAssertLessThanOrEqual(try relativeMaxError(hs, expected["hs"]!, "\(oracleName) transformer tokens"), tolerance, "transformer tokens", file: file, line: line)
            XCTAssertLessThanOrEqual(try relativeMaxError(keys, expected["keys"]!, "\(oracleName) transformer image"), tolerance, "transformer image", file: file, line: line)
            XCTAssertEqual(out.logits.shape, [batch, 2, config.imageSize, config.imageSize], file: file, line: line)
            XCTAssertLessThanOrEqual(try relativeMaxError(out.logits, expected["logits"]!, "\(oracleName) logits"), tolerance, "logits", file: file, line: line)
            XCTAssertLessThanOrEqual(try relativeMaxError(out.iou(), expected["iou"]!, "\(oracleName) iou"), tolerance, "iou", file: file, line: line)
        }
    }

    func testSmallConfigWithPaddedWindowsMatchesMeta() throws {
        // 272 px → 17×17 tokens: windows pad to 28; blocks 1 and 3 global.
        let config = SAMConfig(backbone: .custom, embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3], imageSize: 272)
        try check(config: config, oracleName: "small", batch: 2)
    }

    func testViTBAt448MatchesMeta() throws {
        try check(config: .vitB(imageSize: 448), oracleName: "vit_b", batch: 1)
    }

    func testStateDictKeysAreMetasAndTheEncoderIsFrozen() throws {
        let model = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3],
                                                   imageSize: 272))
        let keys = Array(model.stateDict().keys)
        XCTAssertEqual(keys.first, "image_encoder.pos_embed")
        XCTAssertTrue(keys.contains("image_encoder.blocks.1.attn.rel_pos_h"))
        XCTAssertTrue(keys.contains("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"))
        XCTAssertTrue(keys.contains("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"))
        XCTAssertEqual(model.stateDict()["image_encoder.blocks.1.attn.rel_pos_h"]?.shape, [33, 12], "global: 2·17−1 rows")
        XCTAssertEqual(model.stateDict()["image_encoder.blocks.0.attn.rel_pos_h"]?.shape, [27, 12], "window: 2·14−1 rows")
        XCTAssertFalse(model.imageEncoder.namedParameters().contains { $0.parameter.isTrainable })
        XCTAssertEqual(model.trainableParameterCount, model.promptEncoder.parameterCount + model.maskDecoder.parameterCount)
    }

    /// bfloat16 would merge neighbouring 8-bit levels of a normalized image (8 significant bits), so the
    /// patch embedding runs in float32 under autocast: the same output as without autocast, bit for bit.
    func testUnderAutocastTheImageIsEmbeddedInFloat32() throws {
        let embed = try PatchEmbed(patchSize: 16, embedDim: 32)
        let levels = try Tensor.randint(0, 256, shape: [2, 3, 32, 32]).to(dtype: .float32)
        let images = try (levels - 123.675) * (1 / 58.395)
        let plain = try embed(images)
        for dtype in [DType.bfloat16, .float16] {
            let (mixed, after) = try Torch.withAutocast(device: .cpu, dtype: dtype) {
                (try embed(images), Torch.autocastDType(device: .cpu))
            }
            XCTAssertEqual(mixed.dtype, .float32)
            try assertClose(mixed, plain, rtol: 0, atol: 0, "patch embedding under \(dtype) autocast")
            XCTAssertEqual(after, dtype, "autocast is back on for the layers after it")
        }
    }

    func testWrongInputShapeIsAClearError() throws {
        let model = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 48, depth: 2, heads: 4, globalBlocks: [1],
                                                   imageSize: 64))
        XCTAssertThrowsError(try model(try Tensor.zeros([1, 3, 32, 32]))) { error in
            XCTAssertTrue("\(error)".contains("[B, 3, 64, 64]"), "\(error)")
        }
    }
}
