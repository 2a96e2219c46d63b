/// Exporting a fine-tuned model.
extension SAMModel {
    /// A plain SAM state dict (Meta's keys, loadable by Meta-layout code) with LoRA folded into the
    /// weights: qkv.weight's q/k/v row blocks gain B·A, proj.weight gains B·A. Adapters add a non-linear
    /// branch and cannot be folded, so a model with adapters is refused.
    public func mergedStateDict() throws -> StateDict {
        guard let delta else { return stateDict().mapValues { $0 } }
        guard !delta.config.usesAdapter else {
            throw TorchError.invalidArgument("\(delta.config.deltaType == .adapter ? "an" : "a") \(delta.config.deltaType.rawValue) delta has adapters, which cannot be merged into SAM's weights; export it unmerged")
        }
        let deltaParameters = Set(deltaSlots().map { ObjectIdentifier($0.parameter) })
        var out = StateDict()
        for (key, p) in namedSlots() where !deltaParameters.contains(ObjectIdentifier(p)) {
            out[key] = try p.tensor.detach()
        }
        try Torch.withNoGrad {
            let dim = config.embedDim
            for (i, pairs) in delta.lora.enumerated() {
                let prefix = "image_encoder.blocks.\(i).attn."
                let qkvTargets: [PEFTConfig.Target] = [.q, .k, .v]
                if qkvTargets.contains(where: { pairs[$0] != nil }), let w = out[prefix + "qkv.weight"] {
                    let blocks = try qkvTargets.map { t -> Tensor in
                        if let pair = pairs[t] { return try pair.mergedWeight() }
                        return try Tensor.zeros([dim, dim], dtype: w.dtype, device: w.device)
                    }
                    out[prefix + "qkv.weight"] = try w + Tensor.cat(blocks, dim: 0)
                }
                if let pair = pairs[.o], let w = out[prefix + "proj.weight"] {
                    out[prefix + "proj.weight"] = try w + pair.mergedWeight()
                }
            }
        }
        return out
    }
}
