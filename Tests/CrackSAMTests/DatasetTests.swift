import CrackSAM
import Foundation
import XCTest

/// Datasets, augmentation and the batch loader.
final class DatasetTests: XCTestCase {
    /// A list naming a sample twice would weigh it twice in a mean: refused with both lines. Masks that no
    /// image takes are listed, for a warning.
    func testListDuplicatesAreRefusedAndUnusedMasksListed() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: 3)
        try Data("s0\ns1.png\ns0\n".utf8).write(to: URL(fileURLWithPath: dir + "/list.txt"))
        assertDatasetError(.listNamesSampleTwice(list: dir + "/list.txt", line: 3, firstLine: 1, name: "s0")) {
            _ = try CrackDataset(root: dir, list: dir + "/list.txt")
        }
        XCTAssertEqual(try CrackDataset(root: dir).unusedMasks, [])
        try FileManager.default.removeItem(atPath: dir + "/images/s1.png")
        XCTAssertEqual(try CrackDataset(root: dir).unusedMasks, [dir + "/masks/s1.png"])
    }

    func testLoadsResizesAndThresholds() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir)
        let ds = try CrackDataset(root: dir)
        XCTAssertEqual(ds.samples.map(\.name), ["s0", "s1", "s2", "s3", "s4"])
        let (image, label) = try ds.load(1, size: 32)
        XCTAssertEqual(image.shape, [3, 32, 32])
        XCTAssertEqual(image.dtype, .uint8)
        XCTAssertEqual(label.shape, [32, 32])
        XCTAssertEqual(Set(try label.toArray(of: UInt8.self)), [0, 1], "labels are strictly binary")
        let same = try ds.load(0, size: 40).label  // 40×30 is not square: it is resized to 40×40
        XCTAssertEqual(same.shape, [40, 40])
        // A list file selects and orders samples; names may carry extensions.
        try "s3\ns1.png\n\n".write(toFile: dir + "/train.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try CrackDataset(root: dir, list: dir + "/train.txt").samples.map(\.name), ["s3", "s1"])
        // Windows line endings (and a last line without one) read the same.
        try "s3\r\ns1.png\r\n\r\ns0 ".write(toFile: dir + "/crlf.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try CrackDataset(root: dir, list: dir + "/crlf.txt").samples.map(\.name), ["s3", "s1", "s0"])
        // A byte-order mark (Windows editors write one) is not part of the first name; a name that holds
        // an invisible character shows it.
        try "\u{FEFF}s3\ns1\n".write(toFile: dir + "/bom.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try CrackDataset(root: dir, list: dir + "/bom.txt").samples.map(\.name), ["s3", "s1"])
        try "s3\ns\u{0}1\n".write(toFile: dir + "/nul.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CrackDataset(root: dir, list: dir + "/nul.txt")) { error in
            XCTAssertEqual("\(error)", "\(dir)/nul.txt:2: 's\\u{0}1' is not in the dataset")
        }
    }

    /// A colour mask is made grey as OpenCV makes it (luminance): green strokes (grey 149) are crack,
    /// magenta (105) is not; the channel mean (85 and 170) had it the other way round. Grey masks and
    /// .jfif photos read as ever.
    func testColourMasksAreThresholdedOnOpenCVsGrey() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: 1)
        let colours: [[UInt8]] = [[0, 255, 0], [255, 0, 255], [255, 255, 255], [0, 0, 0], [128, 128, 128], [127, 127, 127]]
        var pixels = [UInt8](repeating: 0, count: 40 * 30 * 3)
        for (i, rgb) in colours.enumerated() { for k in 0..<3 { pixels[3 * i + k] = rgb[k] } }
        try Image(width: 40, height: 30, channels: 3, pixels: pixels).write(to: dir + "/masks/s0.png")
        try FileManager.default.moveItem(atPath: dir + "/images/s0.png", toPath: dir + "/images/s0.jfif")
        let label = try CrackDataset(root: dir).loadOriginal(0).label
        XCTAssertEqual(Array(label.prefix(colours.count)), [1, 0, 1, 0, 1, 0])
    }

    /// With several crack classes a mask's grey values are class indices (binary reading would make a
    /// mask of 0, 1 and 2 all background); a value past the classes is an error naming the mask.
    func testSeveralClassesReadClassIndices() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: 1)
        let pixels = (0..<(40 * 30)).map { UInt8($0 % 40 < 10 ? 0 : $0 % 40 < 25 ? 1 : 2) }
        try Image(width: 40, height: 30, channels: 1, pixels: pixels).write(to: dir + "/masks/s0.png")
        XCTAssertEqual(try CrackDataset(root: dir, classes: 2).loadOriginal(0).label, pixels)
        XCTAssertEqual(Set(try CrackDataset(root: dir).loadOriginal(0).label), [0], "binary reading: all below 128")
        let labels = try CrackDataset(root: dir, classes: 2).load(0, size: 32).label
        XCTAssertEqual(Set(try labels.toArray(of: UInt8.self)), [0, 1, 2], "resizing keeps class indices (nearest)")
        try Image(width: 40, height: 30, channels: 1, pixels: pixels.map { $0 == 2 ? 255 : $0 }).write(to: dir + "/masks/s0.png")
        assertDatasetError(.labelOutOfRange(mask: dir + "/masks/s0.png", value: 255, classes: 2)) {
            _ = try CrackDataset(root: dir, classes: 2).loadOriginal(0)
        }
    }

    func testMasksMayDifferInExtension() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: 4, maskExtension: "jpg")
        // Masks named with a dataset's suffix are found too.
        for (from, to) in [("s2.jpg", "s2_mask.jpg"), ("s3.jpg", "s3_gt.jpg")] {
            try FileManager.default.moveItem(atPath: dir + "/masks/" + from, toPath: dir + "/masks/" + to)
        }
        let ds = try CrackDataset(root: dir)
        XCTAssertEqual(ds.samples.map { ($0.mask as NSString).lastPathComponent }, ["s0.jpg", "s1.jpg", "s2_mask.jpg", "s3_gt.jpg"])
        XCTAssertTrue(ds.samples[0].mask.hasSuffix("s0.jpg"))
        // JPEG masks (as Khanhha ships) threshold back to a clean binary label.
        XCTAssertEqual(Set(try ds.load(0, size: 40).label.toArray(of: UInt8.self)), [0, 1])
    }

    func assertDatasetError(_ expected: DatasetError, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? DatasetError, expected, file: file, line: line)
        }
    }

    func testEveryBadInputNamesTheFile() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: 3)
        // Image without a mask.
        try FileManager.default.removeItem(atPath: dir + "/masks/s2.png")
        assertDatasetError(.missingMask(image: dir + "/images/s2.png", masksFolder: dir + "/masks")) { _ = try CrackDataset(root: dir) }
        // A list that leaves the unlabelled image out selects labelled samples only; one that names it is refused.
        try "s0\ns1\n".write(toFile: dir + "/labelled.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try CrackDataset(root: dir, list: dir + "/labelled.txt").samples.map(\.name), ["s0", "s1"])
        try "s0\ns2\n".write(toFile: dir + "/all.txt", atomically: true, encoding: .utf8)
        assertDatasetError(.missingMask(image: dir + "/images/s2.png", masksFolder: dir + "/masks")) {
            _ = try CrackDataset(root: dir, list: dir + "/all.txt")
        }
        // Mask of another size.
        try Image(width: 20, height: 30, channels: 1, pixels: [UInt8](repeating: 0, count: 600)).write(to: dir + "/masks/s2.png")
        let ds = try CrackDataset(root: dir)
        assertDatasetError(.maskSizeMismatch(mask: dir + "/masks/s2.png", maskSize: [20, 30], imageSize: [40, 30])) {
            _ = try ds.load(2, size: 32)
        }
        // Corrupt / truncated image.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/images/s1.png"))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: dir + "/images/s1.png"))
        XCTAssertThrowsError(try ds.load(1, size: 32)) { error in
            guard case DataError.unreadableImage(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, dir + "/images/s1.png")
        }
        // List file naming a missing sample, with its line.
        try "s0\r\n# comment\r\nnope\r\n".write(toFile: dir + "/val.txt", atomically: true, encoding: .utf8)
        assertDatasetError(.listNamesMissingSample(list: dir + "/val.txt", line: 3, name: "nope")) {
            _ = try CrackDataset(root: dir, list: dir + "/val.txt")
        }
        // Files of a format that is not read are named, not skipped (the dataset would shrink unseen).
        for name in ["x.tif", "y.TIFF"] { try Data([0x49, 0x49]).write(to: URL(fileURLWithPath: dir + "/masks/" + name)) }
        assertDatasetError(.unsupportedFormat(file: dir + "/masks/x.tif", count: 2)) { _ = try CrackDataset(root: dir) }
        XCTAssertEqual("\(DatasetError.unsupportedFormat(file: "m/x.tif", count: 2))",
                       "m/x.tif: only PNG, JPEG and BMP are read; convert it (and the 1 other such files in its folder)")
        for name in ["x.tif", "y.TIFF"] { try FileManager.default.removeItem(atPath: dir + "/masks/" + name) }
        // A list file that is not there.
        assertDatasetError(.unreadableList(path: dir + "/none.txt")) { _ = try CrackDataset(root: dir, list: dir + "/none.txt") }
        // Two images of one name: which mask, which list entry, which saved prediction would be ambiguous.
        try FileManager.default.copyItem(atPath: dir + "/images/s0.png", toPath: dir + "/images/s0.jpg")
        assertDatasetError(.duplicateName(name: "s0", images: [dir + "/images/s0.jpg", dir + "/images/s0.png"])) { _ = try CrackDataset(root: dir) }
        try FileManager.default.removeItem(atPath: dir + "/images/s0.jpg")
        // Empty dataset, and a folder that is not one.
        let empty = try Oracle.scratch("empty")
        try FileManager.default.createDirectory(atPath: empty + "/images", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: empty + "/masks", withIntermediateDirectories: true)
        assertDatasetError(.empty(path: empty)) { _ = try CrackDataset(root: empty) }
        assertDatasetError(.notADataset(path: empty + "/images")) { _ = try CrackDataset(root: empty + "/images") }
        XCTAssertEqual("\(DatasetError.empty(path: "/d"))", "/d: the dataset has no images")
    }

    /// A test dataset whose sample s0 has, instead of its own image, a file the image oracle wrote.
    func dataset(count: Int, withFirstImage oracleFile: String, as name: String) throws -> String {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: count)
        let oracle = try Oracle.scratch("img")
        try Oracle.run("image_oracle.py", [oracle])
        try FileManager.default.removeItem(atPath: dir + "/images/s0.png")
        try FileManager.default.copyItem(atPath: oracle + "/" + oracleFile, toPath: dir + "/images/" + name)
        return dir
    }

    /// A 0/255 mask saved with 16 bits would read as empty (OpenCV keeps the high bytes): its cracks would
    /// train as background. It is refused, naming the mask.
    func testASixteenBitMaskOfEightBitValuesIsRefusedByName() throws {
        let dir = try dataset(count: 1, withFirstImage: "rgb.png", as: "s0.png")  // 80×60, as deep_mask.png
        let oracle = try Oracle.scratch("img")
        try Oracle.run("image_oracle.py", [oracle])
        try FileManager.default.removeItem(atPath: dir + "/masks/s0.png")
        try FileManager.default.copyItem(atPath: oracle + "/deep_mask.png", toPath: dir + "/masks/s0.png")
        XCTAssertThrowsError(try CrackDataset(root: dir).load(0, size: 32)) { error in
            XCTAssertTrue("\(error)".contains("masks/s0.png") && "\(error)".contains("16-bit PNG whose values all lie in 0…255"), "\(error)")
        }
    }

    /// A photo whose EXIF orientation turns it sideways is read upright (ImageTests checks this against
    /// OpenCV); a mask drawn on its stored pixels has the transposed size, and the error says why.
    func testAMaskOfTheSidewaysPhotoIsExplained() throws {
        // oriented_6.jpg stores 80×60 pixels and reads as 60×80; the mask has the stored size.
        let dir = try dataset(count: 2, withFirstImage: "oriented_6.jpg", as: "s0.jpg")
        try Image(width: 80, height: 60, channels: 1, pixels: [UInt8](repeating: 0, count: 4800)).write(to: dir + "/masks/s0.png")
        let ds = try CrackDataset(root: dir)
        assertDatasetError(.maskSizeMismatch(mask: dir + "/masks/s0.png", maskSize: [80, 60], imageSize: [60, 80])) {
            _ = try ds.load(0, size: 32)
        }
        let message = "\(DatasetError.maskSizeMismatch(mask: "m.png", maskSize: [80, 60], imageSize: [60, 80]))"
        XCTAssertTrue(message.contains("EXIF orientation"), message)
        // A mask of another size altogether gets no such hint.
        XCTAssertFalse("\(DatasetError.maskSizeMismatch(mask: "m.png", maskSize: [20, 30], imageSize: [40, 30]))".contains("EXIF"))
        // The mask drawn on the upright photo loads.
        try Image(width: 60, height: 80, channels: 1, pixels: [UInt8](repeating: 255, count: 4800)).write(to: dir + "/masks/s0.png")
        XCTAssertEqual(try CrackDataset(root: dir).load(0, size: 32).label.shape, [32, 32])
        // Its size shows it was drawn upright: it is not named as turned against its photo.
        XCTAssertTrue(try CrackDataset(root: dir).verify().turnedAgainstMasks.isEmpty)
    }

    /// A photo turned upright by its EXIF orientation whose mask carries none is named by the dataset
    /// check: a half-turned photo keeps its size, so a mask drawn on its stored pixels (as PIL shows
    /// them) would score against the turned photo without an error. A mask turned with it is not named.
    func testPhotosTurnedAgainstTheirMasksAreNamed() throws {
        // oriented_3.jpg stores 80×60 pixels to be turned 180°; the mask has its size and no EXIF.
        let dir = try dataset(count: 2, withFirstImage: "oriented_3.jpg", as: "s0.jpg")
        try Image(width: 80, height: 60, channels: 1, pixels: [UInt8](repeating: 0, count: 4800)).write(to: dir + "/masks/s0.png")
        let check = try CrackDataset(root: dir).verify()
        XCTAssertEqual(check.turnedAgainstMasks.map(\.image), [dir + "/images/s0.jpg"])
        XCTAssertEqual(check.turnedAgainstMasks.map(\.orientation), [3])
        XCTAssertEqual(check.sizes.map(\.width), [80, 40])
        let warning = try XCTUnwrap(check.orientationWarning(dataset: dir))
        XCTAssertTrue(warning.hasPrefix("\(dir): 1 image(s) carry an EXIF orientation and are read upright, as OpenCV reads them, while "
            + "their masks carry none (\(dir)/images/s0.jpg: rotated 180°)"), warning)
        // A mask that carries the same orientation is turned with its photo.
        let oracle = try Oracle.scratch("img")
        try Oracle.run("image_oracle.py", [oracle])
        try FileManager.default.removeItem(atPath: dir + "/masks/s0.png")
        try FileManager.default.copyItem(atPath: oracle + "/oriented_3.png", toPath: dir + "/masks/s0.png")
        let turnedToo = try CrackDataset(root: dir).verify()
        XCTAssertTrue(turnedToo.turnedAgainstMasks.isEmpty)
        XCTAssertNil(turnedToo.orientationWarning(dataset: dir))
    }

    /// The small-angle rotation is scipy.ndimage.rotate(order=0, reshape=False), as the authors' loader
    /// rotates, pixel for pixel, the zero-filled border included.
    func testRotationIsSciPys() throws {
        let t = try Oracle.tensors(from: "rotate_oracle.py")
        var checked = 0
        for (key, expected) in t where key.contains("rotated_") {
            let source = try XCTUnwrap(t[key.hasPrefix("square") ? "square" : "image"])
            let angle = try XCTUnwrap(Double(key.split(separator: "_").last!))
            let ours = try Augmenter.rotate(source, degrees: angle)
            let differ = zip(try ours.toArray(of: UInt8.self), try expected.toArray(of: UInt8.self)).filter { $0 != $1 }.count
            XCTAssertEqual(differ, 0, "\(key): pixels that differ from scipy's")
            checked += 1
        }
        XCTAssertEqual(checked, 8)
    }

    func testAugmentationIsSeededAndKeepsMasksBinary() throws {
        let a = Augmenter(seed: 3407)
        let choices = (0..<200).map { a.choice(epoch: 1, index: $0) }
        XCTAssertEqual(choices, (0..<200).map { Augmenter(seed: 3407).choice(epoch: 1, index: $0) })
        XCTAssertNotEqual(choices, (0..<200).map { a.choice(epoch: 2, index: $0) })
        let rotFlip = choices.filter { if case .rotFlip = $0 { return true } else { return false } }.count
        let rotate = choices.filter { if case .rotate = $0 { return true } else { return false } }.count
        XCTAssertTrue((70...130).contains(rotFlip), "about half rot+flip: \(rotFlip)")
        XCTAssertTrue((25...75).contains(rotate), "about a quarter rotated: \(rotate)")
        for case .rotate(let d) in choices { XCTAssertTrue((-20..<20).contains(d)) }

        let label = try Tensor((0..<(9 * 9)).map { UInt8($0 % 7 == 0 ? 1 : 0) }, shape: [9, 9])
        let image = try Tensor((0..<(3 * 81)).map { UInt8($0 % 256) }, shape: [3, 9, 9])
        // 90° about the centre is exactly rot90; 0° is the identity.
        XCTAssertEqual(try Augmenter.rotate(image, degrees: 90).bytes(), try image.rot90(1, dims: (1, 2)).bytes())
        XCTAssertEqual(try Augmenter.rotate(image, degrees: 0).bytes(), try image.bytes())
        let (_, l) = try a.apply(.rotate(degrees: 17), image: image, label: label)
        XCTAssertTrue(Set(try l.toArray(of: UInt8.self)).isSubset(of: [0, 1]))
        // Corners come from outside the image: zero fill.
        let (i2, _) = try a.apply(.rotate(degrees: 19), image: try Tensor.full([3, 9, 9], value: 200, dtype: .uint8), label: label)
        XCTAssertEqual(try i2.select(dim: 1, index: 0).select(dim: 1, index: 0).toArray(of: UInt8.self), [0, 0, 0])
        let (i3, l3) = try a.apply(.rotFlip(k: 1, axis: 0), image: image, label: label)
        XCTAssertEqual(try i3.bytes(), try image.rot90(1, dims: (1, 2)).flip([1]).bytes())
        XCTAssertEqual(try l3.bytes(), try label.rot90(1, dims: (0, 1)).flip([0]).bytes())
    }

    func testLoaderOrderAndContentDoNotDependOnWorkers() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: 7)
        let ds = try CrackDataset(root: dir)
        func collect(workers: Int) throws -> ([String], [UInt8]) {
            let loader = BatchLoader(dataset: ds, size: 32, batchSize: 3, epoch: 2, shuffleSeed: 3407,
                                     augmenter: Augmenter(seed: 3407), workers: workers, prefetch: 2)
            var names: [String] = [], labels: [UInt8] = []
            while let b = try loader.nextBatch() {
                XCTAssertEqual(b.images.dtype, .float32)
                XCTAssertLessThanOrEqual(try b.images.amax().item(), 1)
                XCTAssertEqual(b.labels.dtype, .int64)
                names += b.names
                labels += try b.labels.to(dtype: .uint8).toArray(of: UInt8.self)
            }
            return (names, labels)
        }
        let one = try collect(workers: 1), three = try collect(workers: 3)
        XCTAssertEqual(one.0, three.0)
        XCTAssertEqual(one.1, three.1)
        XCTAssertEqual(Set(one.0).count, 7, "every sample once per epoch, the last batch partial")
        XCTAssertNotEqual(one.0, ds.samples.map(\.name), "shuffled")
        // A decoding error surfaces from nextBatch with the file's name.
        try Data("junk".utf8).write(to: URL(fileURLWithPath: dir + "/images/s4.png"))
        let loader = BatchLoader(dataset: ds, size: 32, batchSize: 7)
        XCTAssertThrowsError(try loader.nextBatch()) { error in XCTAssertTrue("\(error)".contains("s4.png"), "\(error)") }
    }

    /// A loader dropped mid-epoch without stop() is freed (its workers hold it only while building a
    /// batch), and its deinit stops the workers; they used to keep it, and themselves, alive for good.
    func testALoaderDroppedMidEpochIsFreed() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir, count: 7)
        var loader: BatchLoader? = BatchLoader(dataset: try CrackDataset(root: dir), size: 32, batchSize: 1, workers: 2, prefetch: 1)
        weak let dropped = loader
        _ = try loader?.nextBatch()
        loader = nil
        let deadline = Date().addingTimeInterval(10)
        while dropped != nil && Date() < deadline { usleep(10_000) }
        XCTAssertNil(dropped, "the workers still hold the loader")
    }
}
