import CrackSAM
import Foundation
import XCTest

/// .pth and safetensors against PyTorch and the safetensors library (Tests/Oracles/checkpoint_oracle.py).
final class CheckpointTests: XCTestCase {
    static var dir: String?

    /// The oracle's files, written once for the whole class.
    func files() throws -> String {
        if let d = Self.dir { return d }
        let d = try Oracle.scratch()
        try Oracle.run("checkpoint_oracle.py", ["write", d])
        Self.dir = d
        return d
    }

    func expected() throws -> StateDict { try SafeTensors.load(at: try files() + "/expected.safetensors").tensors }

    func keyOrder() throws -> [String: [String]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: try files() + "/keys.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: [String]]
    }

    /// Outputs go through links and into FIFOs and devices, as a shell redirection would: renaming a new
    /// file over the path replaced the link (its target kept the old contents) or the device node.
    func testAtomicWritesFollowLinksAndFillFIFOs() throws {
        let dir = try Oracle.scratch()
        try FileManager.default.createDirectory(atPath: dir + "/shared", withIntermediateDirectories: true)
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/shared/r.json"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.json", withDestinationPath: "shared/r.json")
        try AtomicFile.write(Data("new".utf8), to: dir + "/link.json")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/link.json"), "shared/r.json", "the link stays")
        XCTAssertEqual(try String(contentsOfFile: dir + "/shared/r.json", encoding: .utf8), "new")
        // A link to a file not there yet makes it.
        try FileManager.default.createSymbolicLink(atPath: dir + "/ahead.json", withDestinationPath: dir + "/shared/later.json")
        try AtomicFile.write(Data("made".utf8), to: dir + "/ahead.json")
        XCTAssertEqual(try String(contentsOfFile: dir + "/shared/later.json", encoding: .utf8), "made")

        XCTAssertEqual(mkfifo(dir + "/pipe", 0o600), 0)
        final class Received: @unchecked Sendable { var data = Data() }  // written before `done` is signalled
        let received = Received(), done = DispatchSemaphore(value: 0)
        Thread {
            if let h = FileHandle(forReadingAtPath: dir + "/pipe") { received.data = h.readDataToEndOfFile() }
            done.signal()
        }.start()
        try AtomicFile.write(Data("through the pipe".utf8), to: dir + "/pipe")
        done.wait()
        XCTAssertEqual(String(decoding: received.data, as: UTF8.self), "through the pipe")
        var info = stat()
        XCTAssertEqual(lstat(dir + "/pipe", &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFIFO, "still a FIFO")
        try AtomicFile.write(Data("discarded".utf8), to: "/dev/null")
        XCTAssertEqual(lstat("/dev/null", &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFCHR, "/dev/null is still a device")
    }

    func testModelStateDictLoadsWithPyTorchKeyOrderAndValues() throws {
        let d = try files()
        let sd = try PyTorchCheckpoint.loadStateDict(at: d + "/state_dict.pth")
        XCTAssertEqual(Array(sd.keys), try keyOrder()["state_dict"]!, "an OrderedDict keeps its order")
        let e = try expected()
        for (k, v) in sd { try assertClose(v, e["state_dict/" + k]!, rtol: 0, atol: 0, k) }
        XCTAssertEqual(sd["norm.num_batches_tracked"]?.dtype, .int64)
        XCTAssertEqual(try sd["norm.num_batches_tracked"]!.itemInt(), 17)
    }

    func testPlainDictKeepsDTypesViewsAndSharedStorage() throws {
        let d = try files()
        let sd = try PyTorchCheckpoint.loadStateDict(at: d + "/plain.pth")
        XCTAssertEqual(Array(sd.keys), try keyOrder()["plain"]!)
        let e = try expected()
        for (k, v) in sd { try assertClose(v, e["plain/" + k]!, rtol: 0, atol: 0, k) }
        XCTAssertEqual(sd["f16"]?.dtype, .float16)
        XCTAssertEqual(sd["bf16"]?.dtype, .bfloat16)
        XCTAssertEqual(sd["transposed"]?.strides, [1, 5], "strides come from the pickle, as torch.load gives")
        XCTAssertEqual(sd["shared_view"]?.storageOffset, 11)
        // The view shares storage with its base, as in Python.
        try sd["shared_base"]!.fill_(0)
        XCTAssertEqual(try sd["shared_view"]!.abs().sum().item(), 0)
    }

    func testNestedSaveFlattensAndKeepsScalars() throws {
        let d = try files()
        let sd = try PyTorchCheckpoint.loadStateDict(at: d + "/nested.pth")
        let e = try expected()
        XCTAssertEqual(Array(sd.keys), try keyOrder()["state_dict"]!.map { "model." + $0 })
        for (k, v) in sd { try assertClose(v, e["nested/" + k]!, rtol: 0, atol: 0, k) }
        guard case .dict(let root) = try PyTorchCheckpoint.loadObject(at: d + "/nested.pth") else { return XCTFail("not a dict") }
        XCTAssertEqual(root["epoch"]?.intValue, 3)
        XCTAssertEqual(root["name"]?.stringValue, "run-a")
        guard case .float(let lr)? = root["lr"] else { return XCTFail("lr") }
        XCTAssertEqual(lr, 1e-4)
    }

    /// What PyTorch code saves besides state dicts loads: a training checkpoint with the optimizer's state
    /// (int keys, lists, tuples), and a list mixing every kind of value. (The unpickler's nesting rules
    /// must not refuse them.)
    func testTrainingCheckpointsAndMixedValuesLoad() throws {
        let d = try files()
        let sd = try PyTorchCheckpoint.loadStateDict(at: d + "/training.pth")
        XCTAssertEqual(sd.keys.filter { $0.hasPrefix("model.") }.count, try keyOrder()["state_dict"]!.count)
        // One moment per parameter: conv, norm and the two blocks have 8 parameters.
        XCTAssertEqual(sd.keys.filter { $0.hasPrefix("optimizer.state.") && $0.hasSuffix(".exp_avg") }.count, 8)
        guard case .list(let list) = try PyTorchCheckpoint.loadObject(at: d + "/mixed.pth") else { return XCTFail("not a list") }
        XCTAssertEqual(list.items.count, 3)
        guard case .tuple(let pair) = list.items[1], case .dict(let dict) = pair[1], case .list(let inner)? = dict["a"] else {
            return XCTFail("\(list.items.map(\.kind))")
        }
        XCTAssertEqual(inner.items.map(\.kind), ["int", "float", "str", "None", "bool"])
        XCTAssertEqual(dict["7"]?.intValue, -3)
    }

    func testFilesWrittenBySwiftLoadInPyTorchIdentically() throws {
        let d = try files()
        try PyTorchCheckpoint.save(try PyTorchCheckpoint.loadStateDict(at: d + "/state_dict.pth"), to: d + "/swift_state_dict.pth")
        try PyTorchCheckpoint.save(try PyTorchCheckpoint.loadStateDict(at: d + "/plain.pth"), to: d + "/swift_plain.pth")
        try PyTorchCheckpoint.save(object: try PyTorchCheckpoint.loadObject(at: d + "/nested.pth"), to: d + "/swift_nested.pth")
        try SafeTensors.save(try PyTorchCheckpoint.loadStateDict(at: d + "/plain.pth"),
                             metadata: ["backbone": "vit_b", "image_size": "448"], to: d + "/swift.safetensors")
        let out = try Oracle.run("checkpoint_oracle.py", ["verify", d])
        XCTAssertTrue(out.contains("verified"), out)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: d).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [], "atomic writes leave no temporary files")
    }

    func testSafeTensorsFromTheReferenceLibraryLoad() throws {
        let d = try files()
        let st = try SafeTensors.load(at: d + "/reference.safetensors")
        XCTAssertEqual(st.metadata, ["delta_type": "lora", "rank": "4"])
        let e = try expected()
        XCTAssertEqual(st.tensors.count, 10)
        for (k, v) in st.tensors { try assertClose(v, e["plain/" + k]!, rtol: 0, atol: 0, k) }
    }

    func testAPickleThatImportsAnythingElseIsRefusedUnrun() throws {
        let d = try files()
        XCTAssertThrowsError(try PyTorchCheckpoint.loadStateDict(at: d + "/evil.pth")) { error in
            guard case TorchError.forbiddenGlobal(let path, let name) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, d + "/evil.pth")
            XCTAssertTrue(name.hasSuffix(".system"), name)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/pwned"))
    }

    /// Sizes forged past 64 bits (a hostile or corrupt file) are named errors, not arithmetic traps.
    func testOverflowingSizesAreErrorsNotCrashes() throws {
        let d = try files()
        for (file, fragment) in [("huge_storage.pth", "storage data/0 claims 4611686018427387904 × float32 elements"),
                                 ("huge_stride.pth", "tensor of size [1099511627776] and strides [1099511627776] addresses past any storage"),
                                 ("huge_shape.safetensors", "shape [2305843009213693952] of F32 needs 2305843009213693952 × 4 bytes"),
                                 ("huge_numel.pth", "tensor of size [1099511627776, 1099511627776] has more elements than 64 bits count"),
                                 ("negative_offset.pth", "tensor at a negative storage offset -5"),
                                 ("empty_huge_shape.safetensors", "w: shape [0, 4611686018427387904, 4611686018427387904] overflows")] {
            XCTAssertThrowsError(try (file.hasSuffix(".pth") ? PyTorchCheckpoint.loadStateDict(at: d + "/" + file)
                                                              : SafeTensors.load(at: d + "/" + file).tensors), file) { error in
                XCTAssertTrue("\(error)".contains(d + "/" + file) && "\(error)".contains(fragment), "\(error)")
            }
        }
    }

    /// Forged pickles that hold themselves or nest thousands deep are named errors while they are read:
    /// walking or releasing such a value recursively overflowed the stack (SIGSEGV). A dict that two keys
    /// share, as torch.save writes it, still loads under both.
    func testCyclesAndDeepNestingAreErrorsNotCrashes() throws {
        let d = try files()
        for (file, fragment) in [("self_dict.pth", "a dict put inside itself"),
                                 ("cycle_lists.pth", "APPEND to a list already inside another value"),
                                 ("deep_tuple.pth", "values nested more than 100 levels deep"),
                                 ("deep_list.pth", "values nested more than 100 levels deep")] {
            XCTAssertThrowsError(try PyTorchCheckpoint.loadStateDict(at: d + "/" + file), file) { error in
                XCTAssertTrue("\(error)".hasPrefix(d + "/" + file + ": malformed checkpoint: data.pkl: " + fragment), "\(error)")
            }
        }
        let shared = try PyTorchCheckpoint.loadStateDict(at: d + "/shared_dict.pth")
        XCTAssertEqual(Set(shared.keys), ["model.w", "ema.w"])
    }

    func testSavingOverAnExistingFileReplacesItAtomically() throws {
        let d = try Oracle.scratch()
        let path = d + "/a.pth"
        try PyTorchCheckpoint.save(["x": try Tensor([1, 2] as [Float])], to: path)
        try PyTorchCheckpoint.save(["y": try Tensor([3] as [Float])], to: path)
        XCTAssertEqual(Array(try PyTorchCheckpoint.loadStateDict(at: path).keys), ["y"])
        XCTAssertThrowsError(try PyTorchCheckpoint.save(["x": try Tensor([1] as [Float])], to: d + "/no/such/dir/a.pth")) { error in
            guard case TorchError.io = error else { return XCTFail("\(error)") }
        }
    }

    /// Temporary files of writes that never finished (their process gone: kill -9, a second Ctrl-C) are
    /// removed; a live process's, and other hidden files, are not.
    func testLeftoversOfKilledWritesAreRemoved() throws {
        let d = try Oracle.scratch()
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        let names = [".state.safetensors.tmp-\(gone.processIdentifier)-12345", ".best.pth.tmp-\(getpid())-7", ".hidden", ".x.tmp-notapid-1", "best.pth"]
        for name in names { FileManager.default.createFile(atPath: d + "/" + name, contents: Data([1])) }
        AtomicFile.removeLeftovers(in: d)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: d)), Set(names.dropFirst()))
    }
}
