/// A bottleneck adapter: up(GELU(down(x))), down: Linear(D, m), up: Linear(m, D), both with bias and
/// PyTorch's default Linear initialisation (REFERENCE).
public final class Adapter: Module, UnaryLayer, DeltaModule {
    public let down: Linear
    public let up: Linear

    public init(dim: Int, middle: Int) throws {
        down = try Linear(dim, middle)
        up = try Linear(middle, dim)
        super.init()
        register(child: "down", down)
        register(child: "up", up)
    }

    public func forward(_ x: Tensor) throws -> Tensor { try up(down(x).gelu()) }
}

/// Attention followed by an adapter, sequentially: y = a + adapter(a), a = attn(x).
/// The attention's own keys stay where they were (`attn.qkv…`); the adapter is `attn.adapter`.
public final class SequentialAdapterAttention: Module, UnaryLayer {
    public let inner: UnaryLayer
    public let adapter: Adapter

    public init(wrapping inner: UnaryLayer, dim: Int, middle: Int, device: Device) throws {
        self.inner = inner
        adapter = try ParameterInit.withDevice(device) { try Adapter(dim: dim, middle: middle) }
        super.init()
        adopt(inner)
        register(child: "adapter", adapter)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let a = try inner(x)
        return try a + adapter(a)
    }
}

/// An MLP with an adapter beside it: y = mlp(n) + s·adapter(n), n being the block's norm2 output.
public final class ParallelAdapterMLP: Module, UnaryLayer {
    public let inner: UnaryLayer
    public let adapter: Adapter
    public let scale: Double

    public init(wrapping inner: UnaryLayer, dim: Int, middle: Int, scale: Double, device: Device) throws {
        self.inner = inner
        self.scale = scale
        adapter = try ParameterInit.withDevice(device) { try Adapter(dim: dim, middle: middle) }
        super.init()
        adopt(inner)
        register(child: "adapter", adapter)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        try inner(x) + adapter(x) * scale
    }
}
