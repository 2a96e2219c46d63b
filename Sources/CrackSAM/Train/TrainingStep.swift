/// One optimisation step of CrackSAM, shared by the trainer and `crack-cli bench train`: the forward
/// under autocast, the loss (the global batch's with data parallelism), and the update — backward,
/// gradients summed across ranks, AdamW (fused), with the fp16 loss scaler when asked.
public final class TrainingStep {
    public let model: SAMModel
    public let optimizer: AdamW
    public let scaler: GradScaler?
    public let amp: TrainingOptions.AMP
    public let device: Device
    public let parallel: DataParallel?
    /// float64 weights and inputs (numerical checks; see TrainingOptions.float64).
    public let float64: Bool
    /// Recompute the encoder's activations in the backward instead of keeping them (see
    /// ActivationCheckpointing.swift): less memory, one more encoder forward per step.
    public var checkpointActivations = false
    let loss = CrackLoss()
    /// Capture `step(images:labels:lr:)` in a CUDA graph after a few eager steps and replay it from then
    /// on (see CapturedStep.swift): one launch per step instead of thousands of kernel launches.
    public var cudaGraph = false
    /// Why the capture failed, when it did; the steps then stay eager.
    public internal(set) var cudaGraphFailure: String?
    /// The captured step, once made.
    var captured: CapturedStep?
    public var isCaptured: Bool { captured != nil }
    /// `step` calls so far (the capture waits for a few).
    var stepCalls = 0
    /// What the checkpointed forward left for `update`'s backward.
    var pending: EncoderCheckpoints?
    /// Steps `update(sync: false)` skipped on the device (without the fp16 scaler).
    private var skipped: Tensor?
    private var unit: Tensor?

    /// How many `update(sync: false)` calls skipped their step (non-finite gradients); reads the device.
    public func stepsSkippedOnDevice() throws -> Int {
        guard let t = scaler?.skippedOnDevice ?? skipped else { return 0 }
        return Int(try t.item())
    }

    public init(model: SAMModel, amp: TrainingOptions.AMP, weightDecay: Double, device: Device, parallel: DataParallel? = nil,
                float64: Bool = false) throws {
        self.model = model
        self.amp = amp
        self.device = device
        self.parallel = parallel
        self.float64 = float64
        optimizer = try AdamW(parameters: model.trainableParameters().map(\.parameter), weightDecay: weightDecay)
        scaler = amp == .fp16 ? try GradScaler(device: device) : nil
    }

    /// Runs `body` under the step's autocast (none when amp is off).
    func autocast<R>(_ body: () throws -> R) throws -> R {
        switch amp {
        case .off: return try body()
        case .fp16, .bf16: return try Torch.withAutocast(device: device, dtype: amp.dtype!, body)
        }
    }

    /// Logits of a batch already on the device (B, 3, S, S) in [0, 1], under autocast when asked.
    public func logits(_ images: Tensor) throws -> Tensor {
        let x = float64 ? try images.to(dtype: .float64) : images
        if checkpointActivations && Torch.isGradEnabled {
            let checkpoints = try autocast { try model.imageEncoder.forwardCheckpointed(x) }
            pending = checkpoints
            return try autocast { try model.decode(embedding: checkpoints.embedding).logits }
        }
        return try autocast { try model(x).logits }
    }

    /// The forward and the loss: nothing is read back to the host.
    ///
    /// `standIn`: with data parallelism, this rank could not make its batch (a file broke during the run)
    /// and `images` are NaN in its place. The ranks must still run the same collectives, so it takes the
    /// step like the others: its NaN reaches every rank's loss and summed gradients, so the step is
    /// skipped everywhere, and the loss's all-reduce tells every rank (`CrackLoss.Value.standIns`).
    public func forward(images: Tensor, labels: Tensor, standIn: Bool = false) throws -> CrackLoss.Value {
        // The loss in float32, outside autocast, as the authors' loop computes it.
        let logits = amp == .off ? try self.logits(images) : try self.logits(images).to(dtype: .float32)
        if let parallel {
            guard standIn else { return try loss(logits: logits, target: labels, group: parallel.group, standIn: noStandIn()) }
            let flags = try Tensor([1, Double(parallel.rank)], shape: [2]).to(device: device, dtype: lossDType)
            var value = try loss(logits: logits, target: labels, group: parallel.group, standIn: flags)
            // NaN gradients whatever the model does with NaN inputs: the step must be skipped everywhere.
            value.objective = try value.objective * Double.nan
            return value
        }
        return try loss(logits: logits, target: labels)
    }

    /// The loss's dtype (float32 under autocast too), which the stand-in flags are made in: the loss
    /// sends them in its own all-reduce with no cast on the way.
    var lossDType: DType { float64 ? .float64 : .float32 }

    /// The stand-in flags of a rank with its own batch, made once (every data-parallel step sends them).
    func noStandIn() throws -> Tensor {
        if let noStandInFlags { return noStandInFlags }
        let flags = try Tensor.zeros([2], dtype: lossDType, device: device)
        noStandInFlags = flags
        return flags
    }
    private var noStandInFlags: Tensor?

    /// One step that reads nothing back to the host: forward, loss and `update(sync: false)`, replayed
    /// from a CUDA graph when `cudaGraph` is set and the capture has been made. The value comes back
    /// without its autograd graph (`CrackLoss.Value.detached`).
    public func step(images: Tensor, labels: Tensor, lr: Double, standIn: Bool = false) throws -> CrackLoss.Value {
        // A replay hands back detached copies already (the graph's own outputs are overwritten by the next).
        // (No graph with data parallelism, hence none for a stand-in batch.)
        if cudaGraph, cudaGraphFailure == nil, let value = try graphStep(images: images, labels: labels, lr: lr) { return value }
        let value = try forward(images: images, labels: labels, standIn: standIn)
        try update(value, rate: .value(lr), sync: false)
        return try value.detached()
    }

    /// Backward, the gradient sum across ranks (each rank back-propagated its share of the global loss),
    /// the optimizer step and zeroing the gradients. A step whose gradients are not finite is skipped (by
    /// the fp16 scaler, or by the same check without one). With `sync` false nothing is read back to the
    /// host: a skipped step is counted on the device; with `sync` it returns whether the step
    /// was taken.
    @discardableResult
    public func update(_ value: CrackLoss.Value, lr: Double, sync: Bool = true) throws -> Bool {
        try update(value, rate: .value(lr), sync: sync)
    }

    /// `update` with the rate as a number or as a device tensor (a captured step reads it there).
    @discardableResult
    func update(_ value: CrackLoss.Value, rate: LearningRate, sync: Bool) throws -> Bool {
        var taken = true
        if let scaler {
            try scaler.scaled(value.objective).backward()
            try encoderBackward()
            try parallel?.sumGradients(optimizer.parameters)
            if sync {
                guard case .value(let lr) = rate else { throw TorchError.invalidArgument("a synchronising step takes its rate as a number") }
                taken = try scaler.step(optimizer, lr: lr)
            } else {
                try scaler.stepWithoutSync(optimizer, rate: rate)
            }
        } else {
            try value.objective.backward()
            try encoderBackward()
            try parallel?.sumGradients(optimizer.parameters)
            // The device checks the gradients (an unscale by 1 that flags inf/NaN) and the fused step skips
            // itself where they are not finite, so a bad batch never reaches the weights. Without a
            // read-back the skip is counted on the device; with one, it is returned.
            let foundInf = try Tensor.zeros([1], device: device)
            let grads = try optimizer.parameters.compactMap { try $0.tensor.grad }
            try Torch.withNoGrad { try FusedKernels.unscale(grads: grads, foundInf: foundInf, invScale: unitScale()) }
            try optimizer.step(rate: rate, foundInf: foundInf)
            if sync {
                taken = try foundInf.item() == 0
            } else {
                try skippedCounter().add_(foundInf)
            }
        }
        try optimizer.zeroGrad()
        return taken
    }

    /// The scale 1 the gradient check divides by, made once (the check runs every step).
    func unitScale() throws -> Tensor {
        if let unit { return unit }
        let one = try Tensor.ones([1], device: device)
        unit = one
        return one
    }

    /// The device counter of skipped steps, made on first use (before any capture: see GradScaler's).
    func skippedCounter() throws -> Tensor {
        if let scaler { return try scaler.skippedCounter() }
        if let skipped { return skipped }
        let counter = try Tensor.zeros([1], device: device)
        skipped = counter
        return counter
    }

    /// With checkpointing, the decoder's backward stopped at the embedding: continue through the encoder.
    /// (`update` does this; call it after a backward of your own.)
    public func finishBackward() throws { try encoderBackward() }

    private func encoderBackward() throws {
        guard let checkpoints = pending else { return }
        pending = nil
        try model.imageEncoder.backward(from: checkpoints) { body in try autocast(body) }
    }
}
