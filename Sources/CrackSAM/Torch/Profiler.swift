import CTorchShim
import Foundation

/// libtorch's own profiler (Kineto) around some work: which ops ran and how often, and on CUDA which
/// kernels each op launched and how long they took on the device. This is what tells where a step's time
/// goes when it misses a speed target; `bench train|infer --profile-steps N` prints the tables.
public enum Profiler {
    /// Runs `body` under the profiler. With `cuda`, the device's kernels and copies are recorded too;
    /// the caller makes sure the work has finished (synchronises) before `body` returns. With `shapes`,
    /// each op's input sizes and dtypes go into the saved trace (`scripts/trace-report` reads them).
    public static func record<R>(cuda: Bool, shapes: Bool = false, _ body: () throws -> R) throws -> (result: R, profile: Profile) {
        try check(ct_profiler_start(cuda ? 1 : 0, shapes ? 1 : 0))
        let result: R
        do { result = try body() } catch {
            var p: ct_profile? = nil
            // The body's error is the one reported; a failed stop's own error is freed.
            if let stopError = ct_profiler_stop(&p) { ct_error_free(stopError) } else if let p { ct_profile_free(p) }
            throw error
        }
        var p: ct_profile? = nil
        try check(ct_profiler_stop(&p))
        return (result, Profile(handle: p!))
    }
}

/// The events of one profiled stretch of work.
public final class Profile {
    public struct Event {
        public var name: String
        /// Runs on the device (a kernel, copy or fill), as opposed to a host-side op or runtime call.
        public var onDevice: Bool
        /// Kineto's activity kind: 0 is an op (RecordFunction), others are runtime calls, kernels, copies.
        public var activity: Int
        public var thread: UInt64
        public var startNs: Int64
        public var durationNs: Int64
        public var correlation: UInt64
        /// For device events and runtime calls: the correlation of the op that launched them.
        public var linkedCorrelation: UInt64
        public var isOp: Bool { !onDevice && activity == 0 }

        public init(name: String, onDevice: Bool, activity: Int, thread: UInt64, startNs: Int64, durationNs: Int64,
                    correlation: UInt64, linkedCorrelation: UInt64) {
            (self.name, self.onDevice, self.activity, self.thread) = (name, onDevice, activity, thread)
            (self.startNs, self.durationNs, self.correlation, self.linkedCorrelation) = (startNs, durationNs, correlation, linkedCorrelation)
        }
    }

    /// One line of a table: every event of one name, summed.
    public struct Row: Equatable {
        public var name: String
        public var calls: Int
        public var ns: Int64
        public init(name: String, calls: Int, ns: Int64) { (self.name, self.calls, self.ns) = (name, calls, ns) }
    }

    public let events: [Event]
    /// nil for a profile made from events (no trace to save).
    private let handle: ct_profile?

    public init(events: [Event]) {
        self.events = events
        handle = nil
    }

    init(handle: ct_profile) {
        self.handle = handle
        let n = ct_profile_event_count(handle)
        var events: [Event] = []
        events.reserveCapacity(Int(n))
        for i in 0..<n {
            var e = ct_profile_event()
            ct_profile_event_at(handle, i, &e)
            events.append(Event(name: String(cString: e.name), onDevice: e.device_type == Int32(CT_CUDA), activity: Int(e.activity),
                                thread: e.thread, startNs: e.start_ns, durationNs: e.duration_ns,
                                correlation: e.correlation, linkedCorrelation: e.linked_correlation))
        }
        self.events = events
    }

    deinit { if let handle { ct_profile_free(handle) } }

    /// Writes the Chrome trace (open it in Perfetto or chrome://tracing).
    public func saveTrace(to path: String) throws {
        guard let handle else { throw TorchError.invalidArgument("this profile was made from events: it has no trace to save") }
        try check(ct_profile_save_trace(handle, path))
    }

    public var deviceTimeNs: Int64 { events.lazy.filter(\.onDevice).map(\.durationNs).reduce(0, +) }
    public var deviceEventCount: Int { events.lazy.filter(\.onDevice).count }
    public var opCount: Int { events.lazy.filter(\.isOp).count }

    /// Ops by the device time of the kernels they launched themselves (not their children's), as
    /// PyTorch's "self CUDA time"; device work no op claims is the row "(no op)".
    public func opsBySelfDeviceTime() -> [Row] {
        var opName: [UInt64: String] = [:]
        for e in events where e.isOp { opName[e.correlation] = e.name }
        var rows: [String: Row] = [:]
        for e in events where e.isOp { rows[e.name, default: Row(name: e.name, calls: 0, ns: 0)].calls += 1 }
        for e in events where e.onDevice {
            let name = opName[e.linkedCorrelation] ?? "(no op)"
            rows[name, default: Row(name: name, calls: 0, ns: 0)].ns += e.durationNs
        }
        return Self.sorted(rows)
    }

    /// Ops by their own host time: each op's duration less that of the ops nested inside it on its thread.
    public func opsBySelfHostTime() -> [Row] {
        var rows: [String: Row] = [:]
        let byThread = Dictionary(grouping: events.filter(\.isOp), by: \.thread)
        for (_, ops) in byThread {
            // Parents start first (and, at equal starts, last longer); a stack of open ops finds each parent.
            let sorted = ops.sorted { ($0.startNs, -$0.durationNs) < ($1.startNs, -$1.durationNs) }
            var stack: [(end: Int64, index: Int)] = []
            var selfNs = sorted.map(\.durationNs)
            for (i, e) in sorted.enumerated() {
                while let top = stack.last, top.end <= e.startNs { stack.removeLast() }
                if let parent = stack.last { selfNs[parent.index] -= e.durationNs }
                stack.append((e.startNs + e.durationNs, i))
            }
            for (i, e) in sorted.enumerated() {
                rows[e.name, default: Row(name: e.name, calls: 0, ns: 0)].calls += 1
                rows[e.name]!.ns += max(selfNs[i], 0)
            }
        }
        return Self.sorted(rows)
    }

    /// Device events (kernels, copies, fills) by name.
    public func kernels() -> [Row] {
        var rows: [String: Row] = [:]
        for e in events where e.onDevice {
            rows[e.name, default: Row(name: e.name, calls: 0, ns: 0)].calls += 1
            rows[e.name]!.ns += e.durationNs
        }
        return Self.sorted(rows)
    }

    private static func sorted(_ rows: [String: Row]) -> [Row] {
        rows.values.sorted { ($0.ns, $1.name) > ($1.ns, $0.name) }
    }

    /// A table of the first `top` rows, times and calls per step (`steps` profiled), shares of `total`.
    public static func table(_ rows: [Row], title: String, steps: Int, total: Int64, top: Int) -> String {
        let n = Double(max(steps, 1))
        var lines = [title, "   ms/step   share calls/step  name"]
        for r in rows.prefix(top) {
            let name = r.name.count > 90 ? String(r.name.prefix(87)) + "..." : r.name
            lines.append(String(format: "%10.3f %6.1f%% %9.1f   %@", Double(r.ns) / 1e6 / n,
                                total > 0 ? 100 * Double(r.ns) / Double(total) : 0, Double(r.calls) / n, name))
        }
        if rows.count > top {
            let rest = rows.dropFirst(top)
            let ns = rest.map(\.ns).reduce(0, +)
            lines.append(String(format: "%10.3f %6.1f%% %9.1f   (%ld more)", Double(ns) / 1e6 / n,
                                total > 0 ? 100 * Double(ns) / Double(total) : 0, Double(rest.map(\.calls).reduce(0, +)) / n, rest.count))
        }
        return lines.joined(separator: "\n")
    }
}
