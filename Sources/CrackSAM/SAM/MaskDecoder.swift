/// A small MLP of Linear layers with ReLU between them (Meta's mask-decoder `MLP`: `layers.0…`).
public final class MLP: Module, UnaryLayer {
    public let layers: ModuleList<Linear>

    public init(input: Int, hidden: Int, output: Int, depth: Int) throws {
        let dims = [input] + Array(repeating: hidden, count: depth - 1) + [output]
        layers = ModuleList(try (0..<depth).map { try Linear(dims[$0], dims[$0 + 1]) })
        super.init()
        register(child: "layers", layers)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        var h = x
        for (i, layer) in layers.items.enumerated() {
            h = try layer(h)
            if i < layers.count - 1 { h = try h.relu() }
        }
        return h
    }
}

/// CrackSAM's mask decoder: SAM's decoder with num_classes + 1 mask tokens whose masks come out at the
/// full input size. The upscaled embedding (32, S/4, S/4) is resized ×4 bilinearly *before* the
/// per-token hypernetwork product (REFERENCE "CrackSAM change"); channel 0 is background, 1.. the classes.
public final class MaskDecoder: Module {
    public let transformer: TwoWayTransformer
    public let iouToken: Embedding
    public let maskTokens: Embedding
    public let outputUpscaling: Sequential
    public let outputHypernetworksMLPs: ModuleList<MLP>
    public let iouPredictionHead: MLP
    public let numMaskTokens: Int

    public init(dim: Int = 256, numClasses: Int) throws {
        numMaskTokens = numClasses + 1
        transformer = try TwoWayTransformer(dim: dim)
        iouToken = try Embedding(1, dim)
        maskTokens = try Embedding(numMaskTokens, dim)
        outputUpscaling = Sequential([
            try ConvTranspose2d(dim, dim / 4, kernel: 2, stride: 2),
            try LayerNorm2d(dim / 4),
            GELU(),
            try ConvTranspose2d(dim / 4, dim / 8, kernel: 2, stride: 2),
            GELU(),
        ])
        outputHypernetworksMLPs = ModuleList(try (0..<numMaskTokens).map { _ in
            try MLP(input: dim, hidden: dim, output: dim / 8, depth: 3)
        })
        iouPredictionHead = try MLP(input: dim, hidden: 256, output: numMaskTokens, depth: 3)
        super.init()
        register(child: "transformer", transformer)
        register(child: "iou_token", iouToken)
        register(child: "mask_tokens", maskTokens)
        register(child: "output_upscaling", outputUpscaling)
        register(child: "output_hypernetworks_mlps", outputHypernetworksMLPs)
        register(child: "iou_prediction_head", iouPredictionHead)
    }

    /// The output tokens [iou, mask_0 … mask_C] followed by the sparse prompt tokens: (B, N, 256).
    public func tokens(sparse: Tensor) throws -> Tensor {
        let b = sparse.size(0)
        let out = try Tensor.cat([iouToken.weight.tensor, maskTokens.weight.tensor], dim: 0)
        return try Tensor.cat([out.unsqueeze(dim: 0).expand([b, -1, -1]), sparse], dim: 1)
    }

    /// image embedding (B, 256, g, g), its positional encoding (1, 256, g, g), prompt embeddings
    /// → logits (B, C+1, outputSize, outputSize) and the IoU token (B, 256), which `iouPredictionHead`
    /// turns into predicted mask quality when asked (CrackSAM's loss does not use it, so training does
    /// not run the head).
    public func callAsFunction(imageEmbedding: Tensor, imagePE: Tensor, sparse: Tensor, dense: Tensor,
                               outputSize: Int) throws -> (logits: Tensor, iouToken: Tensor) {
        let tokens = try self.tokens(sparse: sparse)
        let src = try imageEmbedding + dense
        let s = src.shape
        let pos = try imagePE.expand([s[0], -1, -1, -1])
        let (hs, keys) = try transformer(image: src, imagePE: pos, tokens: tokens)
        let iouOut = try hs.select(dim: 1, index: 0)
        let maskOut = try hs.slice(dim: 1, start: 1, end: 1 + numMaskTokens)
        let image = try keys.transpose(1, 2).reshape([s[0], s[1], s[2], s[3]])
        var upscaled = try outputUpscaling(image)
        upscaled = try upscaled.interpolate(size: (outputSize, outputSize), mode: .bilinear, alignCorners: false)
        let hyper = try Tensor.stack(outputHypernetworksMLPs.items.enumerated().map { i, mlp in
            try mlp(maskOut.select(dim: 1, index: i))
        }, dim: 1)  // (B, C+1, 32)
        let u = upscaled.shape
        let logits = try hyper.matmul(upscaled.reshape([u[0], u[1], u[2] * u[3]])).reshape([u[0], numMaskTokens, u[2], u[3]])
        return (logits, iouOut)
    }
}
