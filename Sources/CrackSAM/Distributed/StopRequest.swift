import Foundation

/// A request to stop early, made by a signal (Ctrl-C, SIGTERM) and honoured where stopping loses
/// nothing: the trainer after a step (it checkpoints, and the run resumes), eval between batches (it
/// reports and writes what finished). A second signal ends the process at once, as it would have.
public enum StopRequest {
    /// Written by the signal handler, hence a plain Int32: nothing else is safe to touch there.
    nonisolated(unsafe) public static var flag: Int32 = 0

    public static var isRequested: Bool { flag != 0 }

    /// When the first signal came (monotonic nanoseconds), written by the handler too.
    nonisolated(unsafe) static var firstAt: Int64 = 0

    /// SIGINT and SIGTERM set the flag; a second signal gets its default action (termination), unless it
    /// comes within a second of the first: a terminal's Ctrl-C reaches the ranks of `--nproc` and their
    /// launcher, which passes it on, and the two are one request.
    public static func catchSignals() {
        for s in [SIGINT, SIGTERM] {
            signal(s) { s in
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)  // async-signal-safe
                let ns = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
                if StopRequest.flag != 0 {
                    if ns - StopRequest.firstAt < 1_000_000_000 { return }
                    signal(s, SIG_DFL)
                    raise(s)
                }
                StopRequest.firstAt = ns
                StopRequest.flag = 1
            }
        }
    }

    /// Whether any rank was asked to stop: a signal on one rank stops every rank at the same point (the
    /// ranks' collectives must stay paired). Without a group, this process's own flag.
    public static func agreed(across group: ProcessGroup?) throws -> Bool {
        guard let group else { return isRequested }
        return try group.anyRank(isRequested)
    }

    /// Thrown where work stops on request.
    public struct Interrupted: Error, CustomStringConvertible {
        public init() {}
        public var description: String { "stopped by a signal (Ctrl-C or SIGTERM)" }
    }
}
