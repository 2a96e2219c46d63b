import Foundation

/// A restricted unpickler for PyTorch checkpoints (`torch.save`, protocol ≤ 5 opcodes as torch emits them).
///
/// It builds plain values, dicts (OrderedDict included) and tensors rebuilt from the archive's storages;
/// every global outside a short allow-list is refused by name before anything is called.
struct Unpickler {
    /// Resolves a persistent id ('storage', type, key, location, numel) to a storage tensor.
    typealias StorageLoader = (_ dtype: DType, _ key: String, _ numel: Int) throws -> Tensor

    private let bytes: [UInt8]
    private let path: String
    private let loadStorage: StorageLoader
    private var pos = 0
    private var stack: [Entry] = []
    private var marks: [Int] = []
    private var memo: [Int: Entry] = [:]

    /// A value with how deeply it nests (0 for scalars; a tuple's is kept here, a list's or dict's on the
    /// object, which may still grow).
    private struct Entry {
        var value: PickleValue
        var depth: Int
    }

    /// How deeply values may nest. A state dict nests a few levels (checkpoint → state dict → a tensor's
    /// rebuild arguments); a forged pickle nesting thousands deep, or holding itself, would overflow the
    /// stack of whatever walks it (releasing it included).
    static let maxDepth = 100

    /// Storage class names torch writes, and the dtype each holds.
    static let storageTypes: [String: DType] = [
        "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16, "DoubleStorage": .float64,
        "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
        "ByteStorage": .uint8, "BoolStorage": .bool,
    ]

    /// Callables a state-dict checkpoint legitimately contains.
    static let allowedCallables: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_parameter",
    ]

    init(bytes: [UInt8], path: String, loadStorage: @escaping StorageLoader) {
        self.bytes = bytes
        self.path = path
        self.loadStorage = loadStorage
    }

    private func malformed(_ reason: String) -> TorchError {
        .malformedCheckpoint(path: path, reason: "data.pkl: \(reason)")
    }

    // MARK: - Reading primitives (all bounds-checked: a truncated pickle throws, never reads past the end)

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - pos else {
            throw malformed("truncated at byte \(pos) (wanted \(n) more of \(bytes.count))")
        }
        defer { pos += n }
        return bytes[pos..<pos + n]
    }

    private mutating func byte() throws -> UInt8 { try take(1).first! }

    private mutating func uintLE(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    private mutating func line() throws -> String {
        guard let end = bytes[pos...].firstIndex(of: 0x0A) else { throw malformed("unterminated text line at byte \(pos)") }
        let s = String(decoding: bytes[pos..<end], as: UTF8.self)
        pos = end + 1
        return s
    }

    private mutating func utf8(_ n: Int) throws -> String {
        let slice = try take(n)
        guard let s = String(validating: slice, as: UTF8.self) else { throw malformed("invalid UTF-8 string at byte \(pos - n)") }
        return s
    }

    private mutating func pop() throws -> PickleValue { try popEntry().value }

    private mutating func popEntry() throws -> Entry {
        guard let v = stack.popLast() else { throw malformed("stack underflow at byte \(pos)") }
        if let m = marks.last, stack.count < m { throw malformed("stack underflow past a mark at byte \(pos)") }
        return v
    }

    private mutating func popMark() throws -> [Entry] {
        guard let m = marks.popLast() else { throw malformed("no mark at byte \(pos)") }
        guard m <= stack.count else { throw malformed("corrupt mark at byte \(pos)") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private mutating func push(_ value: PickleValue) { stack.append(Entry(value: value, depth: 0)) }

    // MARK: - Nesting rules
    //
    // Pickles build containers bottom-up: a list or dict is filled while it is on top of the stack, then
    // put inside its parent. So a container is sealed once inside another (or a tuple) and may not change
    // after: a pickle holding itself (a cycle) or one deepening a value already nested is refused, and
    // every value's depth is known when it is made, checked against maxDepth.

    private func depth(_ e: Entry) -> Int { e.value.container?.depth ?? e.depth }

    /// The depth of a container of `items`, whose lists and dicts are sealed inside it.
    private func nest(_ items: [Entry]) throws -> Int {
        var d = 1
        for item in items {
            d = max(d, depth(item) + 1)
            item.value.container?.sealed = true
        }
        guard d <= Unpickler.maxDepth else { throw malformed("values nested more than \(Unpickler.maxDepth) levels deep at byte \(pos)") }
        return d
    }

    private mutating func pushTuple(_ items: [Entry]) throws {
        stack.append(Entry(value: .tuple(items.map(\.value)), depth: try nest(items)))
    }

    /// The list or dict (`C`) on top of the stack, which `items` are about to join.
    private func open<C: PickleContainer>(_: C.Type, for items: [Entry], _ op: String) throws -> C {
        guard let c = stack.last?.value.container as? C else { throw malformed("\(op) \(C.preposition) a non-\(C.kind)") }
        guard !c.sealed else { throw malformed("\(op) \(C.preposition) a \(C.kind) already inside another value at byte \(pos)") }
        if items.contains(where: { $0.value.container === c }) { throw malformed("a \(C.kind) put inside itself at byte \(pos)") }
        c.depth = max(c.depth, try nest(items))
        return c
    }

    private func length(_ v: UInt64) throws -> Int {
        guard v <= UInt64(bytes.count) else { throw malformed("length \(v) exceeds the pickle's size") }
        return Int(v)
    }

    // MARK: - The machine

    mutating func load() throws -> PickleValue {
        while true {
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()  // PROTO
            case 0x95: _ = try take(8)  // FRAME: the framing is only a read-ahead hint
            case 0x2E:  // STOP
                guard stack.count == 1 else { throw malformed("STOP with \(stack.count) values on the stack") }
                return stack[0].value
            case 0x28: marks.append(stack.count)  // MARK
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32:  // DUP
                guard let top = stack.last else { throw malformed("DUP on an empty stack") }
                stack.append(top)
            case 0x4E: push(.none)
            case 0x88: push(.bool(true))
            case 0x89: push(.bool(false))
            case 0x4A: push(.int(Int(Int32(bitPattern: UInt32(try uintLE(4))))))  // BININT
            case 0x4B: push(.int(Int(try byte())))  // BININT1
            case 0x4D: push(.int(Int(try uintLE(2))))  // BININT2
            case 0x8A:  // LONG1
                let n = Int(try byte())
                guard n <= 8 else { throw malformed("integer of \(n) bytes is out of range") }
                if n == 0 { push(.int(0)); break }
                let raw = try uintLE(n)
                let shift = UInt64(64 - 8 * n)
                push(.int(Int(Int64(bitPattern: raw << shift) >> Int64(shift))))
            case 0x49:  // INT (text; "00"/"01" are False/True in protocol 0)
                let s = try line()
                if s == "00" { push(.bool(false)) } else if s == "01" { push(.bool(true)) } else {
                    guard let i = Int(s) else { throw malformed("bad INT '\(s)'") }
                    push(.int(i))
                }
            case 0x47:  // BINFLOAT, big-endian
                let bits = try take(8).reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
                push(.float(Double(bitPattern: bits)))
            case 0x58: push(.string(try utf8(try length(try uintLE(4)))))  // BINUNICODE
            case 0x8C: push(.string(try utf8(Int(try byte()))))  // SHORT_BINUNICODE
            case 0x8D: push(.string(try utf8(try length(try uintLE(8)))))  // BINUNICODE8
            case 0x54: push(.string(try utf8(try length(try uintLE(4)))))  // BINSTRING
            case 0x55: push(.string(try utf8(Int(try byte()))))  // SHORT_BINSTRING
            case 0x42: push(.bytes(Array(try take(try length(try uintLE(4))))))  // BINBYTES
            case 0x43: push(.bytes(Array(try take(Int(try byte())))))  // SHORT_BINBYTES
            case 0x8E: push(.bytes(Array(try take(try length(try uintLE(8))))))  // BINBYTES8
            case 0x29: try pushTuple([])  // EMPTY_TUPLE
            case 0x74: try pushTuple(try popMark())  // TUPLE
            case 0x85: try pushTuple([try popEntry()])
            case 0x86:
                let b = try popEntry(), a = try popEntry()
                try pushTuple([a, b])
            case 0x87:
                let c = try popEntry(), b = try popEntry(), a = try popEntry()
                try pushTuple([a, b, c])
            case 0x5D: push(.list(PickleList()))  // EMPTY_LIST
            case 0x6C:  // LIST
                let items = try popMark()
                push(.list(PickleList()))
                try open(PickleList.self, for: items, "LIST").items = items.map(\.value)
            case 0x61:  // APPEND
                let v = try popEntry()
                try open(PickleList.self, for: [v], "APPEND").items.append(v.value)
            case 0x65:  // APPENDS
                let items = try popMark()
                try open(PickleList.self, for: items, "APPENDS").items += items.map(\.value)
            case 0x7D: push(.dict(PickleDict()))  // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw malformed("DICT with an odd number of items") }
                push(.dict(PickleDict()))
                let d = try open(PickleDict.self, for: items, "DICT")
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i].value, items[i + 1].value) }
            case 0x73:  // SETITEM
                let v = try popEntry(), k = try popEntry()
                try open(PickleDict.self, for: [k, v], "SETITEM").set(k.value, v.value)
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw malformed("SETITEMS with an odd number of items") }
                let d = try open(PickleDict.self, for: items, "SETITEMS")
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i].value, items[i + 1].value) }
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                push(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw malformed("STACK_GLOBAL needs two strings")
                }
                push(try global(module, name))
            case 0x52:  // REDUCE
                let args = try pop(), callable = try pop()
                push(try reduce(callable, args))
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args); only OrderedDict may be built this way
                let args = try pop(), cls = try pop()
                push(try reduce(cls, args))
            case 0x62:  // BUILD: instance state; OrderedDict's `_metadata` and tensor hooks carry nothing we use
                _ = try pop()
                guard let target = stack.last?.value else { throw malformed("BUILD on an empty stack") }
                switch target {
                case .dict, .tensor: break
                default: throw malformed("BUILD on a \(target.kind)")
                }
            case 0x51:  // BINPERSID
                push(try persistentLoad(try pop()))
            case 0x71: memo[Int(try byte())] = try top()  // BINPUT
            case 0x72: memo[Int(try uintLE(4))] = try top()  // LONG_BINPUT
            case 0x70:  // PUT (text)
                let s = try line()
                guard let i = Int(s) else { throw malformed("bad PUT '\(s)'") }
                memo[i] = try top()
            case 0x94: memo[memo.count] = try top()  // MEMOIZE
            case 0x68: stack.append(try recall(Int(try byte())))  // BINGET
            case 0x6A: stack.append(try recall(Int(try uintLE(4))))  // LONG_BINGET
            case 0x67:  // GET (text)
                let s = try line()
                guard let i = Int(s) else { throw malformed("bad GET '\(s)'") }
                stack.append(try recall(i))
            default:
                throw malformed(String(format: "unsupported pickle opcode 0x%02X at byte %ld", op, pos - 1))
            }
        }
    }

    private func top() throws -> Entry {
        guard let v = stack.last else { throw malformed("memo store on an empty stack") }
        return v
    }

    private func recall(_ i: Int) throws -> Entry {
        guard let v = memo[i] else { throw malformed("memo key \(i) was never stored") }
        return v
    }

    private func global(_ module: String, _ name: String) throws -> PickleValue {
        let full = "\(module).\(name)"
        if Unpickler.allowedCallables.contains(full) { return .global(module: module, name: name) }
        if module == "torch", Unpickler.storageTypes[name] != nil { return .global(module: module, name: name) }
        throw TorchError.forbiddenGlobal(path: path, name: full)
    }

    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let module, let name) = callable, case .tuple(let a) = args else {
            throw malformed("REDUCE of a \(callable.kind) with \(args.kind) arguments")
        }
        switch "\(module).\(name)" {
        case "collections.OrderedDict":
            guard a.isEmpty else { throw malformed("OrderedDict called with arguments") }
            return .dict(PickleDict())
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard a.count >= 4, case .storage(let storage) = a[0], let offset = a[1].intValue,
                  case .tuple(let sizeValues) = a[2], case .tuple(let strideValues) = a[3] else {
                throw malformed("\(name) with unexpected arguments")
            }
            let size = try sizeValues.map { v -> Int in
                guard let i = v.intValue, i >= 0 else { throw malformed("bad tensor size \(v.kind)") }
                return i
            }
            let strides = try strideValues.map { v -> Int in
                guard let i = v.intValue, i >= 0 else { throw malformed("bad tensor stride \(v.kind)") }
                return i
            }
            guard size.count == strides.count else { throw malformed("tensor with \(size.count) sizes and \(strides.count) strides") }
            guard offset >= 0 else { throw malformed("tensor at a negative storage offset \(offset)") }
            // The element count must fit in 64 bits whatever the strides (a stride of 0 addresses one element
            // however large the size), as libtorch's own arithmetic needs it to.
            var numel = 1
            for n in size {
                let (m, overflow) = numel.multipliedReportingOverflow(by: max(n, 1))
                guard !overflow else { throw malformed("tensor of size \(size) has more elements than 64 bits count") }
                numel = m
            }
            // Bounds: the last element addressed must lie inside the storage.
            let available = storage.count
            if !size.contains(0) {
                // Sizes, strides and offset come from the file: summed with overflow checks, so that a
                // forged 2⁴⁰ × 2⁴⁰ is an error, not a trap.
                var last = offset
                for (n, stride) in zip(size, strides) {
                    let (span, o1) = (n - 1).multipliedReportingOverflow(by: stride)
                    let (sum, o2) = last.addingReportingOverflow(span)
                    guard !o1, !o2 else { throw malformed("tensor of size \(size) and strides \(strides) addresses past any storage") }
                    last = sum
                }
                guard last < available else {
                    throw malformed("tensor of size \(size) at offset \(offset) overruns its storage of \(available) elements")
                }
            }
            return .tensor(try storage.asStrided(size, strides: strides, offset: offset))
        case "torch._utils._rebuild_parameter":
            guard let first = a.first, case .tensor = first else { throw malformed("_rebuild_parameter without a tensor") }
            return first
        default:
            throw TorchError.forbiddenGlobal(path: path, name: "\(module).\(name)")
        }
    }

    private func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let t) = pid, t.count == 5, t[0].stringValue == "storage",
              case .global(_, let typeName) = t[1], let dtype = Unpickler.storageTypes[typeName],
              let key = t[2].stringValue, let numel = t[4].intValue, numel >= 0 else {
            throw malformed("unsupported persistent id (expected ('storage', type, key, location, numel))")
        }
        return .storage(try loadStorage(dtype, key, numel))
    }
}
