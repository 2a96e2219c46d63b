/// A LoRA pair: Δ(x) = B(A(x)), A: Linear(in, r) with PyTorch's default kaiming-uniform(a=√5) init,
/// B: Linear(r, out) zeros, no biases, no α/r scaling (REFERENCE). At initialisation Δ = 0.
public final class LoRAPair: Module, UnaryLayer, DeltaModule {
    public let a: Linear
    public let b: Linear

    public init(input: Int, output: Int, rank: Int) throws {
        a = try Linear(input, rank, bias: false)
        let up = try Linear(rank, output, bias: false)
        try Torch.withNoGrad { try up.weight.tensor.zero_() }
        b = up
        super.init()
        register(child: "a", a)
        register(child: "b", b)
    }

    public func forward(_ x: Tensor) throws -> Tensor { try b(a(x)) }

    /// B·A, the dense weight update it is equivalent to (out × in).
    public func mergedWeight() throws -> Tensor { try b.weight.tensor.matmul(a.weight.tensor) }
}

/// Marks the modules that are the delta (trainable even inside the frozen encoder).
public protocol DeltaModule: Module {}

/// The fused qkv projection with LoRA on any of its q, k, v slices. The base weight and bias stay at
/// `attn.qkv.weight` / `attn.qkv.bias`; the pairs live at `attn.qkv.lora_q.a.weight`, ….
public final class LoRAQKV: Module, UnaryLayer {
    public let base: Linear
    public private(set) var pairs: [PEFTConfig.Target: LoRAPair] = [:]
    let dim: Int

    public init(wrapping base: Linear, targets: [PEFTConfig.Target], rank: Int) throws {
        self.base = base
        dim = base.outFeatures / 3
        super.init()
        adopt(base)
        for t in targets where t != .o {
            let pair = try ParameterInit.withDevice(base.weight.tensor.device) { try LoRAPair(input: base.inFeatures, output: dim, rank: rank) }
            pairs[t] = pair
            register(child: "lora_\(t.rawValue)", pair)
        }
    }

    /// base(x) + [Δq | Δk | Δv], a zero block where a slice has no pair. One add over the whole output,
    /// not an add per slice of it: slicing the output would cost, in the backward, a zero-filled copy of
    /// the full gradient per slice (ViT-H: 3 × 24M elements per block and step).
    public func forward(_ x: Tensor) throws -> Tensor {
        let y = try base(x)
        let deltas = try [PEFTConfig.Target.q, .k, .v].map { try pairs[$0].map { try $0(x) } }
        guard let some = deltas.compactMap({ $0 }).first else { return y }
        let blocks = try deltas.map { try $0 ?? Tensor.zeros(some.shape, dtype: some.dtype, device: some.device) }
        return try y + Tensor.cat(blocks, dim: -1)
    }
}

/// A Linear with LoRA beside it (the attention output projection, target "o"): base(x) + B(A(x)).
/// Base keys stay at `attn.proj.weight` / `.bias`; the pair is `attn.proj.lora`.
public final class LoRALinear: Module, UnaryLayer {
    public let base: Linear
    public let pair: LoRAPair

    public init(wrapping base: Linear, rank: Int) throws {
        self.base = base
        pair = try ParameterInit.withDevice(base.weight.tensor.device) {
            try LoRAPair(input: base.inFeatures, output: base.outFeatures, rank: rank)
        }
        super.init()
        adopt(base)
        register(child: "lora", pair)
    }

    public func forward(_ x: Tensor) throws -> Tensor { try base(x) + pair(x) }
}
