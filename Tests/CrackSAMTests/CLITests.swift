import CrackSAM
import Foundation
import XCTest

/// The crack-cli binary end to end (built beside the test bundle by `swift build --build-tests`).
final class CLITests: XCTestCase {
    @discardableResult
    func cli(_ args: [String], expectSuccess: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try crackCLI(args, expectSuccess: expectSuccess, file: file, line: line)
    }

    func testInfoReportsTheReferenceParameterCounts() throws {
        for (vit, total) in [("b", 90_874_350), ("l", 308_633_838), ("h", 636_524_526)] {
            let json = try cli(["info", "--vit", vit, "--json"])
            let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            XCTAssertEqual(obj["total_parameters"] as? Int, total, vit)
            XCTAssertEqual(obj["trainable_parameters"] as? Int, 3_783_918, vit)
        }
        XCTAssertTrue(try cli(["info", "--vit", "x"], expectSuccess: false).contains("--vit must be b, l or h"))
        // With a delta: the REFERENCE table (the paper's 637.2M / 4.4M and 641.9M / 9.1M for ViT-H).
        let rows: [(String, [String], Int, Int)] = [
            ("b", ["--delta-type", "lora", "--rank", "4"], 91_021_806, 3_931_374),
            ("b", ["--delta-type", "adapter", "--adapter-dim", "32"], 92_073_198, 4_982_766),
            ("l", ["--delta-type", "lora", "--rank", "4"], 309_027_054, 4_177_134),
            ("l", ["--delta-type", "adapter", "--adapter-dim", "32"], 311_830_254, 6_980_334),
            ("h", ["--delta-type", "lora", "--rank", "4"], 637_179_886, 4_439_278),
            ("h", ["--delta-type", "adapter", "--adapter-dim", "32"], 641_851_374, 9_110_766),
        ]
        for (vit, flags, total, trainable) in rows {
            let json = try cli(["info", "--vit", vit, "--json"] + flags)
            let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            XCTAssertEqual(obj["total_parameters"] as? Int, total, "\(vit) \(flags)")
            XCTAssertEqual(obj["trainable_parameters"] as? Int, trainable, "\(vit) \(flags)")
        }
    }

    func testPredictWritesLogitsAndEmbeddingsEqualToMetasModel() throws {
        let dir = try Oracle.scratch()
        // Three 448×448 inputs: RGB noise, a gradient, and a grey image (converted to RGB on read).
        var paths: [String] = []
        var rng = SystemRandomNumberGenerator()
        let noise = (0..<(448 * 448 * 3)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let gradient: [UInt8] = (0..<(448 * 448 * 3)).map { (i: Int) -> UInt8 in UInt8((i / 3 % 448) * 255 / 447) }
        let grey: [UInt8] = (0..<(448 * 448)).map { (i: Int) -> UInt8 in UInt8((i / 448 + i % 448) % 256) }
        for (i, image) in [Image(width: 448, height: 448, channels: 3, pixels: noise),
                           Image(width: 448, height: 448, channels: 3, pixels: gradient),
                           Image(width: 448, height: 448, channels: 1, pixels: grey)].enumerated() {
            let path = dir + "/img\(i).png"
            try image.write(to: path)
            paths.append(path)
        }
        try Oracle.run("sam_oracle.py", ["vit_b", "448", "3", dir] + paths)
        let expected = try SafeTensors.load(at: dir + "/outputs.safetensors").tensors
        let out = try cli(["predict", "--vit", "b", "--sam", dir + "/sam.pth", "--batch", "2", "--keep-decoder-head",
                           "--save-logits", dir + "/logits.safetensors", "--save-embedding", dir + "/emb.safetensors"] + paths)
        XCTAssertTrue(out.contains("img2.png"), out)
        let logits = try SafeTensors.load(at: dir + "/logits.safetensors")
        let embedding = try SafeTensors.load(at: dir + "/emb.safetensors").tensors["embedding"]!
        XCTAssertEqual(logits.tensors["logits"]?.shape, [3, 2, 448, 448])
        XCTAssertEqual(logits.tensors["logits"]?.dtype, .float32)
        XCTAssertEqual(embedding.shape, [3, 256, 28, 28])
        XCTAssertEqual(logits.metadata["backbone"], "vit_b")
        for (actual, wanted, what) in [(logits.tensors["logits"]!, expected["logits"]!, "logits"), (embedding, expected["embedding"]!, "embedding")] {
            let diff = try (actual - wanted).abs().amax().item() / wanted.abs().amax().item()
            XCTAssertLessThanOrEqual(diff, 1e-4, what)
        }
        // The oracle's head has 2 mask tokens (num_classes 1), not Meta's 4: only a CrackSAM model has that, so
        // it is kept without the flag, and said. (Meta's 4-token head is replaced by the fresh one:
        // SAMCheckpointTests.) The same logits on every run.
        for run in 0..<2 {
            let said = try cli(["predict", "--vit", "b", "--sam", dir + "/sam.pth", "--save-logits", dir + "/kept\(run).safetensors",
                                "--save-embedding", dir + "/kept-emb\(run).safetensors", paths[0]])
            XCTAssertTrue(said.contains("sam.pth: a CrackSAM model (its decoder head has 2 mask tokens): its trained head is loaded"), said)
        }
        let kept0 = try SafeTensors.load(at: dir + "/kept0.safetensors").tensors["logits"]!
        let kept1 = try SafeTensors.load(at: dir + "/kept1.safetensors").tensors["logits"]!
        try assertClose(kept0, kept1, rtol: 0, atol: 0, "the same logits on every run")
        try assertClose(kept0, expected["logits"]!.narrow(dim: 0, start: 0, length: 1), rtol: 1e-4, atol: 1e-4, "the file's own head")
        let keptEmbedding = try SafeTensors.load(at: dir + "/kept-emb1.safetensors").tensors["embedding"]!
        try assertClose(keptEmbedding, embedding.narrow(dim: 0, start: 0, length: 1), rtol: 1e-5, atol: 1e-6, "embedding")
    }

    func testPredictNamesAMissingOrBrokenFile() throws {
        let dir = try Oracle.scratch()
        var out = try cli(["predict", "--vit", "b", "--sam", dir + "/nope.pth", dir + "/x.png"], expectSuccess: false)
        XCTAssertTrue(out.contains(dir + "/nope.pth: no such file"), out)
        try Data("not a zip".utf8).write(to: URL(fileURLWithPath: dir + "/broken.pth"))
        out = try cli(["predict", "--vit", "b", "--sam", dir + "/broken.pth", dir + "/x.png"], expectSuccess: false)
        XCTAssertTrue(out.contains("broken.pth: malformed checkpoint"), out)
    }

    /// A zero or negative count is refused by name before any work, where it used to reach libtorch as an
    /// empty reshape (`bench train --batch 0`), time nothing and print "inf ms/step" (`--steps 0`), report
    /// agreement over no images (`bench agree --count 0`), or be clamped to 1 without a word (`eval --batch 0`).
    /// bench encoder without --vit is ViT-B with the size flags applied (they were dropped: 448 px ran), and
    /// its median of an even count is the middle two's mean (it reported the slower one).
    func testBenchEncoderTakesItsSizeFlagsAndATrueMedian() throws {
        let out = try crackCLI(["bench", "encoder", "--image-size", "32", "--iterations", "2", "--threads", "1", "--json"])
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
        XCTAssertEqual(result["backbone"] as? String, "vit_b")
        XCTAssertEqual(result["image_size"] as? Int, 32)
        let times = try XCTUnwrap(result["times"] as? [Double])
        XCTAssertEqual(try XCTUnwrap(result["median_seconds"] as? Double), (times[0] + times[1]) / 2, accuracy: 1e-12)
    }

    func testCommandsRefuseCountsBelowOne() throws {
        let cases: [([String], String)] = [
            (["bench", "train", "--batch", "0"], "--batch must be at least 1 (got 0)"),
            (["bench", "train", "--steps", "0"], "--steps must be at least 1 (got 0)"),
            (["bench", "infer", "--warmup=-1"], "--warmup must be 0 or more (got -1)"),
            (["bench", "infer", "--peak-size", "0"], "--peak-size must be between 256 and 65536 (got 0)"),
            (["bench", "graph-agree", "--threads", "0"], "--threads must be at least 1 (got 0)"),
            (["bench", "agree", "--count", "0"], "--count must be at least 1 (got 0)"),
            (["bench", "data", "--epochs", "0"], "--epochs must be at least 1 (got 0)"),
            (["bench", "encoder", "--iterations", "0"], "--iterations must be at least 1 (got 0)"),
            (["bench", "ops", "--iterations", "0"], "--iterations must be at least 1 (got 0)"),
            (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--batch", "0"], "--batch must be at least 1 (got 0)"),
            (["predict", "--vit", "b", "--batch", "0", "x.png"], "--batch must be at least 1 (got 0)"),
            (["train", "--vit", "b", "--threads=-2", "--data", "/nowhere", "--out", "/nowhere"], "--threads must be at least 1 (got -2)"),
            (["train", "--vit", "b", "--workers", "0", "--data", "/nowhere", "--out", "/nowhere"], "--workers must be at least 1 (got 0)"),
            // Too large: libtorch's 32-bit thread count trapped; a worker or rank each is a thread or a process.
            (["info", "--threads", "2147483648", "--seconds", "0"], "--threads must be between 1 and 1024 (got 2147483648)"),
            (["info", "--threads=0", "--seconds", "0"], "--threads must be at least 1 (got 0)"),
            (["bench", "data", "--workers", "2147483648"], "--workers must be between 1 and 1024 (got 2147483648)"),
            (["bench", "data", "--image-size", "100000"], "--image-size must be between 16 and 16384 (got 100000)"),
            (["train", "--vit", "b", "--nproc", "2147483648", "--data", "/nowhere", "--out", "/nowhere"], "--nproc must be between 1 and 1024 (got 2147483648)"),
            (["bench", "train", "--profile-steps", "9223372036854775807"], "--profile-steps must be between 1 and 1000 (got 9223372036854775807)"),
            (["info", "--seconds", "inf"], "--seconds must be between 0 and 3600 (got inf)"),
            (["info", "--matmul-size=-1"], "--matmul-size must be between 1 and 16384 (got -1)"),
        ]
        for (args, message) in cases {
            let out = try cli(args, expectSuccess: false)
            XCTAssertTrue(out.contains(message), "\(args): \(out)")
        }
    }

    /// An empty value is refused before anything runs: joined with a name it was a path at the root of the
    /// file system (`synth --out ''` wrote /images and /masks), and an empty list meant "none" unsaid.
    /// Outputs that name one file (relative, or through "./") are refused, and export does not write
    /// over the delta it reads.
    func testEmptyValuesAndCollidingOutputsAreRefused() throws {
        let dir = try Oracle.scratch()
        for (args, message) in [(["synth", "--count", "1", "--size", "16", "--out", ""], "Error: --out is given an empty value"),
                                (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--json="], "Error: --json is given an empty value"),
                                (["predict", ""], "Error: argument 2 is empty")] {
            let out = try cli(args, expectSuccess: false)
            XCTAssertTrue(out.hasPrefix(message), "\(args): \(out)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/masks"))
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "1", "--heads", "2", "--global-blocks", "0", "--image-size", "32"]
        var out = try cli(["eval"] + tiny + ["--dataset", "a=/nowhere", "--csv", dir + "/q.out", "--json", dir + "/./q.out"], expectSuccess: false)
        XCTAssertTrue(out.contains("--json and --csv name the same file, \(dir)/q.out"), out)
        out = try cli(["predict"] + tiny + ["--save-logits", dir + "/x.safetensors", "--save-embedding", dir + "/sub/../x.safetensors", "x.png"],
                      expectSuccess: false)
        XCTAssertTrue(out.contains("--save-logits and --save-embedding name the same file"), out)
        try Data().write(to: URL(fileURLWithPath: dir + "/d.pth"))
        out = try cli(["export"] + tiny + ["--delta", dir + "/d.pth", "--out", dir + "/./d.pth", "--force"], expectSuccess: false)
        XCTAssertTrue(out.contains("--out \(dir)/./d.pth would write over \(dir)/d.pth, which --delta reads; name another file"), out)
    }

    /// Values whose use would trap (Int64 of a NaN timeout, epochs × steps past Int) or that were
    /// silently clamped or ignored (tile overlap, the crack-free fraction) are refused by name.
    func testCommandsRefuseValuesOutOfRange() throws {
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "1", "--heads", "2", "--global-blocks", "0", "--image-size", "32"]
        let cases: [([String], String)] = [
            (["train", "--vit", "b", "--epochs", "5000000000", "--data", "/nowhere", "--out", "/nowhere"],
             "--epochs must be between 1 and 1000000 (got 5000000000)"),
            (["train", "--vit", "b", "--dist-timeout", "nan", "--data", "/nowhere", "--out", "/nowhere"],
             "--dist-timeout must be a number of seconds from 0.001 to 604800 (got nan)"),
            (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--dist-timeout", "0"],
             "--dist-timeout must be a number of seconds from 0.001 to 604800 (got 0.0)"),
            (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--dist-timeout", "1e-320"],
             "--dist-timeout must be a number of seconds from 0.001 to 604800 (got 1e-320)"),
            (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--device", "meta"], "--device must be cpu, cuda or cuda:N"),
            (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--device", "cuda:2147483648"], "--device must be cpu, cuda or cuda:N"),
            (["synth", "--out", "/nowhere", "--count", "2", "--crack-free", "1.5"], "--crack-free must be a fraction from 0 to 1 (got 1.5)"),
            (["info", "--vit", "custom", "--global-blocks", "1,x"], "--global-blocks takes block indices, comma separated (got '1,x')"),
            (["info", "--vit", "custom", "--global-blocks", "1,,0"], "--global-blocks takes block indices, comma separated (got '1,,0')"),
            // Flags that would be ignored without a word.
            (["info", "--vit", "b", "--delta-type", "adapter", "--rank", "8"], "--rank set(s) LoRA, but the delta is adapter: pass --delta-type lora or both"),
            (["info", "--vit", "b", "--delta-type", "lora", "--adapter-dim", "8"],
             "--adapter-dim set(s) the adapter, but the delta is lora: pass --delta-type adapter or both"),
            (["predict"] + tiny + ["--force", "x.png"], "--force replaces an earlier predict's results in --out FOLDER (or --save-logits/--save-embedding), which is not given"),
            (["train"] + tiny + ["--data", "/nowhere", "--out", "/nowhere", "--epochs", "1", "--stop-epoch", "5"],
             "--stop-epoch 5 is past --epochs 1: the run would end at epoch 1"),
            (["bench", "train", "--profile-steps", "1", "--trace", "/tmp"], "--trace /tmp is a folder; name the file to write"),
            (["synth", "--out", "/nowhere", "--count", "2", "--montage", "m.gif"], "--montage m.gif: images are written as .png, .jpg or .jpeg"),
            // Past S/2 (at S − 1 a tile per pixel: hours on one photo).
            (["predict"] + tiny + ["--mode", "tile", "--overlap", "17", "x.png"], "--overlap must be from 0 to 16, half the tile size S = 32 (got 17)"),
            (["predict"] + tiny + ["--mode", "tile", "--overlap=-1", "x.png"], "--overlap must be from 0 to 16, half the tile size S = 32 (got -1)"),
            (["predict"] + tiny + ["--mm-per-pixel", "nan", "--out", "o", "x.png"], "--mm-per-pixel must be a pixel size from 1e-6 to 1000 mm (got nan)"),
            (["predict"] + tiny + ["--mm-per-pixel=0", "--out", "o", "x.png"], "--mm-per-pixel must be a pixel size from 1e-6 to 1000 mm (got 0.0)"),
            (["predict"] + tiny + ["--mm-per-pixel", "1e308", "--out", "o", "x.png"], "--mm-per-pixel must be a pixel size from 1e-6 to 1000 mm (got 1e+308)"),
            (["predict"] + tiny + ["--mm-per-pixel", "0.2", "x.png"], "--mm-per-pixel sets the units of the measurements, which are written with --out FOLDER"),
            (["predict"] + tiny + ["--fill-holes=-1", "--out", "o", "x.png"], "--fill-holes must be 0 or more pixels (got -1)"),
            (["predict"] + tiny + ["--fill-holes", "8", "x.png"], "--fill-holes is for the measurements, which are written with --out FOLDER"),
            (["predict"] + tiny + ["--overlap", "8", "x.png"], "--overlap is for --mode tile"),
            (["train"] + tiny + ["--data", "/nowhere", "--val-list", "v.txt", "--out", "/nowhere"], "--val-list selects samples of --val, which is not given"),
            (["info", "--vit", "b", "--embed-dim", "32", "--heads", "2"], "--embed-dim, --heads set(s) the size of --vit custom; --vit b has Meta's fixed sizes"),
            (["predict"] + tiny + ["--mode", "tile", "--resize", "opencv", "x.png"], "--resize is resize mode's resampling"),
            (["predict"] + tiny + ["--save-logits", "l.pt", "x.png"], "--save-logits l.pt: the tensors are written as safetensors; name the file .safetensors"),
            (["predict"] + tiny + ["--save-embedding", "/tmp", "x.png"], "--save-embedding /tmp: the tensors are written as safetensors"),
            (["predict"] + tiny + ["--save-logits", "a.safetensors", "--save-embedding", "a.safetensors", "x.png"],
             "--save-logits and --save-embedding name the same file, a.safetensors"),
            (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--markdown", "/tmp"], "--markdown /tmp is a folder; name the file to write"),
            (["export"] + tiny + ["--delta", "d.pth", "--out", "/tmp", "--force"], "--out /tmp is a folder; name the file to write"),
            // These used to abort on memory.
            (["synth", "--out", "/nowhere", "--count", "1", "--size", "1000000"], "--size must be from 16 to 8192 pixels (got 1000000)"),
            (["synth", "--out", "/nowhere", "--count", "100000000000"], "--count must be from 1 to 1000000 (got 100000000000)"),
            (["degrade", "--case", "blur:2147483647", "x.png", "y.png"], "--case must be case1, case2 or blur:K with K odd, 1 to 1001 (got 'blur:2147483647')"),
            (["eval", "--vit", "b", "--dataset", "a=/nowhere", "--blur-sweep", "9,1003"], "--blur-sweep sizes must be odd, 1 to 1001 (got '1003')"),
        ]
        for (args, message) in cases {
            let out = try cli(args, expectSuccess: false)
            XCTAssertTrue(out.contains(message), "\(args): \(out)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/nowhere"))
    }

    func testNonStrictLoadingWarnsWithTheKeys() throws {
        let dir = try Oracle.scratch()
        try Oracle.run("sam_oracle.py", ["vit_b", "448", "1", dir])
        // Drop one key: strict loading names it and fails; --non-strict warns with it and goes on.
        var sd = try PyTorchCheckpoint.loadStateDict(at: dir + "/sam.pth")
        sd.removeValue(forKey: "image_encoder.neck.1.bias")
        try PyTorchCheckpoint.save(sd, to: dir + "/partial.pth")
        try Image(width: 448, height: 448, channels: 1, pixels: [UInt8](repeating: 9, count: 448 * 448)).write(to: dir + "/a.png")
        var out = try cli(["predict", "--vit", "b", "--sam", dir + "/partial.pth", dir + "/a.png"], expectSuccess: false)
        XCTAssertTrue(out.contains("missing keys: image_encoder.neck.1.bias"), out)
        out = try cli(["predict", "--vit", "b", "--sam", dir + "/partial.pth", "--non-strict", dir + "/a.png"])
        XCTAssertTrue(out.contains("warning:") && out.contains("image_encoder.neck.1.bias"), out)
        XCTAssertTrue(out.contains("crack pixels"), out)
        // Without --sam, Meta's file in weights/ (where the README has users put it) is used, and named.
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("crack-cli").path
        var (status, text) = try Oracle.runProcess(binary, ["predict", "--vit", "b", dir + "/a.png"], in: dir)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains("--sam FILE is required for --vit vit_b (official SAM weights), or sam_vit_b_01ec64.pth in weights/"), text)
        try FileManager.default.createDirectory(atPath: dir + "/weights", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: dir + "/sam.pth", toPath: dir + "/weights/sam_vit_b_01ec64.pth")
        (status, text) = try Oracle.runProcess(binary, ["predict", "--vit", "b", dir + "/a.png"], in: dir)
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("using weights/sam_vit_b_01ec64.pth (no --sam given)") && text.contains("crack pixels"), text)
    }

    /// Outputs that cannot be written are refused before the work (a folder where no file can be made,
    /// a file where a run folder goes, the input itself), and an error found while a command runs is not
    /// followed by the root command's usage text.
    func testOutputsThatCannotBeWrittenAreRefusedFirst() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 2)
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "1", "--heads", "2", "--global-blocks", "0", "--image-size", "32"]
        try Data().write(to: URL(fileURLWithPath: dir + "/afile"))
        var out = try crackCLI(["train"] + tiny + ["--data", dir + "/data", "--out", dir + "/afile"], expectSuccess: false)
        XCTAssertTrue(out.contains("--out \(dir)/afile is a file; name a folder for the run"), out)
        // /proc takes no new files, even from root.
        out = try crackCLI(["eval"] + tiny + ["--dataset", "D=" + dir + "/data", "--json", "/proc/x.json"], expectSuccess: false)
        XCTAssertTrue(out.contains("--json /proc/x.json: /proc: cannot write: no file can be made in this folder") && !out.contains("on D"), out)
        out = try crackCLI(["train"] + tiny + ["--data", dir + "/data", "--out", "/proc/cracksam/run"], expectSuccess: false)
        XCTAssertTrue(out.contains("no file can be made in this folder"), out)
        out = try crackCLI(["synth", "--out", dir + "/s", "--count", "2", "--montage", "/proc/m.png"], expectSuccess: false)
        XCTAssertTrue(out.contains("--montage /proc/m.png: /proc: cannot write"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/s"), "no dataset written before the montage fails")
        let photo = dir + "/data/images/s0.png"
        out = try crackCLI(["degrade", "--case", "case1", photo, dir + "/data/images/../images/s0.png"], expectSuccess: false)
        XCTAssertTrue(out.contains("is the input image; name another file"), out)
        try crackCLI(["degrade", "--case", "case1", photo, dir + "/new/folder/s0.png"])
        XCTAssertEqual(try Image.read(at: dir + "/new/folder/s0.png").width, 40)
        // /dev/stdout is this process's own output, written where it stands: into a pipe, or after the
        // tables in a file the shell redirected into (it used to be renamed over: the tables were lost).
        out = try crackCLI(["eval"] + tiny + ["--dataset", "D=" + dir + "/data", "--json", "/dev/stdout"])
        XCTAssertTrue(out.contains("| model |") && out.contains("\"pooled_iou\""), out)
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("crack-cli").path
        let (status, _) = try Oracle.runProcess("/bin/sh", ["-c", "\"$0\" \"$@\" > \"\(dir)/redirected.txt\"", binary, "eval"] + tiny
            + ["--dataset", "D=" + dir + "/data", "--json", "/dev/stdout"])
        XCTAssertEqual(status, 0)
        let redirected = try String(contentsOfFile: dir + "/redirected.txt", encoding: .utf8)
        XCTAssertTrue(redirected.contains("| model |") && redirected.contains("\"pooled_iou\""), redirected)
        XCTAssertLessThan(try XCTUnwrap(redirected.range(of: "| model |")).lowerBound, try XCTUnwrap(redirected.range(of: "pooled_iou")).lowerBound,
                          "the JSON comes after what was printed before it")
        out = try crackCLI(["eval"] + tiny + ["--dataset", "D=" + dir + "/nowhere"], expectSuccess: false)
        XCTAssertTrue(out.contains("Error: \(dir)/nowhere: not a dataset") && !out.contains("Usage:"), out)
    }

    /// eval's outputs leave its inputs alone (a --json named like the delta, a --markdown on the list
    /// file, a plot in masks/ replaced them after the run), and an output where --save-predictions makes
    /// its folders, or a path ending in "/", is refused before the evaluation rather than after it.
    func testEvalOutputsDoNotReplaceItsInputs() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 2)
        try "s0\n".write(toFile: dir + "/data/list.txt", atomically: true, encoding: .utf8)
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "1", "--heads", "2", "--global-blocks", "0", "--image-size", "32"]
        let data = ["--dataset", "D=" + dir + "/data"]
        let listed = ["--dataset", "D=\(dir)/data:\(dir)/data/list.txt"]
        let cases: [([String], String)] = [
            (listed + ["--markdown", dir + "/data/list.txt"], "--markdown \(dir)/data/list.txt is the list file of --dataset D; the output would replace it"),
            (data + ["--blur-sweep", "3", "--blur-plot", dir + "/data/masks/s1.png"], "lies in the masks of --dataset D"),
            (data + ["--csv", dir + "/data/images/../images/s0.png"], "lies in the images of --dataset D"),
            (data + ["--save-predictions", dir + "/p", "--json", dir + "/p"], "--json \(dir)/p lies where --save-predictions \(dir)/p writes its masks"),
            (data + ["--save-predictions", dir + "/p", "--json", dir + "/p/untrained"], "lies where --save-predictions"),
            (data + ["--save-predictions", dir + "/data/masks"], "--save-predictions \(dir)/data/masks lies in the masks of --dataset D"),
            (data + ["--json", dir + "/q/"], "--json \(dir)/q/ names a folder; name the file to write"),
            (data + ["--save-predictions", dir + "/data/list.txt"], "--save-predictions \(dir)/data/list.txt is a file; name a folder"),
        ]
        for (args, expected) in cases {
            let out = try crackCLI(["eval"] + tiny + args, expectSuccess: false)
            XCTAssertTrue(out.contains(expected) && !out.contains("| model |"), "\(args): \(out)")
        }
        XCTAssertEqual(try String(contentsOfFile: dir + "/data/list.txt", encoding: .utf8), "s0\n")
        XCTAssertEqual(try Image.read(at: dir + "/data/masks/s1.png").width, 40)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/q"))
        // A results file beside the masks (not where a model's folder goes) is fine.
        _ = try crackCLI(["eval"] + tiny + data + ["--save-predictions", dir + "/p", "--json", dir + "/p/results.json"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/p/results.json"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/p/untrained/D/clean/s0.png"))
    }

}
