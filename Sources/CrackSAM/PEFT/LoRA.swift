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

    /// base(x) + [Δq | Δk | Δv], a zero block where a slice has no pair, in two thin products and the
    /// base product. The pairs run side by side: their A's stacked, (n·r, in), then their B's laid into a
    /// (3·dim, n·r) block matrix, each in its own slice's rows and its own pair's columns. That product
    /// comes out in the fused layout with the base bias added, and the base product adds into it in
    /// place (no autograd needs that product's output). A delta per pair would write each slice, a zero
    /// slice and a concatenation, then a sum over the whole output, and its backward would cut the
    /// gradient back into strided slices.
    public func forward(_ x: Tensor) throws -> Tensor {
        let present = [PEFTConfig.Target.q, .k, .v].map { pairs[$0] }
        guard let first = present.compactMap({ $0 }).first else { return try base(x) }
        let (rank, n) = (first.a.outFeatures, present.compactMap { $0 }.count)
        let down = try Tensor.cat(present.compactMap { $0?.a.weight.tensor }, dim: 0)  // (n·r, in)
        var column = 0
        let up = try Tensor.cat(present.map { pair -> Tensor in  // (3·dim, n·r)
            guard let b = pair?.b.weight.tensor else {
                return try Tensor.zeros([dim, n * rank], dtype: first.b.weight.tensor.dtype, device: first.b.weight.tensor.device)
            }
            defer { column += rank }
            return try b.pad([column, n * rank - column - rank])
        }, dim: 0)
        // Two-dimensional, so that the in-place sum is on the product itself, not on a view of it (which
        // autograd would follow with a copy of the whole gradient).
        let flat = try x.reshape([-1, base.inFeatures])
        let h = try flat.linear(weight: down)
        // Counted as the pairs' own B products, 2·r·dim per token each: the zero blocks are no work of the model.
        let out = try FlopCounter.uncounted { try h.linear(weight: up, bias: base.bias?.autocastValue()) }
        if FlopCounter.isActive { FlopCounter.add(forward: 2 * Double(h.count) * Double(dim), operands: [h, up]) }
        try out.addLinear_(flat, weight: base.weight.autocastValue())
        return try out.view(Array(x.shape.dropLast()) + [3 * dim])
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
