import CrackSAM
import Foundation
import XCTest

/// Evaluation with a stand-in predictor (dark pixels are cracks) on hand-made masks, and the CLI.
final class EvalTests: XCTestCase {
    struct DarkPixels: MaskPredictor {
        var inputSize: Int
        var resize: ResizeMethod { .opencv }
        func predict(_ images: [Image]) throws -> [[UInt8]] {
            try images.map { image in
                let img = image.width == inputSize && image.height == inputSize
                    ? image : try Degrade.resizeBicubic(image, width: inputSize, height: inputSize)
                return (0..<(img.width * img.height)).map { p in img.pixels[p * 3] < 60 ? 1 : 0 }
            }
        }
    }

    /// A sample whose image is dark where `dark` says and whose mask is white where `crack` says.
    func write(_ dir: String, _ name: String, width: Int, height: Int, dark: (Int, Int) -> Bool, crack: (Int, Int) -> Bool) throws {
        var rgb = [UInt8](repeating: 200, count: width * height * 3), mask = [UInt8](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                if dark(x, y) { for c in 0..<3 { rgb[(y * width + x) * 3 + c] = 10 } }
                if crack(x, y) { mask[y * width + x] = 255 }
            }
        }
        try Image(width: width, height: height, channels: 3, pixels: rgb).write(to: "\(dir)/images/\(name).png")
        try Image(width: width, height: height, channels: 1, pixels: mask).write(to: "\(dir)/masks/\(name).png")
    }

    func testEdgeRulesPooledVersusMeanAndResizing() throws {
        let dir = try Oracle.scratch()
        for sub in ["images", "masks"] { try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
        // a: nothing predicted, nothing labelled → 1. b: nothing predicted, crack labelled → 0.
        // c: predicted rows 0–7, labelled rows 4–11 of 32 → I = 4·32, U = 12·32, IoU 1/3, Pr 0.5, Re 0.5.
        // d: 64×48 (resized to 32 and back): predicted = labelled left half → IoU 1 after the round trip.
        let never: (Int, Int) -> Bool = { _, _ in false }
        let column3: (Int, Int) -> Bool = { x, _ in x == 3 }
        let top8: (Int, Int) -> Bool = { _, y in y < 8 }
        let rows4to11: (Int, Int) -> Bool = { _, y in y >= 4 && y < 12 }
        let leftHalf: (Int, Int) -> Bool = { x, _ in x < 32 }
        try write(dir, "a", width: 32, height: 32, dark: never, crack: never)
        try write(dir, "b", width: 32, height: 32, dark: never, crack: column3)
        try write(dir, "c", width: 32, height: 32, dark: top8, crack: rows4to11)
        try write(dir, "d", width: 64, height: 48, dark: leftHalf, crack: leftHalf)
        let ds = try CrackDataset(root: dir)
        let r = try Evaluator(predictor: DarkPixels(inputSize: 32), name: "stand-in", batch: 3).evaluate(ds, name: "hand")
        XCTAssertEqual(r.images, 4)
        let third: Double = 1.0 / 3.0
        let meanIoU: Double = (2.0 + third) / 4.0
        let meanHalf: Double = 2.5 / 4.0
        XCTAssertEqual(r.iou, meanIoU, accuracy: 1e-12)
        XCTAssertEqual(r.precision, meanHalf, accuracy: 1e-12)
        XCTAssertEqual(r.recall, meanHalf, accuracy: 1e-12)
        XCTAssertEqual(r.f1, meanHalf, accuracy: 1e-12)
        // Pooled: Σ I / Σ U over pixels: b adds 32 labelled pixels to U; a adds nothing.
        let intersection: Double = 4 * 32 + 32 * 48
        let union: Double = 32 + 12 * 32 + 32 * 48
        let pooled = intersection / union
        XCTAssertEqual(r.pooledIoU, pooled, accuracy: 1e-12)
        XCTAssertNotEqual(r.iou, r.pooledIoU, accuracy: 1e-3, "the two figures differ where empty images and sizes weigh in")
        // Saved predictions are at the original size.
        let saved = try Oracle.scratch("saved")
        _ = try Evaluator(predictor: DarkPixels(inputSize: 32), name: "s").evaluate(ds, name: "hand", savePredictions: saved)
        let d = try Image.read(at: saved + "/d.png")
        XCTAssertEqual([d.width, d.height], [64, 48])
        XCTAssertEqual(Set(d.pixels), [0, 255])
    }

    func testNearestResizeIsOpenCVs() throws {
        // 4 → 3: source index floor(x · 4/3) = 0, 1, 2.
        XCTAssertEqual(Evaluator.resizeNearest([1, 2, 3, 4], from: (4, 1), to: (3, 1)), [1, 2, 3])
        XCTAssertEqual(Evaluator.resizeNearest([1, 2], from: (2, 1), to: (5, 1)), [1, 1, 1, 2, 2])
        // cv2.resize(INTER_NEAREST) itself, on sizes where the rounding of the scale matters (448 → 576).
        let cases = try Oracle.tensors(from: "resize_oracle.py")
        XCTAssertEqual(cases.count, 12)
        for (key, src) in cases where key.hasPrefix("src_") {
            let name = String(key.dropFirst(4)), dst = try XCTUnwrap(cases["dst_" + name])
            let ours = Evaluator.resizeNearest(try src.toArray(of: UInt8.self), from: (src.shape[1], src.shape[0]), to: (dst.shape[1], dst.shape[0]))
            let theirs = try dst.toArray(of: UInt8.self)
            XCTAssertEqual(zip(ours, theirs).filter { $0 != $1 }.count, 0, "\(name): pixels that differ from OpenCV's")
        }
    }

    /// Ctrl-C during a long evaluation: it stops between batches, and the evaluations that finished are
    /// printed and written (marked partial) instead of being lost with the process.
    func testCtrlCKeepsTheEvaluationsThatFinished() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/a", count: 40)
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32"]
        // A sweep long enough to be running when the signal comes.
        let sweep = stride(from: 1, through: 401, by: 2).map(String.init).joined(separator: ",")
        let (status, output) = try interruptedCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--blur-sweep", sweep, "--batch", "1",
                                                                     "--json", dir + "/p.json", "--markdown", dir + "/p.md",
                                                                     "--blur-plot", dir + "/p.png", "--save-predictions", dir + "/preds"],
                                                  after: "on A (blur:3)", delay: 0.05)
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("stopped by a signal; the "), output)
        XCTAssertTrue(output.contains("Error: stopped by a signal (Ctrl-C or SIGTERM)"), output)
        XCTAssertFalse(output.contains("on A (blur:401)"), output)
        XCTAssertTrue(try String(contentsOfFile: dir + "/p.partial.md", encoding: .utf8).hasPrefix("(partial: the evaluation was stopped by a signal)"))
        let partial = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/p.partial.json"))) as? [[String: Any]])
        XCTAssertEqual(Array(partial.prefix(3)).compactMap { $0["variant"] as? String }, ["clean", "blur:1", "blur:3"])
        // The masks saved are those of the evaluations reported: the one in progress leaves none behind
        // (they blocked the next eval into the same folder, and matched no row).
        let reported = Set(partial.compactMap { ($0["variant"] as? String)?.replacingOccurrences(of: ":", with: "") })
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir + "/preds/untrained/A")), reported)
        for variant in reported {
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/preds/untrained/A/" + variant).count, 40, variant)
        }
        // The plot of the kernels that finished goes where --blur-plot says (the default would land in the working directory).
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/p.partial.png"))
        // Partial results have names of their own: the complete files a finished run writes are not replaced.
        for name in ["p.md", "p.json", "p.png"] { XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + name), name) }
        XCTAssertTrue(output.contains("partial results → \(dir)/p.partial.json, \(dir)/p.partial.md"), output)
    }

    /// --save-predictions into a folder that holds an earlier eval's masks is refused before any work:
    /// the two runs' masks would mix (a run stopped halfway left the earlier masks of the images it did
    /// not reach). Another model, dataset or variant in the same folder is fine.
    func testSavedPredictionsOfTwoRunsNeverMix() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/a", count: 3)
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32"]
        _ = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--save-predictions", dir + "/preds"])
        let first = try FileManager.default.contentsOfDirectory(atPath: dir + "/preds/untrained/A/clean").sorted()
        XCTAssertEqual(first, ["s0.png", "s1.png", "s2.png"])
        let again = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--noise", "case1", "--save-predictions", dir + "/preds"],
                                 expectSuccess: false)
        XCTAssertTrue(again.contains("Error: --save-predictions \(dir)/preds: \(dir)/preds/untrained/A/clean holds an earlier eval's masks (s0.png)"), again)
        XCTAssertFalse(again.contains("untrained on A"), again)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/preds/untrained/A/case1"), again)
        _ = try crackCLI(["eval"] + tiny + ["--dataset", "B=" + dir + "/a", "--save-predictions", dir + "/preds"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/preds/untrained").sorted(), ["A", "B"])
        // case2 halves each image: a one-pixel-wide image has no half, and is named before any work (the
        // run stopped halfway, naming no file).
        try Image(width: 1, height: 25, channels: 3, pixels: [UInt8](repeating: 90, count: 75)).write(to: dir + "/a/images/thin.png")
        try Image(width: 1, height: 25, channels: 1, pixels: [UInt8](repeating: 0, count: 25)).write(to: dir + "/a/masks/thin.png")
        let thin = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--noise", "case1,case2", "--json", dir + "/thin.json"],
                                expectSuccess: false)
        XCTAssertTrue(thin.contains("Error: \(dir)/a/images/thin.png is 1×25: --noise case2 halves each image, and it has no half"), thin)
        XCTAssertFalse(thin.contains("untrained on A"), thin)
        _ = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--noise", "case1", "--json", dir + "/thin.json"])
    }

    /// --per-image: a row per image and variant whose IoUs average to the reported IoU; a name with a
    /// comma is quoted, so that the columns stay put.
    func testPerImageScoresAverageToTheReportedOnes() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/a", count: 3)
        for sub in ["images", "masks"] { try FileManager.default.moveItem(atPath: dir + "/a/\(sub)/s2.png", toPath: dir + "/a/\(sub)/cut, wall.png") }
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32"]
        _ = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--noise", "case1", "--csv", dir + "/all.csv", "--per-image", dir + "/images.csv"])
        let rows = try String(contentsOfFile: dir + "/images.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(rows[0], "model,dataset,variant,image,precision,recall,f1,iou,predicted_pixels,truth_pixels,intersection_pixels")
        XCTAssertEqual(rows.count, 1 + 2 * 3)
        XCTAssertTrue(rows.contains { $0.hasPrefix("untrained,A,clean,\"cut, wall\",") }, "\(rows)")
        let summary = try String(contentsOfFile: dir + "/all.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        for line in summary {
            let f = line.split(separator: ",")
            let variant = String(f[2]), iou = try XCTUnwrap(Double(f[7]))
            // The IoU is the fourth field from the end: the names before it may hold commas.
            let ious = rows.dropFirst().filter { $0.hasPrefix("untrained,A,\(variant),") }.map { Double($0.split(separator: ",").reversed()[3])! }
            XCTAssertEqual(ious.count, 3)
            XCTAssertEqual(ious.reduce(0, +) / 3, iou, accuracy: 1e-6, "\(variant)")
            for row in rows.dropFirst() where row.hasPrefix("untrained,A,\(variant),") {
                let counts = row.split(separator: ",").suffix(3).map { Int($0)! }  // |P|, |G|, |P∩G|
                let scores = SegmentationScores(predicted: counts[0], truth: counts[1], intersection: counts[2])
                XCTAssertEqual(Double(row.split(separator: ",").reversed()[3])!, scores.iou, accuracy: 1e-6)
            }
        }
    }

    func testCLIEvaluatesSeveralModelsOnSeveralDatasets() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/a", count: 4)
        try makeTestDataset(dir + "/b", count: 3)
        let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32"]
        try crackCLI(["train"] + tiny + ["--data", dir + "/a", "--out", dir + "/run", "--epochs", "1", "--batch", "2", "--workers", "1",
                                        "--save-every", "1"])
        let out = try crackCLI(["eval"] + tiny + ["--delta", "none", "--delta", dir + "/run/epoch_1.pth", "--dataset", "A=" + dir + "/a",
                                                 "--dataset", "B=" + dir + "/b", "--noise", "case1,case2", "--blur-sweep", "1,5",
                                                 "--json", dir + "/results/r.json", "--csv", dir + "/r.csv", "--markdown", dir + "/tables/md/r.md",
                                                 "--blur-plot", dir + "/blur.png", "--batch", "3"])
        XCTAssertTrue(out.contains("| model | A | A (case1) | A (case2) | A (blur:1) | A (blur:5) | B |"), out)
        XCTAssertTrue(out.contains("| untrained |") && out.contains("| epoch_1 |"), out)
        // Output folders that did not exist are made (before the evaluation, so it cannot end in "no such folder").
        XCTAssertTrue(try String(contentsOfFile: dir + "/tables/md/r.md", encoding: .utf8).contains("| epoch_1 |"))
        let results = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/results/r.json"))) as! [[String: Any]]
        XCTAssertEqual(results.count, 2 * 2 * 5)
        XCTAssertNotNil(results[0]["pooled_iou"])
        XCTAssertEqual(try String(contentsOfFile: dir + "/r.csv", encoding: .utf8).split(separator: "\n").count, 21)
        XCTAssertEqual(try Image.read(at: dir + "/blur.png").width, 640)
        XCTAssertTrue(try crackCLI(["eval"] + tiny + ["--dataset", "X"], expectSuccess: false).contains("NAME=DIR"))
        // A merged export given as --sam alone is the trained model, with or without its sidecar: its rows
        // carry its name, and score as the delta does.
        try crackCLI(["export", "--delta", dir + "/run/epoch_1.pth", "--merge", "--out", dir + "/m.pth"])
        let viaDelta = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--delta", dir + "/run/epoch_1.pth"])
        let iou = try XCTUnwrap(viaDelta.split(separator: "\n").first { $0.hasPrefix("epoch_1 on A (clean): IoU") }).split(separator: ",")[0]
            .replacingOccurrences(of: "epoch_1", with: "m")
        for sidecar in [true, false] {
            if !sidecar { try FileManager.default.removeItem(atPath: dir + "/m.pth.json") }
            let merged = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--sam", dir + "/m.pth"])
            XCTAssertTrue(merged.contains(iou + ",") && !merged.contains("untrained"), "sidecar \(sidecar): \(merged)")
        }
        // Rewritten without its description and loaded with --keep-decoder-head, it is named after its file
        // only once read: --save-predictions checks that name too (an earlier run's masks there were mixed
        // with, and a stopped run's clean-up could have removed them).
        try PyTorchCheckpoint.save(try PyTorchCheckpoint.loadStateDict(at: dir + "/m.pth"), to: dir + "/nodesc.pth")
        let keep = tiny + ["--dataset", "A=" + dir + "/a", "--sam", dir + "/nodesc.pth", "--keep-decoder-head", "--save-predictions", dir + "/kept"]
        XCTAssertTrue(try crackCLI(["eval"] + keep).contains("nodesc on A (clean)"))
        let again = try crackCLI(["eval"] + keep, expectSuccess: false)
        XCTAssertTrue(again.contains("\(dir)/kept/nodesc/A/clean holds an earlier eval's masks"), again)
        // Models are named by their files' stems, with as many folders as make them unique, or as given.
        for run in ["lora", "adapter"] {
            try FileManager.default.createDirectory(atPath: dir + "/runs/" + run, withIntermediateDirectories: true)
            for ext in ["", ".json"] { try FileManager.default.copyItem(atPath: dir + "/run/epoch_1.pth" + ext, toPath: dir + "/runs/\(run)/best.pth" + ext) }
        }
        let named = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--delta", dir + "/runs/lora/best.pth",
                                                   "--delta", dir + "/runs/adapter/best.pth", "--delta", "mi|ne=" + dir + "/run/epoch_1.pth"])
        // (A "|" in a name is escaped, so it does not split its Markdown cell.)
        for row in ["| lora/best | A | clean |", "| adapter/best | A | clean |", "| mi\\|ne | A | clean |"] { XCTAssertTrue(named.contains(row), named) }
        XCTAssertTrue(try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--delta", "untrained=" + dir + "/run/epoch_1.pth",
                                                     "--delta", "none"], expectSuccess: false).contains("another model is already named 'untrained'"))
        // An unreadable image in the second dataset is found before anything is evaluated or written.
        let broken = dir + "/b/images/s1.png"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: broken))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: broken))
        var stopped = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--dataset", "B=" + dir + "/b", "--json", dir + "/p.json"],
                                   expectSuccess: false)
        XCTAssertTrue(stopped.contains("\(broken): cannot read image") && !stopped.contains("untrained on A"), stopped)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/p.json"))
        try bytes.write(to: URL(fileURLWithPath: broken))
        // An error during the second dataset (its predictions' folder cannot be made: a file is in the way):
        // the first one's results are still printed and written, marked partial, and the command fails.
        try FileManager.default.createDirectory(atPath: dir + "/preds/untrained", withIntermediateDirectories: true)
        try Data("in the way".utf8).write(to: URL(fileURLWithPath: dir + "/preds/untrained/B"))
        stopped = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--dataset", "B=" + dir + "/b", "--json", dir + "/p.json",
                                                 "--markdown", dir + "/p.md", "--save-predictions", dir + "/preds"], expectSuccess: false)
        XCTAssertTrue(stopped.contains("stopped by an error; the 1 evaluation(s) that finished are reported and written"), stopped)
        XCTAssertTrue(stopped.contains("\(dir)/preds/untrained/B: cannot write: a file is in the way of this folder"), stopped)
        XCTAssertTrue(try String(contentsOfFile: dir + "/p.partial.md", encoding: .utf8).hasPrefix("(partial: the evaluation was stopped by an error)"))
        let partial = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/p.partial.json"))) as! [[String: Any]]
        XCTAssertEqual(partial.map { $0["dataset"] as? String }, ["A"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/p.json"))
        // Every model is checked before the first is evaluated: a missing or mismatched last --delta ends the
        // run before any score, not after the first model's hours.
        for (bad, message) in [(dir + "/nowhere.pth", "\(dir)/nowhere.pth: no such file"),
                               (dir + "/a/images/s0.png", "not a PyTorch zip checkpoint")] {
            let early = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--delta", dir + "/run/epoch_1.pth", "--delta", bad],
                                     expectSuccess: false)
            XCTAssertTrue(early.contains(message) && !early.contains("epoch_1 on A"), early)
        }
        let otherRank = try crackCLI(["eval"] + tiny + ["--dataset", "A=" + dir + "/a", "--delta", "none", "--delta", dir + "/run/epoch_1.pth",
                                                       "--rank", "8"], expectSuccess: false)
        // Said as the file's record against the flag, not as a dump of mismatched key shapes.
        XCTAssertTrue(otherRank.contains("epoch_1.pth records --rank 4 (the delta it was trained with), but --rank 8 was given")
            && !otherRank.contains("untrained on A"), otherRank)
        // Specs that would mislabel rows or silently change the run are refused by name.
        for (args, message) in [(["--dataset", "=" + dir + "/a"], "NAME=DIR with a name and a folder (got '=\(dir)/a')"),
                                (["--dataset", "A=" + dir + "/a", "--dataset", "A=" + dir + "/b"], "--dataset names must differ: 'A' is given twice"),
                                // A size no model takes (each delta takes those of its kind; the untrained model none).
                                (["--dataset", "A=" + dir + "/a", "--adapter-dim", "8"], "--adapter-dim sets the adapter, but no model evaluated has an adapter delta"),
                                (["--dataset", "A=" + dir + "/a:" + dir + "/none.txt"], "no list file \(dir)/none.txt"),
                                (["--dataset", "A=" + dir + "/a", "--amp", "bf17"], "--amp must be fp16, bf16 or off (got 'bf17')"),
                                (["--dataset", "..=" + dir + "/a"], "--dataset name '..' would be a path in --save-predictions"),
                                (["--dataset", "A=" + dir + "/a", "--delta", "..=" + dir + "/run/epoch_1.pth"], "--delta name '..' would be a path"),
                                (["--dataset", "A=" + dir + "/a", "--delta", "x="], "--delta x=: NAME=FILE with a file (or NAME=none)"),
                                (["--dataset", "A=" + dir + "/a", "--noise", "case1,case1"], "--noise names case1 twice"),
                                (["--dataset", "A=" + dir + "/a", "--blur-sweep", "1,5,1"], "--blur-sweep names 1 twice"),
                                (["--dataset", "A=" + dir + "/a", "--blur-plot", dir + "/p.png"], "--blur-plot is the plot of --blur-sweep, which is not given")] {
            let out = try crackCLI(["eval"] + tiny + args, expectSuccess: false)
            XCTAssertTrue(out.contains(message), "\(args): \(out)")
        }
    }
}
