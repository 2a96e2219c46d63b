/// Writes checkpoint pickles (protocol 2) in the shape `torch.save` produces, so Python's
/// `torch.load(..., weights_only=True)` reads them: OrderedDicts and `_rebuild_tensor_v2` with
/// persistent storage ids. Tensors are collected so their bytes go into `data/<key>` records.
struct Pickler {
    private(set) var output: [UInt8] = [0x80, 0x02]
    /// Contiguous CPU tensors in the order their storage keys were assigned ("0", "1", …).
    private(set) var storages: [Tensor] = []

    static let storageNames: [DType: String] = Dictionary(
        uniqueKeysWithValues: Unpickler.storageTypes.map { ($0.value, $0.key) })

    mutating func finish() -> [UInt8] {
        output.append(0x2E)  // STOP
        return output
    }

    private mutating func global(_ module: String, _ name: String) {
        output.append(0x63)
        output += Array("\(module)\n\(name)\n".utf8)
    }

    private mutating func int(_ v: Int) {
        if v >= 0 && v < 256 {
            output += [0x4B, UInt8(v)]
        } else if v >= Int(Int32.min) && v <= Int(Int32.max) {
            output.append(0x4A)
            withUnsafeBytes(of: Int32(v).littleEndian) { output += $0 }
        } else {
            output += [0x8A, 8]
            withUnsafeBytes(of: Int64(v).littleEndian) { output += $0 }
        }
    }

    private mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        output.append(0x58)
        withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { output += $0 }
        output += utf8
    }

    private mutating func tuple(_ ints: [Int]) {
        output.append(0x28)
        for i in ints { int(i) }
        output.append(0x74)
    }

    private mutating func emptyOrderedDict() {
        global("collections", "OrderedDict")
        output += [0x29, 0x52]  // EMPTY_TUPLE REDUCE
    }

    mutating func write(_ value: PickleValue) throws {
        switch value {
        case .none: output.append(0x4E)
        case .bool(let b): output.append(b ? 0x88 : 0x89)
        case .int(let i): int(i)
        case .float(let f):
            output.append(0x47)
            withUnsafeBytes(of: f.bitPattern.bigEndian) { output += $0 }
        case .string(let s): string(s)
        case .bytes(let b):
            output.append(0x42)
            withUnsafeBytes(of: UInt32(b.count).littleEndian) { output += $0 }
            output += b
        case .tuple(let items):
            output.append(0x28)
            for v in items { try write(v) }
            output.append(0x74)
        case .list(let l):
            output += [0x5D, 0x28]
            for v in l.items { try write(v) }
            output.append(0x65)
        case .dict(let d):
            try writeDict(d.entries.map { ($0.key, $0.value) })
        case .tensor(let t): try tensor(t)
        case .global, .storage:
            throw TorchError.invalidArgument("cannot write a bare \(value.kind) into a checkpoint")
        }
    }

    /// Dicts are written as OrderedDicts, as `model.state_dict()` is.
    mutating func writeDict(_ entries: [(PickleValue, PickleValue)]) throws {
        emptyOrderedDict()
        guard !entries.isEmpty else { return }
        output.append(0x28)
        for (k, v) in entries {
            try write(k)
            try write(v)
        }
        output.append(0x75)  // SETITEMS
    }

    private mutating func tensor(_ t: Tensor) throws {
        guard let storageName = Pickler.storageNames[t.dtype] else {
            throw TorchError.invalidArgument("no torch storage type for dtype \(t.dtype)")
        }
        // Each tensor gets its own dense storage: simple, and what a state dict of parameters is anyway.
        let dense = try t.detach().to(device: .cpu).contiguous()
        let key = String(storages.count)
        storages.append(dense)
        let shape = dense.shape
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * max(shape[i + 1], 1) }

        global("torch._utils", "_rebuild_tensor_v2")
        output.append(0x28)  // MARK (args)
        output.append(0x28)  // MARK (persistent id)
        string("storage")
        global("torch", storageName)
        string(key)
        string("cpu")
        int(dense.count)
        output.append(0x74)  // TUPLE
        output.append(0x51)  // BINPERSID
        int(0)
        tuple(shape)
        tuple(strides)
        output.append(0x89)  // requires_grad False
        emptyOrderedDict()  // backward hooks
        output.append(0x74)  // TUPLE
        output.append(0x52)  // REDUCE
    }
}
