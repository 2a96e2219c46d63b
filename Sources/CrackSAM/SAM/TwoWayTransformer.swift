/// The decoder's attention (Meta's `transformer.Attention`): q/k/v projections into an internal width
/// (embedding / downsample rate), heads, softmax(q·kᵀ/√d)·v, and an output projection back.
public final class DecoderAttention: Module {
    public let qProj: Linear
    public let kProj: Linear
    public let vProj: Linear
    public let outProj: Linear
    let heads: Int

    public init(dim: Int, heads: Int, downsampleRate: Int = 1) throws {
        let inner = dim / downsampleRate
        guard inner % heads == 0 else { throw TorchError.invalidArgument("attention width \(inner) is not divisible by \(heads) heads") }
        self.heads = heads
        qProj = try Linear(dim, inner)
        kProj = try Linear(dim, inner)
        vProj = try Linear(dim, inner)
        outProj = try Linear(inner, dim)
        super.init()
        register(child: "q_proj", qProj)
        register(child: "k_proj", kProj)
        register(child: "v_proj", vProj)
        register(child: "out_proj", outProj)
    }

    public func callAsFunction(q: Tensor, k: Tensor, v: Tensor) throws -> Tensor {
        func split(_ x: Tensor) throws -> Tensor {
            let s = x.shape
            return try x.reshape([s[0], s[1], heads, s[2] / heads]).transpose(1, 2)
        }
        let out = try Tensor.scaledDotProductAttention(query: split(qProj(q)), key: split(kProj(k)), value: split(vProj(v)))
        let s = out.shape  // (B, heads, N, c)
        return try outProj(out.transpose(1, 2).reshape([s[0], s[2], s[1] * s[3]]))
    }
}

/// One two-way block: token self-attention, tokens → image cross-attention, token MLP, and
/// image → tokens cross-attention, each followed by a layer norm.
public final class TwoWayAttentionBlock: Module {
    public let selfAttn: DecoderAttention
    public let norm1: LayerNorm
    public let crossAttnTokenToImage: DecoderAttention
    public let norm2: LayerNorm
    public let mlp: MLPBlock
    public let norm3: LayerNorm
    public let norm4: LayerNorm
    public let crossAttnImageToToken: DecoderAttention
    let skipFirstLayerPE: Bool

    public init(dim: Int, heads: Int, mlpDim: Int, downsampleRate: Int = 2, skipFirstLayerPE: Bool) throws {
        self.skipFirstLayerPE = skipFirstLayerPE
        selfAttn = try DecoderAttention(dim: dim, heads: heads)
        norm1 = try LayerNorm(dim)
        crossAttnTokenToImage = try DecoderAttention(dim: dim, heads: heads, downsampleRate: downsampleRate)
        norm2 = try LayerNorm(dim)
        mlp = try MLPBlock(dim: dim, hidden: mlpDim, relu: true)
        norm3 = try LayerNorm(dim)
        norm4 = try LayerNorm(dim)
        crossAttnImageToToken = try DecoderAttention(dim: dim, heads: heads, downsampleRate: downsampleRate)
        super.init()
        register(child: "self_attn", selfAttn)
        register(child: "norm1", norm1)
        register(child: "cross_attn_token_to_image", crossAttnTokenToImage)
        register(child: "norm2", norm2)
        register(child: "mlp", mlp)
        register(child: "norm3", norm3)
        register(child: "norm4", norm4)
        register(child: "cross_attn_image_to_token", crossAttnImageToToken)
    }

    public func callAsFunction(queries: Tensor, keys: Tensor, queryPE: Tensor, keyPE: Tensor) throws -> (Tensor, Tensor) {
        var queries = queries, keys = keys
        if skipFirstLayerPE {
            queries = try selfAttn(q: queries, k: queries, v: queries)
        } else {
            let q = try queries + queryPE
            queries = try queries + selfAttn(q: q, k: q, v: queries)
        }
        queries = try norm1(queries)
        var q = try queries + queryPE
        var k = try keys + keyPE
        queries = try norm2(queries + crossAttnTokenToImage(q: q, k: k, v: keys))
        queries = try norm3(queries + mlp(queries))
        q = try queries + queryPE
        k = try keys + keyPE
        keys = try norm4(keys + crossAttnImageToToken(q: k, k: q, v: queries))
        return (queries, keys)
    }
}

/// SAM's two-way transformer (depth 2, 256 wide, 8 heads, MLP 2048) with the final token → image
/// attention and its layer norm.
public final class TwoWayTransformer: Module {
    public let layers: ModuleList<TwoWayAttentionBlock>
    public let finalAttnTokenToImage: DecoderAttention
    public let normFinalAttn: LayerNorm

    public init(depth: Int = 2, dim: Int = 256, heads: Int = 8, mlpDim: Int = 2048) throws {
        layers = ModuleList(try (0..<depth).map { i in
            try TwoWayAttentionBlock(dim: dim, heads: heads, mlpDim: mlpDim, skipFirstLayerPE: i == 0)
        })
        finalAttnTokenToImage = try DecoderAttention(dim: dim, heads: heads, downsampleRate: 2)
        normFinalAttn = try LayerNorm(dim)
        super.init()
        register(child: "layers", layers)
        register(child: "final_attn_token_to_image", finalAttnTokenToImage)
        register(child: "norm_final_attn", normFinalAttn)
    }

    /// image (B, C, h, w), its positional encoding (B, C, h, w), tokens (B, N, C)
    /// → (tokens (B, N, C), image tokens (B, h·w, C)).
    public func callAsFunction(image: Tensor, imagePE: Tensor, tokens: Tensor) throws -> (queries: Tensor, keys: Tensor) {
        let imageTokens = try image.flatten(startDim: 2).permute([0, 2, 1])
        let pe = try imagePE.flatten(startDim: 2).permute([0, 2, 1])
        var queries = tokens, keys = imageTokens
        for layer in layers.items {
            (queries, keys) = try layer(queries: queries, keys: keys, queryPE: tokens, keyPE: pe)
        }
        let q = try queries + tokens
        let k = try keys + pe
        queries = try normFinalAttn(queries + finalAttnTokenToImage(q: q, k: k, v: keys))
        return (queries, keys)
    }
}
