/// The delta modules injected into the encoder, block by block, kept so the authors' key layout and
/// merging can address them.
public final class InjectedDelta {
    public let config: PEFTConfig
    /// lora[i][t]: block i's pair for target t.
    public internal(set) var lora: [[PEFTConfig.Target: LoRAPair]] = []
    public internal(set) var attentionAdapters: [Adapter] = []
    public internal(set) var mlpAdapters: [Adapter] = []

    init(config: PEFTConfig) { self.config = config }
}

extension SAMModel {
    /// Injects the delta into every encoder block (a tree operation: layers are wrapped in place, keys of
    /// the base weights do not move), then freezes the whole encoder except the delta. The prompt encoder
    /// and mask decoder stay trainable.
    public func applyPEFT(_ peft: PEFTConfig) throws {
        try peft.validate()
        guard delta == nil else { throw TorchError.invalidArgument("a delta is already injected into this model") }
        let injected = InjectedDelta(config: peft)
        let dim = config.embedDim
        let device = imageEncoder.posEmbed.tensor.device
        for (i, block) in imageEncoder.blocks.items.enumerated() {
            var pairs: [PEFTConfig.Target: LoRAPair] = [:]
            // LoRA first: it edits the attention's own children, which an adapter wrapper then adopts.
            if peft.usesLoRA {
                guard let attention = block.attn as? Attention else {
                    throw TorchError.invalidArgument("block \(i): attention is already wrapped")
                }
                let qkvTargets = peft.loraTargets.filter { $0 != .o }
                if !qkvTargets.isEmpty {
                    guard let qkv = attention.qkv as? Linear else { throw TorchError.invalidArgument("block \(i): qkv is already wrapped") }
                    let wrapped = try LoRAQKV(wrapping: qkv, targets: qkvTargets, rank: peft.rank)
                    attention.qkv = wrapped
                    pairs.merge(wrapped.pairs) { $1 }
                }
                if peft.loraTargets.contains(.o) {
                    guard let proj = attention.proj as? Linear else { throw TorchError.invalidArgument("block \(i): proj is already wrapped") }
                    let wrapped = try LoRALinear(wrapping: proj, rank: peft.rank)
                    attention.proj = wrapped
                    pairs[.o] = wrapped.pair
                }
            }
            injected.lora.append(pairs)
            if peft.usesAdapter {
                let attn = try SequentialAdapterAttention(wrapping: block.attn, dim: dim, middle: peft.adapterDim, device: device)
                let mlp = try ParallelAdapterMLP(wrapping: block.mlp, dim: dim, middle: peft.adapterDim, scale: peft.adapterScale,
                                                 device: device)
                block.attn = attn
                block.mlp = mlp
                injected.attentionAdapters.append(attn.adapter)
                injected.mlpAdapters.append(mlp.adapter)
            }
        }
        delta = injected
        try imageEncoder.freeze()
        for (_, module) in imageEncoder.namedModules() where module is DeltaModule { try module.unfreeze() }
        try promptEncoder.unfreeze()
        try maskDecoder.unfreeze()
    }
}
