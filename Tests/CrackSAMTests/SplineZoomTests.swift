import CrackSAM
import Foundation
import XCTest

/// The authors' resize of off-size images (scipy.ndimage.zoom, order 3 for the image, order 0 for the
/// prediction back) against SciPy itself, on sizes up, down, odd and tiny.
final class SplineZoomTests: XCTestCase {
    func testMatchesSciPysZoom() throws {
        let t = try Oracle.tensors(from: "zoom_oracle.py")
        var cases = 0
        for (key, image) in t where key.hasPrefix("image_") {
            let name = String(key.dropFirst(6))
            let (h, w) = (image.shape[0], image.shape[1])
            let expected = try XCTUnwrap(t["zoomed_" + name]).toArray(of: Double.self)
            let s = Int(name.split(separator: "_").last!)!
            let ours = SplineZoom.cubic(Image(width: w, height: h, channels: 3, pixels: try image.toArray(of: UInt8.self)), width: s, height: s)
            XCTAssertEqual(ours.count, expected.count, name)
            let worst = zip(ours, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 1e-6, "\(name): largest difference from scipy's zoom")
            // The spline overshoots at the white block's edges, as scipy's does: nothing is clipped.
            if w > 8 { XCTAssertGreaterThan(expected.max()!, 1.0, name) }
            let mask = try XCTUnwrap(t["mask_" + name]).toArray(of: UInt8.self)
            let back = try XCTUnwrap(t["back_" + name]).toArray(of: UInt8.self)
            let oursBack = ResizeMethod.spline.maskBack(mask, from: (s, s), to: (w, h))
            XCTAssertEqual(zip(oursBack, back).filter { $0 != $1 }.count, 0, "\(name): mask pixels that differ from zoom(order=0)")
            cases += 1
        }
        XCTAssertEqual(cases, 8)
    }

    /// `crack-cli predict` on a 90×70 photo against the authors' test loop in Python (zoom order 3 to
    /// S, Meta's modules, argmax, zoom order 0 back), same weights: the same logits and the same mask.
    /// With --resize opencv the logits move by far more: this test tells the two resizes apart.
    func testAnOffSizeImageIsEvaluatedAsTheAuthorsDid() throws {
        let dir = try Oracle.scratch()
        try Oracle.run("authors_eval_oracle.py", [dir])
        let expected = try SafeTensors.load(at: dir + "/out.safetensors").tensors
        let model = ["--vit", "custom", "--embed-dim", "48", "--depth", "4", "--heads", "4", "--global-blocks", "1,3", "--image-size", "64",
                     "--sam", dir + "/sam.pth", "--keep-decoder-head"]
        func logitsError(resize: String) throws -> Double {
            try crackCLI(["predict"] + model + ["--resize", resize, "--save-logits", dir + "/\(resize).safetensors", "--out", dir + "/\(resize)",
                                                dir + "/photo.png"])
            let ours = try XCTUnwrap(SafeTensors.load(at: dir + "/\(resize).safetensors").tensors["logits"])
            let reference = try XCTUnwrap(expected["logits"])
            return try (ours - reference).abs().amax().item() / reference.abs().amax().item()
        }
        let spline = try logitsError(resize: "spline"), opencv = try logitsError(resize: "opencv")
        print("logits vs the authors' loop, relative max error: --resize spline \(spline), --resize opencv \(opencv)")
        XCTAssertLessThan(spline, 1e-5)
        XCTAssertGreaterThan(opencv, 1e-4)
        let mask = try Image.read(at: dir + "/spline/photo_mask.png")
        let prediction = try XCTUnwrap(expected["prediction"]).toArray(of: UInt8.self)
        XCTAssertEqual([mask.width, mask.height], [90, 70])
        let crack = prediction.filter { $0 != 0 }.count
        XCTAssertTrue((500...5800).contains(crack), "a prediction that is neither empty nor full: \(crack) of 6300")
        // Near-tied logits (|Δ| down to 1e-5 here) may flip a pixel or two under float rounding.
        let differ = zip(mask.pixels, prediction).filter { ($0 != 0) != ($1 != 0) }.count
        XCTAssertLessThanOrEqual(differ, 6, "mask pixels that differ from the authors' loop")
    }
}
