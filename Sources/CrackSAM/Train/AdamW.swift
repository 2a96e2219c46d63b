/// A step's learning rate: a number fixed in the call, or a one-element tensor on the parameters' device
/// that the kernel reads when it runs. A captured CUDA graph needs the latter: the schedule writes the
/// tensor before each replay.
public enum LearningRate {
    case value(Double)
    case tensor(Tensor)
}

/// AdamW over a list of parameters, running libtorch's fused kernel (one call for all of them).
/// The state (moments and step counters) is exposed so training checkpoints can save and restore it.
public final class AdamW {
    public let parameters: [Parameter]
    public var beta1: Double
    public var beta2: Double
    public var weightDecay: Double
    public var eps: Double
    public private(set) var expAvg: [Tensor]
    public private(set) var expAvgSq: [Tensor]
    public private(set) var steps: [Tensor]

    public init(parameters: [Parameter], beta1: Double = 0.9, beta2: Double = 0.999, weightDecay: Double = 0.01,
                eps: Double = 1e-8) throws {
        self.parameters = parameters
        self.beta1 = beta1
        self.beta2 = beta2
        self.weightDecay = weightDecay
        self.eps = eps
        expAvg = try parameters.map { try Tensor.zeros($0.shape, dtype: $0.tensor.dtype, device: $0.tensor.device) }
        expAvgSq = try parameters.map { try Tensor.zeros($0.shape, dtype: $0.tensor.dtype, device: $0.tensor.device) }
        steps = try parameters.map { try Tensor.zeros([], dtype: .float32, device: $0.tensor.device) }
    }

    /// One update at learning rate `lr`. Parameters without a gradient are skipped (as PyTorch does).
    /// With a grad scaler, gradients are divided by `gradScale` and the step is skipped where `foundInf` is 1.
    public func step(lr: Double, gradScale: Tensor? = nil, foundInf: Tensor? = nil) throws {
        try step(rate: .value(lr), gradScale: gradScale, foundInf: foundInf)
    }

    public func step(rate: LearningRate, gradScale: Tensor? = nil, foundInf: Tensor? = nil) throws {
        var p: [Tensor] = [], g: [Tensor] = [], m: [Tensor] = [], v: [Tensor] = [], s: [Tensor] = []
        for (i, param) in parameters.enumerated() {
            guard let grad = try param.tensor.grad else { continue }
            p.append(param.tensor); g.append(grad); m.append(expAvg[i]); v.append(expAvgSq[i]); s.append(steps[i])
        }
        guard !p.isEmpty else { return }
        try Torch.withNoGrad {
            var lr = 0.0, lrTensor: Tensor?
            switch rate {
            case .value(let v): lr = v
            case .tensor(let t): lrTensor = t
            }
            try FusedKernels.adamW(params: p, grads: g, expAvgs: m, expAvgSqs: v, steps: s, lr: lr, lrTensor: lrTensor, beta1: beta1,
                                   beta2: beta2, weightDecay: weightDecay, eps: eps, gradScale: gradScale, foundInf: foundInf)
        }
    }

    public func zeroGrad() throws {
        for p in parameters { try p.tensor.clearGrad() }
    }

    /// Optimizer state for a checkpoint: exp_avg.i, exp_avg_sq.i, step.i.
    public func stateDict() -> StateDict {
        var out = StateDict()
        for i in parameters.indices {
            out["exp_avg.\(i)"] = expAvg[i]
            out["exp_avg_sq.\(i)"] = expAvgSq[i]
            out["step.\(i)"] = steps[i]
        }
        return out
    }

    public func loadStateDict(_ sd: StateDict, source: String) throws {
        for i in parameters.indices {
            for (key, target) in [("exp_avg.\(i)", expAvg[i]), ("exp_avg_sq.\(i)", expAvgSq[i]), ("step.\(i)", steps[i])] {
                guard let t = sd[key] else { throw TorchError.malformedCheckpoint(path: source, reason: "optimizer state lacks \(key)") }
                guard t.shape == target.shape else {
                    throw TorchError.shapeMismatch(key: "\(source): \(key)", expected: target.shape, actual: t.shape)
                }
                try Torch.withNoGrad { try target.copy_(t) }
            }
        }
    }
}

/// Dynamic loss scaling for fp16 (torch.amp.GradScaler's rules): scale the loss, unscale the gradients,
/// skip the step when any is inf/NaN and halve the scale, double it after `growthInterval` clean steps.
public final class GradScaler {
    public private(set) var scale: Tensor
    public private(set) var growthTracker: Tensor
    public let growthFactor: Double
    public let backoffFactor: Double
    public let growthInterval: Int
    /// Steps skipped because of inf/NaN gradients so far.
    public private(set) var skippedSteps = 0

    public init(initialScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5, growthInterval: Int = 2000,
                device: Device = .cpu) throws {
        scale = try Tensor.full([1], value: initialScale, device: device)
        growthTracker = try Tensor.zeros([1], dtype: .int32, device: device)
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
    }

    public func scaled(_ loss: Tensor) throws -> Tensor { try loss * scale.to(dtype: loss.dtype) }

    /// Unscales the gradients in place, steps the optimizer unless they hold inf/NaN, updates the scale.
    /// Returns whether the step was taken.
    @discardableResult
    public func step(_ optimizer: AdamW, lr: Double) throws -> Bool {
        let foundInf = try unscale(optimizer)
        let skipped = try foundInf.item() != 0
        if !skipped { try optimizer.step(lr: lr) }
        try FusedKernels.updateScale(scale, growthTracker: growthTracker, foundInf: foundInf, growth: growthFactor,
                                     backoff: backoffFactor, interval: growthInterval)
        if skipped { skippedSteps += 1 }
        return !skipped
    }

    /// A step skipped before its backward because the loss itself was inf/NaN: the scale backs off as
    /// torch's GradScaler's does after such a step (its backward would have flagged every gradient).
    public func recordNonFiniteLoss() throws {
        let flagged = try Tensor.ones([1], device: scale.device)
        try FusedKernels.updateScale(scale, growthTracker: growthTracker, foundInf: flagged, growth: growthFactor,
                                     backoff: backoffFactor, interval: growthInterval)
        skippedSteps += 1
    }

    /// The same step without reading anything back to the host (the fast path on a GPU): the fused
    /// optimizer skips the update on the device where `foundInf` is set, and skipped steps are counted
    /// on the device too (`skippedOnDevice`, read when convenient).
    public func stepWithoutSync(_ optimizer: AdamW, rate: LearningRate) throws {
        let foundInf = try unscale(optimizer)
        try optimizer.step(rate: rate, foundInf: foundInf)
        try FusedKernels.updateScale(scale, growthTracker: growthTracker, foundInf: foundInf, growth: growthFactor,
                                     backoff: backoffFactor, interval: growthInterval)
        try skippedCounter().add_(foundInf)
    }

    /// The device counter of skipped steps, made on first use. (A CUDA graph capture must find it made:
    /// made inside the capture, every replay would zero it again.)
    func skippedCounter() throws -> Tensor {
        if let skippedOnDevice { return skippedOnDevice }
        let counter = try Tensor.zeros([1], device: scale.device)
        skippedOnDevice = counter
        return counter
    }

    /// Divides the gradients by the scale in place; returns a device flag, 1 where any is inf/NaN.
    func unscale(_ optimizer: AdamW) throws -> Tensor {
        let grads = try optimizer.parameters.compactMap { try $0.tensor.grad }
        let foundInf = try Tensor.zeros([1], device: scale.device)
        let inverse = try scale.reciprocal()
        try Torch.withNoGrad { try FusedKernels.unscale(grads: grads, foundInf: foundInf, invScale: inverse) }
        return foundInf
    }

    /// Steps `stepWithoutSync` skipped, as a device tensor (nil before the first).
    public private(set) var skippedOnDevice: Tensor?

    public func stateDict() -> StateDict { ["scale": scale, "growth_tracker": growthTracker] }

    public func load(scale: Tensor, growthTracker: Tensor, skippedSteps: Int) throws {
        try self.scale.copy_(scale)
        try self.growthTracker.copy_(growthTracker)
        self.skippedSteps = skippedSteps
    }
}
