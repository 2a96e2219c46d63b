import ArgumentParser
import CrackSAM
import Foundation

@main
struct CrackCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crack-cli",
        abstract: "CrackSAM: fine-tune Segment Anything for crack segmentation and benchmark it zero-shot.",
        subcommands: [Info.self, SynthCommand.self, Train.self, Eval.self, Predict.self, Export.self, DegradeCommand.self, Bench.self],
        defaultSubcommand: Info.self
    )

    /// As ArgumentParser's own main, except that a ValidationError thrown while a command runs (a file
    /// against a flag, a delta for another model) is printed as "Error: …" alone: the usage text it would
    /// bring there is the root command's, which says nothing about what went wrong.
    static func main() {
        // Line by line into a file or a pipe too (C's default there holds output in blocks until exit): a
        // long eval's or predict's result lines show in its log as each finishes, and lines already said
        // are not lost when the process is killed.
        setvbuf(stdout, nil, _IOLBF, 0)
        // stderr too, which C leaves unbuffered: ArgumentParser writes an error byte by byte (a write call
        // each), and two ranks failing at once printed their errors mixed letter by letter.
        setvbuf(stderr, nil, _IOLBF, 0)
        let command: ParsableCommand
        do {
            try refuseEmptyArguments(Array(CommandLine.arguments.dropFirst()))
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            var running = command
            try running.run()
        } catch let error as ValidationError {
            exit(withError: CommandFailure(description: error.message))
        } catch {
            exit(withError: error)
        }
        exit()
    }
}

/// No option or argument may be empty: an empty path joined with a name is a path at the root of the file
/// system (`synth --out ''` wrote /images and /masks), and an empty list or spec silently meant "none".
func refuseEmptyArguments(_ arguments: [String]) throws {
    for (i, a) in arguments.enumerated() {
        if a.isEmpty {
            let previous = i > 0 ? arguments[i - 1] : ""
            throw CommandFailure(description: previous.hasPrefix("-") ? "\(previous) is given an empty value"
                : "argument \(i + 1) is empty")
        }
        if a.hasPrefix("--"), a.hasSuffix("="), a.firstIndex(of: "=") == a.index(before: a.endIndex) {
            throw CommandFailure(description: "\(a.dropLast()) is given an empty value")
        }
    }
}

/// Prints a JSON object with sorted keys (stable for scripts and diffs).
func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

/// The one wording of "this count must be positive" for every command's counts (batch, steps, threads, …):
/// a zero batch or step count would reach libtorch as an empty reshape, or time nothing and print
/// infinities, and a zero thread count would be ignored without a word.
func requirePositive(_ value: Int, _ option: String) throws {
    guard value >= 1 else { throw ValidationError("\(option) must be at least 1 (got \(value))") }
    if let limit = countLimits[option], value > limit { throw ValidationError("\(option) must be between 1 and \(limit) (got \(value))") }
}

/// Counts past which a value is a slip, not a request: libtorch keeps its thread count in 32 bits (a
/// larger one trapped), every worker or rank is a thread or process (a fork bomb, or threads until memory
/// runs out), a batch past these sizes is a failed allocation, and every profiled step is kept in memory.
let countLimits = ["--threads": 1024, "--workers": 1024, "--nproc": 1024, "--batch": 65536, "--profile-steps": 1000]

/// A command that did its work but must still exit non-zero (e.g. inputs it had to skip): printed as
/// "Error: <message>", without the usage text a ValidationError brings.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
}

/// Ends a rank that stops because another rank failed and told it so in a collective: rank 0 says what
/// happened, once for the job; the others say nothing (the rank that failed says why). The exit status,
/// `Launcher.stoppedForAnotherRank`, lets `--nproc` name the rank that failed rather than this one.
func stopForAnotherRank(_ error: Error, leader: Bool) -> ExitCode {
    if leader { FileHandle.standardError.write(Data("Error: \(error)\n".utf8)) }
    return ExitCode(Launcher.stoppedForAnotherRank)
}

/// Masks that no image took are not used; a dataset with some is said to have them (a deleted image, a
/// misspelt name), not read as if it were whole.
func warnAboutUnusedMasks(_ dataset: CrackDataset) {
    guard let first = dataset.unusedMasks.first else { return }
    let n = dataset.unusedMasks.count
    FileHandle.standardError.write(Data("warning: \(dataset.root): \(n) mask(s) have no image of their name and are not used (\(first)\(n > 1 ? ", …" : ""))\n".utf8))
}

/// A training or validation folder holding split lists (train.txt, val.txt, test.txt, as `synth` and many
/// public datasets ship them) taken whole: every image of images/ goes in, the other splits' too (test
/// images trained on, training images validated on). Said, with the flag that takes its split. (eval
/// takes a zero-shot set whole on purpose, and is not told.)
func warnAboutUnusedSplits(_ root: String, list: String?, split: String, suggestion: String) {
    guard list == nil else { return }
    let lists = ["train.txt", "val.txt", "test.txt"].filter { FileManager.default.fileExists(atPath: root + "/" + $0) }
    guard lists.contains(split) else { return }
    FileHandle.standardError.write(Data(("warning: \(root) holds split lists (\(lists.joined(separator: ", "))) and is taken whole, every image "
        + "of every split; \(suggestion) takes its \(split.dropLast(4)) split\n").utf8))
}

/// --amp's autocast dtype: nil for off. Anything else is refused rather than run silently in float32.
func autocastDType(_ amp: String) throws -> DType? {
    guard let a = TrainingOptions.AMP(rawValue: amp) else { throw ValidationError("--amp must be fp16, bf16 or off (got '\(amp)')") }
    return a.dtype
}

/// fp16 autocast on the CPU is a valid choice and runs, but few CPUs multiply float16 natively and
/// libtorch's fallback is far slower than float32 (512² products on the 2-core EPYC VM this was written
/// on: 2.6 GFLOP/s in float16, 208 in float32, 890 in bfloat16), so a run that asks for it is told.
func warnIfFloat16OnCPU(_ dtype: DType?, device: Device) {
    guard dtype == .float16, device == .cpu else { return }
    FileHandle.standardError.write(Data(("warning: --amp fp16 on the CPU: most CPUs have no float16 products, and libtorch's "
        + "fallback can be many times slower than float32; bf16 (where the CPU has it) or off is the usual choice there\n").utf8))
}

/// An image output named by the option: checked before the work that makes it (a dataset, an evaluation).
func requireImageExtension(_ path: String, _ option: String) throws {
    let ext = (path as NSString).pathExtension.lowercased()
    guard Image.writableExtensions.contains(ext) else {
        throw ValidationError("\(option) \(path): images are written as .png, .jpg or .jpeg")
    }
}

/// An output file's path must not name a folder: the write would fail only at the end, after the work.
func requireNotAFolder(_ path: String?, _ option: String) throws {
    guard let path else { return }
    // "out/" names a folder even before it exists (the write failed after the work: "is a folder").
    if path.hasSuffix("/") { throw ValidationError("\(option) \(path) names a folder; name the file to write") }
    var isFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
        throw ValidationError("\(option) \(path) is a folder; name the file to write")
    }
}

/// Whether two paths name the same file or folder (relative, with "..", or through links).
func samePath(_ a: String, _ b: String) -> Bool {
    func canonical(_ p: String) -> URL { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath() }
    return canonical(a) == canonical(b)
}

/// A path made absolute with its links resolved, also for a file (and folders) not made yet: the longest
/// part that exists is resolved by realpath and the rest appended.
func canonicalPath(_ path: String) -> String {
    var head = URL(fileURLWithPath: path).standardizedFileURL.path
    var tail: [String] = []
    while head != "/" {
        if let real = realpath(head, nil) {
            defer { free(real) }
            return ([String(cString: real)] + tail.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
        }
        tail.append((head as NSString).lastPathComponent)
        head = (head as NSString).deletingLastPathComponent
    }
    return "/" + tail.reversed().joined(separator: "/")
}

/// Whether `path` lies somewhere under `folder` (relative, with "..", through links).
func isInside(_ path: String, folder: String) -> Bool {
    let f = canonicalPath(folder)
    return canonicalPath(path).hasPrefix(f == "/" ? "/" : f + "/")
}

/// Outputs must leave the command's inputs alone: a results file named like the delta it evaluates, or
/// a plot written into a dataset's masks/, replaced them without a word (the next run then failed on a
/// "mask" 640×400, or a delta that was JSON). `files` are input files; `folders` hold inputs (a dataset).
func requireOutputsApart(_ outputs: [(path: String, option: String)], fromFiles files: [(path: String, what: String)],
                         folders: [(path: String, what: String)] = []) throws {
    for o in outputs {
        if let f = files.first(where: { samePath($0.path, o.path) }) {
            throw ValidationError("\(o.option) \(o.path) is \(f.what); the output would replace it")
        }
        if let f = folders.first(where: { samePath($0.path, o.path) || isInside(o.path, folder: $0.path) }) {
            throw ValidationError("\(o.option) \(o.path) lies in \(f.what) (\(f.path)); write it elsewhere")
        }
    }
}

/// Two outputs of one command naming one file (relative, through links): the second would replace the
/// first without a word.
func requireDistinctOutputs(_ files: [(path: String, option: String)]) throws {
    for (i, a) in files.enumerated() {
        if let b = files[..<i].first(where: { samePath($0.path, a.path) }) {
            throw ValidationError("\(b.option) and \(a.option) name the same file, \(a.path)")
        }
    }
}

/// Creates the folder an output file will be written to, before any work is done: an evaluation or a
/// prediction over many images must not end in "no such folder" and lose its results.
func prepareFolder(for path: String, _ option: String) throws {
    let folder = Folder.parent(of: path)
    do {
        if !folder.isEmpty { try Folder.make(folder) }
        // A path through a link or to a device is written where it leads (AtomicFile), so only a plain
        // new or existing file's folder is probed.
        var info = stat()
        if lstat(path, &info) != 0 || (info.st_mode & S_IFMT) == S_IFREG { try Folder.requireWritable(folder) }
    } catch {
        throw ValidationError("\(option) \(path): \(error)")
    }
}
