import ArgumentParser
import CrackSAM
import Foundation

/// `--nproc N`: runs N ranks of this same command on this machine, as torchrun does — each a child
/// process with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set. The children share this
/// terminal (rank 0 alone prints progress), and Ctrl-C reaches all of them, so they stop together with
/// a resumable checkpoint. When one rank fails, the others are stopped and the launcher fails too.
enum Launcher {
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

    static func run(processes n: Int, log: (String) -> Void) throws {
        guard let executable = Bundle.main.executablePath else { throw ValidationError("cannot find crack-cli's own path") }
        let env = ProcessInfo.processInfo.environment
        let port = env["MASTER_PORT"].flatMap(Int.init) ?? DistributedEnvironment.freeLocalPort()
        let arguments = childArguments(Array(CommandLine.arguments.dropFirst()))
        log("launching \(n) ranks on 127.0.0.1:\(port)")
        fflush(stdout)
        var started: [Process] = []
        for rank in 0..<n {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = arguments
            p.environment = env.merging(DistributedEnvironment.localVariables(rank: rank, worldSize: n, port: port)) { _, new in new }
            try p.run()
            started.append(p)
        }
        let children = started
        // SIGTERM to the launcher alone is passed on; SIGINT from a terminal reaches the children itself.
        signal(SIGINT, SIG_IGN)
        let term = DispatchSource.makeSignalSource(signal: SIGTERM)
        signal(SIGTERM, SIG_IGN)
        term.setEventHandler { children.filter(\.isRunning).forEach { kill($0.processIdentifier, SIGTERM) } }
        term.resume()
        var failed: (rank: Int, status: Int32)?
        while children.contains(where: \.isRunning) {
            if failed == nil, let bad = children.enumerated().first(where: { !$0.element.isRunning && $0.element.terminationStatus != 0 }) {
                failed = (bad.offset, bad.element.terminationStatus)
                // The others would fail at their next collective anyway; stop them now, then for good.
                children.filter(\.isRunning).forEach { kill($0.processIdentifier, SIGTERM) }
                DispatchQueue.global().asyncAfter(deadline: .now() + 15) {
                    children.filter(\.isRunning).forEach { kill($0.processIdentifier, SIGKILL) }
                }
            }
            usleep(100_000)
        }
        if failed == nil, let bad = children.enumerated().first(where: { $0.element.terminationStatus != 0 }) {
            failed = (bad.offset, bad.element.terminationStatus)
        }
        if let failed { throw DistributedError.rankFailed(rank: failed.rank, status: failed.status) }
    }
}
