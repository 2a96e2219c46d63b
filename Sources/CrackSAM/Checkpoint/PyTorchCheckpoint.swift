import CTorchShim
import Foundation
import OrderedCollections

/// Parameter name → tensor, in the order the model (or file) lists them.
public typealias StateDict = OrderedDictionary<String, Tensor>

extension OrderedDictionary where Key == String, Value == Tensor {
    /// Refuses a file whose floating-point tensors hold NaN or ±inf, naming the first such key: such
    /// weights load without complaint and then give NaN logits, read as "no crack" (an all-background
    /// mask, a plausible-looking score). One read-back for the whole dict.
    public func requireFinite(source: String) throws {
        let floats = filter { $0.value.dtype.isFloatingPoint && $0.value.count > 0 }
        guard !floats.isEmpty else { return }
        let flags = try Tensor.stack(floats.values.map { try $0.detach().isFinite().to(dtype: .float32).amin() }).toArray(of: Float.self)
        if let bad = flags.firstIndex(where: { $0 != 1 }) {
            throw TorchError.malformedCheckpoint(path: source, reason: "'\(floats.keys[bad])' holds NaN or infinite values")
        }
    }
}

/// `.pth` files as `torch.save` writes them (a zip of `data.pkl` plus one record per storage).
///
/// libtorch's `torch::pickle_load` turns `collections.OrderedDict` into None, and every
/// `model.state_dict()` file (Meta's SAM checkpoints included) is one; so the pickle is read by our own
/// restricted `Unpickler`, and only the zip records come from libtorch's stream reader.
public enum PyTorchCheckpoint {
    /// Loads the whole pickled object (dicts, lists, numbers, strings and tensors), tensors on the CPU.
    public static func loadObject(at path: String) throws -> PickleValue {
        let archive = try Archive(path)
        func record(_ name: String) throws -> Tensor { try archive.record(name) }
        if archive.names.contains("byteorder") {
            let order = String(decoding: try record("byteorder").toArray(of: UInt8.self), as: UTF8.self)
            guard order == "little" else {
                throw TorchError.malformedCheckpoint(path: path, reason: "byte order '\(order)' is not supported")
            }
        }
        let pickle = try record("data.pkl").toArray(of: UInt8.self)
        var cache: [String: Tensor] = [:]
        var unpickler = Unpickler(bytes: pickle, path: path) { dtype, key, numel in
            if let s = cache[key] { return s }
            let raw = try record("data/\(key)")
            let (needed, overflow) = numel.multipliedReportingOverflow(by: dtype.itemSize)
            guard numel >= 0, !overflow else {
                throw TorchError.malformedCheckpoint(path: path, reason: "storage data/\(key) claims \(numel) × \(dtype) elements")
            }
            guard raw.count >= needed else {
                throw TorchError.malformedCheckpoint(
                    path: path, reason: "storage data/\(key) holds \(raw.count) bytes, \(needed) expected for \(numel) × \(dtype)")
            }
            let bytes = raw.count == needed ? raw : try raw.narrow(dim: 0, start: 0, length: needed)
            let typed = dtype == .uint8 ? bytes : try bytes.viewBits(as: dtype)
            cache[key] = typed
            return typed
        }
        return try unpickler.load()
    }

    /// Loads a state dict. Nested dicts are flattened with "." (`{"model": {"w": …}}` → `model.w`);
    /// non-tensor leaves (epoch counters, config strings) are skipped.
    public static func loadStateDict(at path: String) throws -> StateDict {
        let root = try loadObject(at: path)
        guard case .dict(let dict) = root else {
            throw TorchError.malformedCheckpoint(path: path, reason: "expected a dict of tensors, found a \(root.kind)")
        }
        var out = StateDict()
        var visits = 0
        try flatten(dict, prefix: "", into: &out, visits: &visits, path: path)
        return out
    }

    /// At most this many entries are walked while flattening: a dict may appear under several keys (each
    /// gets its copy of the keys), but a forged file sharing one under 2 keys at each of 40 levels would
    /// ask for 2⁴⁰.
    static let maxFlattenedEntries = 10_000_000

    private static func flatten(_ dict: PickleDict, prefix: String, into out: inout StateDict, visits: inout Int, path: String) throws {
        for (k, v) in dict.entries {
            visits += 1
            guard visits <= maxFlattenedEntries else {
                throw TorchError.malformedCheckpoint(path: path, reason: "more than \(maxFlattenedEntries) entries in its nested dicts")
            }
            let key = prefix + PickleDict.keyString(k)
            switch v {
            case .tensor(let t):
                guard out[key] == nil else { throw TorchError.malformedCheckpoint(path: path, reason: "key '\(key)' appears twice") }
                out[key] = t
            case .dict(let d): try flatten(d, prefix: key + ".", into: &out, visits: &visits, path: path)
            default: continue
            }
        }
    }

    /// The record inside a `.pth` this tool wrote that holds the file's description (a delta's sizes, an
    /// export's format). `torch.load` reads only `data.pkl` and the storages, so Meta-layout loaders see a
    /// plain state dict; the description lands with the weights in one rename, never mismatched.
    static let descriptionRecord = "cracksam.json"

    /// Writes a state dict as `torch.save(OrderedDict)` would. The file appears atomically. A description
    /// goes inside the archive and, as a copy for people and other tools, into a `<file>.json` sidecar.
    public static func save(_ stateDict: StateDict, description: [String: String]? = nil, to path: String) throws {
        let dict = PickleDict()
        for (k, v) in stateDict { dict.set(.string(k), .tensor(v)) }
        guard let description else { return try save(object: .dict(dict), to: path) }
        let json = try JSONSerialization.data(withJSONObject: description, options: [.prettyPrinted, .sortedKeys])
        try save(object: .dict(dict), records: [descriptionRecord: Array(json)], to: path)
        // After the file: a kill between the two renames leaves an old sidecar, which the description
        // inside the new file overrides (`description(of:)`).
        try AtomicFile.write(json, to: sidecarPath(for: path))
    }

    /// Writes any checkpoint value (nested dicts, lists, numbers, strings, tensors). Atomic: written to a
    /// temporary file beside `path` and renamed, so a crash never leaves a half-written checkpoint.
    public static func save(object: PickleValue, to path: String) throws {
        try save(object: object, records: [:], to: path)
    }

    private static func save(object: PickleValue, records: [String: [UInt8]], to path: String) throws {
        var pickler = Pickler()
        try pickler.write(object)
        let pickle = pickler.finish()
        try AtomicFile.write(to: path) { tmp in
            var writer: ct_zip_writer? = nil
            try check(ct_zip_writer_open(tmp, &writer))
            defer { ct_zip_writer_free(writer) }
            func put(_ name: String, _ bytes: [UInt8]) throws {
                try bytes.withUnsafeBytes { try check(ct_zip_writer_write(writer, name, $0.baseAddress, $0.count)) }
            }
            try put("data.pkl", pickle)
            try put(".format_version", Array("1".utf8))
            try put(".storage_alignment", Array("64".utf8))
            try put("byteorder", Array("little".utf8))
            for (name, bytes) in records.sorted(by: { $0.key < $1.key }) { try put(name, bytes) }
            for (i, storage) in pickler.storages.enumerated() {
                try storage.withContiguousBytes { raw in
                    try check(ct_zip_writer_write(writer, "data/\(i)", raw.baseAddress, raw.count))
                }
            }
            try check(ct_zip_writer_finish(writer))
        }
    }

    public static func sidecarPath(for path: String) -> String { path + ".json" }

    /// What a `.pth` this tool wrote (a delta, an export) says about itself: the description inside the
    /// archive, or for files written before it went there (and the authors' files given one by hand) the
    /// `<file>.json` sidecar; nil when neither is there. `source` names where it was read, for errors
    /// about its values; one that is not a JSON object of strings is named here.
    public static func description(of path: String) throws -> (metadata: [String: String], source: String)? {
        func parse(_ data: Data, _ source: String) throws -> [String: String] {
            guard let meta = (try? JSONSerialization.jsonObject(with: data)) as? [String: String] else {
                throw TorchError.malformedCheckpoint(path: source, reason: "not a JSON object of strings")
            }
            return meta
        }
        let archive = try Archive(path)
        if archive.names.contains(descriptionRecord) {
            let bytes = try archive.record(descriptionRecord).toArray(of: UInt8.self)
            let source = "\(path) (its record \(descriptionRecord))"
            return (try parse(Data(bytes), source), source)
        }
        let sidecar = sidecarPath(for: path)
        guard let data = FileManager.default.contents(atPath: sidecar) else { return nil }
        return (try parse(data, sidecar), sidecar)
    }

    /// Recognises files that are not zip archives so the error says what they are.
    fileprivate static func legacyKind(_ path: String) throws -> String? {
        let head = try checkpointHead(path, count: 4)
        if head.count < 4 { return "file is only \(head.count) bytes long" }
        if head[0] == 0x50, head[1] == 0x4B { return nil }  // "PK": zip
        if head[0] == 0x80 { return "legacy (pre-1.6) torch.save format; re-save it with a recent PyTorch" }
        return "not a PyTorch zip checkpoint"
    }
}

/// An open `torch.save` archive: its record names (relative to the archive's folder) and their bytes.
private final class Archive {
    let path: String
    let names: Set<String>
    private let reader: ct_zip_reader?

    init(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw TorchError.fileNotFound(path: path) }
        if let kind = try PyTorchCheckpoint.legacyKind(path) {
            throw TorchError.malformedCheckpoint(path: path, reason: kind)
        }
        var reader: ct_zip_reader? = nil
        if let err = ct_zip_reader_open(path, &reader) {
            let message = String(cString: ct_error_message(err))
            ct_error_free(err)
            throw TorchError.malformedCheckpoint(path: path, reason: "not a readable PyTorch zip archive (\(message))")
        }
        let names = Set((0..<ct_zip_reader_count(reader)).compactMap { ct_zip_reader_name(reader, $0).map { String(cString: $0) } })
        guard names.contains("data.pkl") else {
            ct_zip_reader_free(reader)
            throw TorchError.malformedCheckpoint(path: path, reason: "the archive has no data.pkl record")
        }
        self.path = path
        self.reader = reader
        self.names = names
    }

    deinit { ct_zip_reader_free(reader) }

    func record(_ name: String) throws -> Tensor {
        guard names.contains(name) else {
            throw TorchError.malformedCheckpoint(path: path, reason: "record '\(name)' is missing from the archive")
        }
        var out: ct_tensor? = nil
        if let err = ct_zip_reader_read(reader, name, &out) {
            let message = String(cString: ct_error_message(err))
            ct_error_free(err)
            throw TorchError.malformedCheckpoint(path: path, reason: "record '\(name)': \(message)")
        }
        return Tensor(owning: out!)
    }
}

/// Writes a file through a temporary name in the same folder and renames it into place.
/// A symbolic link is written through (its target gets the new file; the link stays), and a path that
/// is not a regular file (a FIFO, /dev/stdout) is written into, as a shell redirection would: renaming
/// over either would replace the link or the device node with a plain file.
public enum AtomicFile {
    /// fsync of a written file, named by `path` when it fails (a full disk can surface only here).
    static func syncToDisk(_ file: String, named path: String) throws {
        let fd = open(file, O_RDONLY)
        guard fd >= 0 else { throw TorchError.io(path: path, reason: "cannot reopen to sync: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw TorchError.io(path: path, reason: "cannot sync to disk: \(String(cString: strerror(errno)))") }
    }

    public static func write(to path: String, _ body: (_ temporaryPath: String) throws -> Void) throws {
        let target: String
        switch resolvingLinks(path) {
        case .descriptor(let fd):
            // /dev/stdout and its kin: this process's own open file, written where it stands (a pipe, or a
            // file the shell redirected into, after what was printed before), never reopened or replaced.
            fflush(stdout)
            try writeInto(FileHandle(fileDescriptor: fd, closeOnDealloc: false), named: path, body)
            return
        case .procfs:
            // Another process's descriptors (/proc/N/fd/…): their link text is no path to rename over.
            try writeInto(path, named: path, body)
            return
        case .path(let resolved):
            target = resolved
        }
        var info = stat()
        if stat(target, &info) == 0 && (info.st_mode & S_IFMT) != S_IFREG {
            if (info.st_mode & S_IFMT) == S_IFDIR { throw TorchError.io(path: path, reason: "is a folder") }
            try writeInto(target, named: path, body)
            return
        }
        let url = URL(fileURLWithPath: target)
        let dir = url.deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: dir) else {
            throw TorchError.io(path: path, reason: "folder \(dir) does not exist")
        }
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try body(tmp)
            // On the disk before it takes the name (libtorch's zip writer never syncs): after a power loss
            // the name holds the old file or the whole new one, not a truncated one. The folder's entry too.
            try syncToDisk(tmp, named: path)
            guard rename(tmp, target) == 0 else {
                throw TorchError.io(path: path, reason: "cannot rename into place: \(String(cString: strerror(errno)))")
            }
            let folder = open(dir, O_RDONLY | O_DIRECTORY)
            if folder >= 0 { fsync(folder); close(folder) }
        } catch {
            // libtorch's writer says only "basic_ios::clear: iostream error" when the disk fills up.
            let full = freeBytes(in: dir).map { $0 < 1 << 20 } ?? false
            unlink(tmp)
            if full { throw TorchError.io(path: path, reason: "no space left on the device (\(freeBytes(in: dir) ?? 0) bytes free once the partial file is removed)") }
            if case TorchError.libtorch(let message) = error { throw TorchError.io(path: path, reason: message) }
            if error is TorchError { throw error }
            // Foundation's errors (disk full, permissions) come back naming the file, as ours do.
            throw TorchError.io(path: path, reason: error.localizedDescription)
        }
    }

    /// Bytes an unprivileged writer may still use on the file system holding `folder`.
    static func freeBytes(in folder: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(folder, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    /// Removes the temporary files of writes that never finished (a process killed mid-write: kill -9,
    /// a second Ctrl-C) from `folder`: names `.NAME.tmp-PID-N` whose process is gone. A training state's
    /// is as large as the state (45 MB for a small model), and a run folder kept them for good.
    public static func removeLeftovers(in folder: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(".") {
            guard let marker = name.range(of: ".tmp-", options: .backwards) else { continue }
            let parts = name[marker.upperBound...].split(separator: "-")
            guard parts.count == 2, let pid = Int32(parts[0]), UInt32(parts[1]) != nil, pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder + "/" + name) }
        }
    }

    enum Destination: Equatable {
        /// The file a chain of symbolic links ends at (a link's relative target is read from its folder).
        case path(String)
        /// One of this process's open descriptors: /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N.
        case descriptor(Int32)
        /// A link into /proc, whose text ("pipe:[…]", a deleted file) names no path.
        case procfs
    }

    static func resolvingLinks(_ path: String) -> Destination {
        func descriptor(_ p: String) -> Int32? {
            switch p {
            case "/dev/stdout": return 1
            case "/dev/stderr": return 2
            default:
                for prefix in ["/dev/fd/", "/proc/self/fd/", "/proc/\(getpid())/fd/"] where p.hasPrefix(prefix) {
                    return Int32(p.dropFirst(prefix.count))
                }
                return nil
            }
        }
        var p = path
        for _ in 0..<40 {  // the kernel's own limit on a chain of links
            if let fd = descriptor(p) { return .descriptor(fd) }
            if p.hasPrefix("/proc/") { return .procfs }
            guard let next = try? FileManager.default.destinationOfSymbolicLink(atPath: p) else { return .path(p) }
            let folder = Folder.parent(of: p)
            p = next.hasPrefix("/") || folder.isEmpty ? next : folder + "/" + next
        }
        return .path(p)
    }

    /// Made in the temporary folder, then copied into `target` (a FIFO, a device): not atomic, as nothing can be there.
    static func writeInto(_ target: String, named path: String, _ body: (String) throws -> Void) throws {
        guard let handle = FileHandle(forWritingAtPath: target) else {
            throw TorchError.io(path: path, reason: "cannot open for writing: \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        try writeInto(handle, named: path, body)
    }

    static func writeInto(_ handle: FileHandle, named path: String, _ body: (String) throws -> Void) throws {
        let tmp = NSTemporaryDirectory() + "/cracksam-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(tmp) }
        do {
            try body(tmp)
            let data = try Data(contentsOf: URL(fileURLWithPath: tmp))
            try handle.write(contentsOf: data)
        } catch let error as TorchError {
            throw error
        } catch {
            throw TorchError.io(path: path, reason: error.localizedDescription)
        }
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { tmp in try data.write(to: URL(fileURLWithPath: tmp)) }
    }
}
