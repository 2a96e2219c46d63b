import CTorchShim

/// Views and shape operations. Views share storage with `self`, as in PyTorch.
extension Tensor {
    public func view(_ shape: [Int]) throws -> Tensor {
        try withInt64s(shape) { p, n in try makeTensor { ct_view(handle, p, n, $0) } }
    }

    public func reshape(_ shape: [Int]) throws -> Tensor {
        try withInt64s(shape) { p, n in try makeTensor { ct_reshape(handle, p, n, $0) } }
    }

    public func permute(_ dims: [Int]) throws -> Tensor {
        try withInt64s(dims) { p, n in try makeTensor { ct_permute(handle, p, n, $0) } }
    }

    public func transpose(_ dim0: Int, _ dim1: Int) throws -> Tensor {
        try makeTensor { ct_transpose(handle, Int64(dim0), Int64(dim1), $0) }
    }

    /// The same 4-D tensor stored channels-last (NHWC), as `x.contiguous(memory_format=torch.channels_last)`:
    /// the layout cuDNN's tensor-core convolutions prefer.
    public func channelsLast() throws -> Tensor { try makeTensor { ct_contiguous_channels_last(handle, $0) } }

    public func contiguous() throws -> Tensor {
        try makeTensor { ct_contiguous(handle, $0) }
    }

    /// A copy with its own storage (autograd-tracked, like `Tensor.clone()`).
    public func clone() throws -> Tensor {
        try makeTensor { ct_clone(handle, $0) }
    }

    public func narrow(dim: Int, start: Int, length: Int) throws -> Tensor {
        try makeTensor { ct_narrow(handle, Int64(dim), Int64(start), Int64(length), $0) }
    }

    /// `t[..., start:end:step, ...]` along `dim`; `end` past the size is clipped as in Python.
    public func slice(dim: Int, start: Int = 0, end: Int = Int.max, step: Int = 1) throws -> Tensor {
        try makeTensor { ct_slice(handle, Int64(dim), Int64(start), Int64(end), Int64(step), $0) }
    }

    /// `t.select(dim, index)`: drops `dim`.
    public func select(dim: Int, index: Int) throws -> Tensor {
        try makeTensor { ct_select(handle, Int64(dim), Int64(index), $0) }
    }

    /// `t.unbind(dim)`: every slice along `dim`, as views. Its backward stacks the slices' gradients
    /// into one tensor, where `select` per slice would zero-fill a full-size gradient for each.
    public func unbind(dim: Int) throws -> [Tensor] {
        // A dim out of range gets no room, and libtorch's own error ("Dimension out of range") comes back.
        let shape = self.shape
        let d = dim < 0 ? dim + shape.count : dim
        let n = shape.indices.contains(d) ? shape[d] : 0
        var handles = [ct_tensor?](repeating: nil, count: n)
        var count: Int64 = 0
        try handles.withUnsafeMutableBufferPointer { try check(ct_unbind(handle, Int64(dim), $0.baseAddress, Int64(n), &count)) }
        return handles.prefix(Int(count)).map { Tensor(owning: $0!) }
    }

    public func indexSelect(dim: Int, index: Tensor) throws -> Tensor {
        try makeTensor { ct_index_select(handle, Int64(dim), index.handle, $0) }
    }

    public func gather(dim: Int, index: Tensor) throws -> Tensor {
        try makeTensor { ct_gather(handle, Int64(dim), index.handle, $0) }
    }

    public static func cat(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        try withHandles(tensors) { p, n in try makeTensor { ct_cat(p, n, Int64(dim), $0) } }
    }

    public static func stack(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        try withHandles(tensors) { p, n in try makeTensor { ct_stack(p, n, Int64(dim), $0) } }
    }

    public enum PadMode: Int32, Sendable {
        case constant = 0, reflect = 1, replicate = 2, circular = 3
    }

    /// Pads as `F.pad`: `pads` runs (last dim low, last dim high, previous dim low, …).
    public func pad(_ pads: [Int], mode: PadMode = .constant, value: Double = 0) throws -> Tensor {
        try withInt64s(pads) { p, n in try makeTensor { ct_pad(handle, p, n, mode.rawValue, value, $0) } }
    }

    /// Broadcast view; -1 keeps a dimension.
    public func expand(_ shape: [Int]) throws -> Tensor {
        try withInt64s(shape) { p, n in try makeTensor { ct_expand(handle, p, n, $0) } }
    }

    public func repeated(_ repeats: [Int]) throws -> Tensor {
        try withInt64s(repeats) { p, n in try makeTensor { ct_repeat(handle, p, n, $0) } }
    }

    public func repeatInterleave(_ repeats: Int, dim: Int) throws -> Tensor {
        try makeTensor { ct_repeat_interleave(handle, Int64(repeats), Int64(dim), $0) }
    }

    public func flip(_ dims: [Int]) throws -> Tensor {
        try withInt64s(dims) { p, n in try makeTensor { ct_flip(handle, p, n, $0) } }
    }

    /// Rotates by k·90° in the plane of `dims` (counter-clockwise from dims.0 towards dims.1).
    public func rot90(_ k: Int, dims: (Int, Int) = (0, 1)) throws -> Tensor {
        try makeTensor { ct_rot90(handle, Int64(k), Int64(dims.0), Int64(dims.1), $0) }
    }

    public func squeeze(dim: Int) throws -> Tensor {
        try makeTensor { ct_squeeze(handle, Int64(dim), $0) }
    }

    public func unsqueeze(dim: Int) throws -> Tensor {
        try makeTensor { ct_unsqueeze(handle, Int64(dim), $0) }
    }

    public func flatten(startDim: Int = 0, endDim: Int = -1) throws -> Tensor {
        try makeTensor { ct_flatten(handle, Int64(startDim), Int64(endDim), $0) }
    }

    /// A view with explicit sizes, strides and storage offset (in elements).
    public func asStrided(_ shape: [Int], strides: [Int], offset: Int = 0) throws -> Tensor {
        guard shape.count == strides.count else {
            throw TorchError.invalidArgument("asStrided: \(shape.count) sizes but \(strides.count) strides")
        }
        return try withInt64s(shape) { sp, n in
            try withInt64s(strides) { tp, _ in try makeTensor { ct_as_strided(handle, sp, tp, n, Int64(offset), $0) } }
        }
    }
}
