import CTorchShim

/// Process-wide libtorch settings and scopes.
public enum Torch {
    /// The libtorch version this binary was compiled against.
    public static var version: String { String(cString: ct_torch_version()) }

    /// Run convolutions on channels-last (NHWC) inputs and weights (`--channels-last`): on CUDA, cuDNN's
    /// tensor-core kernels prefer it; the results are the same convolutions. Off here; `train` and `bench`
    /// turn it on for CUDA (the neck's input is already NHWC in memory, and cuDNN's NHWC kernels are faster).
    nonisolated(unsafe) public static var channelsLastConvolutions = false

    public static func manualSeed(_ seed: UInt64) throws { try check(ct_manual_seed(seed)) }

    /// Intra-op threads libtorch uses on the CPU.
    public static var threads: Int {
        get { Int(ct_num_threads()) }
        set { ct_set_num_threads(Int32(clamping: newValue)) }
    }

    /// TF32 for CUDA matmuls and convolutions (Ampere and later); no effect on CPU.
    public static var allowTF32: Bool {
        get { ct_tf32() != 0 }
        set { ct_set_tf32(newValue ? 1 : 0) }
    }

    public static var cudnnBenchmark: Bool = false {
        didSet { ct_set_cudnn_benchmark(cudnnBenchmark ? 1 : 0) }
    }

    public static var isGradEnabled: Bool { ct_grad_enabled() != 0 }

    /// Runs `body` without recording the autograd graph; the previous mode is restored even on throw.
    public static func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
        let previous = ct_grad_enabled()
        ct_set_grad_enabled(0)
        defer { ct_set_grad_enabled(previous) }
        return try body()
    }

    /// Runs `body` with gradients enabled (inside a no-grad region, e.g. for a training step).
    public static func withGrad<R>(_ body: () throws -> R) rethrows -> R {
        let previous = ct_grad_enabled()
        ct_set_grad_enabled(1)
        defer { ct_set_grad_enabled(previous) }
        return try body()
    }

    /// Inference mode: no graph and no version counters, cheaper than no-grad. Tensors made inside
    /// cannot later take part in autograd.
    public static func withInferenceMode<R>(_ body: () throws -> R) throws -> R {
        var guardHandle: ct_guard? = nil
        try check(ct_inference_mode_enter(&guardHandle))
        defer { ct_guard_exit(guardHandle) }
        return try body()
    }

    /// Whether this thread is inside `withInferenceMode`.
    public static var isInferenceMode: Bool { ct_inference_mode_enabled() != 0 }

    /// Mixed precision as torch.autocast: eligible ops (matmul, conv, linear, sdpa) run in `dtype`,
    /// precision-sensitive ones (softmax, layer norm, losses) in float32.
    public static func withAutocast<R>(device: Device, dtype: DType = .float16, enabled: Bool = true,
                                       _ body: () throws -> R) throws -> R {
        var guardHandle: ct_guard? = nil
        try check(ct_autocast_enter(device.shimType, dtype.rawValue, enabled ? 1 : 0, &guardHandle))
        defer { ct_guard_exit(guardHandle) }
        return try body()
    }

    public static func isAutocastEnabled(device: Device) -> Bool { ct_autocast_enabled(device.shimType) != 0 }

    /// The dtype eligible ops cast to on `device`, or nil where autocast is off there.
    public static func autocastDType(device: Device) -> DType? {
        guard isAutocastEnabled(device: device) else { return nil }
        return DType(rawValue: ct_autocast_dtype(device.shimType))
    }

    /// Autocast's cache of casted weights, reused within one autocast region (on by default). A CUDA
    /// graph is captured with it off, as PyTorch requires: the capture must cast where it uses.
    public static var autocastCache: Bool {
        get { ct_autocast_cache() != 0 }
        set { ct_set_autocast_cache(newValue ? 1 : 0) }
    }
}

/// CUDA through libtorch. Every entry loads libtorch_cuda first when it sits beside libtorch_cpu.
public enum CUDA {
    private static let loaded: Bool = ct_cuda_load() != 0

    public static var isAvailable: Bool { loaded && ct_cuda_available() != 0 }
    public static var deviceCount: Int { isAvailable ? Int(ct_cuda_device_count()) : 0 }

    /// Why libtorch_cuda, present beside libtorch_cpu, could not be loaded (nil when it loaded or is absent).
    public static var loadProblem: String? {
        _ = loaded
        let message = String(cString: ct_cuda_load_message())
        return message.isEmpty ? nil : message
    }

    public static func synchronize(device: Int = 0) throws {
        _ = loaded
        try check(ct_cuda_synchronize(Int32(device)))
    }

    public struct MemoryStats: Sendable {
        /// Bytes held by live tensors now, the most since the last reset, and reserved by the cache.
        public var allocated: Int
        public var peakAllocated: Int
        public var reserved: Int
    }

    public static func memory(device: Int = 0) throws -> MemoryStats {
        _ = loaded
        var a: Int64 = 0, p: Int64 = 0, r: Int64 = 0
        try check(ct_cuda_memory(Int32(device), &a, &p, &r))
        return MemoryStats(allocated: Int(a), peakAllocated: Int(p), reserved: Int(r))
    }

    /// (free, total) device memory in bytes as the driver reports it.
    public static func memoryInfo(device: Int = 0) throws -> (free: Int, total: Int) {
        _ = loaded
        var f: Int64 = 0, t: Int64 = 0
        try check(ct_cuda_memory_info(Int32(device), &f, &t))
        return (Int(f), Int(t))
    }

    public static func resetPeakMemory(device: Int = 0) throws {
        _ = loaded
        try check(ct_cuda_reset_peak(Int32(device)))
    }

    public static func emptyCache() throws {
        _ = loaded
        try check(ct_cuda_empty_cache())
    }
}
