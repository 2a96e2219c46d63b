/// The training step captured in a CUDA graph: the whole of forward, loss, backward, the fp16 scaler's
/// check and the fused AdamW update, replayed with one launch. With ViT-H that is thousands of kernels a
/// step whose host-side cost (Swift, the dispatcher, autograd, the launches) would otherwise bound the GPU.
///
/// A graph replays fixed addresses, so the step owns its inputs (each batch is copied into them), reads
/// the learning rate from a device tensor written before each replay, and its loss tensors are the ones
/// the capture produced (copied out after each replay, since the next one overwrites them).
final class CapturedStep {
    let graph: CUDAGraph
    let images: Tensor
    let labels: Tensor
    let rate: Tensor
    let value: CrackLoss.Value

    init(graph: CUDAGraph, images: Tensor, labels: Tensor, rate: Tensor, value: CrackLoss.Value) {
        self.graph = graph
        self.images = images
        self.labels = labels
        self.rate = rate
        self.value = value
    }
}

extension TrainingStep {
    /// Eager steps before the capture. They make what the capture must find already made: the optimizer's
    /// and scaler's state, cuBLAS handles, autograd's device threads; and the capture's own stream is
    /// warmed by the step that precedes it.
    public static let eagerStepsBeforeCapture = 2

    /// The step through the graph, or nil where this batch must run eagerly: during the warm-up, and for
    /// a batch of another shape than the captured one (an epoch's last, smaller batch).
    func graphStep(images: Tensor, labels: Tensor, lr: Double) throws -> CrackLoss.Value? {
        if let captured {
            guard captured.images.shape == images.shape, captured.labels.shape == labels.shape else { return nil }
            try Torch.withNoGrad {
                try captured.images.copy_(images)
                try captured.labels.copy_(labels)
                try captured.rate.fill_(lr)
            }
            try captured.graph.replay()
            let v = captured.value, loss = try v.loss.detach().clone()
            return CrackLoss.Value(loss: loss, ce: try v.ce.detach().clone(), dice: try v.dice.detach().clone(), objective: loss)
        }
        if parallel != nil {
            throw TorchError.invalidArgument("CUDA graphs are not used with data parallelism (the gradient all-reduce runs "
                + "between backward and update); run without --cuda-graph")
        }
        stepCalls += 1
        guard stepCalls > Self.eagerStepsBeforeCapture else { return nil }

        let graph: CUDAGraph
        do { graph = try CUDAGraph(device: device) } catch {
            cudaGraphFailure = "\(error)"
            return nil
        }
        // This batch's step, for real, on the graph's stream; then the same step captured (nothing runs).
        // Only detached values outlive a step (a graph kept alive holds gradient accumulators that then
        // meet the capture on another stream; see CrackLoss.Value.detached).
        let value = try graph.onStream { () -> CrackLoss.Value in
            let value = try forward(images: images, labels: labels)
            try update(value, rate: .value(lr), sync: false)
            return try value.detached()
        }
        do {
            let staticImages = try images.clone(), staticLabels = try labels.clone()
            // float32, as PyTorch's capturable optimizers keep it; the kernel reads it on the device.
            let rate = try Tensor.full([1], value: lr, dtype: .float32, device: device)
            _ = try skippedCounter()
            let out = try graph.capture { () -> CrackLoss.Value in
                let v = try forward(images: staticImages, labels: staticLabels)
                try update(v, rate: .tensor(rate), sync: false)
                return try v.detached()
            }
            captured = CapturedStep(graph: graph, images: staticImages, labels: staticLabels, rate: rate, value: out)
        } catch {
            // Nothing of the capture ran, so the weights and optimizer state are those of the eager step;
            // drop what the interrupted capture left on the host side and go on eagerly.
            pending = nil
            try optimizer.zeroGrad()
            cudaGraphFailure = "\(error)"
        }
        return value
    }
}
