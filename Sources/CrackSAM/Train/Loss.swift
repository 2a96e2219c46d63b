/// CrackSAM's loss: 0.2·CE + 0.8·Dice (REFERENCE "Training recipe").
/// CE: softmax cross-entropy over the channels, mean over pixels. Dice: on softmax probabilities, per class
/// c: 1 − (2Σp·t + 1e-5)/(Σp² + Σt² + 1e-5) over the whole batch, averaged over the classes.
public struct CrackLoss: Sendable {
    public var ceWeight = 0.2
    public var diceWeight = 0.8
    public static let smooth = 1e-5

    public init(ceWeight: Double = 0.2, diceWeight: Double = 0.8) {
        self.ceWeight = ceWeight
        self.diceWeight = diceWeight
    }

    public struct Value {
        public var loss: Tensor
        public var ce: Tensor
        public var dice: Tensor
    }

    /// logits (B, C, H, W), target (B, H, W) int64 class indices.
    public func callAsFunction(logits: Tensor, target: Tensor) throws -> Value {
        let ce = try logits.crossEntropy(target: target)
        let probs = try logits.softmax(dim: 1)
        let classes = logits.size(1)
        // (B, H, W, C) one-hot → (B, C, H, W), in the logits' dtype.
        let onehot = try target.oneHot(classes: classes).permute([0, 3, 1, 2]).to(dtype: probs.dtype)
        let intersect = try (probs * onehot).sum(dims: [0, 2, 3])
        let z = try (probs * probs).sum(dims: [0, 2, 3])
        let y = try (onehot * onehot).sum(dims: [0, 2, 3])
        let dice = try (1.0 - (intersect * 2.0 + Self.smooth) / (z + y + Self.smooth)).mean()
        return Value(loss: try ce * ceWeight + dice * diceWeight, ce: ce, dice: dice)
    }
}
