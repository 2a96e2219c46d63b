import Foundation

/// A request to stop early, made by a signal (Ctrl-C, SIGTERM) and honoured where stopping loses
/// nothing: the trainer after a step (it checkpoints, and the run resumes), eval between batches (it
/// reports and writes what finished). A second signal ends the process at once, as it would have.
public enum StopRequest {
    /// Written by the signal handler, hence a plain Int32: nothing else is safe to touch there.
    nonisolated(unsafe) public static var flag: Int32 = 0

    public static var isRequested: Bool { flag != 0 }

    /// SIGINT and SIGTERM set the flag; the same signal again gets its default action (termination).
    public static func catchSignals() {
        for s in [SIGINT, SIGTERM] {
            signal(s) { s in
                if StopRequest.flag != 0 {
                    signal(s, SIG_DFL)
                    raise(s)
                }
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
