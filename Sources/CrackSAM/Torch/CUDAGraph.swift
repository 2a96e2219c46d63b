import CTorchShim

/// A CUDA graph (libtorch's at::cuda::CUDAGraph): the kernels some work issues, captured once and then
/// replayed with a single launch, so the host's cost per kernel (Swift, the dispatcher, autograd,
/// the launch itself) is paid once instead of every step.
///
/// The captured work reads and writes fixed addresses: inputs go into tensors that existed at capture
/// (copy new values into them before `replay()`), outputs come back in the tensors the capture produced,
/// overwritten by each replay. Nothing in the capture may synchronise with the host or change shape.
public final class CUDAGraph {
    public let device: Device
    private let handle: ct_cuda_graph
    public private(set) var isCaptured = false

    /// Whether this build can capture graphs at all (it needs the CUDA runtime headers, see
    /// scripts/gpu-build); a GPU is still needed at run time.
    public static var isCompiled: Bool { ct_cuda_graphs_compiled() != 0 }

    public init(device: Device) throws {
        guard case .cuda(let index) = device else {
            throw TorchError.invalidArgument("CUDA graphs need a CUDA device (got \(device))")
        }
        guard CUDA.isAvailable else { throw TorchError.invalidArgument("CUDA graphs need a CUDA device, and CUDA is unavailable") }
        self.device = device
        var out: ct_cuda_graph? = nil
        try check(ct_cuda_graph_new(Int32(index), &out))
        handle = out!
    }

    deinit { ct_cuda_graph_free(handle) }

    /// Runs `body` on the graph's own stream. Work that should be captured must have run there once
    /// first: lazily created state (cuBLAS workspaces, autograd's streams) is then made outside capture.
    public func onStream<R>(_ body: () throws -> R) throws -> R {
        try check(ct_cuda_graph_use_stream(handle, 1))
        let result: R
        do { result = try body() } catch {
            try? check(ct_cuda_graph_use_stream(handle, 0))
            throw error
        }
        try check(ct_cuda_graph_use_stream(handle, 0))
        return result
    }

    /// Captures what `body` issues (nothing runs now). Autocast's weight cache is off meanwhile. A
    /// failure anywhere ends the capture and is rethrown; the graph is then unusable.
    public func capture<R>(_ body: () throws -> R) throws -> R {
        precondition(!isCaptured, "a CUDAGraph is captured once")
        return try onStream {
            let cache = Torch.autocastCache
            Torch.autocastCache = false
            defer { Torch.autocastCache = cache }
            try check(ct_cuda_graph_capture_begin(handle))
            let result: R
            do { result = try body() } catch {
                // End the capture so the stream leaves capture mode; the body's error is the one to report.
                try? check(ct_cuda_graph_capture_end(handle))
                throw error
            }
            try check(ct_cuda_graph_capture_end(handle))
            isCaptured = true
            return result
        }
    }

    /// Launches the captured work on the current stream (asynchronously, like any kernel).
    public func replay() throws {
        guard isCaptured else { throw TorchError.invalidArgument("CUDA graph replayed before a successful capture") }
        try check(ct_cuda_graph_replay(handle))
    }
}
