import Foundation

/// Warm-up then polynomial decay, as the authors' training loop sets it (REFERENCE "Training recipe"):
/// the first step runs at base/warmup; after step i (0-based) the rate becomes base·(i+1)/warmup while
/// i < warmup, and base·(1 − (i − warmup)/maxIterations)^power afterwards.
public struct LRSchedule: Equatable, Sendable, Codable {
    public var base: Double
    public var warmup: Int
    public var maxIterations: Int
    public var power: Double

    public init(base: Double = 4e-4, warmup: Int = 300, maxIterations: Int, power: Double = 6) {
        self.base = base
        self.warmup = warmup
        self.maxIterations = maxIterations
        self.power = power
    }

    /// The rate set after step i has run.
    func after(step i: Int) -> Double {
        if warmup > 0 && i < warmup { return base * Double(i + 1) / Double(warmup) }
        let progress = Double(i - warmup) / Double(max(maxIterations, 1))
        return base * pow(max(1.0 - progress, 0), power)
    }

    /// The rate step s (0-based) runs at.
    public func rate(at step: Int) -> Double {
        step == 0 ? (warmup > 0 ? base / Double(warmup) : base) : after(step: step - 1)
    }
}
