import Foundation

/// Loading Meta's official SAM checkpoints (`sam_vit_{b,l,h}_*.pth`) into a CrackSAM model, with the
/// CrackSAM rules (REFERENCE "Loading an official SAM checkpoint"):
/// - the num_classes-dependent decoder keys (`mask_tokens`, `output_hypernetworks_mlps`,
///   `iou_prediction_head`) are dropped and keep their fresh initialisation;
/// - `image_encoder.pos_embed` is resized from the file's grid (64×64 at 1024 px) to S/16, bilinearly;
/// - the *global* blocks' `rel_pos_h/w` are resized to 2·S/16 − 1 rows; window blocks keep 27 rows.
/// A file as `--sam` takes it: Meta's `.pth`, or a model this tool exported (`export --merge`, or the
/// full state dict), as `.pth` (its description inside, copied to a `<file>.json` sidecar) or `.safetensors` (in the
/// metadata). `format` is what the export recorded ("sam-merged", "cracksam-full"), nil for a file that
/// says nothing about itself (Meta's, or an export rewritten by another tool).
public struct SAMCheckpointFile {
    public let path: String
    public let stateDict: StateDict
    public let metadata: [String: String]
    public var format: String? { metadata["format"] }

    public static func read(at path: String) throws -> SAMCheckpointFile {
        if try SafeTensors.isSafeTensorsFile(at: path) {
            let contents = try SafeTensors.load(at: path)
            return SAMCheckpointFile(path: path, stateDict: contents.tensors, metadata: contents.metadata)
        }
        let sd = try PyTorchCheckpoint.loadStateDict(at: path)
        return SAMCheckpointFile(path: path, stateDict: sd, metadata: try PyTorchCheckpoint.description(of: path)?.metadata ?? [:])
    }

    /// What the file says about itself, without reading its tensors (a ViT-H file is 2.5 GB).
    public static func metadata(at path: String) throws -> [String: String] {
        if try SafeTensors.isSafeTensorsFile(at: path) { return try SafeTensors.metadata(at: path) }
        return try PyTorchCheckpoint.description(of: path)?.metadata ?? [:]
    }

    /// Mask tokens in the file's decoder head: Meta's SAM always has 4 (three multimask outputs and
    /// the single-mask one); a CrackSAM model has num_classes + 1.
    public var maskTokens: Int? { stateDict["mask_decoder.mask_tokens.weight"].flatMap { $0.rank == 2 ? $0.size(0) : nil } }

    /// Whether the file's decoder head was trained for CrackSAM and is to be loaded, not replaced by the
    /// fresh initialisation REFERENCE prescribes for Meta's head: an export says so, and a head whose token
    /// count is not Meta's 4 cannot be Meta's. An unmarked 4-token head (Meta's file, or an exported
    /// 3-class model that lost its description) is taken for Meta's unless `--keep-decoder-head` says otherwise.
    public var hasCrackSAMHead: Bool {
        if format == "sam-merged" || format == "cracksam-full" { return true }
        if let tokens = maskTokens { return tokens != SAMModel.metaMaskTokens }
        return false
    }
}

extension SAMModel {
    static let classDependentKeys = ["mask_tokens", "output_hypernetworks_mlps", "iou_prediction_head"]
    /// Meta's decoder: num_multimask_outputs 3, plus one token for the single mask.
    public static let metaMaskTokens = 4

    /// Which backbone a SAM state dict holds, from its patch embedding width and block count.
    public static func detectBackbone(_ stateDict: StateDict, path: String) throws -> (backbone: SAMConfig.Backbone, embedDim: Int, depth: Int) {
        guard let patch = stateDict["image_encoder.patch_embed.proj.weight"], patch.rank == 4 else {
            throw TorchError.malformedCheckpoint(path: path, reason: "no image_encoder.patch_embed.proj.weight: not a SAM checkpoint")
        }
        let blockIndices = Set(stateDict.keys.compactMap { key -> Int? in
            guard key.hasPrefix("image_encoder.blocks.") else { return nil }
            return Int(key.dropFirst("image_encoder.blocks.".count).prefix { $0 != "." })
        })
        let depth = (blockIndices.max() ?? -1) + 1
        let dim = patch.size(0)
        let backbone: SAMConfig.Backbone
        switch (dim, depth) {
        case (768, 12): backbone = .vitB
        case (1024, 24): backbone = .vitL
        case (1280, 32): backbone = .vitH
        default: backbone = .custom
        }
        return (backbone, dim, depth)
    }

    /// Loads an official SAM checkpoint by key name under the CrackSAM rules. Missing, unexpected and
    /// mis-shaped keys are thrown by name (`strict`) or returned in the report; a file of another
    /// backbone is refused saying which one it holds. The file's mask tokens, hypernetworks and IoU head
    /// are loaded too when `keepDecoderHead` says so, or, when it is nil, when the file's head is a
    /// CrackSAM one (`SAMCheckpointFile.hasCrackSAMHead`: a model this tool exported); Meta's head is
    /// replaced by the fresh initialisation.
    @discardableResult
    public func loadSAMCheckpoint(at path: String, strict: Bool = true, keepDecoderHead: Bool? = nil) throws -> LoadReport {
        try loadSAMCheckpoint(SAMCheckpointFile.read(at: path), strict: strict, keepDecoderHead: keepDecoderHead)
    }

    @discardableResult
    public func loadSAMCheckpoint(_ file: SAMCheckpointFile, strict: Bool = true, keepDecoderHead: Bool? = nil) throws -> LoadReport {
        let path = file.path
        var sd = file.stateDict
        let found = try SAMModel.detectBackbone(sd, path: path)
        let keepDecoderHead = keepDecoderHead ?? file.hasCrackSAMHead
        // A trained head for another class count would be refused key by key; say what it means instead.
        if keepDecoderHead, let tokens = file.maskTokens, tokens != config.numClasses + 1 {
            throw TorchError.malformedCheckpoint(path: path, reason: "its decoder head has \(tokens) mask tokens, "
                + "a model for \(tokens - 1) crack class(es); this one has \(config.numClasses) (pass --num-classes \(tokens - 1))")
        }
        if config.backbone != .custom && found.backbone != config.backbone {
            let what = found.backbone == .custom ? "an unknown (width \(found.embedDim), \(found.depth) blocks)" : found.backbone.rawValue
            throw TorchError.wrongBackbone(path: path, expected: config.backbone.rawValue, found: what)
        }
        if config.backbone == .custom && (found.embedDim != config.embedDim || found.depth != config.depth) {
            throw TorchError.wrongBackbone(path: path, expected: "width \(config.embedDim), \(config.depth) blocks",
                                           found: "width \(found.embedDim), \(found.depth) blocks")
        }
        try Torch.withNoGrad {
            if !keepDecoderHead {
                let own = stateDict()
                for key in sd.keys where SAMModel.classDependentKeys.contains(where: { key.contains($0) }) {
                    sd.removeValue(forKey: key)
                }
                // Dropped keys keep this model's fresh values, so a strict load still accounts for every key.
                for (key, value) in own where SAMModel.classDependentKeys.contains(where: { key.contains($0) }) {
                    sd[key] = value
                }
            }
        }
        return try loadStateDict(resizedToInputSize(sd), strict: strict, source: path)
    }

    /// A state dict of this encoder's layout trained at another input size, brought to this model's:
    /// `pos_embed` resized bilinearly to the token grid, the global blocks' `rel_pos_h/w` to 2·grid − 1
    /// rows (window blocks' tables are sized by the window and stay). Meta's checkpoints (1024 px) and
    /// this tool's full exports both go through it.
    public func resizedToInputSize(_ stateDict: StateDict) throws -> StateDict {
        var sd = stateDict
        let grid = config.gridSize
        try Torch.withNoGrad {
            if let pos = sd["image_encoder.pos_embed"], pos.rank == 4, pos.size(1) != grid || pos.size(2) != grid {
                sd["image_encoder.pos_embed"] = try pos.permute([0, 3, 1, 2]).interpolate(size: (grid, grid), mode: .bilinear)
                    .permute([0, 2, 3, 1]).contiguous()
            }
            for i in config.globalBlocks {
                for axis in ["h", "w"] {
                    let key = "image_encoder.blocks.\(i).attn.rel_pos_\(axis)"
                    guard let table = sd[key], table.rank == 2, table.size(0) != 2 * grid - 1 else { continue }
                    sd[key] = try table.unsqueeze(dim: 0).unsqueeze(dim: 0)
                        .interpolate(size: (2 * grid - 1, table.size(1)), mode: .bilinear)
                        .select(dim: 0, index: 0).select(dim: 0, index: 0).contiguous()
                }
            }
        }
        return sd
    }
}
