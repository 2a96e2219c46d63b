import CrackSAM
import Foundation
import XCTest

/// `crack-cli degrade` against OpenCV (Tests/Oracles/degrade_oracle.py): within one grey level of OpenCV's
/// generic code paths (the Gaussian blur is bit-exact; the HSV round trip may differ by one level).
final class DegradeTests: XCTestCase {
    func testDegradationsMatchOpenCVWithinOneGreyLevel() throws {
        let d = try Oracle.scratch()
        try Oracle.run("degrade_oracle.py", [d])
        let cases: [(String, String)] = [("case1", "case1"), ("case2", "case2")] + [1, 3, 5, 9, 13, 25].map { ("blur:\($0)", "blur\($0)") }
        for n in 0..<2 {
            for (arg, file) in cases {
                let ours = d + "/ours_\(file)_\(n).png"
                try crackCLI(["degrade", "--case", arg, d + "/in_\(n).png", ours])
                let a = try Image.read(at: ours), b = try Image.read(at: d + "/\(file)_\(n).png")
                XCTAssertEqual([a.width, a.height, a.channels], [b.width, b.height, b.channels], "\(arg) image \(n)")
                let worst = zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
                let off = zip(a.pixels, b.pixels).filter { $0 != $1 }.count
                print("degrade \(arg) image \(n): max difference \(worst), \(off) of \(a.pixels.count) values differ")
                XCTAssertLessThanOrEqual(worst, 1, "\(arg) image \(n)")
            }
            // With Intel IPP (on in the PyPI wheel) OpenCV's bicubic resize itself moves some pixels by one
            // level, and case 2 resizes twice.
            let a = try Image.read(at: d + "/ours_case2_\(n).png"), b = try Image.read(at: d + "/ipp_case2_\(n).png")
            let worst = zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
            print("degrade case2 image \(n) vs OpenCV with IPP: max difference \(worst)")
            XCTAssertLessThanOrEqual(worst, 2)
        }
        XCTAssertTrue(try crackCLI(["degrade", "--case", "blur:4", d + "/in_0.png", d + "/x.png"], expectSuccess: false)
            .contains("--case must be"))
    }

    func testKernelsAreOpenCVs() {
        XCTAssertEqual(Degrade.gaussianKernel(size: 5), [0.0625, 0.25, 0.375, 0.25, 0.0625])
        let k9 = Degrade.gaussianKernel(size: 9)
        XCTAssertEqual(k9.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(k9[4] / k9[0], Foundation.exp(16 / (2 * 1.7 * 1.7)), accuracy: 1e-9, "σ = 0.3·(4 − 1) + 0.8 = 1.7")
    }
}
