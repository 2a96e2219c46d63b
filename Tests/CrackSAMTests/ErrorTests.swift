import CrackSAM
import Foundation
import XCTest

/// Bad input throws a TorchError naming what is wrong; nothing crashes.
final class ErrorTests: XCTestCase {
    func testShapeMismatchThrowsLibtorchMessage() throws {
        let a = try Tensor.zeros([2, 3]), b = try Tensor.zeros([4, 5])
        XCTAssertThrowsError(try a.matmul(b)) { error in
            guard case TorchError.libtorch(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("cannot be multiplied"), message)
            XCTAssertFalse(message.contains("frame #"), "no C++ backtrace in user-facing messages")
        }
        XCTAssertThrowsError(try a + b)
        XCTAssertThrowsError(try a.view([7]))
        XCTAssertThrowsError(try Tensor.cat([a, b], dim: 0))
    }

    /// A model size of zero (a typo on --heads, or a delta's metadata) is named, not a division trap.
    func testZeroModelSizesThrowByName() {
        let base = SAMConfig(backbone: .custom, embedDim: 32, depth: 2, heads: 4, globalBlocks: [1], imageSize: 64)
        let cases: [(WritableKeyPath<SAMConfig, Int>, String)] = [
            (\.heads, "heads"), (\.embedDim, "embed dim"), (\.depth, "depth"), (\.patchSize, "patch size"),
            (\.windowSize, "window size"), (\.mlpRatio, "MLP ratio"), (\.promptDim, "prompt dim"),
        ]
        for (path, name) in cases {
            var config = base
            config[keyPath: path] = 0
            XCTAssertThrowsError(try config.validate(), name) { error in
                XCTAssertTrue("\(error)".contains("\(name) must be at least 1 (got 0)"), "\(error)")
            }
        }
        XCTAssertNoThrow(try base.validate())
    }

    func testBadDTypeThrows() throws {
        let ints = try Tensor.ones([2, 3], dtype: .int64)
        XCTAssertThrowsError(try ints.toArray(of: Float.self)) { error in
            XCTAssertEqual(error as? TorchError, .dtypeMismatch(key: "toArray", expected: .float32, actual: .int64))
        }
        // libtorch refuses mixing dtypes in a matmul; the message reaches Swift.
        XCTAssertThrowsError(try ints.linear(weight: try Tensor.ones([4, 3]))) { error in
            guard case TorchError.libtorch = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try Tensor.zeros([2, 3]).crossEntropy(target: try Tensor.zeros([2])))
    }

    /// The shim's contract at its edges: a query libtorch cannot answer (autocast on meta) neither ends
    /// the process nor invents a dtype; a failed optimizer step leaves its step counters as they were;
    /// a bad dim or device index is an error, not a trap or another device.
    func testShimEdgesThrowOrAnswerAndLeaveNoTrace() throws {
        XCTAssertFalse(Torch.isAutocastEnabled(device: .meta))
        XCTAssertNil(Torch.autocastDType(device: .meta))

        let param = try Tensor.ones([3]), step = try Tensor.zeros([])
        let (m, v) = (try Tensor.zeros([3]), try Tensor.zeros([3]))
        for _ in 0..<3 {
            XCTAssertThrowsError(try FusedKernels.adamW(params: [param], grads: [try Tensor.ones([3], dtype: .float64)], expAvgs: [m],
                                                        expAvgSqs: [v], steps: [step], lr: 0.1, beta1: 0.9, beta2: 0.999,
                                                        weightDecay: 0, eps: 1e-8))
        }
        XCTAssertEqual(try step.item(), 0, "a step that failed is not counted")
        try FusedKernels.adamW(params: [param], grads: [try Tensor.ones([3])], expAvgs: [m], expAvgSqs: [v], steps: [step], lr: 0.1,
                               beta1: 0.9, beta2: 0.999, weightDecay: 0, eps: 1e-8)
        XCTAssertEqual(try step.item(), 1)

        let t = try Tensor.ones([2, 3])
        XCTAssertEqual(try t.sum(keepDim: true).shape, [1, 1])
        XCTAssertEqual(try t.mean(keepDim: true).shape, [1, 1])
        XCTAssertEqual(try t.sum().shape, [])
        XCTAssertThrowsError(try t.unbind(dim: 2)) { XCTAssertTrue("\($0)".contains("out of range"), "\($0)") }
        XCTAssertEqual(try t.unbind(dim: -1).count, 3)
        // Where CUDA is there, the shim refuses the index itself (it used to wrap 256 to cuda:0); here the
        // Swift side's "not available" comes first.
        XCTAssertThrowsError(try t.to(device: .cuda(256))) { error in
            if CUDA.isAvailable { XCTAssertTrue("\(error)".contains("out of range"), "\(error)") }
        }
    }

    func testBufferOfTheWrongSizeThrows() throws {
        XCTAssertThrowsError(try Tensor([1, 2, 3] as [Float], shape: [2, 2]))
    }

    func testMissingFileThrowsFileNotFound() {
        XCTAssertThrowsError(try PyTorchCheckpoint.loadStateDict(at: "/nonexistent/sam.pth")) { error in
            XCTAssertEqual(error as? TorchError, .fileNotFound(path: "/nonexistent/sam.pth"))
        }
        XCTAssertThrowsError(try SafeTensors.load(at: "/nonexistent/delta.safetensors")) { error in
            XCTAssertEqual(error as? TorchError, .fileNotFound(path: "/nonexistent/delta.safetensors"))
        }
    }

    func assertMalformed(_ path: String, containing fragment: String, file: StaticString = #filePath, line: UInt = #line,
                         _ load: (String) throws -> Any) {
        XCTAssertThrowsError(try load(path), file: file, line: line) { error in
            guard case TorchError.malformedCheckpoint(let p, let reason) = error else {
                return XCTFail("expected malformedCheckpoint, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(p, path, file: file, line: line)
            XCTAssertTrue(reason.contains(fragment), "'\(reason)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    func testTruncatedPthThrows() throws {
        let d = try Oracle.scratch()
        let good = d + "/good.pth"
        try PyTorchCheckpoint.save(["w": try Tensor.randn([64, 64]), "b": try Tensor.randn([64])], to: good)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        for (i, cut) in [bytes.count / 2, bytes.count - 30, 100, 3].enumerated() {
            let path = d + "/cut\(i).pth"
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try PyTorchCheckpoint.loadStateDict(at: path), "cut at \(cut)") { error in
                guard case TorchError.malformedCheckpoint(let p, _) = error else { return XCTFail("cut at \(cut): \(error)") }
                XCTAssertEqual(p, path)
            }
        }
        let notZip = d + "/notzip.pth"
        try Data("hello, this is not a checkpoint".utf8).write(to: URL(fileURLWithPath: notZip))
        assertMalformed(notZip, containing: "not a PyTorch zip checkpoint") { try PyTorchCheckpoint.loadStateDict(at: $0) }
    }

    func testDamagedArchivesFromPyTorchThrow() throws {
        let d = try Oracle.scratch()
        try Oracle.run("checkpoint_oracle.py", ["write", d])
        assertMalformed(d + "/truncated_pickle.pth", containing: "truncated") { try PyTorchCheckpoint.loadStateDict(at: $0) }
        assertMalformed(d + "/missing_storage.pth", containing: "data/0") { try PyTorchCheckpoint.loadStateDict(at: $0) }
    }

    /// Writes a safetensors file from a raw header length and header text, plus `data` bytes.
    func writeSafeTensors(_ path: String, length: UInt64? = nil, header: String, data: [UInt8] = []) throws {
        let h = Array(header.utf8)
        var bytes = withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { Array($0) }
        bytes += h + data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func testMalformedSafeTensorsHeadersThrow() throws {
        let d = try Oracle.scratch()
        let cases: [(String, UInt64?, String, [UInt8], String)] = [
            ("huge_length", UInt64.max, "{}", [], "header claims"),
            ("length_past_end", 4096, "{}", [], "header claims"),
            ("not_json", nil, "{not json", [], "not valid JSON"),
            ("not_object", nil, "[1, 2]", [], "not a JSON object"),
            ("bad_dtype", nil, #"{"w": {"dtype": "F8_E9", "shape": [1], "data_offsets": [0, 1]}}"#, [0], "unsupported dtype"),
            ("past_end", nil, #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#, [0, 0, 0, 0], "run past"),
            ("size_mismatch", nil, #"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}"#, [0, 0, 0, 0], "needs 8 bytes"),
            ("overflow", nil, #"{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 4]}}"#, [0, 0, 0, 0], "overflows"),
            ("negative", nil, #"{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, [0, 0, 0, 0], "bad shape"),
            ("overlap", nil, #"{"a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}"#, [0, 0, 0, 0], "overlap"),
            ("bad_offsets", nil, #"{"w": {"dtype": "U8", "shape": [1], "data_offsets": [3, 2]}}"#, [0, 0, 0, 0], "bad data_offsets"),
            ("short", nil, "", [], "header"),
        ]
        for (name, length, header, data, fragment) in cases {
            let path = d + "/\(name).safetensors"
            if name == "short" {
                try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
            } else {
                try writeSafeTensors(path, length: length, header: header, data: data)
            }
            assertMalformed(path, containing: fragment) { try SafeTensors.load(at: $0) }
        }
    }
}
