import CTorchShim
import Foundation

/// An owned reference to a libtorch tensor. Freed when the last Swift reference goes away.
///
/// Every operation crosses the C shim once and may throw `TorchError` with libtorch's message
/// (bad shapes, bad dtypes, out-of-memory); nothing aborts the process.
public final class Tensor {
    let handle: ct_tensor

    init(owning handle: ct_tensor) {
        self.handle = handle
    }

    deinit {
        ct_tensor_free(handle)
    }

    /// Number of tensor handles alive right now (leak tests watch this).
    public static var liveCount: Int { Int(ct_live_tensors()) }

    /// Number of the shim's other handles alive right now (errors, guards, archives, events, graphs,
    /// profiles, process groups): what leak tests watch besides tensors.
    public static var liveHandleCount: Int { Int(ct_live_handles()) }

    // MARK: - Facts

    public var rank: Int { Int(ct_dim(handle)) }

    public var shape: [Int] {
        let n = rank
        return [Int](unsafeUninitializedCapacity: n) { buf, count in
            buf.baseAddress!.withMemoryRebound(to: Int64.self, capacity: n) { _ = ct_sizes(handle, $0, Int64(n)) }
            count = n
        }
    }

    public var strides: [Int] {
        let n = rank
        return [Int](unsafeUninitializedCapacity: n) { buf, count in
            buf.baseAddress!.withMemoryRebound(to: Int64.self, capacity: n) { _ = ct_strides(handle, $0, Int64(n)) }
            count = n
        }
    }

    /// Size of one dimension; negative indices count from the end. A dim outside the shape is a
    /// programming error (as an array index is), stopped with the shape named.
    public func size(_ dim: Int) -> Int {
        let s = shape
        let d = dim < 0 ? dim + s.count : dim
        precondition(s.indices.contains(d), "size(\(dim)) of a tensor of shape \(s)")
        return s[d]
    }

    public var count: Int { Int(ct_numel(handle)) }
    public var dtype: DType { DType(rawValue: ct_dtype(handle)) ?? .float32 }
    public var device: Device {
        switch ct_device_type(handle) {
        case Int32(CT_CUDA): return .cuda(Int(ct_device_index(handle)))
        case Int32(CT_META): return .meta
        default: return .cpu
        }
    }
    public var isContiguous: Bool { ct_is_contiguous(handle) != 0 }
    public var storageOffset: Int { Int(ct_storage_offset(handle)) }
    /// The version counter: each in-place change of the tensor (or of a view of it) moves it.
    public func version() throws -> Int {
        var v: Int64 = 0
        try check(ct_version(handle, &v))
        return Int(v)
    }
    public var byteCount: Int { count * dtype.itemSize }

    // MARK: - Creation

    public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try filled(Int32(CT_FILL_ZEROS), shape, dtype, device)
    }

    public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try filled(Int32(CT_FILL_ONES), shape, dtype, device)
    }

    /// Uninitialised memory: only for outputs that are written before they are read.
    public static func empty(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try filled(Int32(CT_FILL_EMPTY), shape, dtype, device)
    }

    /// Uniform in [0, 1), from the global generator (see `Torch.manualSeed`).
    public static func rand(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try filled(Int32(CT_FILL_RAND), shape, dtype, device)
    }

    /// Standard normal, from the global generator.
    public static func randn(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try filled(Int32(CT_FILL_RANDN), shape, dtype, device)
    }

    /// Integers uniform in [low, high).
    public static func randint(_ low: Int, _ high: Int, shape: [Int], dtype: DType = .int64, device: Device = .cpu) throws -> Tensor {
        try prepare(device)
        return try withInt64s(shape) { p, n in
            try makeTensor { ct_randint(Int64(low), Int64(high), p, n, dtype.rawValue, device.shimType, device.shimIndex, $0) }
        }
    }

    public static func full(_ shape: [Int], value: Double, dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try prepare(device)
        return try withInt64s(shape) { p, n in
            try makeTensor { ct_full(p, n, value, dtype.rawValue, device.shimType, device.shimIndex, $0) }
        }
    }

    public static func arange(_ start: Double = 0, _ end: Double, step: Double = 1, dtype: DType = .float32,
                              device: Device = .cpu) throws -> Tensor {
        try prepare(device)
        return try makeTensor { ct_arange(start, end, step, dtype.rawValue, device.shimType, device.shimIndex, $0) }
    }

    /// Uniform in [low, high): a new tensor.
    public static func uniform(_ shape: [Int], low: Double, high: Double, dtype: DType = .float32,
                               device: Device = .cpu) throws -> Tensor {
        let t = try empty(shape, dtype: dtype, device: device)
        try t.uniform_(low: low, high: high)
        return t
    }

    /// Normal(mean, std): a new tensor.
    public static func normal(_ shape: [Int], mean: Double = 0, std: Double = 1, dtype: DType = .float32,
                              device: Device = .cpu) throws -> Tensor {
        let t = try empty(shape, dtype: dtype, device: device)
        try t.normal_(mean: mean, std: std)
        return t
    }

    private static func filled(_ kind: Int32, _ shape: [Int], _ dtype: DType, _ device: Device) throws -> Tensor {
        try prepare(device)
        return try withInt64s(shape) { p, n in
            try makeTensor { ct_filled(kind, p, n, dtype.rawValue, device.shimType, device.shimIndex, $0) }
        }
    }

    /// CUDA is registered with ATen only once libtorch_cuda is loaded (see `CUDA.isAvailable`).
    @inline(__always)
    static func prepare(_ device: Device) throws {
        if case .cuda = device, !CUDA.isAvailable { try device.requireAvailable() }
    }

    /// A CPU tensor holding a copy of `values`, laid out row-major in `shape`.
    public convenience init<T: TensorElement>(_ values: [T], shape: [Int]) throws {
        let handle: ct_tensor = try values.withUnsafeBytes { raw in
            try withInt64s(shape) { p, n in
                var out: ct_tensor? = nil
                try check(ct_from_buffer(raw.baseAddress, raw.count, p, n, T.dtype.rawValue, &out))
                return out!
            }
        }
        self.init(owning: handle)
    }

    /// A 1-D CPU tensor holding a copy of `values`.
    public convenience init<T: TensorElement>(_ values: [T]) throws {
        try self.init(values, shape: [values.count])
    }

    /// A 0-D CPU tensor.
    public convenience init<T: TensorElement>(scalar: T) throws {
        try self.init([scalar], shape: [])
    }

    /// A CPU tensor from raw little-endian bytes of `dtype` (the way bfloat16 data enters).
    public convenience init(bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) throws {
        let handle: ct_tensor = try withInt64s(shape) { p, n in
            var out: ct_tensor? = nil
            try check(ct_from_buffer(bytes.baseAddress, bytes.count, p, n, dtype.rawValue, &out))
            return out!
        }
        self.init(owning: handle)
    }

    // MARK: - Reading values back

    /// The elements in row-major order; the tensor's dtype must be `T.dtype`.
    public func toArray<T: TensorElement>(of type: T.Type = T.self) throws -> [T] {
        guard dtype == T.dtype else { throw TorchError.dtypeMismatch(key: "toArray", expected: T.dtype, actual: dtype) }
        let n = count
        return try [T](unsafeUninitializedCapacity: n) { buf, initialized in
            try check(ct_to_buffer(handle, buf.baseAddress, n * MemoryLayout<T>.stride, dtype.rawValue))
            initialized = n
        }
    }

    /// Converts to float32 first, whatever the dtype (for comparisons and printing).
    public func floats() throws -> [Float] {
        try (dtype == .float32 ? self : to(dtype: .float32)).toArray(of: Float.self)
    }

    /// The raw bytes in row-major order (any dtype, any device).
    public func bytes() throws -> [UInt8] {
        let n = byteCount
        return try [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
            try check(ct_to_buffer(handle, buf.baseAddress, n, dtype.rawValue))
            initialized = n
        }
    }

    /// Calls `body` with the bytes of this tensor as a contiguous CPU buffer (no copy when already so).
    public func withContiguousBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let c = (device == .cpu && isContiguous) ? self : try to(device: .cpu).contiguous()
        return try withExtendedLifetime(c) {
            let p = ct_data_ptr(c.handle)
            return try body(UnsafeRawBufferPointer(start: p, count: c.byteCount))
        }
    }

    public func item() throws -> Double {
        var v = 0.0
        try check(ct_item_double(handle, &v))
        return v
    }

    public func itemInt() throws -> Int {
        var v: Int64 = 0
        try check(ct_item_int64(handle, &v))
        return Int(v)
    }

    // MARK: - Moves

    public func to(dtype: DType) throws -> Tensor {
        try makeTensor { ct_to(handle, dtype.rawValue, -1, 0, 0, 0, $0) }
    }

    public func to(device: Device, dtype: DType? = nil, nonBlocking: Bool = false) throws -> Tensor {
        try Tensor.prepare(device)
        return try makeTensor {
            ct_to(handle, dtype?.rawValue ?? -1, device.shimType, device.shimIndex, nonBlocking ? 1 : 0, 0, $0)
        }
    }

    /// Page-locked copy, so host-to-device copies can run asynchronously.
    public func pinnedMemory() throws -> Tensor {
        try makeTensor { ct_pin_memory(handle, $0) }
    }

    /// Reinterprets the bytes as another dtype of the same item size (as `Tensor.view(dtype)`).
    public func viewBits(as dtype: DType) throws -> Tensor {
        try makeTensor { ct_view_dtype(handle, dtype.rawValue, $0) }
    }

    /// A second Swift reference to the same libtorch tensor (same storage and autograd identity).
    public func alias() throws -> Tensor {
        try makeTensor { ct_shallow_clone(handle, $0) }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        "Tensor(shape: \(shape), dtype: \(dtype), device: \(device))"
    }
}
