import Foundation

/// Counts the floating-point operations of the matrix products a computation runs (matmul, linear,
/// convolutions, attention), as MFU figures count them: 2 per multiply-add, element-wise work ignored.
/// For training it also counts the backward products autograd will need: a gradient for each operand
/// that requires one costs as much as the forward product (attention's backward: twice its forward).
/// So a frozen encoder with LoRA counts its input-gradient products but not its weight gradients.
///
/// Counting is off unless `FlopCounter.count { … }` is running on this thread.
public enum FlopCounter {
    /// How many `count` calls are running in the process: the ops test this plain integer first, so
    /// outside a count they pay one load, not a task-local lookup.
    nonisolated(unsafe) static var running = 0
    static let runningLock = NSLock()

    /// Whether this thread is inside `count` (what the ops check before any shape arithmetic).
    @inline(__always) static var isActive: Bool { running > 0 && active != nil }

    public struct Count: Equatable, Sendable {
        public var forward: Double = 0
        public var backward: Double = 0
        public var total: Double { forward + backward }

        public init(forward: Double = 0, backward: Double = 0) {
            self.forward = forward
            self.backward = backward
        }
    }

    @TaskLocal static var active: Box?

    final class Box: @unchecked Sendable {
        var count = Count()
    }

    /// Runs `body` and returns what it counted alongside its result.
    public static func count<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Count) {
        let box = Box()
        runningLock.lock(); running += 1; runningLock.unlock()
        defer { runningLock.lock(); running -= 1; runningLock.unlock() }
        let result = try $active.withValue(box) { try body() }
        return (result, box.count)
    }

    /// Runs `body` with counting off on this thread: for a layer that counts its own work because the
    /// ops it runs are not the products its model defines (attention with folded-in extra columns).
    static func uncounted<R>(_ body: () throws -> R) rethrows -> R {
        guard isActive else { return try body() }
        return try $active.withValue(nil) { try body() }
    }

    @inline(__always)
    static func add(forward: Double, operands: [Tensor]) {
        guard let box = active else { return }
        box.count.forward += forward
        if Torch.isGradEnabled {
            box.count.backward += forward * Double(operands.filter(\.requiresGrad).count)
        }
    }

    static func attention(forward: Double, operands: [Tensor]) {
        guard let box = active else { return }
        box.count.forward += forward
        if Torch.isGradEnabled, operands.contains(where: \.requiresGrad) { box.count.backward += 2 * forward }
    }
}
