/// Patch embedding: a 16×16 stride-16 convolution, output channels-last (B, S/16, S/16, D).
public final class PatchEmbed: Module, UnaryLayer {
    public let proj: Conv2d

    public init(patchSize: Int, inChannels: Int = 3, embedDim: Int) throws {
        proj = try Conv2d(inChannels, embedDim, kernel: patchSize, stride: patchSize)
        super.init()
        register(child: "proj", proj)
    }

    /// Under autocast the image is embedded in float32 all the same. Normalized pixels step by 1/std
    /// ≈ 0.017 between 8-bit levels, while bfloat16 keeps 8 significant bits (spacing 0.0156 near ±2), so
    /// neighbouring levels would merge before the first layer saw them. This convolution is under 1 % of
    /// the encoder's products, and CrackSAM's training needs no backward of it (frozen, on the input).
    public func forward(_ x: Tensor) throws -> Tensor {
        guard let low = Torch.autocastDType(device: x.device) else { return try proj(x).permute([0, 2, 3, 1]) }
        return try Torch.withAutocast(device: x.device, dtype: low, enabled: false) {
            try proj(x.to(dtype: .float32)).permute([0, 2, 3, 1])
        }
    }
}

/// SAM's ViT image encoder: patch embed + absolute position embedding, window and global blocks, and
/// the neck that maps D channels to the 256-channel image embedding (B, 256, S/16, S/16).
public final class ImageEncoderViT: Module, UnaryLayer {
    public let posEmbed: Parameter
    public let patchEmbed: PatchEmbed
    public let blocks: ModuleList<Block>
    public let neck: Sequential

    public init(config c: SAMConfig) throws {
        let grid = c.gridSize
        posEmbed = try Parameter(ParameterInit.zeros([1, grid, grid, c.embedDim]))
        patchEmbed = try PatchEmbed(patchSize: c.patchSize, embedDim: c.embedDim)
        blocks = ModuleList(try (0..<c.depth).map { i in
            try Block(dim: c.embedDim, heads: c.heads, mlpRatio: c.mlpRatio,
                      windowSize: c.globalBlocks.contains(i) ? 0 : c.windowSize, gridSize: grid)
        })
        neck = Sequential([
            try Conv2d(c.embedDim, c.promptDim, kernel: 1, bias: false),
            try LayerNorm2d(c.promptDim),
            try Conv2d(c.promptDim, c.promptDim, kernel: 3, padding: 1, bias: false),
            try LayerNorm2d(c.promptDim),
        ])
        super.init()
        register("pos_embed", posEmbed)
        register(child: "patch_embed", patchEmbed)
        register(child: "blocks", blocks)
        register(child: "neck", neck)
    }

    /// (B, 3, S, S) → (B, 256, S/16, S/16)
    public func forward(_ x: Tensor) throws -> Tensor {
        // Made contiguous once here: on NCHW convolutions (the CPU's default) the patch embedding is a
        // permuted view, every residual add would keep that layout, and each layer norm would copy the
        // tokens (and, in the backward, their gradient) to contiguous memory again. On channels-last
        // convolutions the tokens are contiguous already and this is free.
        var h = try (patchEmbed(x) + posEmbed.tensor).contiguous()
        for block in blocks.items { h = try block(h) }
        return try neck(h.permute([0, 3, 1, 2]))
    }
}
