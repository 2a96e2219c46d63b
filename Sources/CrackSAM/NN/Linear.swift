/// y = x·Wᵀ + b, weight (out, in), as nn.Linear.
public final class Linear: Module, UnaryLayer {
    public let weight: Parameter
    public let bias: Parameter?
    public let inFeatures: Int
    public let outFeatures: Int

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = try Parameter(ParameterInit.kaimingUniform([outFeatures, inFeatures], fanIn: inFeatures))
        self.bias = bias ? try Parameter(ParameterInit.kaimingUniform([outFeatures], fanIn: inFeatures)) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        try x.linear(weight: weight.autocastValue(), bias: bias?.autocastValue())
    }
}

/// A lookup table whose rows SAM uses directly as learned tokens (nn.Embedding's `weight`).
public final class Embedding: Module {
    public let weight: Parameter

    public init(_ count: Int, _ dim: Int) throws {
        weight = try Parameter(ParameterInit.normal([count, dim]))
        super.init()
        register("weight", weight)
    }
}
