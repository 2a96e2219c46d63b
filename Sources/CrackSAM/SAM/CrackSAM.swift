/// What one forward pass of CrackSAM gives.
public struct SAMOutput {
    /// (B, num_classes + 1, S, S) mask logits; argmax over channels is the prediction (0 = background).
    public var logits: Tensor
    /// The decoder's IoU token (B, 256); `iou()` turns it into predictions.
    public var iouToken: Tensor
    let iouHead: MLP
    /// (B, 256, S/16, S/16) from the image encoder.
    public var imageEmbedding: Tensor

    /// (B, num_classes + 1) predicted mask quality (the IoU head, run on demand).
    public func iou() throws -> Tensor { try iouHead(iouToken) }
}

/// The whole model: `image_encoder`, `prompt_encoder`, `mask_decoder`, with PyTorch's key paths.
/// The image encoder is frozen at construction (CrackSAM trains only the delta and the head).
public final class SAMModel: Module {
    public let config: SAMConfig
    public let imageEncoder: ImageEncoderViT
    public let promptEncoder: PromptEncoder
    public let maskDecoder: MaskDecoder
    /// The injected delta, once `applyPEFT` ran.
    public internal(set) var delta: InjectedDelta?
    /// The seed the weights were drawn with, for a model whose frozen encoder comes from the random
    /// generator rather than a file (a custom backbone, or random weights in Meta's layout); saved deltas
    /// record it, so that the encoder they were trained on is made again where they are loaded, and not
    /// mistaken for Meta's. Set by whoever seeded the generator.
    public var initSeed: UInt64?

    /// `device`: where the weights are made; by default the one an enclosing `ParameterInit.withDevice`
    /// names (the CPU outside one), so a model built inside `withDevice(.cuda(0))` is wholly on CUDA.
    public init(config: SAMConfig, device: Device? = nil) throws {
        try config.validate()
        self.config = config
        (imageEncoder, promptEncoder, maskDecoder) = try ParameterInit.withDevice(device ?? ParameterInit.device) {
            (try ImageEncoderViT(config: config), try PromptEncoder(embedDim: config.promptDim, gridSize: config.gridSize),
             try MaskDecoder(dim: config.promptDim, numClasses: config.numClasses))
        }
        super.init()
        register(child: "image_encoder", imageEncoder)
        register(child: "prompt_encoder", promptEncoder)
        register(child: "mask_decoder", maskDecoder)
        try imageEncoder.freeze()
    }

    /// CrackSAM's preprocessing: RGB scaled to [0, 1] (pixel mean 0, std 1: no ImageNet normalisation).
    /// `images`: (B, 3, S, S), any dtype, values 0…255.
    public static func preprocess(_ images: Tensor) throws -> Tensor {
        try images.to(dtype: .float32) / 255.0
    }

    /// images (B, 3, S, S) already in [0, 1] → logits, IoU predictions and the image embedding.
    public func callAsFunction(_ images: Tensor) throws -> SAMOutput {
        let s = images.shape
        let size = config.imageSize
        guard s.count == 4, s[1] == 3, s[2] == size, s[3] == size else {
            throw TorchError.invalidArgument("expected images of shape [B, 3, \(size), \(size)], got \(s)")
        }
        return try decode(embedding: imageEncoder(images))
    }

    /// The prompt-free decoder on an image embedding (B, 256, S/16, S/16): the second half of the forward.
    public func decode(embedding: Tensor) throws -> SAMOutput {
        let size = config.imageSize
        let (sparse, dense) = try promptEncoder.noPrompt(batch: embedding.size(0))
        let (logits, iouToken) = try maskDecoder(imageEmbedding: embedding, imagePE: promptEncoder.densePositionalEncoding(),
                                                 sparse: sparse, dense: dense, outputSize: size)
        return SAMOutput(logits: logits, iouToken: iouToken, iouHead: maskDecoder.iouPredictionHead, imageEmbedding: embedding)
    }
}
