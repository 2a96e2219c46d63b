import CrackSAM
import Foundation
import XCTest

/// The synthetic crack generator.
final class SynthTests: XCTestCase {
    func options(_ style: SynthStyle = .mixed, seed: UInt64 = 3, size: Int = 96) -> SynthOptions {
        var o = SynthOptions()
        o.style = style
        o.seed = seed
        o.size = size
        return o
    }

    func testSameSeedSameBytesAndAValidDataset() throws {
        let (a, b, c) = (try Oracle.scratch("a"), try Oracle.scratch("b"), try Oracle.scratch("c"))
        try Synth.write(to: a, count: 10, options: options())
        try Synth.write(to: b, count: 10, options: options())
        try Synth.write(to: c, count: 10, options: options(seed: 4))
        let files = try FileManager.default.subpathsOfDirectory(atPath: a).filter { $0.hasSuffix(".png") || $0.hasSuffix(".txt") }.sorted()
        XCTAssertEqual(files.count, 23)
        for f in files {
            XCTAssertEqual(FileManager.default.contents(atPath: a + "/" + f), FileManager.default.contents(atPath: b + "/" + f), f)
        }
        XCTAssertNotEqual(FileManager.default.contents(atPath: a + "/images/synth_00000.png"),
                          FileManager.default.contents(atPath: c + "/images/synth_00000.png"), "another seed, another image")
        // The trainer's dataset reader takes it, with the split lists.
        XCTAssertEqual(try CrackDataset(root: a, list: a + "/train.txt").count, 8)
        XCTAssertEqual(try CrackDataset(root: a, list: a + "/val.txt").count, 1)
        XCTAssertEqual(try CrackDataset(root: a, list: a + "/test.txt").count, 1)
        var cracked = 0
        for i in 0..<10 {
            let mask = try Image.read(at: a + String(format: "/masks/synth_%05d.png", i))
            XCTAssertTrue(Set(mask.pixels).isSubset(of: [0, 255]), "masks are strictly binary")
            if mask.pixels.contains(255) { cracked += 1 }
        }
        XCTAssertGreaterThan(cracked, 5)
    }

    /// `synth --out d` trapped: Foundation's deletingLastPathComponent crashes on a one-character path,
    /// which Folder.make met when making d/images's parent. Folder.parent splits paths itself.
    func testAOneLetterOutputFolder() throws {
        let cases = ["d": "", ".": "", "a/": "", "é": "", "/": "/", "/a": "/", "/a/": "/", "a/b": "a", "a//b/": "a",
                     "runs/lora-h/best.pth": "runs/lora-h", "./o": ".", "../x/y": "../x"]
        for (path, parent) in cases { XCTAssertEqual(Folder.parent(of: path), parent, path) }
        let dir = try Oracle.scratch()
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try Synth.write(to: "d", count: 2, options: options(size: 32))
        XCTAssertEqual(try CrackDataset(root: dir + "/d").count, 2)
    }

    func testCrackFreeImagesHaveEmptyMasks() {
        var o = options()
        o.crackFree = 1
        for i in 0..<12 { XCTAssertFalse(Synth.render(index: i, options: o).mask.contains(255), "image \(i)") }
    }

    func testDistractorsAreNeverLabelled() {
        for style in [SynthStyle.pavement, .concrete, .facade] {
            var withDistractors = options(style, size: 128)
            withDistractors.cracks = false
            var plain = withDistractors
            plain.distractors = []
            var changed = 0
            for i in 0..<16 {
                let s = Synth.render(index: i, options: withDistractors)
                XCTAssertFalse(s.mask.contains(255), "\(style) image \(i): a distractor was labelled")
                if s.image != Synth.render(index: i, options: plain).image { changed += 1 }
            }
            XCTAssertGreaterThan(changed, 8, "\(style): the distractors were drawn")
        }
    }

    func testCLIWritesAMontage() throws {
        let dir = try Oracle.scratch()
        let out = try crackCLI(["synth", "--out", dir + "/d", "--count", "4", "--size", "64", "--style", "concrete", "--montage", dir + "/m.png"])
        XCTAssertTrue(out.contains("4 concrete images"), out)
        XCTAssertEqual(try Image.read(at: dir + "/m.png").width, 4 * 160 + 5 * 4)
        // A second dataset is not written into the first.
        XCTAssertTrue(try crackCLI(["synth", "--out", dir + "/d", "--count", "2"], expectSuccess: false)
            .contains("\(dir)/d already holds a dataset (images/ has 4 files)"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/d/images").count, 4)
        XCTAssertTrue(try crackCLI(["synth", "--out", dir + "/e", "--count", "2", "--distractors", "fog"], expectSuccess: false)
            .contains("unknown distractor 'fog'"))
    }

    /// A montage into the dataset replaced a mask (or, on --out itself, failed once the dataset was written);
    /// a bad value refused after the montage's folder was made left that folder behind.
    func testMontageStaysOutOfTheDataset() throws {
        let dir = try Oracle.scratch()
        let intoMasks = try crackCLI(["synth", "--out", dir + "/d", "--count", "2", "--size", "32", "--montage", dir + "/d/masks/synth_00000.png"],
                                     expectSuccess: false)
        XCTAssertTrue(intoMasks.contains("--montage \(dir)/d/masks/synth_00000.png lies in the dataset's masks"), intoMasks)
        let onOut = try crackCLI(["synth", "--out", dir + "/m.png", "--count", "2", "--size", "32", "--montage", dir + "/m.png"], expectSuccess: false)
        XCTAssertTrue(onOut.contains("is the dataset's folder (--out)"), onOut)
        XCTAssertTrue(try crackCLI(["synth", "--out", dir + "/e", "--count", "2", "--crack-free", "2", "--montage", dir + "/new/m.png"],
                                   expectSuccess: false).contains("--crack-free must be a fraction"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "nothing written, no folder made")
        // Beside the samples, in the dataset's own folder, it is fine.
        _ = try crackCLI(["synth", "--out", dir + "/d", "--count", "2", "--size", "32", "--montage", dir + "/d/montage.png"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/d/masks").count, 2)
    }

    /// A stopped (or failed) write takes its samples back, and the next write into the folder goes ahead.
    func testAStoppedWriteLeavesNoPartialDataset() throws {
        let dir = try Oracle.scratch()
        var o = SynthOptions()
        o.size = 32
        let asked = NSLock()
        var calls = 0
        XCTAssertThrowsError(try Synth.write(to: dir, count: 40, options: o, shouldStop: {
            asked.lock(); defer { asked.unlock() }
            calls += 1
            return calls > 5
        })) { XCTAssertTrue($0 is StopRequest.Interrupted, "\($0)") }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/images"), [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/masks"), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/train.txt"))
        XCTAssertLessThan(calls, 40 + 2, "the images after the stop are not rendered")
        try Synth.write(to: dir, count: 3, options: o)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/images").count, 3)
    }
}
