import CrackSAM
import Foundation
import XCTest

/// `crack-cli predict` writing masks, overlays and measurements, in resize and tile modes.
final class PredictModesTests: XCTestCase {
    let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32"]

    func testTileAndResizeAgreeOnAnImageThatFitsOneTile() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 2)
        // A briefly trained tiny model, so the mask is not trivially empty or full.
        try crackCLI(["train"] + tiny + ["--data", dir + "/data", "--out", dir + "/run", "--epochs", "2", "--batch", "2", "--save-every", "2",
                                        "--workers", "1"])
        let pixels = (0..<(32 * 32 * 3)).map { (i: Int) -> UInt8 in UInt8(truncatingIfNeeded: (i / 3 % 32) * 8 + (i / 96) * 3) }
        try Image(width: 32, height: 32, channels: 3, pixels: pixels).write(to: dir + "/fits.png")
        for mode in ["resize", "tile"] {
            try crackCLI(["predict"] + tiny + ["--delta", dir + "/run/epoch_2.pth", "--mode", mode, "--out", dir + "/" + mode, dir + "/fits.png"])
        }
        let a = try Image.read(at: dir + "/resize/fits_mask.png"), b = try Image.read(at: dir + "/tile/fits_mask.png")
        XCTAssertEqual(a, b)
        // The same below the thresholds: a single tile's blended probabilities are the model's own.
        try Torch.manualSeed(5)
        let model = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 32, depth: 2, heads: 2, globalBlocks: [1], imageSize: 32))
        let predictor = SAMPredictor(model: model)
        let image = Image(width: 32, height: 32, channels: 3, pixels: pixels)
        let direct = try predictor.probabilities([image])[0].map(Double.init)
        let tiled = try TilePlan(width: 32, height: 32, tile: 32, overlap: 8).run(image, with: predictor)
        XCTAssertEqual(tiled, direct)
        XCTAssertGreaterThan(Set(direct).count, 100, "a real, non-constant probability map")
        // Several crack classes: tile mode says crack exactly where resize mode's argmax does (it used
        // to threshold 1 − P(background), which says crack where three near-even classes favour background).
        try Torch.manualSeed(6)
        let classes = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 32, depth: 2, heads: 2, globalBlocks: [1], imageSize: 32,
                                                     numClasses: 2))
        let several = SAMPredictor(model: classes)
        let blended = try TilePlan(width: 32, height: 32, tile: 32, overlap: 8).run(image, with: several).map { $0 > 0.5 }
        let argmax = try Torch.withInferenceMode {
            try classes(Tensor.stack([Preprocess.image(image, size: 32)])).logits.argmax(dim: 1).gt(0).to(dtype: .uint8).toArray(of: UInt8.self)
        }
        XCTAssertEqual(blended, argmax.map { $0 != 0 })
        XCTAssertTrue(blended.contains(true) && blended.contains(false), "both answers occur")
        XCTAssertThrowsError(try TilePlan(width: 40, height: 32, tile: 32, overlap: 8).run(image, with: several)) {
            XCTAssertTrue("\($0)".contains("the plan is for 40×32 RGB images, this one is 32×32"), "\($0)")
        }
    }

    /// A second predict into the same --out does not replace the first one's measurements unless asked,
    /// and predicting into the folder it reads does not take its own masks and overlays for inputs.
    func testAnEarlierPredictIsKeptAndOwnOutputsAreNotInputs() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 2)
        let images = dir + "/data/images"
        try crackCLI(["predict"] + tiny + ["--out", images, images])
        let refused = try crackCLI(["predict"] + tiny + ["--out", images, images], expectSuccess: false)
        XCTAssertTrue(refused.contains("\(images) holds the results of an earlier predict (measurements.json); pass --force"), refused)
        let again = try crackCLI(["predict"] + tiny + ["--out", images, "--force", images])
        XCTAssertFalse(again.contains("_mask.png  crack pixels") || again.contains("_overlay.png  crack pixels"), again)
        let rows = try String(contentsOfFile: images + "/measurements.csv", encoding: .utf8).split(separator: "\n").filter { $0.contains(",all,") }
        XCTAssertEqual(rows.count, 2, rows.joined(separator: "\n"))
    }

    /// Ctrl-C over a large folder: it stops between batches and writes the measurements of the images it
    /// predicted, then fails naming how far it got.
    func testCtrlCWritesTheMeasurementsOfTheImagesDone() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 400)
        let (status, output) = try interruptedCLI(["predict"] + tiny + ["--batch", "1", "--out", dir + "/out", dir + "/data/images"],
                                                  after: "crack pixels")
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.contains("stopped by a signal after "), output)
        let predicted = output.components(separatedBy: "crack pixels").count - 1
        XCTAssertLessThan(predicted, 400, output)
        XCTAssertTrue(output.contains("the results of the \(predicted) predicted are written"), output)
        let rows = try String(contentsOfFile: dir + "/out/measurements.csv", encoding: .utf8).split(separator: "\n").filter { $0.contains(",all,") }
        XCTAssertEqual(rows.count, predicted)
    }

    /// In tile mode a large photo is thousands of tiles: Ctrl-C stops between them (it was acted on only
    /// after the whole photo, which was then written as if nothing had happened, and predict exited 0). The
    /// photo in progress is not written; the ones before it are.
    func testCtrlCStopsInsideATiledPhoto() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 1)
        let (w, h) = (2400, 2400)
        try Image(width: w, height: h, channels: 3, pixels: [UInt8](repeating: 90, count: w * h * 3)).write(to: dir + "/big.png")
        let (status, output) = try interruptedCLI(["predict"] + tiny + ["--mode", "tile", "--batch", "1", "--out", dir + "/out",
                                                                        dir + "/data/images/s0.png", dir + "/big.png"], after: "crack pixels")
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.contains("stopped by a signal after 1 of 2 images; the results of the 1 predicted are written"), output)
        let rows = try String(contentsOfFile: dir + "/out/measurements.csv", encoding: .utf8).split(separator: "\n").filter { $0.contains(",all,") }
        XCTAssertEqual(rows.count, 1)
        XCTAssertTrue(rows[0].hasPrefix(dir + "/data/images/s0.png,"), "\(rows)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out/big_mask.png"))
    }

    /// A file name with a comma is quoted in measurements.csv, so that the columns stay put.
    func testMeasurementsCSVQuotesNamesWithCommas() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 1)
        let photo = dir + "/wall, north.png"
        try FileManager.default.copyItem(atPath: dir + "/data/images/s0.png", toPath: photo)
        try crackCLI(["predict"] + tiny + ["--out", dir + "/out", photo])
        let rows = try String(contentsOfFile: dir + "/out/measurements.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertFalse(rows.isEmpty)
        for row in rows { XCTAssertTrue(row.hasPrefix("\"\(photo)\","), String(row)) }
    }

    func testLargeImagesInTileModeAndMeasurementsInMillimetres() throws {
        let dir = try Oracle.scratch()
        try FileManager.default.createDirectory(atPath: dir + "/photos", withIntermediateDirectories: true)
        let (w, h) = (100, 70)
        let pixels = (0..<(w * h * 3)).map { (i: Int) -> UInt8 in UInt8(truncatingIfNeeded: (i / 3 % w) + (i / (3 * w)) * 2) }
        try Image(width: w, height: h, channels: 3, pixels: pixels).write(to: dir + "/photos/a.jpg")
        try Image(width: 40, height: 20, channels: 3, pixels: Array(pixels.prefix(40 * 20 * 3))).write(to: dir + "/photos/b.png")
        let out = try crackCLI(["predict"] + tiny + ["--mode", "tile", "--overlap", "8", "--out", dir + "/out", "--mm-per-pixel", "0.5",
                                                     dir + "/photos"])
        XCTAssertTrue(out.contains("a.jpg") && out.contains("b.png"), out)
        let mask = try Image.read(at: dir + "/out/a_mask.png")
        XCTAssertEqual([mask.width, mask.height, mask.channels], [w, h, 1])
        XCTAssertTrue(Set(mask.pixels).isSubset(of: [0, 255]))
        XCTAssertEqual(try Image.read(at: dir + "/out/b_overlay.png").width, 40)
        let csv = try String(contentsOfFile: dir + "/out/measurements.csv", encoding: .utf8)
        XCTAssertTrue(csv.hasPrefix("image,crack,unit,area,length,mean_width,max_width,orientation_deg,pixels"), csv)
        XCTAssertTrue(csv.contains(",all,mm,"), csv)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/measurements.json"))) as! [[String: Any]]
        XCTAssertEqual(json.count, 2)
        XCTAssertEqual(json[0]["unit"] as? String, "mm")
        // A microscope's pixel: the CSV keeps what the JSON holds (areas of 1e-9 mm² printed as 0.0000 before).
        _ = try crackCLI(["predict"] + tiny + ["--mode", "tile", "--overlap", "8", "--out", dir + "/micro", "--mm-per-pixel", "0.00001", dir + "/photos"])
        let micro = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/micro/measurements.json"))) as! [[String: Any]]
        let rows = try String(contentsOfFile: dir + "/micro/measurements.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .filter { $0.contains(",all,") }.map { $0.split(separator: ",").map(String.init) }
        XCTAssertEqual(rows.count, 2)
        for (row, m) in zip(rows, micro) {
            let area = try XCTUnwrap(m["total_area"] as? Double), length = try XCTUnwrap(m["total_length"] as? Double)
            XCTAssertGreaterThan(area, 0, "a crack predicted in \(row)")
            XCTAssertEqual(try XCTUnwrap(Double(row[3])), area, accuracy: area * 1e-5, "\(row)")
            XCTAssertEqual(try XCTUnwrap(Double(row[4])), length, accuracy: length * 1e-5, "\(row)")
        }
        XCTAssertTrue(try crackCLI(["predict"] + tiny + ["--mode", "tile", "--save-logits", dir + "/x.safetensors", dir + "/photos"],
                                   expectSuccess: false).contains("resize mode"))
    }

    /// A folder of photos with one broken file: the others are predicted and written (masks, measurements,
    /// logits naming exactly the images they hold), and the command fails at the end naming the broken one.
    func testAnUnreadableImageIsSkippedNamedAndTheRestKept() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 3)
        let photos = dir + "/data/images"
        let good = try Data(contentsOf: URL(fileURLWithPath: photos + "/s1.png"))
        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: photos + "/s1.png"))
        try Data([0x49, 0x49, 0x2A, 0]).write(to: URL(fileURLWithPath: photos + "/s9.tif"))  // a format that is not read
        let out = try crackCLI(["predict"] + tiny + ["--batch", "2", "--out", dir + "/out", "--save-logits", dir + "/logits/l.safetensors", photos],
                               expectSuccess: false)
        XCTAssertTrue(out.contains("skipped: \(photos)/s1.png: cannot read image"), out)
        XCTAssertTrue(out.contains("skipped: \(photos)/s9.tif: cannot read image: not a PNG, JPEG or BMP file"), out)
        XCTAssertTrue(out.contains("2 of 4 images could not be read and were skipped: \(photos)/s1.png, \(photos)/s9.tif (the other 2 were predicted)"), out)
        XCTAssertFalse(out.contains("Usage:"), out)
        for stem in ["s0", "s2"] { XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/out/\(stem)_mask.png"), stem) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out/s1_mask.png"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/measurements.json"))) as! [[String: Any]]
        XCTAssertEqual(json.map { $0["image"] as? String }, [photos + "/s0.png", photos + "/s2.png"])
        let saved = try SafeTensors.load(at: dir + "/logits/l.safetensors")
        XCTAssertEqual(saved.tensors["logits"]?.shape, [2, 2, 32, 32])
        let names = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(saved.metadata["images"]).utf8)) as? [String]
        XCTAssertEqual(names, [photos + "/s0.png", photos + "/s2.png"])
        // The tensors an earlier predict wrote are not replaced without --force (they were, silently).
        let kept = try Data(contentsOf: URL(fileURLWithPath: dir + "/logits/l.safetensors"))
        let again = try crackCLI(["predict"] + tiny + ["--save-logits", dir + "/logits/l.safetensors", photos + "/s0.png"], expectSuccess: false)
        XCTAssertTrue(again.contains("--save-logits \(dir)/logits/l.safetensors exists (an earlier predict's?); pass --force to replace it"), again)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/logits/l.safetensors")), kept)
        _ = try crackCLI(["predict"] + tiny + ["--save-logits", dir + "/logits/l.safetensors", "--force", photos + "/s0.png"])
        XCTAssertEqual(try SafeTensors.load(at: dir + "/logits/l.safetensors").tensors["logits"]?.shape, [1, 2, 32, 32])
        // Two inputs of one stem would overwrite each other's outputs: refused before any work.
        try Image(width: 8, height: 8, channels: 3, pixels: [UInt8](repeating: 7, count: 192)).write(to: dir + "/s0.jpg")
        let clash = try crackCLI(["predict"] + tiny + ["--out", dir + "/out2", photos + "/s0.png", dir + "/s0.jpg"], expectSuccess: false)
        XCTAssertTrue(clash.contains("would both write \(dir)/out2/s0_mask.png"), clash)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out2"))
        // Unless one is of a format that is not read (it writes nothing, and is reported as skipped).
        try Data([0x49, 0x49, 0x2A, 0]).write(to: URL(fileURLWithPath: dir + "/s0.tif"))
        let skipped = try crackCLI(["predict"] + tiny + ["--out", dir + "/out3", photos + "/s0.png", dir + "/s0.tif"], expectSuccess: false)
        XCTAssertTrue(skipped.contains("1 of 2 images could not be read and were skipped: \(dir)/s0.tif"), skipped)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/out3/s0_mask.png"), skipped)
    }
}
