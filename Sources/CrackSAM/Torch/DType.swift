import CTorchShim

/// Element types the project uses. Raw values are c10::ScalarType's (the shim passes them through).
public enum DType: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case uint8 = 0, int8 = 1, int16 = 2, int32 = 3, int64 = 4
    case float16 = 5, float32 = 6, float64 = 7, bool = 11, bfloat16 = 15

    public var itemSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .int16, .float16, .bfloat16: return 2
        case .int32, .float32: return 4
        case .int64, .float64: return 8
        }
    }

    public var isFloatingPoint: Bool { [.float16, .float32, .float64, .bfloat16].contains(self) }

    public var description: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .float16: return "float16"
        case .float32: return "float32"
        case .float64: return "float64"
        case .bool: return "bool"
        case .bfloat16: return "bfloat16"
        }
    }

    /// Parses "float32", "fp16", "bf16", … as users type them on the command line.
    public init?(name: String) {
        switch name.lowercased() {
        case "float32", "fp32", "f32", "float": self = .float32
        case "float16", "fp16", "f16", "half": self = .float16
        case "bfloat16", "bf16": self = .bfloat16
        case "float64", "fp64", "f64", "double": self = .float64
        case "int64", "i64", "long": self = .int64
        case "int32", "i32", "int": self = .int32
        case "int16", "i16": self = .int16
        case "int8", "i8": self = .int8
        case "uint8", "u8", "byte": self = .uint8
        case "bool": self = .bool
        default: return nil
        }
    }
}

/// Swift scalar types that map one-to-one onto a tensor dtype, so buffers copy without conversion.
public protocol TensorElement {
    static var dtype: DType { get }
}
extension Float: TensorElement { public static var dtype: DType { .float32 } }
extension Double: TensorElement { public static var dtype: DType { .float64 } }
extension Float16: TensorElement { public static var dtype: DType { .float16 } }
extension Int64: TensorElement { public static var dtype: DType { .int64 } }
extension Int: TensorElement { public static var dtype: DType { .int64 } }
extension Int32: TensorElement { public static var dtype: DType { .int32 } }
extension Int16: TensorElement { public static var dtype: DType { .int16 } }
extension Int8: TensorElement { public static var dtype: DType { .int8 } }
extension UInt8: TensorElement { public static var dtype: DType { .uint8 } }
extension Bool: TensorElement { public static var dtype: DType { .bool } }

/// Where a tensor lives.
public enum Device: Equatable, Hashable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(Int)
    /// Shapes and dtypes only, no memory: for counting parameters of models too big to allocate.
    case meta

    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let i): return "cuda:\(i)"
        case .meta: return "meta"
        }
    }

    /// Throws unless tensors can be made here: CUDA loaded and the index one of its devices. Commands
    /// call it first, before a run directory is made or a checkpoint is read.
    public func requireAvailable() throws {
        guard case .cuda(let i) = self else { return }
        guard CUDA.isAvailable else { throw TorchError.invalidArgument("\(self) requested but CUDA is not available in this libtorch") }
        guard i < CUDA.deviceCount else {
            throw TorchError.invalidArgument("\(self) requested but this machine has \(CUDA.deviceCount) CUDA device(s), cuda:0…cuda:\(CUDA.deviceCount - 1)")
        }
    }

    /// "cpu", "cuda", "cuda:1" (a device index libtorch can hold: 0…127). Not "meta": it holds no data,
    /// so nothing a user runs can run there; the library makes it directly (`.meta`).
    public init?(_ text: String) {
        let t = text.lowercased()
        if t == "cpu" { self = .cpu; return }
        if t == "cuda" { self = .cuda(0); return }
        if t.hasPrefix("cuda:"), let i = Int(t.dropFirst(5)), (0...127).contains(i) { self = .cuda(i); return }
        return nil
    }

    var shimType: Int32 {
        switch self {
        case .cpu: return Int32(CT_CPU)
        case .cuda: return Int32(CT_CUDA)
        case .meta: return Int32(CT_META)
        }
    }

    var shimIndex: Int32 {
        switch self {
        case .cpu, .meta: return 0
        case .cuda(let i): return Int32(i)
        }
    }
}
