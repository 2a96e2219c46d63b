/// The encoder MLP: lin1 (D→4D), exact GELU, lin2 (4D→D). Meta's `MLPBlock`.
public final class MLPBlock: Module, UnaryLayer {
    public var lin1: UnaryLayer { didSet { register(child: "lin1", lin1) } }
    public var lin2: UnaryLayer { didSet { register(child: "lin2", lin2) } }
    let activation: (Tensor) throws -> Tensor

    public init(dim: Int, hidden: Int, relu: Bool = false) throws {
        lin1 = try Linear(dim, hidden)
        lin2 = try Linear(hidden, dim)
        activation = relu ? { try $0.relu() } : { try $0.gelu() }
        super.init()
        register(child: "lin1", lin1)
        register(child: "lin2", lin2)
    }

    public func forward(_ x: Tensor) throws -> Tensor { try lin2(activation(lin1(x))) }
}

/// One ViT block: x + attn(norm1(x)) (in 14×14 windows unless global), then x + mlp(norm2(x)).
/// Tokens stay channels-last, (B, H, W, D), as in Meta's encoder.
public final class Block: Module, UnaryLayer {
    public let norm1: LayerNorm
    /// Replaceable: the adapter wraps attention (sequential) and the MLP (parallel).
    public var attn: UnaryLayer { didSet { register(child: "attn", attn) } }
    public let norm2: LayerNorm
    public var mlp: UnaryLayer { didSet { register(child: "mlp", mlp) } }
    /// 0 for a global block.
    public let windowSize: Int

    public init(dim: Int, heads: Int, mlpRatio: Int, windowSize: Int, gridSize: Int) throws {
        self.windowSize = windowSize
        norm1 = try LayerNorm(dim, eps: 1e-6)
        attn = try Attention(dim: dim, heads: heads, gridSize: windowSize > 0 ? windowSize : gridSize)
        norm2 = try LayerNorm(dim, eps: 1e-6)
        mlp = try MLPBlock(dim: dim, hidden: dim * mlpRatio)
        super.init()
        register(child: "norm1", norm1)
        register(child: "attn", attn)
        register(child: "norm2", norm2)
        register(child: "mlp", mlp)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        var h = try lowered(norm1(x))
        if windowSize > 0 {
            let (height, width) = (x.size(1), x.size(2))
            let (windows, padded) = try windowPartition(h)
            h = try windowUnpartition(attn(windows), padded: padded, original: (height, width), batch: x.size(0))
        } else {
            h = try attn(h)
        }
        let y = try x + h
        return try y + mlp(lowered(norm2(y)))
    }

    /// Under autocast, the normalized tokens in autocast's dtype. Layer norm hands back float32, and
    /// every projection that reads them would cast them again on its own (qkv and each LoRA pair beside
    /// it; lin1 and a parallel adapter), each cast with its own backward, while the window copy would
    /// move them in float32. Cast once here, the projections compute exactly what they did, and only
    /// the gradient of these tokens is summed in the lower precision.
    func lowered(_ t: Tensor) throws -> Tensor {
        guard t.dtype == .float32, let low = Torch.autocastDType(device: t.device) else { return t }
        return try t.to(dtype: low)
    }

    /// (B, H, W, C) → (B·nWindows, ws, ws, C), zero-padding H and W up to multiples of ws first.
    func windowPartition(_ x: Tensor) throws -> (Tensor, (Int, Int)) {
        let s = x.shape
        let (b, h, w, c) = (s[0], s[1], s[2], s[3])
        let ws = windowSize
        let padH = (ws - h % ws) % ws, padW = (ws - w % ws) % ws
        let padded = padH > 0 || padW > 0 ? try x.pad([0, 0, 0, padW, 0, padH]) : x
        let (hp, wp) = (h + padH, w + padW)
        let windows = try padded.view([b, hp / ws, ws, wp / ws, ws, c]).permute([0, 1, 3, 2, 4, 5]).contiguous()
            .view([-1, ws, ws, c])
        return (windows, (hp, wp))
    }

    /// Inverse of windowPartition, cropping the padding away.
    func windowUnpartition(_ windows: Tensor, padded: (Int, Int), original: (Int, Int), batch b: Int) throws -> Tensor {
        let ws = windowSize
        let (hp, wp) = padded
        var x = try windows.view([b, hp / ws, wp / ws, ws, ws, -1]).permute([0, 1, 3, 2, 4, 5]).contiguous().view([b, hp, wp, -1])
        if hp > original.0 || wp > original.1 {
            x = try x.slice(dim: 1, end: original.0).slice(dim: 2, end: original.1).contiguous()
        }
        return x
    }
}
