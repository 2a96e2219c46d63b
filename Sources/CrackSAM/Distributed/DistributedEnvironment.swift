import Foundation

/// Where this process sits in a data-parallel job, read from the variables `torchrun` (and SLURM
/// wrappers written for it) set: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
public struct DistributedEnvironment: Equatable, Sendable {
    public var rank: Int
    public var worldSize: Int
    /// The rank within this machine: which GPU this process takes.
    public var localRank: Int
    public var masterAddress: String
    public var masterPort: Int

    public init(rank: Int, worldSize: Int, localRank: Int, masterAddress: String, masterPort: Int) {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank
        self.masterAddress = masterAddress
        self.masterPort = masterPort
    }

    /// nil when WORLD_SIZE is not set (a plain single-process run). Once it is set, every other
    /// variable must be present and sensible; a wrong one is named.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> DistributedEnvironment? {
        guard let sizeText = env["WORLD_SIZE"] else { return nil }
        func int(_ name: String, _ text: String?, default value: Int? = nil) throws -> Int {
            guard let text else {
                if let value { return value }
                throw DistributedError.badEnvironment(variable: name, value: "", reason: "is not set (WORLD_SIZE is)")
            }
            guard let v = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw DistributedError.badEnvironment(variable: name, value: text, reason: "is not an integer")
            }
            return v
        }
        let worldSize = try int("WORLD_SIZE", sizeText)
        guard (1...65536).contains(worldSize) else {
            throw DistributedError.badEnvironment(variable: "WORLD_SIZE", value: sizeText, reason: "must be between 1 and 65536")
        }
        let rank = try int("RANK", env["RANK"], default: worldSize == 1 ? 0 : nil)
        guard (0..<worldSize).contains(rank) else {
            throw DistributedError.badEnvironment(variable: "RANK", value: String(rank), reason: "must be in 0..<\(worldSize)")
        }
        let localRank = try int("LOCAL_RANK", env["LOCAL_RANK"], default: rank)
        guard (0...127).contains(localRank) else {
            throw DistributedError.badEnvironment(variable: "LOCAL_RANK", value: String(localRank), reason: "must be in 0…127 (a GPU index on its machine)")
        }
        let address = env["MASTER_ADDR"].flatMap { $0.isEmpty ? nil : $0 } ?? (worldSize == 1 ? "127.0.0.1" : nil)
        guard let address else { throw DistributedError.badEnvironment(variable: "MASTER_ADDR", value: "", reason: "is not set (WORLD_SIZE is)") }
        let port = try int("MASTER_PORT", env["MASTER_PORT"], default: worldSize == 1 ? 29500 : nil)
        guard (1..<65536).contains(port) else {
            throw DistributedError.badEnvironment(variable: "MASTER_PORT", value: String(port), reason: "is not a TCP port")
        }
        return DistributedEnvironment(rank: rank, worldSize: worldSize, localRank: localRank, masterAddress: address, masterPort: port)
    }

    /// A TCP port on loopback that nobody listens on right now (bound to port 0, read back, closed).
    public static func freeLocalPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return 29500 }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        let named = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        guard bound == 0, named == 0 else { return 29500 }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// The variables that describe rank `rank` of a local job of `worldSize` processes.
    public static func localVariables(rank: Int, worldSize: Int, port: Int) -> [String: String] {
        ["RANK": String(rank), "WORLD_SIZE": String(worldSize), "LOCAL_RANK": String(rank), "LOCAL_WORLD_SIZE": String(worldSize),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": String(port)]
    }
}

public enum DistributedError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case badEnvironment(variable: String, value: String, reason: String)
    case rendezvous(address: String, port: Int, rank: Int, message: String)
    /// A collective failed: usually another rank exited (its log says why) or the timeout passed.
    case collective(operation: String, rank: Int, worldSize: Int, message: String)
    case backendUnavailable(name: String, reason: String)
    /// A rank of a job launched with --nproc failed; the others stopped with it, or (`stopped`) had to
    /// be stopped.
    case rankFailed(rank: Int, status: Int32, stopped: Bool)
    /// Another rank (nil: several) failed at `work` and said so in a collective (see
    /// `ProcessGroup.failureFlags`); its own output says why.
    case failedOnAnotherRank(rank: Int?, work: String)

    public var description: String {
        switch self {
        case .badEnvironment(let variable, let value, let reason):
            return value.isEmpty ? "\(variable) \(reason)" : "\(variable)=\(value) \(reason)"
        case .rendezvous(let address, let port, let rank, let message):
            return "rank \(rank): rendezvous at \(address):\(port) failed: \(message)"
        case .collective(let operation, let rank, let worldSize, let message):
            return "rank \(rank) of \(worldSize): \(operation) failed (another rank probably exited or timed out; see its log): \(message)"
        case .backendUnavailable(let name, let reason): return "distributed backend \(name) is unavailable: \(reason)"
        case .rankFailed(let rank, let status, let stopped):
            return "rank \(rank) exited with status \(status); the other ranks " + (stopped ? "were stopped" : "stopped with it")
        case .failedOnAnotherRank(let rank, let work):
            return (rank.map { "rank \($0)" } ?? "several ranks") + " could not finish \(work) (its output says why)"
        }
    }

    public var errorDescription: String? { description }
}
