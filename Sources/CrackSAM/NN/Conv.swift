/// 2-D convolution, weight (out, in/groups, kH, kW), as nn.Conv2d.
public final class Conv2d: Module, UnaryLayer {
    public let weight: Parameter
    public let bias: Parameter?
    let stride: (Int, Int)
    let padding: (Int, Int)

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true) throws {
        let fanIn = inChannels * kernel * kernel
        weight = try Parameter(ParameterInit.kaimingUniform([outChannels, inChannels, kernel, kernel], fanIn: fanIn))
        self.bias = bias ? try Parameter(ParameterInit.kaimingUniform([outChannels], fanIn: fanIn)) : nil
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        if Torch.channelsLastConvolutions {
            return try x.channelsLast().conv2d(weight: weight.tensor.channelsLast(), bias: bias?.tensor, stride: stride, padding: padding)
        }
        return try x.conv2d(weight: weight.tensor, bias: bias?.tensor, stride: stride, padding: padding)
    }
}

/// Transposed 2-D convolution, weight (in, out, kH, kW), as nn.ConvTranspose2d (groups 1).
public final class ConvTranspose2d: Module, UnaryLayer {
    public let weight: Parameter
    public let bias: Parameter?
    let stride: (Int, Int)

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int, bias: Bool = true) throws {
        // PyTorch computes fan_in from weight.size(1) (the output channels) for transposed convs.
        let fanIn = outChannels * kernel * kernel
        weight = try Parameter(ParameterInit.kaimingUniform([inChannels, outChannels, kernel, kernel], fanIn: fanIn))
        self.bias = bias ? try Parameter(ParameterInit.kaimingUniform([outChannels], fanIn: fanIn)) : nil
        self.stride = (stride, stride)
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        if Torch.channelsLastConvolutions {
            return try x.channelsLast().convTranspose2d(weight: weight.tensor.channelsLast(), bias: bias?.tensor, stride: stride)
        }
        return try x.convTranspose2d(weight: weight.tensor, bias: bias?.tensor, stride: stride)
    }
}
