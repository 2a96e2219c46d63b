import CrackSAM
import Foundation
import XCTest

/// PNG/JPEG through libpng/libjpeg, checked against OpenCV's decoding (Tests/Oracles/image_oracle.py).
final class ImageTests: XCTestCase {
    func testDecodingMatchesOpenCV() throws {
        let d = try Oracle.scratch()
        try Oracle.run("image_oracle.py", [d])
        let cv = try SafeTensors.load(at: d + "/decoded.safetensors").tensors
        // 16-bit PNGs keep each sample's high byte, as imread's 8-bit image does (not the nearest level).
        for (name, channels, tolerance) in [("rgb.png", 3, 0.0), ("grey.png", 1, 0.0), ("photo.jpg", 3, 2.0), ("grey.jpg", 1, 2.0),
                                            ("deep.png", 1, 0.0), ("deep_rgb.png", 3, 0.0), ("deep_black.png", 1, 0.0),
                                            ("cmyk.jpg", 3, 2.0), ("jfif201.jpg", 3, 2.0), ("stray.jpg", 3, 2.0)] {
            let image = try Image.read(at: d + "/" + name)
            XCTAssertEqual([image.width, image.height, image.channels], [80, 60, channels], name)
            let ours = try image.tensor().permute([1, 2, 0]).squeeze(dim: channels == 1 ? 2 : 0).to(dtype: .float32)
            let theirs = try cv[name]!.to(dtype: .float32)
            XCTAssertEqual(ours.shape.filter { $0 != 3 || channels == 3 }, theirs.shape, name)
            // PNG is lossless: identical. JPEG decoders may round the IDCT differently by a grey level or two.
            XCTAssertLessThanOrEqual(try (ours.reshape(theirs.shape) - theirs).abs().amax().item(), tolerance, name)
        }
    }

    /// Phone photos keep the sensor's pixel order and an EXIF tag saying how to turn them. Reading turns
    /// them upright, as OpenCV's imread does (JPEG APP1 in either byte order, grey or RGB; PNG eXIf before
    /// or after the image data); a damaged or meaningless EXIF block leaves the photo as stored.
    func testEXIFOrientationIsAppliedAsOpenCVDoes() throws {
        let d = try Oracle.scratch()
        try Oracle.run("image_oracle.py", [d])
        let cv = try SafeTensors.load(at: d + "/decoded.safetensors").tensors
        let names = cv.keys.filter { $0.hasPrefix("oriented_") || $0.hasPrefix("bad_exif_") }.sorted()
        XCTAssertEqual(names.count, 44)
        for name in names {
            let image = try Image.read(at: d + "/" + name)
            // What it was turned from is kept (datasets compare it with their masks'): 1 for none or a bad block.
            let tagged = name.hasPrefix("oriented_") ? Int(name.split(separator: "_").compactMap { Int($0.prefix { $0.isNumber }) }.first ?? 0) : 1
            XCTAssertEqual(image.orientation, tagged, name)
            let theirs = try cv[name]!.to(dtype: .float32)
            // Orientations 5-8 swap width and height: 60 × 80 stored, 80 × 60 upright.
            XCTAssertEqual([image.height, image.width], Array(theirs.shape.prefix(2)), name)
            guard [image.height, image.width] == Array(theirs.shape.prefix(2)) else { continue }
            let ours = try image.tensor().permute([1, 2, 0]).reshape(theirs.shape).to(dtype: .float32)
            // PNG is lossless: identical. JPEG decoders may round the IDCT differently by a grey level or two.
            XCTAssertLessThanOrEqual(try (ours - theirs).abs().amax().item(), name.hasSuffix(".png") ? 0 : 2, name)
        }
    }

    /// Uncompressed BMP, as crack datasets ship their masks (CrackTree260, CRKWH100): every bit depth
    /// OpenCV's and Pillow's writers make, a 4-bit and a top-down file, against OpenCV's decoding; a grey
    /// palette reads as grey. RLE and truncated files are refused by name.
    func testBMPDecodingMatchesOpenCV() throws {
        let d = try Oracle.scratch()
        try Oracle.run("image_oracle.py", [d])
        let cv = try SafeTensors.load(at: d + "/decoded.safetensors").tensors
        let names = cv.keys.filter { $0.hasPrefix("bmp_") }.sorted()
        XCTAssertEqual(names.count, 7)
        for name in names {
            let image = try Image.read(at: d + "/" + name)
            let theirs = try cv[name]!.to(dtype: .float32)
            XCTAssertEqual([image.height, image.width, image.channels], [60, 80, theirs.shape.count == 2 ? 1 : 3], name)
            let ours = try image.tensor().permute([1, 2, 0]).reshape(theirs.shape).to(dtype: .float32)
            XCTAssertEqual(try (ours - theirs).abs().amax().item(), 0, name)
        }
        for (name, fragment) in [("bad_rle.bmp", "compressed BMP (RLE or bit fields, type 1) is not supported"),
                                 ("bad_truncated.bmp", "BMP: file is truncated")] {
            XCTAssertThrowsError(try Image.read(at: d + "/" + name), name) { error in
                XCTAssertTrue("\(error)".contains(d + "/" + name) && "\(error)".contains(fragment), "\(error)")
            }
        }
    }

    func testUnsupportedAndBrokenFilesAreNamedErrors() throws {
        let d = try Oracle.scratch()
        try Oracle.run("image_oracle.py", [d])
        let cases = [("huge_progressive.jpg", "JPEG of 60000x60000 pixels is too large"), ("deep_mask.png", "16-bit PNG whose values all lie in 0…255"), ("truncated.png", "truncated"), ("truncated.jpg", "JPEG"),
                     ("missing.png", "no such file")]
        for (name, fragment) in cases {
            XCTAssertThrowsError(try Image.read(at: d + "/" + name), name) { error in
                guard case DataError.unreadableImage(let path, let reason) = error else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(path, d + "/" + name)
                XCTAssertTrue(reason.contains(fragment), "\(name): '\(reason)' lacks '\(fragment)'")
            }
        }
        try Data("GIF89a not supported".utf8).write(to: URL(fileURLWithPath: d + "/x.gif"))
        XCTAssertThrowsError(try Image.read(at: d + "/x.gif")) { error in
            XCTAssertTrue("\(error)".contains("not a PNG, JPEG or BMP"), "\(error)")
        }
    }

    func testPNGRoundTripIsExactAndJPEGIsClose() throws {
        let d = try Oracle.scratch()
        let pixels = (0..<(31 * 17 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let image = Image(width: 31, height: 17, channels: 3, pixels: pixels)
        try image.write(to: d + "/a.png")
        XCTAssertEqual(try Image.read(at: d + "/a.png"), image)
        let grey = Image(width: 31, height: 17, channels: 1, pixels: Array(pixels.prefix(31 * 17)))
        try grey.write(to: d + "/g.png")
        XCTAssertEqual(try Image.read(at: d + "/g.png"), grey)
        let smooth = Image(width: 64, height: 64, channels: 1, pixels: (0..<4096).map { UInt8($0 % 64 * 4) })
        try smooth.write(to: d + "/s.jpg", jpegQuality: 100)
        let back = try Image.read(at: d + "/s.jpg")
        XCTAssertLessThanOrEqual(zip(back.pixels, smooth.pixels).map { abs(Int($0) - Int($1)) }.max()!, 4)
        // The extension names the format: PNG bytes are not written under another format's name.
        for name in ["a.gif", "a.tif", "noextension"] {
            XCTAssertThrowsError(try grey.write(to: d + "/" + name), name) { error in
                XCTAssertTrue("\(error)".contains("images are written as .png, .jpg or .jpeg"), "\(error)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/" + name))
        }
        // A missing folder is named once, not twice.
        XCTAssertThrowsError(try grey.write(to: d + "/none/a.png")) { error in
            XCTAssertEqual("\(error)", "\(d)/none/a.png: cannot write: folder \(d)/none does not exist")
        }
    }

    func testPreprocessScalesAndResizesToTheInputSize() throws {
        let image = Image(width: 40, height: 21, channels: 1, pixels: [UInt8](repeating: 255, count: 840))
        for method in ResizeMethod.allCases {
            let t = try Preprocess.image(image, size: 32, resize: method)
            XCTAssertEqual(t.shape, [3, 32, 32])
            XCTAssertEqual(try t.amin().item(), 1, accuracy: 1e-6, "\(method)")
            XCTAssertEqual(try t.amax().item(), 1, accuracy: 1e-6, "\(method)")
        }
        let same = Image(width: 2, height: 2, channels: 3, pixels: [0, 51, 102, 153, 204, 255, 0, 0, 0, 255, 255, 255])
        XCTAssertEqual(try Preprocess.image(same, size: 2).select(dim: 0, index: 0).floats(), [0, 0.6, 0, 1])
    }
}
