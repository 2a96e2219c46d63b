import CrackSAM
import Foundation
import XCTest

/// Runs the Python oracles (PyTorch, Meta's segment_anything) that live in Tests/Oracles, using the
/// venv scripts/setup installs. Tests never trust numbers our own code produced alone.
enum Oracle {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var python: String { root + "/.venv/bin/python" }

    /// This test process's scratch root, removed when the process exits (a full run writes several GB:
    /// ViT-B checkpoints, oracle outputs) unless CRACKSAM_KEEP_TEST_FILES is set.
    static let scratchRoot: String = {
        if ProcessInfo.processInfo.environment["CRACKSAM_KEEP_TEST_FILES"] == nil {
            atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "cracksam-tests-\(getpid())") }
        }
        return NSTemporaryDirectory() + "cracksam-tests-\(getpid())"
    }()

    /// A fresh scratch folder for one test's files.
    static func scratch(_ name: String = #function) throws -> String {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        let dir = scratchRoot + "/\(safe)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    private static var outputs: [String: StateDict] = [:]

    /// Runs an oracle that writes one safetensors file (its only argument) and loads it; cached per run.
    static func tensors(from script: String) throws -> StateDict {
        if let cached = outputs[script] { return cached }
        let path = try scratch(script) + "/out.safetensors"
        try run(script, [path])
        let loaded = try SafeTensors.load(at: path).tensors
        outputs[script] = loaded
        return loaded
    }

    /// Runs `Tests/Oracles/<script> args…`; throws with its output when it exits non-zero.
    @discardableResult
    static func run(_ script: String, _ args: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TorchError.invalidArgument("no oracle Python at \(python): run scripts/setup first")
        }
        let (status, output) = try runProcess(python, [root + "/Tests/Oracles/" + script] + args)
        guard status == 0 else {
            throw TorchError.invalidArgument("oracle \(script) failed (\(status)):\n\(output)")
        }
        return output
    }

    /// Runs a program to completion; returns its exit status and its stdout and stderr together.
    static func runProcess(_ executable: String, _ args: [String], in folder: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        if let folder { process.currentDirectoryURL = URL(fileURLWithPath: folder) }
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = env["OMP_NUM_THREADS"] ?? "2"
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Asserts equal shapes, dtypes and values within |a − b| ≤ atol + rtol·|b| (exact for integer/bool).
func assertClose(_ actual: Tensor, _ expected: Tensor, rtol: Double = 1e-5, atol: Double = 1e-6, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertEqual(actual.shape, expected.shape, "\(what): shape", file: file, line: line)
    XCTAssertEqual(actual.dtype, expected.dtype, "\(what): dtype", file: file, line: line)
    guard actual.shape == expected.shape, actual.dtype == expected.dtype else { return }
    if expected.dtype.isFloatingPoint {
        let a = try actual.to(dtype: .float64), e = try expected.to(dtype: .float64)
        let ok = try a.allClose(e, rtol: rtol, atol: atol)
        if !ok {
            let diff = try (a - e).abs().amax().item()
            XCTFail("\(what): max |diff| \(diff) exceeds atol \(atol) + rtol \(rtol)", file: file, line: line)
        }
    } else {
        XCTAssertEqual(try actual.bytes(), try expected.bytes(), "\(what): values differ", file: file, line: line)
    }
}

/// Runs the crack-cli binary built beside the test bundle (`swift build --build-tests` builds it) and
/// asserts its exit status; returns stdout and stderr together.
@discardableResult
func crackCLI(_ args: [String], expectSuccess: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("crack-cli").path
    let (status, out) = try Oracle.runProcess(binary, args)
    if expectSuccess {
        XCTAssertEqual(status, 0, "crack-cli \(args.joined(separator: " ")):\n\(out)", file: file, line: line)
    } else {
        XCTAssertNotEqual(status, 0, out, file: file, line: line)
    }
    return out
}

/// Runs crack-cli, sends SIGINT (as Ctrl-C; or `signal`) once its output shows `marker`, and returns its
/// exit status and whole output.
func interruptedCLI(_ args: [String], after marker: String, delay: TimeInterval = 0, signal: Int32 = SIGINT) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("crack-cli")
    process.arguments = args
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    var output = ""
    while !output.contains(marker) {
        let chunk = pipe.fileHandleForReading.availableData
        if chunk.isEmpty { break }  // it ended first
        output += String(decoding: chunk, as: UTF8.self)
    }
    // Woken by the marker's write, this process tends to signal before the command takes its next step:
    // a delay lands the signal inside that step instead.
    if delay > 0 { Thread.sleep(forTimeInterval: delay) }
    kill(process.processIdentifier, signal)
    output += String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

/// A dataset of `count` 40×30 samples: a bright diagonal "crack" in image and mask.
func makeTestDataset(_ dir: String, count: Int = 5, maskExtension: String = "png") throws {
    try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: dir + "/masks", withIntermediateDirectories: true)
    for i in 0..<count {
        var rgb = [UInt8](repeating: 90, count: 40 * 30 * 3)
        var mask = [UInt8](repeating: 0, count: 40 * 30)
        for y in 0..<30 {
            let x = (y + i * 3) % 40
            mask[y * 40 + x] = 255
            for c in 0..<3 { rgb[(y * 40 + x) * 3 + c] = 10 }
        }
        try Image(width: 40, height: 30, channels: 3, pixels: rgb).write(to: dir + "/images/s\(i).png")
        try Image(width: 40, height: 30, channels: 1, pixels: mask).write(to: dir + "/masks/s\(i).\(maskExtension)")
    }
}
