/// The values a checkpoint pickle may hold. Anything else (arbitrary classes, callables) is refused
/// while unpickling, so loading a checkpoint can never run code.
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case tensor(Tensor)
    /// A global the loader may reference but not call freely (an allowed constructor or storage type).
    case global(module: String, name: String)
    /// A typed storage from the archive: a 1-D tensor of its elements.
    case storage(Tensor)

    public var tensor: Tensor? {
        if case .tensor(let t) = self { return t }
        return nil
    }

    /// The list or dict this value is (shared by reference), nil for any other kind.
    var container: PickleContainer? {
        switch self {
        case .list(let l): return l
        case .dict(let d): return d
        default: return nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Short name of the kind, for error messages.
    public var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .tensor: return "tensor"
        case .global(let m, let n): return "\(m).\(n)"
        case .storage: return "storage"
        }
    }
}

/// Unpickling's bookkeeping on a list or dict (see Unpickler's nesting rules): how deep it nests, and
/// whether it has been put inside another value (it may not change after that).
protocol PickleContainer: AnyObject {
    var depth: Int { get set }
    var sealed: Bool { get set }
    /// For messages: "list", with "APPEND to a list"; "dict", with "SETITEM on a dict".
    static var kind: String { get }
    static var preposition: String { get }
}

/// A list with reference semantics: the pickle memo and the stack must see the same mutations.
public final class PickleList: PickleContainer {
    public var items: [PickleValue]
    var depth = 1, sealed = false
    static let kind = "list", preposition = "to"
    public init(_ items: [PickleValue] = []) { self.items = items }
}

/// An insertion-ordered dict with reference semantics (keys may be any hashable pickle scalar).
public final class PickleDict: PickleContainer {
    public private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var index: [String: Int] = [:]
    var depth = 1, sealed = false
    static let kind = "dict", preposition = "on"

    public init() {}

    public func set(_ key: PickleValue, _ value: PickleValue) {
        let k = PickleDict.keyString(key)
        if let i = index[k] {
            entries[i].value = value
        } else {
            index[k] = entries.count
            entries.append((key, value))
        }
    }

    public subscript(_ key: String) -> PickleValue? {
        index[key].map { entries[$0].value }
    }

    public var count: Int { entries.count }

    /// How a key reads in flattened state-dict paths ("blocks.0.attn").
    static func keyString(_ key: PickleValue) -> String {
        switch key {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .bool(let b): return b ? "True" : "False"
        case .float(let f): return String(f)
        case .none: return "None"
        default: return "<\(key.kind)>"
        }
    }
}
