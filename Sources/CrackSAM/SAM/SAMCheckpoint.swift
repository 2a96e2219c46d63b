import Foundation

/// Loading Meta's official SAM checkpoints (`sam_vit_{b,l,h}_*.pth`) into a CrackSAM model, with the
/// CrackSAM rules (REFERENCE "Loading an official SAM checkpoint"):
/// - the num_classes-dependent decoder keys (`mask_tokens`, `output_hypernetworks_mlps`,
///   `iou_prediction_head`) are dropped and keep their fresh initialisation;
/// - `image_encoder.pos_embed` is resized from the file's grid (64×64 at 1024 px) to S/16, bilinearly;
/// - the *global* blocks' `rel_pos_h/w` are resized to 2·S/16 − 1 rows; window blocks keep 27 rows.
extension SAMModel {
    static let classDependentKeys = ["mask_tokens", "output_hypernetworks_mlps", "iou_prediction_head"]

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
    /// backbone is refused saying which one it holds. `keepDecoderHead` loads the file's mask tokens,
    /// hypernetworks and IoU head too (for a file whose decoder already has num_classes + 1 tokens,
    /// such as an exported CrackSAM model).
    @discardableResult
    public func loadSAMCheckpoint(at path: String, strict: Bool = true, keepDecoderHead: Bool = false) throws -> LoadReport {
        var sd = try PyTorchCheckpoint.loadStateDict(at: path)
        let found = try SAMModel.detectBackbone(sd, path: path)
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
            let grid = config.gridSize
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
        return try loadStateDict(sd, strict: strict, source: path)
    }
}
