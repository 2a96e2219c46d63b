import CTorchShim

/// Neural-network primitives (the functional layer the nn modules are built from).
extension Tensor {
    public func matmul(_ other: Tensor) throws -> Tensor {
        let out = try makeTensor { ct_matmul(handle, other.handle, $0) }
        if FlopCounter.isActive { FlopCounter.add(forward: 2 * Double(out.count) * Double(shape.last ?? 1), operands: [self, other]) }
        return out
    }

    public func bmm(_ other: Tensor) throws -> Tensor {
        let out = try makeTensor { ct_bmm(handle, other.handle, $0) }
        if FlopCounter.isActive { FlopCounter.add(forward: 2 * Double(out.count) * Double(shape.last ?? 1), operands: [self, other]) }
        return out
    }

    /// x · Wᵀ + b, with W of shape (out, in) as nn.Linear stores it.
    public func linear(weight: Tensor, bias: Tensor? = nil) throws -> Tensor {
        let out = try makeTensor { ct_linear(handle, weight.handle, bias?.handle, $0) }
        if FlopCounter.isActive { FlopCounter.add(forward: 2 * Double(out.count) * Double(weight.shape.last ?? 1), operands: [self, weight]) }
        return out
    }

    public func conv2d(weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                       dilation: (Int, Int) = (1, 1), groups: Int = 1) throws -> Tensor {
        let s = [Int64(stride.0), Int64(stride.1)], p = [Int64(padding.0), Int64(padding.1)]
        let d = [Int64(dilation.0), Int64(dilation.1)]
        let out = try makeTensor { ct_conv2d(handle, weight.handle, bias?.handle, s, p, d, Int64(groups), $0) }
        if FlopCounter.isActive {
            let w = weight.shape  // (out, in/groups, kH, kW): each output element is one dot product of in/groups·kH·kW
            FlopCounter.add(forward: 2 * Double(out.count) * Double(w.dropFirst().reduce(1, *)), operands: [self, weight])
        }
        return out
    }

    /// Weight of shape (in, out/groups, kH, kW) as nn.ConvTranspose2d stores it.
    public func convTranspose2d(weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                                outputPadding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                                groups: Int = 1) throws -> Tensor {
        let s = [Int64(stride.0), Int64(stride.1)], p = [Int64(padding.0), Int64(padding.1)]
        let o = [Int64(outputPadding.0), Int64(outputPadding.1)], d = [Int64(dilation.0), Int64(dilation.1)]
        let out = try makeTensor { ct_conv_transpose2d(handle, weight.handle, bias?.handle, s, p, o, d, Int64(groups), $0) }
        if FlopCounter.isActive {
            let w = weight.shape  // (in, out/groups, kH, kW): each input element scatters into out/groups·kH·kW outputs
            FlopCounter.add(forward: 2 * Double(count) * Double(w.dropFirst().reduce(1, *)), operands: [self, weight])
        }
        return out
    }

    /// Normalises over the trailing `normalizedShape` dimensions.
    public func layerNorm(_ normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil, eps: Double = 1e-5) throws -> Tensor {
        try withInt64s(normalizedShape) { p, n in
            try makeTensor { ct_layer_norm(handle, p, n, weight?.handle, bias?.handle, eps, $0) }
        }
    }

    /// GELU with the exact erf form (what nn.GELU() computes by default).
    public func gelu() throws -> Tensor { try unary(.gelu) }
    /// GELU's tanh approximation (nn.GELU(approximate="tanh")).
    public func geluTanh() throws -> Tensor { try unary(.geluTanh) }
    public func relu() throws -> Tensor { try unary(.relu) }
    public func silu() throws -> Tensor { try unary(.silu) }

    public func softmax(dim: Int, dtype: DType? = nil) throws -> Tensor {
        try makeTensor { ct_softmax(handle, Int64(dim), dtype?.rawValue ?? -1, $0) }
    }

    public func logSoftmax(dim: Int, dtype: DType? = nil) throws -> Tensor {
        try makeTensor { ct_log_softmax(handle, Int64(dim), dtype?.rawValue ?? -1, $0) }
    }

    public enum InterpolationMode: Int32, Sendable {
        /// PyTorch's legacy "nearest" (floor of the scaled index).
        case nearest = 0
        case bilinear = 1
        case bicubic = 2
        case nearestExact = 3
    }

    /// Resizes an (N, C, H, W) tensor as F.interpolate(size:, mode:, align_corners:).
    public func interpolate(size: (Int, Int), mode: InterpolationMode, alignCorners: Bool = false) throws -> Tensor {
        try makeTensor { ct_interpolate(handle, Int64(size.0), Int64(size.1), mode.rawValue, alignCorners ? 1 : 0, $0) }
    }

    /// softmax(q·kᵀ·scale + bias)·v over (…, L, E) tensors; `bias` is added to the logits (broadcasting),
    /// so relative-position terms ride along and CUDA can still pick a fused kernel.
    public static func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, bias: Tensor? = nil,
                                                 scale: Double? = nil, dropout: Double = 0,
                                                 causal: Bool = false) throws -> Tensor {
        let out = try makeTensor {
            ct_sdpa(query.handle, key.handle, value.handle, bias?.handle, dropout, causal ? 1 : 0, scale ?? .nan, $0)
        }
        if FlopCounter.isActive {
            // q·kᵀ: (rows × S) dot products of length E; weights·v: (rows × Ev) of length S.
            let e = Double(query.shape.last ?? 1), s = Double(key.shape.dropLast().last ?? 1)
            let rows = Double(query.count) / e
            FlopCounter.attention(forward: 2 * rows * s * e + 2 * rows * s * Double(value.shape.last ?? 1), operands: [query, key, value])
        }
        return out
    }

    public enum Reduction: Int32, Sendable {
        case none = 0, mean = 1, sum = 2
    }

    /// Softmax cross-entropy of logits (N, C, …) against class indices (N, …) of dtype int64.
    public func crossEntropy(target: Tensor, weight: Tensor? = nil, reduction: Reduction = .mean, ignoreIndex: Int = -100,
                             labelSmoothing: Double = 0) throws -> Tensor {
        try makeTensor {
            ct_cross_entropy(handle, target.handle, weight?.handle, reduction.rawValue, Int64(ignoreIndex), labelSmoothing, $0)
        }
    }

    /// Class indices (int64) to a one-hot int64 tensor with a new last dimension.
    public func oneHot(classes: Int) throws -> Tensor {
        try makeTensor { ct_one_hot(handle, Int64(classes), $0) }
    }

    public func dropout(_ p: Double, training: Bool) throws -> Tensor {
        try makeTensor { ct_dropout(handle, p, training ? 1 : 0, $0) }
    }
}

/// In-place updates: what optimizers, initialisers and checkpoint loading need. Names end in `_`
/// as in PyTorch, because they mutate shared storage.
extension Tensor {
    public func copy_(_ source: Tensor) throws { try check(ct_copy_(handle, source.handle)) }
    public func fill_(_ value: Double) throws { try check(ct_fill_(handle, value)) }
    public func zero_() throws { try check(ct_zero_(handle)) }
    public func uniform_(low: Double, high: Double) throws { try check(ct_uniform_(handle, low, high)) }
    public func normal_(mean: Double, std: Double) throws { try check(ct_normal_(handle, mean, std)) }
    /// self += alpha · other
    public func add_(_ other: Tensor, alpha: Double = 1) throws { try check(ct_add_(handle, other.handle, alpha)) }

    /// self += x·Wᵀ in place, self (N, out), x (N, in), weight (out, in) (torch's addmm_): the product
    /// adds into this tensor as it writes it, with no copy of it and no separate pass for the sum.
    /// In-place ops bypass autocast, so x and the weight are cast to this tensor's dtype as autocast
    /// would have cast them.
    public func addLinear_(_ x: Tensor, weight: Tensor) throws {
        let input = x.dtype == dtype ? x : try x.to(dtype: dtype)
        let transposed = try (weight.dtype == dtype ? weight : weight.to(dtype: dtype)).transpose(0, 1)
        try check(ct_addmm_(handle, input.handle, transposed.handle, 1, 1))
        if FlopCounter.isActive { FlopCounter.add(forward: 2 * Double(count) * Double(x.size(-1)), operands: [x, weight]) }
    }
    public func mul_(_ scalar: Double) throws { try check(ct_mul_scalar_(handle, scalar)) }
    /// self += value · a · b
    public func addcmul_(_ a: Tensor, _ b: Tensor, value: Double = 1) throws {
        try check(ct_addcmul_(handle, a.handle, b.handle, value))
    }
    /// self += value · a / b
    public func addcdiv_(_ a: Tensor, _ b: Tensor, value: Double = 1) throws {
        try check(ct_addcdiv_(handle, a.handle, b.handle, value))
    }
}

/// libtorch's fused kernels for the optimizer and the AMP grad scaler.
public enum FusedKernels {
    /// One AdamW step over all parameters (params, moments and float32 step counters updated in place).
    /// With `gradScale`, gradients are divided by it first; with `foundInf` set to 1, nothing changes.
    /// With `lrTensor` (one element on the parameters' device) the kernel reads the rate from it and `lr`
    /// is ignored: a captured CUDA graph replays with whatever rate the tensor holds then.
    public static func adamW(params: [Tensor], grads: [Tensor], expAvgs: [Tensor], expAvgSqs: [Tensor], steps: [Tensor],
                             lr: Double, lrTensor: Tensor? = nil, beta1: Double, beta2: Double, weightDecay: Double, eps: Double,
                             gradScale: Tensor? = nil, foundInf: Tensor? = nil) throws {
        let n = params.count
        guard grads.count == n, expAvgs.count == n, expAvgSqs.count == n, steps.count == n else {
            throw TorchError.invalidArgument("adamW: \(n) params but \(grads.count) grads, \(expAvgs.count) exp_avgs, "
                + "\(expAvgSqs.count) exp_avg_sqs, \(steps.count) steps")
        }
        try withHandles(params) { p, _ in
            try withHandles(grads) { g, _ in
                try withHandles(expAvgs) { m, _ in
                    try withHandles(expAvgSqs) { v, _ in
                        try withHandles(steps) { s, _ in
                            try check(ct_fused_adamw_(p, g, m, v, s, Int32(n), lr, lrTensor?.handle, beta1, beta2,
                                                      weightDecay, eps, gradScale?.handle, foundInf?.handle))
                        }
                    }
                }
            }
        }
    }

    /// Multiplies every gradient by `invScale` in place and sets `foundInf` to 1 if any is inf or NaN.
    public static func unscale(grads: [Tensor], foundInf: Tensor, invScale: Tensor) throws {
        try withHandles(grads) { g, n in try check(ct_amp_unscale_(g, n, foundInf.handle, invScale.handle)) }
    }

    /// The grad scaler's update: back off on overflow, grow after `interval` clean steps.
    public static func updateScale(_ scale: Tensor, growthTracker: Tensor, foundInf: Tensor, growth: Double = 2,
                                   backoff: Double = 0.5, interval: Int = 2000) throws {
        try check(ct_amp_update_scale_(scale.handle, growthTracker.handle, foundInf.handle, growth, backoff, Int64(interval)))
    }
}
