/// Layer norm over the last dimension, as nn.LayerNorm(dim, eps).
public final class LayerNorm: Module, UnaryLayer {
    public let weight: Parameter
    public let bias: Parameter
    let dim: Int
    let eps: Double

    public init(_ dim: Int, eps: Double = 1e-5) throws {
        self.dim = dim
        self.eps = eps
        weight = try Parameter(ParameterInit.ones([dim]))
        bias = try Parameter(ParameterInit.zeros([dim]))
        super.init()
        register("weight", weight)
        register("bias", bias)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        try x.layerNorm([dim], weight: weight.tensor, bias: bias.tensor, eps: eps)
    }
}

/// SAM's channel-wise layer norm for (N, C, H, W) maps: normalise over C at each pixel.
/// Computed with layer_norm over a channels-last view; the same function as Meta's explicit mean/var form.
public final class LayerNorm2d: Module, UnaryLayer {
    public let weight: Parameter
    public let bias: Parameter
    let channels: Int
    let eps: Double

    public init(_ channels: Int, eps: Double = 1e-6) throws {
        self.channels = channels
        self.eps = eps
        weight = try Parameter(ParameterInit.ones([channels]))
        bias = try Parameter(ParameterInit.zeros([channels]))
        super.init()
        register("weight", weight)
        register("bias", bias)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        try x.permute([0, 2, 3, 1]).layerNorm([channels], weight: weight.tensor, bias: bias.tensor, eps: eps)
            .permute([0, 3, 1, 2])
    }
}
