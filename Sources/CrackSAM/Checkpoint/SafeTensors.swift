import Foundation
import OrderedCollections

/// The safetensors format: 8-byte little-endian header length, a JSON header, then raw tensor bytes.
///
/// The header is validated before anything is allocated from it: its length is bounded by the file and by
/// `maxHeaderBytes`, every entry's dtype, shape and byte range must agree, and ranges must lie in the file.
public enum SafeTensors {
    /// Larger than any real header (ViT-H's is ~60 KB); a hostile length cannot make us allocate more.
    public static let maxHeaderBytes = 100 * 1024 * 1024

    static let dtypeNames: [String: DType] = [
        "F64": .float64, "F32": .float32, "F16": .float16, "BF16": .bfloat16, "I64": .int64, "I32": .int32,
        "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool,
    ]
    static let namesByDType: [DType: String] = Dictionary(uniqueKeysWithValues: dtypeNames.map { ($0.value, $0.key) })

    public struct Contents {
        public var tensors: StateDict
        /// The `__metadata__` string map (where we record configs).
        public var metadata: [String: String]
    }

    /// A `.safetensors` name, or (whatever the name) the format's start: an 8-byte header length and
    /// the header's "{". A `.pth` (a zip, "PK") is not one.
    public static func isSafeTensorsFile(at path: String) throws -> Bool {
        if path.lowercased().hasSuffix(".safetensors") { return true }
        let head = try checkpointHead(path, count: 9)
        return head.count == 9 && head[8] == UInt8(ascii: "{")
    }

    /// The `__metadata__` map alone: the header is read, no tensor is made.
    public static func metadata(at path: String) throws -> [String: String] {
        try load(at: path, readingTensors: false).metadata
    }

    public static func load(at path: String) throws -> Contents { try load(at: path, readingTensors: true) }

    static func load(at path: String, readingTensors: Bool) throws -> Contents {
        _ = try checkpointHead(path, count: 0)
        // Read with pread, not mapped: a mapped file that another process truncates while it is read (a
        // copy or a save over it) ends this process with SIGBUS; read, it is a short read, named below.
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TorchError.io(path: path, reason: "cannot open for reading: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw TorchError.io(path: path, reason: "cannot read: \(String(cString: strerror(errno)))") }
        let fileSize = Int(info.st_size)
        func bad(_ reason: String) -> TorchError { .malformedCheckpoint(path: path, reason: reason) }
        /// Fills `buffer` from byte `offset`.
        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
            var got = 0
            while got < buffer.count {
                let n = pread(fd, buffer.baseAddress! + got, buffer.count - got, off_t(offset + got))
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw TorchError.io(path: path, reason: "cannot read: \(String(cString: strerror(errno)))") }
                guard n > 0 else {
                    throw bad("the file ends at byte \(offset + got), before the \(buffer.count) bytes from byte \(offset) (was it changed while being read?)")
                }
                got += n
            }
        }
        func bytes(_ count: Int, at offset: Int) throws -> Data {
            var d = Data(count: count)
            if count > 0 { try d.withUnsafeMutableBytes { try read(into: $0, at: offset) } }
            return d
        }
        guard fileSize >= 8 else { throw bad("file is \(fileSize) bytes, shorter than the 8-byte header length") }
        let headerLength = try bytes(8, at: 0).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(fileSize - 8) else {
            throw bad("header claims \(headerLength) bytes but the file has only \(fileSize - 8) after the length")
        }
        guard headerLength <= UInt64(maxHeaderBytes) else { throw bad("header of \(headerLength) bytes exceeds the \(maxHeaderBytes)-byte limit") }
        let headerEnd = 8 + Int(headerLength)
        let headerBytes = try bytes(Int(headerLength), at: 8)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerBytes)
        } catch {
            throw bad("header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw bad("header is not a JSON object") }
        let dataSize = fileSize - headerEnd

        var metadata: [String: String] = [:]
        if let meta = header["__metadata__"] {
            guard let m = meta as? [String: Any] else { throw bad("__metadata__ is not an object") }
            for (k, v) in m {
                guard let s = v as? String else { throw bad("__metadata__.\(k) is not a string") }
                metadata[k] = s
            }
        }

        if !readingTensors { return Contents(tensors: StateDict(), metadata: metadata) }
        struct Entry { let name: String; let dtype: DType; let shape: [Int]; let begin: Int; let end: Int }
        var entries: [Entry] = []
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any] else { throw bad("\(name): entry is not an object") }
            guard let dtypeName = info["dtype"] as? String else { throw bad("\(name): missing dtype") }
            guard let dtype = dtypeNames[dtypeName] else { throw bad("\(name): unsupported dtype '\(dtypeName)'") }
            guard let shapeValues = info["shape"] as? [Any] else { throw bad("\(name): missing shape") }
            let shape = try shapeValues.map { v -> Int in
                guard let n = v as? NSNumber, let i = Int(exactly: n.doubleValue), i >= 0 else { throw bad("\(name): bad shape \(shapeValues)") }
                return i
            }
            guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
                  let b = (offsets[0] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }),
                  let e = (offsets[1] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }), b >= 0, b <= e else {
                throw bad("\(name): bad data_offsets")
            }
            guard e <= dataSize else { throw bad("\(name): data_offsets [\(b), \(e)] run past the \(dataSize) data bytes") }
            var elements = 1
            // Every trailing product too (libtorch's contiguous strides), even where a leading 0 makes the
            // element count 0: [0, 2⁶², 2⁶²] would overflow its stride computation.
            var stride = 1
            for d in shape.reversed() {
                let (m, overflow) = stride.multipliedReportingOverflow(by: max(d, 1))
                guard !overflow else { throw bad("\(name): shape \(shape) overflows") }
                stride = m
            }
            for d in shape {
                let (m, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw bad("\(name): shape \(shape) overflows") }
                elements = m
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.itemSize)
            guard !overflow, bytes == e - b else {
                // Where the product overflowed, its factors: computing it again would trap.
                let needed = overflow ? "\(elements) × \(dtype.itemSize) bytes (past 64 bits)" : "\(bytes) bytes"
                throw bad("\(name): shape \(shape) of \(dtypeName) needs \(needed) but data_offsets span \(e - b)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: b, end: e))
        }
        // Ranges must not overlap (the format requires a dense, ordered layout).
        let sorted = entries.sorted { $0.begin < $1.begin }
        let nonEmpty = sorted.filter { $0.end > $0.begin }  // empty tensors occupy no bytes
        for (a, b) in zip(nonEmpty, nonEmpty.dropFirst()) where a.end > b.begin {
            throw bad("\(a.name) and \(b.name) overlap in the data section")
        }

        var tensors = StateDict()
        for entry in sorted {
            let count = entry.end - entry.begin
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
            defer { buffer.deallocate() }
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
            if count > 0 { try read(into: slice, at: headerEnd + entry.begin) }
            tensors[entry.name] = try Tensor(bytes: UnsafeRawBufferPointer(slice), dtype: entry.dtype, shape: entry.shape)
        }
        return Contents(tensors: tensors, metadata: metadata)
    }

    /// Writes tensors (any device; copied to CPU) with optional string metadata. Atomic.
    public static func save(_ tensors: StateDict, metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        var dense: [(String, Tensor)] = []
        for (name, t) in tensors {
            guard let dtypeName = namesByDType[t.dtype] else { throw TorchError.invalidArgument("\(name): dtype \(t.dtype) has no safetensors name") }
            let c = try t.detach().to(device: .cpu).contiguous()
            header[name] = ["dtype": dtypeName, "shape": c.shape, "data_offsets": [offset, offset + c.byteCount]] as [String: Any]
            offset += c.byteCount
            dense.append((name, c))
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        while json.count % 8 != 0 { json.append(0x20) }
        try AtomicFile.write(to: path) { tmp in
            guard FileManager.default.createFile(atPath: tmp, contents: nil), let handle = FileHandle(forWritingAtPath: tmp) else {
                throw TorchError.io(path: path, reason: "cannot create file")
            }
            defer { try? handle.close() }
            do {
                var length = UInt64(json.count).littleEndian
                try handle.write(contentsOf: Data(bytes: &length, count: 8))
                try handle.write(contentsOf: json)
                for (_, t) in dense {
                    try t.withContiguousBytes { raw in
                        if raw.count > 0 { try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: raw.baseAddress!), count: raw.count, deallocator: .none)) }
                    }
                }
                try handle.synchronize()
            } catch let error as TorchError {
                throw error
            } catch {
                throw TorchError.io(path: path, reason: "write failed: \(error.localizedDescription)")
            }
        }
    }
}

/// The first `count` bytes of a checkpoint file (fewer when it is shorter). A missing file, a folder, or
/// one that cannot be read is a named error (Foundation's FileHandle.readData traps on a folder).
func checkpointHead(_ path: String, count: Int) throws -> [UInt8] {
    var info = stat()
    guard stat(path, &info) == 0 else {
        if errno == ENOENT { throw TorchError.fileNotFound(path: path) }
        throw TorchError.io(path: path, reason: "cannot read: \(String(cString: strerror(errno)))")
    }
    if (info.st_mode & S_IFMT) == S_IFDIR { throw TorchError.io(path: path, reason: "is a folder, not a checkpoint file") }
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw TorchError.io(path: path, reason: "cannot open for reading: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var head = [UInt8](repeating: 0, count: count)
    var got = 0
    while got < count {
        let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw TorchError.io(path: path, reason: "cannot read: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        got += n
    }
    return Array(head.prefix(got))
}
