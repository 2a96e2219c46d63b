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
        /// The loss of the whole (global) batch: what is logged, the same on every rank.
        public var loss: Tensor
        public var ce: Tensor
        public var dice: Tensor
        /// What this process back-propagates. On one process it is `loss`; with data parallelism it is
        /// this rank's share, whose gradients summed over the ranks are the gradient of `loss`.
        public var objective: Tensor
        /// With data parallelism, (2): how many ranks stood a NaN batch in for one they could not make this
        /// step (a file that broke during the run), and the sum of those ranks' numbers (the rank itself
        /// when one did). It travels in the loss's all-reduce, so every rank learns it without a collective
        /// of its own; nil on one process.
        public var standIns: Tensor? = nil

        /// The same numbers without their autograd graph. A step hands back only these: a loss kept with
        /// its graph (for a deferred read-back, say) keeps every node alive, the parameters' gradient
        /// accumulators included, and a CUDA graph captured on another stream then fails on them
        /// ("operation would make the legacy stream depend on a capturing blocking stream").
        public func detached() throws -> Value {
            let loss = try self.loss.detach()
            return Value(loss: loss, ce: try ce.detach(), dice: try dice.detach(), objective: loss, standIns: try standIns?.detach())
        }
    }

    /// The per-class sums Dice is made of: Σp·t, Σp², Σt² over batch and pixels, each (C).
    func diceSums(logits: Tensor, target: Tensor) throws -> (probs: Tensor, intersect: Tensor, z: Tensor, y: Tensor) {
        let probs = try logits.softmax(dim: 1)
        // (B, H, W, C) one-hot → (B, C, H, W), in the logits' dtype.
        let onehot = try target.oneHot(classes: logits.size(1)).permute([0, 3, 1, 2]).to(dtype: probs.dtype)
        return (probs, try (probs * onehot).sum(dims: [0, 2, 3]), try (probs * probs).sum(dims: [0, 2, 3]),
                try (onehot * onehot).sum(dims: [0, 2, 3]))
    }

    func dice(intersect: Tensor, z: Tensor, y: Tensor) throws -> Tensor {
        try (1.0 - (intersect * 2.0 + Self.smooth) / (z + y + Self.smooth)).mean()
    }

    /// logits (B, C, H, W), target (B, H, W) int64 class indices.
    public func callAsFunction(logits: Tensor, target: Tensor) throws -> Value {
        let ce = try logits.crossEntropy(target: target)
        let sums = try diceSums(logits: logits, target: target)
        let dice = try dice(intersect: sums.intersect, z: sums.z, y: sums.y)
        let loss = try ce * ceWeight + dice * diceWeight
        return Value(loss: loss, ce: ce, dice: dice, objective: loss)
    }

    /// The loss of the global batch split over the ranks of `group` (equal shares), as one process holding
    /// the whole batch would compute it: CE is the mean of the ranks' means, and Dice's sums run over every
    /// rank's pixels (one all-reduce of 1 + 3C numbers). The objective is this rank's share: CE/W plus the
    /// global Dice in which the other ranks' sums enter as constants, so the ranks' gradients, summed,
    /// are exactly the gradient of the global loss. `standIn` (2, this rank's [1, rank] when its batch is a
    /// stand-in, zeros otherwise; in the loss's dtype, float32 or float64) is summed in the same all-reduce
    /// into `Value.standIns`.
    public func callAsFunction(logits: Tensor, target: Tensor, group: ProcessGroup, standIn: Tensor? = nil) throws -> Value {
        let w = Double(group.worldSize)
        let ce = try logits.crossEntropy(target: target)
        let sums = try diceSums(logits: logits, target: target)
        let classes = sums.intersect.count
        var parts = [try ce.reshape([1]), sums.intersect, sums.z, sums.y]
        if let standIn { parts.append(standIn) }
        let local = try Tensor.cat(parts).detach()
        let total = try local.clone()
        try group.allReduce(total)
        let others = try total - local
        func part(_ t: Tensor, _ k: Int) throws -> Tensor { try t + others.narrow(dim: 0, start: 1 + k * classes, length: classes) }
        let dice = try dice(intersect: part(sums.intersect, 0), z: part(sums.z, 1), y: part(sums.y, 2))
        let globalCE = try total.narrow(dim: 0, start: 0, length: 1).reshape([]) / w
        let objective = try ce * (ceWeight / w) + dice * diceWeight
        let loss = try (globalCE * ceWeight + dice.detach() * diceWeight)
        let standIns = standIn == nil ? nil : try total.narrow(dim: 0, start: 1 + 3 * classes, length: 2)
        return Value(loss: loss, ce: globalCE, dice: try dice.detach(), objective: objective, standIns: standIns)
    }
}
