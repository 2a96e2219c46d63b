import ArgumentParser
import CrackSAM
import Foundation

/// `--nproc N`: runs N ranks of this same command on this machine, as torchrun does — each a child
/// process with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set. The children share this
/// terminal (rank 0 alone prints progress), and Ctrl-C reaches all of them, so they stop together with
/// a resumable checkpoint. When one rank fails, the others are stopped and the launcher fails too.
enum Launcher {
    /// The exit status of a rank that stopped because another failed (they agreed in a collective; see
    /// `stopForAnotherRank`). The launcher names the rank that failed, and leaves the others a moment to
    /// finish what they save on the way out.
    static let stoppedForAnotherRank: Int32 = 3

    /// This invocation's arguments without `--nproc N` / `--nproc=N`.
    static func childArguments(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var skipNext = false
        for a in arguments {
            if skipNext { skipNext = false; continue }
            if a == "--nproc" { skipNext = true; continue }
            if a.hasPrefix("--nproc=") { continue }
            out.append(a)
        }
        return out
    }

    /// Handles `--nproc N` for a command: with N > 1 runs the N ranks and returns true (the command is
    /// done); otherwise returns false and the command runs in this process.
    static func launchIfAsked(nproc: Int?, environment: DistributedEnvironment?) throws -> Bool {
        guard let nproc else { return false }
        try requirePositive(nproc, "--nproc")
        guard environment == nil else { throw ValidationError("--nproc starts its own ranks; it cannot run under a launcher that set WORLD_SIZE") }
        guard nproc > 1 else { return false }
        try run(processes: nproc) { Swift.print($0) }
        return true
    }

    static func run(processes n: Int, log: (String) -> Void) throws {
        guard let executable = Bundle.main.executablePath else { throw ValidationError("cannot find crack-cli's own path") }
        let env = ProcessInfo.processInfo.environment
        let port: Int
        if let text = env["MASTER_PORT"] {
            guard let p = Int(text), (1..<65536).contains(p) else { throw ValidationError("MASTER_PORT=\(text) is not a TCP port") }
            port = p
        } else {
            port = DistributedEnvironment.freeLocalPort()
        }
        let arguments = childArguments(Array(CommandLine.arguments.dropFirst()))
        log("launching \(n) ranks on 127.0.0.1:\(port)")
        fflush(stdout)
        // posix_spawn and waitpid directly: the launcher reaps its children itself.
        var pids: [pid_t] = []
        for rank in 0..<n {
            let childEnv = env.merging(DistributedEnvironment.localVariables(rank: rank, worldSize: n, port: port)) { _, new in new }
            let argv = ([executable] + arguments).map { strdup($0) } + [nil]
            let envp = childEnv.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, executable, nil, nil, argv, envp)
            guard rc == 0 else {
                pids.forEach { kill($0, SIGTERM) }
                throw ValidationError("cannot start rank \(rank): \(String(cString: strerror(rc)))")
            }
            pids.append(pid)
        }
        // SIGINT or SIGTERM to the launcher is passed on as SIGTERM. A terminal's Ctrl-C reaches the
        // children itself too (same process group): they take the two as one request (StopRequest).
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let term = DispatchSource.makeSignalSource(signal: SIGTERM)
        let running = pids
        let signalled = SignalSeen()
        term.setEventHandler { signalled.set(); running.forEach { kill($0, SIGTERM) } }
        term.resume()
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT)
        interrupt.setEventHandler { signalled.set(); running.forEach { kill($0, SIGTERM) } }
        interrupt.resume()
        var alive = Set(pids)
        // The rank to name: the first that failed for a reason of its own (not stoppedForAnotherRank).
        var failed: (rank: Int, status: Int32)?
        var statuses: [Int32] = []
        var termAt: Date?, killAt: Date?
        while !alive.isEmpty {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0, alive.contains(pid) {
                alive.remove(pid)
                // Exit code, or 128 + signal for a rank that was killed (as shells report it).
                let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                statuses.append(code)
                if code != 0 {
                    if failed == nil || (failed!.status == stoppedForAnotherRank && code != stoppedForAnotherRank) {
                        failed = (pids.firstIndex(of: pid)!, code)
                    }
                    // Ranks that agreed to stop exit within moments, rank 0 after saving what it saves. The
                    // others would fail at their next collective anyway, or hang in it: after a short
                    // grace they are asked to stop, then made to.
                    if termAt == nil { termAt = Date().addingTimeInterval(5) }
                }
                continue
            }
            if let t = termAt, killAt == nil, Date() > t {
                alive.forEach { kill($0, SIGTERM) }
                killAt = Date().addingTimeInterval(15)
            }
            if let k = killAt, Date() > k { alive.forEach { kill($0, SIGKILL) } }
            usleep(50_000)
        }
        guard let failed else { return }
        // Stopped by Ctrl-C or SIGTERM: rank 0 has said so and what it saved; no rank is to blame. A rank
        // that died of something else meanwhile (a crash, a kill) is still named.
        // A rank the passed-on SIGTERM reached before it caught signals (in its first moments) dies of it
        // (128 + 15): stopped by the signal too, not a rank's failure.
        if signalled.value && statuses.allSatisfy({ [0, 1, stoppedForAnotherRank, 128 + SIGTERM].contains($0) }) {
            if statuses.contains(128 + SIGTERM) { FileHandle.standardError.write(Data("stopped by a signal\n".utf8)) }
            throw ExitCode.failure
        }
        throw DistributedError.rankFailed(rank: failed.rank, status: failed.status, stopped: killAt != nil)
    }

    /// Whether the launcher was sent SIGINT or SIGTERM (set on the signal source's queue, read after).
    final class SignalSeen: @unchecked Sendable {
        private let lock = NSLock()
        private var seen = false
        func set() { lock.lock(); seen = true; lock.unlock() }
        var value: Bool { lock.lock(); defer { lock.unlock() }; return seen }
    }
}
