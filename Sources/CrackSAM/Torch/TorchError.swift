import CTorchShim
import Foundation

/// Every failure of the tensor layer and of checkpoint I/O. Each case names what the user has to look
/// at: libtorch's own message, the file, the key, the shapes.
public enum TorchError: Error, Equatable, CustomStringConvertible {
    /// libtorch raised; the message is libtorch's (without its C++ backtrace).
    case libtorch(String)
    case fileNotFound(path: String)
    case io(path: String, reason: String)
    /// A checkpoint file is truncated, not the format it claims, or structurally invalid.
    case malformedCheckpoint(path: String, reason: String)
    /// A pickle asked to import something a checkpoint has no business importing.
    case forbiddenGlobal(path: String, name: String)
    case shapeMismatch(key: String, expected: [Int], actual: [Int])
    case dtypeMismatch(key: String, expected: DType, actual: DType)
    case invalidArgument(String)
    /// A state dict did not fit the model: every missing, unexpected and mis-shaped key is listed.
    case stateDictMismatch(source: String, report: LoadReport)
    /// A checkpoint holds another backbone than the one asked for.
    case wrongBackbone(path: String, expected: String, found: String)

    public var description: String {
        switch self {
        case .libtorch(let message): return "libtorch: \(message)"
        case .fileNotFound(let path): return "\(path): no such file"
        case .io(let path, let reason): return "\(path): \(reason)"
        case .malformedCheckpoint(let path, let reason): return "\(path): malformed checkpoint: \(reason)"
        case .forbiddenGlobal(let path, let name):
            return "\(path): refusing to load: the pickle references '\(name)', which a checkpoint may not import"
        case .shapeMismatch(let key, let expected, let actual):
            return "\(key): expected shape \(expected), got \(actual)"
        case .dtypeMismatch(let key, let expected, let actual):
            return "\(key): expected dtype \(expected), got \(actual)"
        case .invalidArgument(let message): return message
        case .stateDictMismatch(let source, let report): return "\(source) does not fit the model:\n\(report)"
        case .wrongBackbone(let path, let expected, let found):
            // Only a Meta backbone's name is a --vit value ("pass --vit width 768, 12 blocks" was printed).
            let hint = found.hasPrefix("vit_") ? " (pass --vit \(found.dropFirst(4)))" : ""
            return "\(path) holds a \(found) backbone, but \(expected) was asked for\(hint)"
        }
    }
}

/// Turns the shim's error convention (NULL = success) into a Swift throw.
@inline(__always)
func check(_ err: ct_error?) throws {
    if let err {
        let message = String(cString: ct_error_message(err))
        ct_error_free(err)
        throw TorchError.libtorch(message)
    }
}

/// Runs one shim call that produces a tensor and wraps the handle.
@inline(__always)
func makeTensor(_ body: (UnsafeMutablePointer<ct_tensor?>) -> ct_error?) throws -> Tensor {
    var out: ct_tensor? = nil
    try check(body(&out))
    return Tensor(owning: out!)
}

/// Views a Swift [Int] as the int64_t array the shim takes, without copying (Int is 64-bit here).
@inline(__always)
func withInt64s<R>(_ values: [Int], _ body: (UnsafePointer<Int64>?, Int32) throws -> R) rethrows -> R {
    try values.withUnsafeBufferPointer { buf in
        try buf.withMemoryRebound(to: Int64.self) { b in try body(b.baseAddress, Int32(b.count)) }
    }
}

@inline(__always)
func withHandles<R>(_ tensors: [Tensor], _ body: (UnsafePointer<ct_tensor?>?, Int32) throws -> R) rethrows -> R {
    let handles: [ct_tensor?] = tensors.map { $0.handle }
    return try withExtendedLifetime(tensors) {
        try handles.withUnsafeBufferPointer { try body($0.baseAddress, Int32($0.count)) }
    }
}

/// So `localizedDescription` (and ArgumentParser's error line) shows the same text.
extension TorchError: LocalizedError {
    public var errorDescription: String? { description }
}
