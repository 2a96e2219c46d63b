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
        Torch.manualSeed(5)
        let model = try SAMModel(config: SAMConfig(backbone: .custom, embedDim: 32, depth: 2, heads: 2, globalBlocks: [1], imageSize: 32))
        let predictor = SAMPredictor(model: model)
        let image = Image(width: 32, height: 32, channels: 3, pixels: pixels)
        let direct = try predictor.probabilities([image])[0].map(Double.init)
        let tiled = try TilePlan(width: 32, height: 32, tile: 32, overlap: 8).run(image, with: predictor)
        XCTAssertEqual(tiled, direct)
        XCTAssertGreaterThan(Set(direct).count, 100, "a real, non-constant probability map")
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
        XCTAssertTrue(try crackCLI(["predict"] + tiny + ["--mode", "tile", "--save-logits", dir + "/x.safetensors", dir + "/photos"],
                                   expectSuccess: false).contains("resize mode"))
    }
}
