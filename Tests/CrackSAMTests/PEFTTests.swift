import CrackSAM
import Foundation
import XCTest

/// Delta handling beyond numerical parity: merging, refusals, descriptions, and the CLI.
final class PEFTTests: XCTestCase {
    let small = SAMConfig(backbone: .custom, embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3], imageSize: 64)

    /// A model with every delta weight random (LoRA's B starts at zero, which would hide mistakes).
    func randomDeltaModel(_ peft: PEFTConfig) throws -> SAMModel {
        try Torch.manualSeed(7)
        let model = try SAMModel(config: small)
        try model.applyPEFT(peft)
        try Torch.withNoGrad {
            for (key, t) in model.deltaStateDict() where key.hasPrefix("w_") { try t.copy_(try Tensor.randn(t.shape) * 0.05) }
        }
        return model
    }

    /// A custom model's weights saved as dir/base.pth (Meta's layout), and a model of that config with a
    /// random delta: a delta trained on a --sam file's custom encoder.
    func baseFileAndDeltaModel(_ dir: String, _ peft: PEFTConfig) throws -> SAMModel {
        try Torch.manualSeed(3)
        try PyTorchCheckpoint.save(try SAMModel(config: small).stateDict(), to: dir + "/base.pth")
        return try randomDeltaModel(peft)
    }

    func testMergedLoRAGivesTheUnmergedLogits() throws {
        let model = try randomDeltaModel(PEFTConfig(deltaType: .lora, rank: 8, loraTargets: [.q, .k, .v, .o]))
        let images = try Tensor.rand([2, 3, 64, 64])
        let unmerged = try Torch.withInferenceMode { try model(images).logits }
        let merged = try model.mergedStateDict()
        XCTAssertFalse(merged.keys.contains { $0.contains("lora") })
        let plain = try SAMModel(config: small)
        try plain.loadStateDict(merged)
        let logits = try Torch.withInferenceMode { try plain(images).logits }
        let err = try (logits - unmerged).abs().amax().item() / unmerged.abs().amax().item()
        XCTAssertLessThanOrEqual(err, 1e-4)
    }

    /// A model and its delta built inside `ParameterInit.withDevice` are wholly on that device (the meta
    /// device here, so the check runs without a GPU): `bench` builds its CUDA model this way, and one
    /// weight left on the CPU fails there (autocast casts only CUDA tensors).
    func testAModelBuiltForADeviceHasEveryWeightThere() throws {
        for peft in [PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .k, .v, .o]), PEFTConfig(deltaType: .adapter)] {
            let model = try ParameterInit.withDevice(.meta) { () throws -> SAMModel in
                let model = try SAMModel(config: small)
                try model.applyPEFT(peft)
                return model
            }
            let elsewhere = model.namedSlots().filter { $0.parameter.tensor.device != .meta }.map(\.key)
            XCTAssertEqual(elsewhere.count, 0, "\(peft.deltaType): \(elsewhere.count) weights not on the meta device, e.g. \(elsewhere.prefix(3))")
            XCTAssertGreaterThan(model.namedSlots().count, 100)
        }
    }

    /// `withDevice` is scoped to its thread, as `with torch.device` is: a model built on another thread
    /// meanwhile gets the default device, and the scope ends where it began.
    func testParameterDeviceIsPerThread() throws {
        final class Result: @unchecked Sendable { var device: Device? }  // written before `finished` is signalled
        let inside = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        let result = Result()
        let thread = Thread {
            result.device = try? ParameterInit.withDevice(.meta) { () throws -> Device in
                inside.signal()
                done.wait()
                return try Linear(4, 4).weight.tensor.device
            }
            finished.signal()
        }
        thread.start()
        inside.wait()
        let here = try Linear(4, 4).weight.tensor.device
        done.signal()
        finished.wait()
        XCTAssertEqual(here, .cpu, "another thread's withDevice(.meta) leaked into this one")
        XCTAssertEqual(result.device, .meta)
        XCTAssertEqual(try Linear(2, 2).weight.tensor.device, .cpu)
    }

    /// Under autocast a block casts its normalized tokens once, so the LoRA pairs beside the frozen qkv
    /// read them as they are: wrapping qkv with q and v pairs adds two casts, of the pairs' stacked A's
    /// and of their B's block matrix, and no cast of the activations (each would be a copy forward and
    /// another backward).
    func testLoRAUnderAutocastCastsOnlyItsOwnWeights() throws {
        func casts(_ block: Block) throws -> Int {
            let x = try Tensor.randn([2, 14, 14, 32])
            let (_, profile) = try Profiler.record(cuda: false) {
                try Torch.withAutocast(device: .cpu, dtype: .bfloat16) { try block(x) }
            }
            return profile.opsBySelfHostTime().first { $0.name == "aten::_to_copy" }?.calls ?? 0
        }
        let block = try Block(dim: 32, heads: 2, mlpRatio: 4, windowSize: 7, gridSize: 14)
        _ = try casts(block)  // the first call also makes the attention's constants (one-hot key columns, …)
        let plain = try casts(block)
        let attn = try XCTUnwrap(block.attn as? Attention)
        attn.qkv = try LoRAQKV(wrapping: try XCTUnwrap(attn.qkv as? Linear), targets: [.q, .v], rank: 4)
        XCTAssertEqual(try casts(block), plain + 2)
    }

    /// A frozen Linear under autocast keeps its weights' cast from one autocast region to the next (a
    /// training step each), and makes it again when a weight changes in place or is replaced, or when
    /// inference mode is left, so what it computes is always its current weights'.
    func testFrozenWeightsKeepTheirCastAcrossSteps() throws {
        let linear = try Linear(16, 8)
        try linear.freeze()
        let x = try Tensor.randn([4, 16])
        func run() throws -> (y: Tensor, casts: Int) {
            let (y, profile) = try Profiler.record(cuda: false) {
                try Torch.withAutocast(device: .cpu, dtype: .bfloat16) { try linear(x) }
            }
            return (y, profile.opsBySelfHostTime().first { $0.name == "aten::_to_copy" }?.calls ?? 0)
        }
        func expected() throws -> Tensor {
            try x.to(dtype: .bfloat16).linear(weight: linear.weight.tensor.to(dtype: .bfloat16),
                                              bias: linear.bias!.tensor.to(dtype: .bfloat16))
        }
        XCTAssertEqual(try run().casts, 3, "the first step casts x, the weight and the bias")
        XCTAssertEqual(try run().casts, 1, "later steps cast only x")
        try Torch.withNoGrad { try linear.weight.tensor.mul_(2) }
        var (y, casts) = try run()
        XCTAssertEqual(casts, 2, "the weight changed in place: cast again")
        try assertClose(y, try expected(), rtol: 0, atol: 0, "after an in-place change")
        try linear.loadStateDict(["weight": try Tensor.randn([8, 16]), "bias": try Tensor.randn([8])])
        (y, casts) = try run()
        XCTAssertEqual(casts, 3, "both replaced: cast again")
        try assertClose(y, try expected(), rtol: 0, atol: 0, "after loading")
        // Evaluated in inference mode, then trained: the copy made in inference mode is not reused.
        _ = try Torch.withInferenceMode { try Torch.withAutocast(device: .cpu, dtype: .bfloat16) { try linear(x) } }
        let input = try x.clone().requiresGrad(true)
        try Torch.withAutocast(device: .cpu, dtype: .bfloat16) { try linear(input).to(dtype: .float32).sum() }.backward()
        XCTAssertNotNil(try input.grad)
        // A weight that trains is left to autocast's own cache.
        try linear.unfreeze()
        XCTAssertEqual(try run().casts, 3)
        // So is one made in inference mode (it has no version counter).
        let made = try Torch.withInferenceMode { () -> Linear in
            let l = try Linear(16, 8)
            try l.freeze()
            return l
        }
        let out = try Torch.withInferenceMode { try Torch.withAutocast(device: .cpu, dtype: .bfloat16) { try made(x) } }
        XCTAssertEqual(out.dtype, DType.bfloat16)
    }

    func testAdaptersCannotBeMergedAndSayWhy() throws {
        for type in [PEFTConfig.DeltaType.adapter, .both] {
            let model = try randomDeltaModel(PEFTConfig(deltaType: type))
            XCTAssertThrowsError(try model.mergedStateDict()) { error in
                XCTAssertTrue("\(error)".contains("cannot be merged"), "\(error)")
            }
        }
    }

    func testFreezingLeavesExactlyTheDeltaAndTheHeadTrainable() throws {
        let model = try randomDeltaModel(PEFTConfig(deltaType: .both))
        let trainable = Set(model.trainableParameters().map(\.key))
        for key in trainable where key.hasPrefix("image_encoder.") {
            XCTAssertTrue(key.contains(".adapter.") || key.contains(".lora"), "\(key) should be frozen")
        }
        XCTAssertTrue(trainable.contains("image_encoder.blocks.0.attn.qkv.lora_q.a.weight"))
        XCTAssertTrue(trainable.contains("image_encoder.blocks.3.mlp.adapter.up.bias"))
        XCTAssertFalse(trainable.contains("image_encoder.blocks.0.attn.qkv.weight"))
        XCTAssertFalse(trainable.contains("image_encoder.neck.0.weight"))
        XCTAssertTrue(trainable.contains("mask_decoder.iou_token.weight"))
        XCTAssertTrue(trainable.contains("prompt_encoder.no_mask_embed.weight"))
        // Official keys did not move: a plain SAM state dict still loads into the injected model by name.
        let keys = Set(model.stateDict().keys)
        XCTAssertTrue(keys.contains("image_encoder.blocks.0.attn.qkv.weight"))
        XCTAssertTrue(keys.contains("image_encoder.blocks.0.attn.rel_pos_h"))
        XCTAssertTrue(keys.contains("image_encoder.blocks.0.mlp.lin1.weight"))
        XCTAssertThrowsError(try model.applyPEFT(PEFTConfig()), "a second injection is refused")
    }

    func testADeltaOfTheWrongShapeNamesKeyAndShapes() throws {
        let r4 = try randomDeltaModel(PEFTConfig(deltaType: .lora, rank: 4))
        let r8 = try randomDeltaModel(PEFTConfig(deltaType: .lora, rank: 8))
        XCTAssertThrowsError(try r8.loadDelta(r4.deltaStateDict(), source: "r4.pth")) { error in
            guard case TorchError.stateDictMismatch(let source, let report) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(source, "r4.pth")
            XCTAssertTrue(report.mismatched.contains(.init(key: "w_a_000", expected: [8, 48], actual: [4, 48])), "\(report)")
            XCTAssertTrue("\(error)".contains("w_a_000: model has shape [8, 48], file has [4, 48]"), "\(error)")
        }
        let adapter = try randomDeltaModel(PEFTConfig(deltaType: .adapter))
        XCTAssertThrowsError(try adapter.loadDelta(r4.deltaStateDict(), source: "lora.pth")) { error in
            guard case TorchError.stateDictMismatch(_, let report) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(report.missing.contains("w_c_000"), "\(report)")
        }
    }

    func testDeltaFilesDescribeThemselves() throws {
        let dir = try Oracle.scratch()
        let peft = PEFTConfig(deltaType: .both, rank: 2, loraTargets: [.k, .o], adapterDim: 8, adapterScale: 0.5)
        let model = try randomDeltaModel(peft)
        for file in ["d.pth", "d.safetensors"] {
            try model.saveDelta(to: dir + "/" + file)
            let (tensors, description) = try DeltaFile.read(at: dir + "/" + file)
            // A custom backbone's sizes go with it; the seed only where the model says what it was drawn with.
            let custom = DeltaDescription.CustomBackbone(embedDim: 48, depth: 4, heads: 4, globalBlocks: [1, 3], patchSize: 16)
            XCTAssertEqual(description, DeltaDescription(peft: peft, backbone: "custom", imageSize: 64, numClasses: 1, customBackbone: custom), file)
            XCTAssertEqual(Array(tensors.keys), Array(model.deltaStateDict().keys), file)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/d.pth.json"))
        model.initSeed = 11
        try model.saveDelta(to: dir + "/seeded.safetensors")
        XCTAssertEqual(try DeltaFile.read(at: dir + "/seeded.safetensors").description?.initSeed, 11)
        // Files written before the sizes were kept still read, without them.
        var meta = try XCTUnwrap(DeltaFile.read(at: dir + "/d.pth").description).metadata
        for key in ["embed_dim", "depth", "heads", "global_blocks", "patch_size"] { meta[key] = nil }
        XCTAssertNil(try DeltaDescription(metadata: meta, source: "old.json").customBackbone)
        meta["embed_dim"] = "48"
        XCTAssertThrowsError(try DeltaDescription(metadata: meta, source: "partial.json")) { error in
            XCTAssertEqual("\(error)", "partial.json: malformed checkpoint: delta description lacks 'global_blocks'")
        }
    }

    /// A custom encoder is in no delta: one trained on a --sam file's encoder needs that file again, and
    /// one trained on drawn weights refuses a file. Either ran on the other encoder without a word.
    func testACustomDeltaRunsOnlyOnTheEncoderItWasTrainedOn() throws {
        let dir = try Oracle.scratch()
        let model = try baseFileAndDeltaModel(dir, PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        try model.saveDelta(to: dir + "/onfile.pth")
        model.initSeed = 11
        try model.saveDelta(to: dir + "/drawn.pth")
        let pixels = (0..<(64 * 64 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try Image(width: 64, height: 64, channels: 3, pixels: pixels).write(to: dir + "/a.png")
        var out = try crackCLI(["predict", "--delta", dir + "/onfile.pth", dir + "/a.png"], expectSuccess: false)
        XCTAssertTrue(out.contains("onfile.pth was trained on the custom encoder of a checkpoint file (train --sam), which the delta "
            + "does not hold: pass that file as --sam"), out)
        out = try crackCLI(["predict", "--sam", dir + "/base.pth", "--delta", dir + "/drawn.pth", dir + "/a.png"], expectSuccess: false)
        XCTAssertTrue(out.contains("drawn.pth was trained on a custom encoder drawn at random (seed 11), not on a file's: it does not fit --sam"), out)
        out = try crackCLI(["export", "--delta", dir + "/onfile.pth", "--delta-only", "--out", dir + "/again.pth"], expectSuccess: false)
        XCTAssertTrue(out.contains("pass that file as --sam"), out)
        // Each on its own encoder runs.
        XCTAssertTrue(try crackCLI(["predict", "--sam", dir + "/base.pth", "--delta", dir + "/onfile.pth", dir + "/a.png"]).contains("crack pixels"))
        XCTAssertTrue(try crackCLI(["predict", "--delta", dir + "/drawn.pth", dir + "/a.png"]).contains("crack pixels"))
        // Beside such a delta, eval's untrained row is measured at the delta's input size too (it ran at the
        // default 448 px beside a 64 px delta); deltas of two sizes leave it no one size.
        try makeTestDataset(dir + "/data", count: 2)
        out = try crackCLI(["eval", "--sam", dir + "/base.pth", "--delta", dir + "/onfile.pth", "--delta", "none", "--dataset", "D=" + dir + "/data"])
        XCTAssertTrue(out.contains("untrained: the custom encoder the deltas beside it were trained on (embed 48, depth 4, heads 4, "
            + "global blocks 1,3, patch 16, 64 px, weights of \(dir)/base.pth)"), out)
        var config32 = small
        config32.imageSize = 32
        let at32 = try SAMModel(config: config32)
        try at32.applyPEFT(PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        try at32.saveDelta(to: dir + "/at32.pth")
        out = try crackCLI(["eval", "--sam", dir + "/base.pth", "--delta", dir + "/onfile.pth", "--delta", dir + "/at32.pth", "--delta", "none",
                            "--dataset", "D=" + dir + "/data"], expectSuccess: false)
        XCTAssertTrue(out.contains("onfile.pth was trained at 64 px and \(dir)/at32.pth at 32 px; pass --image-size"), out)
        XCTAssertTrue(try crackCLI(["eval", "--sam", dir + "/base.pth", "--delta", dir + "/onfile.pth", "--delta", dir + "/at32.pth", "--delta", "none",
                                    "--image-size", "64", "--dataset", "D=" + dir + "/data"]).contains("| at32 | D | clean |"))
    }

    /// A merged export records what was folded into it, and no LoRA sizes of its own (it recorded the
    /// defaults, rank 4 on q,v, whatever was merged); a description read back without a kind's sizes is whole.
    func testAMergedExportRecordsTheDeltaItHolds() throws {
        let dir = try Oracle.scratch()
        let model = try baseFileAndDeltaModel(dir, PEFTConfig(deltaType: .lora, rank: 3, loraTargets: [.k, .o]))
        try model.saveDelta(to: dir + "/d.pth")
        // An export killed mid-write left its temporary file for good: the next export into the folder removes it.
        let leftover = dir + "/.m.pth.tmp-\(Int32.max - 7)-12345"
        try Data(count: 1000).write(to: URL(fileURLWithPath: leftover))
        try crackCLI(["export", "--sam", dir + "/base.pth", "--delta", dir + "/d.pth", "--merge", "--out", dir + "/m.pth"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
        let metadata = try SAMCheckpointFile.metadata(at: dir + "/m.pth")
        XCTAssertEqual(metadata["delta_type"], "none")
        XCTAssertEqual(metadata["merged_delta_type"], "lora")
        XCTAssertEqual(metadata["merged_rank"], "3")
        XCTAssertEqual(metadata["merged_lora_targets"], "ko")
        XCTAssertNil(metadata["rank"])
        XCTAssertNil(metadata["lora_targets"])
        let read = try DeltaDescription(metadata: metadata, source: "m.pth")
        XCTAssertEqual(read.peft.deltaType, .none)
        XCTAssertEqual(read.backbone, "custom")
    }

    /// A PEFT flag that contradicts a delta's description is refused (LoRA on q,k for a q,v delta loaded
    /// v's weights as k's); one with no delta to load is refused (a fresh adapter is random), except for
    /// eval's untrained row beside deltas, which takes none.
    func testPEFTFlagsAgreeWithTheDeltaAndNeedOne() throws {
        let dir = try Oracle.scratch()
        let model = try randomDeltaModel(PEFTConfig(deltaType: .both, rank: 2, loraTargets: [.q, .v], adapterDim: 8, adapterScale: 0.5))
        model.initSeed = 5
        try model.saveDelta(to: dir + "/d.pth")
        let pixels = (0..<(64 * 64 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 5) }
        try Image(width: 64, height: 64, channels: 3, pixels: pixels).write(to: dir + "/a.png")
        let refusals: [([String], String)] = [
            (["--lora-targets", "qk"], "d.pth records --lora-targets qv (the delta it was trained with), but --lora-targets qk was given"),
            (["--adapter-scale", "0.9"], "records --adapter-scale 0.5"),
            (["--rank", "4"], "records --rank 2"),
            (["--delta-type", "lora"], "records --delta-type both"),
        ]
        for (flags, expected) in refusals {
            let out = try crackCLI(["predict", "--delta", dir + "/d.pth"] + flags + [dir + "/a.png"], expectSuccess: false)
            XCTAssertTrue(out.contains(expected), "\(flags): \(out)")
        }
        // The recorded values, or the same targets in another order, are no contradiction.
        let same = try crackCLI(["predict", "--delta", dir + "/d.pth", "--lora-targets", "vq", "--adapter-scale", "0.5", "--rank", "2",
                                 "--save-logits", dir + "/same.safetensors", dir + "/a.png"])
        XCTAssertTrue(same.contains("crack pixels"), same)
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "1", "--heads", "2", "--global-blocks", "0", "--image-size", "32"]
        var out = try crackCLI(["predict"] + tiny + ["--delta-type", "adapter", dir + "/a.png"], expectSuccess: false)
        XCTAssertTrue(out.contains("--delta-type without --delta: there is no trained delta to load it into"), out)
        out = try crackCLI(["export", "--delta", dir + "/d.pth", "--lora-targets", "qk", "--delta-only", "--out", dir + "/e.pth"],
                           expectSuccess: false)
        XCTAssertTrue(out.contains("records --lora-targets qv"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/e.pth"))
        try makeTestDataset(dir + "/data", count: 2)
        out = try crackCLI(["eval"] + tiny + ["--delta-type", "adapter", "--dataset", "D=" + dir + "/data"], expectSuccess: false)
        XCTAssertTrue(out.contains("--delta-type adapter is for the deltas, but no model evaluated has one"), out)
    }

    func testCLIPredictWithDeltaAndExports() throws {
        let dir = try Oracle.scratch()
        try Oracle.run("peft_oracle.py", ["files", "vit_b", "448", "lora", "4", "qv", "32", "0.2", dir])
        var paths: [String] = []
        for i in 0..<2 {
            let pixels = (0..<(448 * 448 * 3)).map { (j: Int) -> UInt8 in UInt8(truncatingIfNeeded: j &* (7 + i) &+ j / 1344) }
            try Image(width: 448, height: 448, channels: 3, pixels: pixels).write(to: dir + "/img\(i).png")
            paths.append(dir + "/img\(i).png")
        }
        // The library's LoRA model on the same files is the reference for the CLI.
        let model = try SAMModel(config: .vitB())
        try model.loadSAMCheckpoint(at: dir + "/base.pth")
        try model.applyPEFT(PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        try model.loadDelta(try DeltaFile.read(at: dir + "/delta.pth").tensors, source: "delta.pth")
        let images = try Tensor.stack(paths.map { try Preprocess.image(at: $0, size: 448) })
        let reference = try Torch.withInferenceMode { try model(images).logits }
        func relErr(_ a: Tensor) throws -> Double { try (a - reference).abs().amax().item() / reference.abs().amax().item() }

        // predict: no --vit, no delta flags: all read from the authors' file, and what its keys cannot show is said.
        let said = try crackCLI(["predict", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", "--save-logits", dir + "/l.safetensors"] + paths)
        XCTAssertTrue(said.contains("delta.pth carries no description (none inside it, no \(dir)/delta.pth.json): read from its keys as a lora delta, "
            + "assuming the authors' LoRA on q and v (--lora-targets)"), said)
        XCTAssertLessThanOrEqual(try relErr(try SafeTensors.load(at: dir + "/l.safetensors").tensors["logits"]!), 1e-5)

        // --merge: Meta's own model loads it strictly and gives the unmerged LoRA logits.
        try crackCLI(["export", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", "--merge", "--out", dir + "/merged.pth"])
        try Oracle.run("meta_load_oracle.py", ["vit_b", "448", dir + "/merged.pth", dir + "/meta.safetensors"] + paths)
        let metaLogits = try SafeTensors.load(at: dir + "/meta.safetensors").tensors["logits"]!
        XCTAssertLessThanOrEqual(try relErr(metaLogits), 1e-4, "merged model in Meta's code")
        let refused = try crackCLI(["export", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", "--merge",
                                   "--out", dir + "/merged.pth"], expectSuccess: false)
        XCTAssertTrue(refused.contains("exists; pass --force"), refused)
        try crackCLI(["export", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", "--merge", "--force",
                     "--out", dir + "/merged.pth"])

        // Full state dict (unmerged, delta under its own keys) and delta-only.
        try crackCLI(["export", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", "--out", dir + "/full.safetensors"])
        let full = try SafeTensors.load(at: dir + "/full.safetensors")
        XCTAssertEqual(full.metadata["delta_type"], "lora")
        XCTAssertTrue(full.tensors.keys.contains("image_encoder.blocks.0.attn.qkv.lora_q.a.weight"))
        let again = try SAMModel(config: .vitB())
        try again.applyPEFT(PEFTConfig(deltaType: .lora, rank: 4, loraTargets: [.q, .v]))
        try again.loadStateDict(full.tensors)
        XCTAssertLessThanOrEqual(try relErr(try Torch.withInferenceMode { try again(images).logits }), 1e-6)
        try crackCLI(["export", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", "--delta-only", "--out", dir + "/d.pth"])
        XCTAssertEqual(Set(try PyTorchCheckpoint.loadStateDict(at: dir + "/d.pth").keys),
                       Set(try PyTorchCheckpoint.loadStateDict(at: dir + "/delta.pth").keys))

        // Exports load back with --sam alone, trained decoder head included (it used to be replaced by
        // the fresh initialisation meant for Meta's head, without a word).
        try crackCLI(["predict", "--sam", dir + "/merged.pth", "--save-logits", dir + "/lm.safetensors"] + paths)
        XCTAssertLessThanOrEqual(try relErr(try SafeTensors.load(at: dir + "/lm.safetensors").tensors["logits"]!), 1e-4, "merged, via --sam")
        try crackCLI(["predict", "--sam", dir + "/full.safetensors", "--save-logits", dir + "/lf.safetensors"] + paths)
        XCTAssertLessThanOrEqual(try relErr(try SafeTensors.load(at: dir + "/lf.safetensors").tensors["logits"]!), 1e-5, "full, via --sam")
        // Where a delta goes, an export is named for what it is.
        let asDelta = try crackCLI(["predict", "--sam", dir + "/base.pth", "--delta", dir + "/merged.pth", paths[0]], expectSuccess: false)
        XCTAssertTrue(asDelta.contains("it is a merged export (export --merge: SAM weights with the delta folded in), not a delta; "
            + "pass it as --sam " + dir + "/merged.pth"), asDelta)
        let twice = try crackCLI(["predict", "--sam", dir + "/full.safetensors", "--delta", dir + "/delta.pth", paths[0]], expectSuccess: false)
        XCTAssertTrue(twice.contains("is a full export: it holds its delta already; drop --delta"), twice)
        let folded = try crackCLI(["predict", "--sam", dir + "/merged.pth", "--delta", dir + "/delta.pth", paths[0]], expectSuccess: false)
        XCTAssertTrue(folded.contains("is a merged export: its delta is folded into its weights already; drop --delta"), folded)
        // A full .pth export carries its description inside: its sidecar is a copy, and the file alone loads.
        try crackCLI(["export", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", "--out", dir + "/full.pth"])
        try FileManager.default.removeItem(atPath: dir + "/full.pth.json")
        try crackCLI(["predict", "--sam", dir + "/full.pth", "--save-logits", dir + "/lp.safetensors"] + paths)
        XCTAssertLessThanOrEqual(try relErr(try SafeTensors.load(at: dir + "/lp.safetensors").tensors["logits"]!), 1e-5, "full .pth alone")
        // Rewritten by another tool (the state dict alone), it is named for what it is.
        try PyTorchCheckpoint.save(try PyTorchCheckpoint.loadStateDict(at: dir + "/full.pth"), to: dir + "/bare.pth")
        let bare = try crackCLI(["predict", "--vit", "b", "--sam", dir + "/bare.pth", paths[0]], expectSuccess: false)
        XCTAssertTrue(bare.contains("holds a delta in its weights (image_encoder.blocks.0.attn.qkv.lora_q.a.weight): a full export whose "
            + "description (inside it, or its sidecar \(dir)/bare.pth.json) is missing"), bare)

        // A delta for another backbone is named.
        let wrong = try crackCLI(["predict", "--vit", "h", "--sam", dir + "/base.pth", "--delta", dir + "/delta.pth", paths[0]],
                                expectSuccess: false)
        XCTAssertTrue(wrong.contains("trained on vit_b"), wrong)
    }
}
