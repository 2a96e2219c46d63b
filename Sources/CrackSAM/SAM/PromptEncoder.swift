import Foundation

/// Random Fourier positional encoding of the token grid (Meta's `PositionEmbeddingRandom`):
/// coordinates ((i + 0.5)/n)·2 − 1, times a fixed Gaussian (2 × 128) matrix, times 2π, then [sin, cos].
public final class PositionEmbeddingRandom: Module {
    public let gaussianMatrix: Parameter

    public init(features: Int = 128) throws {
        gaussianMatrix = try Parameter(ParameterInit.normal([2, features]), isBuffer: true)
        super.init()
        register("positional_encoding_gaussian_matrix", gaussianMatrix)
    }

    /// (C=256, h, w) dense positional encoding of an h×w grid.
    public func encode(height h: Int, width w: Int) throws -> Tensor {
        // Always float32, as Meta computes it whatever the model's dtype; adding it to the image tokens
        // promotes as PyTorch does.
        let m = gaussianMatrix.tensor.dtype == .float32 ? gaussianMatrix.tensor : try gaussianMatrix.tensor.to(dtype: .float32)
        let ys = try (Tensor.arange(0, Double(h), device: m.device) + 0.5) / Double(h)
        let xs = try (Tensor.arange(0, Double(w), device: m.device) + 0.5) / Double(w)
        // (h, w, 2) with x first, as Meta stacks [x_embed, y_embed].
        let grid = try Tensor.stack([xs.unsqueeze(dim: 0).expand([h, w]), ys.unsqueeze(dim: 1).expand([h, w])], dim: -1)
        let projected = try ((grid * 2.0 - 1.0).matmul(m)) * (2 * Double.pi)
        return try Tensor.cat([projected.sin(), projected.cos()], dim: -1).permute([2, 0, 1])
    }
}

/// SAM's prompt encoder. CrackSAM never prompts: the sparse embeddings are empty and the dense one is
/// `no_mask_embed` everywhere. The point, box and mask-prompt weights are kept because checkpoints hold them
/// (and they count as trainable head parameters).
public final class PromptEncoder: Module {
    public let peLayer: PositionEmbeddingRandom
    public let pointEmbeddings: ModuleList<Embedding>
    public let notAPointEmbed: Embedding
    public let maskDownscaling: Sequential
    public let noMaskEmbed: Embedding
    public let embedDim: Int
    public let gridSize: Int

    public init(embedDim: Int = 256, gridSize: Int, maskInChannels: Int = 16) throws {
        self.embedDim = embedDim
        self.gridSize = gridSize
        peLayer = try PositionEmbeddingRandom(features: embedDim / 2)
        pointEmbeddings = ModuleList(try (0..<4).map { _ in try Embedding(1, embedDim) })
        notAPointEmbed = try Embedding(1, embedDim)
        maskDownscaling = Sequential([
            try Conv2d(1, maskInChannels / 4, kernel: 2, stride: 2),
            try LayerNorm2d(maskInChannels / 4),
            GELU(),
            try Conv2d(maskInChannels / 4, maskInChannels, kernel: 2, stride: 2),
            try LayerNorm2d(maskInChannels),
            GELU(),
            try Conv2d(maskInChannels, embedDim, kernel: 1),
        ])
        noMaskEmbed = try Embedding(1, embedDim)
        super.init()
        register(child: "pe_layer", peLayer)
        register(child: "point_embeddings", pointEmbeddings)
        register(child: "not_a_point_embed", notAPointEmbed)
        register(child: "mask_downscaling", maskDownscaling)
        register(child: "no_mask_embed", noMaskEmbed)
    }

    /// The no-prompt embeddings for a batch: sparse (B, 0, 256) and dense (B, 256, g, g).
    public func noPrompt(batch: Int) throws -> (sparse: Tensor, dense: Tensor) {
        let w = noMaskEmbed.weight.tensor
        let sparse = try Tensor.empty([batch, 0, embedDim], dtype: w.dtype, device: w.device)
        let dense = try w.reshape([1, embedDim, 1, 1]).expand([batch, embedDim, gridSize, gridSize])
        return (sparse, dense)
    }

    /// (1, 256, g, g): the positional encoding of the image embedding's grid.
    public func densePositionalEncoding() throws -> Tensor {
        try peLayer.encode(height: gridSize, width: gridSize).unsqueeze(dim: 0)
    }
}
