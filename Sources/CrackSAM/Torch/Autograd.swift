import CTorchShim

/// Autograd on tensors: leaves that require gradients, backward, and the stored `.grad`.
extension Tensor {
    public var requiresGrad: Bool { ct_requires_grad(handle) != 0 }
    public var isLeaf: Bool { ct_is_leaf(handle) != 0 }

    /// Marks a leaf as trainable (or not); returns self so construction reads in one line.
    @discardableResult
    public func requiresGrad(_ flag: Bool) throws -> Tensor {
        try check(ct_set_requires_grad(handle, flag ? 1 : 0))
        return self
    }

    /// Back-propagates from this tensor; a non-scalar output needs `gradient` (same shape).
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) throws {
        try check(ct_backward(handle, gradient?.handle, retainGraph ? 1 : 0))
    }

    /// The accumulated gradient, or nil when none was computed.
    public var grad: Tensor? {
        get throws {
            var out: ct_tensor? = nil
            try check(ct_grad(handle, &out))
            return out.map { Tensor(owning: $0) }
        }
    }

    /// Forgets the gradient (as zero_grad(set_to_none=True): the next backward allocates afresh).
    public func clearGrad() throws { try check(ct_clear_grad(handle)) }

    /// Same data, cut from the graph.
    public func detach() throws -> Tensor { try makeTensor { ct_detach(handle, $0) } }
}
