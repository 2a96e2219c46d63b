/// Children "0", "1", … applied in order, as nn.Sequential (parameterless layers keep their index).
public final class Sequential: Module, UnaryLayer {
    public private(set) var layers: [UnaryLayer]

    public init(_ layers: [UnaryLayer]) {
        self.layers = layers
        super.init()
        for (i, l) in layers.enumerated() { register(child: String(i), l) }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        try layers.reduce(x) { try $1.forward($0) }
    }
}

/// Children "0", "1", … of one type, as nn.ModuleList.
public final class ModuleList<Element: Module>: Module {
    public private(set) var items: [Element]

    public init(_ items: [Element]) {
        self.items = items
        super.init()
        for (i, m) in items.enumerated() { register(child: String(i), m) }
    }

    public subscript(_ i: Int) -> Element { items[i] }
    public var count: Int { items.count }
}

/// GELU, exact erf form (nn.GELU()).
public final class GELU: Module, UnaryLayer {
    override public init() { super.init() }
    public func forward(_ x: Tensor) throws -> Tensor { try x.gelu() }
}

public final class ReLU: Module, UnaryLayer {
    override public init() { super.init() }
    public func forward(_ x: Tensor) throws -> Tensor { try x.relu() }
}
