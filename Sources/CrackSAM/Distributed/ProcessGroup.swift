import CTorchShim
import Foundation

/// A torch.distributed process group (c10d) over a TCPStore rendezvous: libtorch's Gloo backend on the
/// CPU (CUDA tensors are staged through the host), NCCL where this build has it. Every collective is
/// in place and blocking, and bounded by the group's timeout: a peer that died makes it throw
/// `DistributedError.collective` instead of hanging.
public final class ProcessGroup {
    public enum Backend: String, CaseIterable, Sendable {
        case gloo, nccl
    }

    public enum ReduceOp: Int32, Sendable {
        case sum = 0, product = 2, min = 3, max = 4
    }

    public let rank: Int
    public let worldSize: Int
    public let backend: Backend
    /// This rank's GPU (LOCAL_RANK): where NCCL's collectives run.
    public let localRank: Int
    private let store: ct_store
    private let group: ct_group

    /// The longest timeout taken, in seconds: a week.
    public static let maxTimeout = 7.0 * 24 * 3600

    /// Throws, naming --dist-timeout, unless `timeout` is a number of seconds in (0, maxTimeout].
    public static func validate(timeout: Double) throws {
        // Below a millisecond it is 0 ms for the backend, and the rendezvous fails at once.
        guard timeout.isFinite, timeout >= 0.001, timeout <= maxTimeout else {
            throw TorchError.invalidArgument("--dist-timeout must be a number of seconds from 0.001 to \(Int(maxTimeout)) (got \(timeout))")
        }
    }

    /// Whether this build has NCCL compiled in (the GPU bundle does; the CPU build has Gloo only).
    public static var ncclAvailable: Bool { ct_nccl_compiled() != 0 }

    /// Joins the job described by `environment`: rank 0 serves the store at MASTER_ADDR:MASTER_PORT,
    /// every rank connects, then the backend connects the ranks to one another. `timeout` bounds the
    /// rendezvous and every later collective.
    public init(environment env: DistributedEnvironment, backend: Backend = .gloo, timeout: Double = 300,
                processEnvironment: [String: String] = ProcessInfo.processInfo.environment) throws {
        // Checked before the conversion to milliseconds, which traps on NaN and on values past Int64.
        try ProcessGroup.validate(timeout: timeout)
        rank = env.rank
        worldSize = env.worldSize
        localRank = env.localRank
        self.backend = backend
        let ms = Int64(timeout * 1000)
        var s: ct_store? = nil
        if let err = ct_store_tcp(env.masterAddress, Int32(env.masterPort), env.rank == 0 ? 1 : 0, Int32(env.worldSize), ms, &s) {
            let message = String(cString: ct_error_message(err))
            ct_error_free(err)
            throw DistributedError.rendezvous(address: env.masterAddress, port: env.masterPort, rank: env.rank, message: message)
        }
        store = s!
        var g: ct_group? = nil
        var failure: ct_error? = nil
        switch backend {
        case .gloo:
            // As torch.distributed: GLOO_SOCKET_IFNAME names the interfaces; otherwise a job on this
            // machine (loopback master) stays on loopback, and others use the hostname's address.
            let interface = processEnvironment["GLOO_SOCKET_IFNAME"].flatMap { $0.isEmpty ? nil : $0 }
            let local = ["127.0.0.1", "localhost", "::1"].contains(env.masterAddress)
            failure = ct_group_gloo(store, Int32(env.rank), Int32(env.worldSize), ms, interface, local && interface == nil ? env.masterAddress : nil, &g)
        case .nccl:
            guard ProcessGroup.ncclAvailable else {
                ct_store_free(store)
                throw DistributedError.backendUnavailable(
                    name: "nccl", reason: "this build of crack-cli has no NCCL (libtorch's ProcessGroupNCCL needs nccl.h at build time; scripts/gpu-build provides it); use --dist-backend gloo")
            }
            // This rank's GPU: LOCAL_RANK, as torchrun assigns them.
            failure = ct_group_nccl(store, Int32(env.rank), Int32(env.worldSize), ms, Int32(env.localRank), &g)
        }
        if let failure {
            let message = String(cString: ct_error_message(failure))
            ct_error_free(failure)
            ct_store_free(store)
            throw DistributedError.rendezvous(address: env.masterAddress, port: env.masterPort, rank: env.rank, message: message)
        }
        group = g!
    }

    deinit {
        ct_group_free(group)
        ct_store_free(store)
    }

    private func run(_ operation: String, _ body: () -> ct_error?) throws {
        if let err = body() {
            let message = String(cString: ct_error_message(err))
            ct_error_free(err)
            throw DistributedError.collective(operation: operation, rank: rank, worldSize: worldSize, message: message)
        }
    }

    /// Where a tensor on `device` must go for this backend's collectives, or nil where it can stay: NCCL
    /// reduces CUDA tensors only, so host tensors (a stop flag, score sums) go through the rank's GPU;
    /// Gloo takes host and CUDA tensors alike.
    public static func stagingDevice(backend: Backend, tensorDevice: Device, localRank: Int) -> Device? {
        backend == .nccl && tensorDevice == .cpu ? .cuda(localRank) : nil
    }

    /// Runs `collective` on `tensor`, or on its copy on the staging device, copied back in place after.
    private func staged(_ tensor: Tensor, _ collective: (Tensor) throws -> Void) throws {
        guard let device = ProcessGroup.stagingDevice(backend: backend, tensorDevice: tensor.device, localRank: localRank) else {
            return try collective(tensor)
        }
        let moved = try tensor.to(device: device)
        try collective(moved)
        try tensor.copy_(moved)
    }

    /// Whether `flag` is true on any rank (a one-element max all-reduce): how ranks agree to stop together.
    public func anyRank(_ flag: Bool) throws -> Bool {
        let f = try Tensor([Float(flag ? 1 : 0)], shape: [1])
        try allReduce(f, op: .max)
        return try f.item() != 0
    }

    /// What a rank appends to a sum all-reduce the others wait in, so that a rank whose share failed (a
    /// file that broke, say) still joins it and every rank learns of the failure there, with no collective
    /// of its own: [1, rank] after a failure, [0, 0] otherwise. (Throwing instead would leave the others
    /// waiting until the timeout, or until the launcher kills them with their work unwritten.)
    public func failureFlags(_ failure: Error?) -> [Double] { failure == nil ? [0, 0] : [1, Double(rank)] }

    /// After that all-reduce, given the two flags summed: this rank's own error, or the others' failure.
    public func throwIfAnyFailed(own: Error?, flags: ArraySlice<Double>, work: String) throws {
        if let own { throw own }
        let f = Array(flags)
        guard f.count == 2, f[0] > 0 else { return }
        throw DistributedError.failedOnAnotherRank(rank: ProcessGroup.failedRank(count: f[0], rankSum: f[1]), work: work)
    }

    /// The rank that failed, from failure flags summed over the ranks; nil when several did.
    public static func failedRank(count: Double, rankSum: Double) -> Int? { count == 1 ? Int(rankSum) : nil }

    /// Reduces `tensor` over all ranks, in place (every rank ends with the result).
    public func allReduce(_ tensor: Tensor, op: ReduceOp = .sum) throws {
        try staged(tensor) { t in try run("all-reduce") { ct_group_allreduce(group, t.handle, op.rawValue) } }
    }

    /// Overwrites `tensor` on every rank with rank `root`'s.
    public func broadcast(_ tensor: Tensor, from root: Int = 0) throws {
        try staged(tensor) { t in try run("broadcast") { ct_group_broadcast(group, t.handle, Int32(root)) } }
    }

    /// Every rank's `tensor` (same shape on all ranks), stacked: (worldSize, ...), on `tensor`'s device.
    public func allGather(_ tensor: Tensor) throws -> Tensor {
        let device = ProcessGroup.stagingDevice(backend: backend, tensorDevice: tensor.device, localRank: localRank)
        let input = try device.map { try tensor.to(device: $0) } ?? tensor
        var out: ct_tensor? = nil
        try run("all-gather") { ct_group_allgather(group, input.handle, &out) }
        let gathered = Tensor(owning: out!)
        return device == nil ? gathered : try gathered.to(device: tensor.device)
    }

    public func barrier() throws {
        try run("barrier") { ct_group_barrier(group) }
    }
}
