import Foundation

/// Dataset problems users hit, each naming the file or folder.
public enum DatasetError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case notADataset(path: String)
    case empty(path: String)
    case missingMask(image: String, masksFolder: String)
    case maskSizeMismatch(mask: String, maskSize: [Int], imageSize: [Int])
    case listNamesMissingSample(list: String, line: Int, name: String)
    /// A list file naming a sample twice: it would be trained on, or scored, twice.
    case listNamesSampleTwice(list: String, line: Int, firstLine: Int, name: String)
    case unreadableList(path: String)
    /// Image files of a format that is not read (BMP, TIFF, …): skipping them would shrink the dataset unseen.
    case unsupportedFormat(file: String, count: Int)
    /// Two images of one name (a.jpg and a.png): masks, list files and saved predictions go by name.
    case duplicateName(name: String, images: [String])
    /// With several crack classes a mask holds class indices 0…classes; this one holds `value`.
    case labelOutOfRange(mask: String, value: Int, classes: Int)

    public var description: String {
        switch self {
        case .notADataset(let path): return "\(path): not a dataset (expected images/ and masks/ folders)"
        case .empty(let path): return "\(path): the dataset has no images"
        case .missingMask(let image, let folder):
            return "\(image): no mask with the same name in \(folder) (nor one with "
                + CrackDataset.maskSuffixes.joined(separator: ", ") + " added to it)"
        case .maskSizeMismatch(let mask, let m, let i):
            // Images are read upright by their EXIF orientation (as OpenCV reads them); a mask drawn on the
            // stored, sideways pixels then has the image's size transposed.
            let turned = m.count == 2 && m == [i[1], i[0]] && m[0] != m[1]
            return "\(mask): mask is \(m[0])×\(m[1]) but its image is \(i[0])×\(i[1])"
                + (turned ? " (images are read upright by their EXIF orientation, as OpenCV reads them: was the mask drawn on the sideways pixels?)" : "")
        case .listNamesMissingSample(let list, let line, let name): return "\(list):\(line): '\(Self.shown(name))' is not in the dataset"
        case .listNamesSampleTwice(let list, let line, let first, let name):
            return "\(list):\(line): '\(Self.shown(name))' is listed again (first on line \(first)); it would count twice"
        case .unreadableList(let path): return "\(path): cannot read the list file"
        case .unsupportedFormat(let file, let count):
            return "\(file): only PNG, JPEG and BMP are read; convert it" + (count > 1 ? " (and the \(count - 1) other such files in its folder)" : "")
        case .labelOutOfRange(let mask, let value, let classes):
            return "\(mask): holds the value \(value), but with \(classes) crack classes a mask holds class indices 0…\(classes) (0 = background)"
        case .duplicateName(let name, let images):
            return "\(images.joined(separator: " and ")) share the name '\(name)': samples are matched with masks and list files by name"
        }
    }

    /// A name from a file as a message shows it: invisible characters (NUL, a stray byte-order mark,
    /// other controls) written as \u{…}, and a runaway line cut short.
    static func shown(_ name: String) -> String {
        var out = ""
        for u in name.unicodeScalars {
            switch u.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator: out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out.count > 200 ? String(out.prefix(200)) + "… (\(name.count) characters)" : out
    }

    public var errorDescription: String? { description }
}

/// What reading every sample of a dataset found (`CrackDataset.verify`).
public struct DatasetCheck {
    /// Each sample's image size, upright.
    public var sizes: [(width: Int, height: Int)]
    /// Images turned upright by their EXIF orientation, by a turn that keeps their size (a flip, a
    /// half-turn, a square photo's quarter-turn), whose masks were not (a mask file carries none):
    /// (image, orientation). A mask drawn on the upright photo fits; one drawn on the stored pixels (as
    /// PIL, which ignores the orientation, shows them) does not, and nothing else catches it.
    public var turnedAgainstMasks: [(image: String, orientation: Int)]

    /// What the turn is, as a person sees it.
    static func turn(_ orientation: Int) -> String {
        switch orientation {
        case 2: return "mirrored"
        case 3: return "rotated 180°"
        case 4: return "flipped upside down"
        case 5: return "mirrored and rotated 90° counter-clockwise"
        case 6: return "rotated 90° clockwise"
        case 7: return "mirrored and rotated 90° clockwise"
        case 8: return "rotated 90° counter-clockwise"
        default: return "as stored"
        }
    }

    /// A line saying which images were turned against their masks, nil when none was.
    public func orientationWarning(dataset root: String) -> String? {
        guard let first = turnedAgainstMasks.first else { return nil }
        let n = turnedAgainstMasks.count
        return "\(root): \(n) image(s) carry an EXIF orientation and are read upright, as OpenCV reads them, while their masks carry "
            + "none (\(first.image): \(DatasetCheck.turn(first.orientation))\(n > 1 ? ", …" : "")); masks drawn on the stored "
            + "pixels (as PIL shows them) do not line up with such images: turn the masks, or strip the orientation from the images"
    }
}

/// A crack dataset: `images/` and `masks/` holding files of the same names (PNG, JPEG or BMP; a mask may
/// differ in extension, or carry a suffix: x.jpg's mask may be x_mask.png, x_gt.png, x_label.png, …),
/// optionally restricted by a list file of sample names (one per line, with or without extension).
/// Label = mask/255 > 0.5, or with several crack classes the mask's class indices.
public struct CrackDataset: Sendable {
    public struct Sample: Equatable, Sendable {
        public var name: String
        public var image: String
        public var mask: String
    }

    public let root: String
    public let samples: [Sample]
    /// Crack classes: 1 reads a mask as binary (above 127 is crack); more read its grey values as class
    /// indices 0…classes (0 = background), as a model with that many classes is trained on.
    public let classes: Int
    /// Masks no image took (an image deleted, a misspelt name): not used, and worth a warning.
    public private(set) var unusedMasks: [String] = []

    static let maskSuffixes = ["_mask", "_gt", "_GT", "_label", "_lab"]

    init(root: String, samples: [Sample], classes: Int) {
        self.root = root
        self.samples = samples
        self.classes = classes
    }

    /// The samples at `indices`, in that order (a rank's share of an evaluation).
    public func subset(_ indices: [Int]) -> CrackDataset {
        CrackDataset(root: root, samples: indices.map { samples[$0] }, classes: classes)
    }

    public init(root: String, list: String? = nil, classes: Int = 1) throws {
        self.root = root
        self.classes = classes
        let fm = FileManager.default
        let imagesDir = root + "/images", masksDir = root + "/masks"
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: imagesDir, isDirectory: &isDir), isDir.boolValue,
              fm.fileExists(atPath: masksDir, isDirectory: &isDir), isDir.boolValue else {
            throw DatasetError.notADataset(path: root)
        }
        func files(_ dir: String) throws -> [String] {
            let all = try fm.contentsOfDirectory(atPath: dir)
            let unsupported = all.filter { Image.unreadableImageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            if let first = unsupported.first { throw DatasetError.unsupportedFormat(file: dir + "/" + first, count: unsupported.count) }
            return all.filter { Image.readableExtensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
        }
        let images = try files(imagesDir)
        let masks = try files(masksDir)
        let maskByName = Set(masks)
        var maskByStem: [String: String] = [:]
        for m in masks { maskByStem[(m as NSString).deletingPathExtension] = maskByStem[(m as NSString).deletingPathExtension] ?? m }
        var all: [Sample] = []
        var imageByStem: [String: String] = [:]
        // Images with no mask: refused when they are used, which a list file may not do (a folder of
        // photos of which only the test split is labelled).
        var unlabelled: [(stem: String, image: String)] = []
        for file in images {
            let stem = (file as NSString).deletingPathExtension
            if let other = imageByStem.updateValue(file, forKey: stem) {
                throw DatasetError.duplicateName(name: stem, images: [imagesDir + "/" + other, imagesDir + "/" + file])
            }
            // The same name, else the same stem in another format, else the stem with the suffix some
            // datasets give their masks (x.jpg with x_mask.png, x_gt.png, x_label.png).
            let found = maskByName.contains(file) ? file
                : maskByStem[stem] ?? Self.maskSuffixes.lazy.compactMap { maskByStem[stem + $0] }.first
            guard let mask = found else {
                unlabelled.append((stem, imagesDir + "/" + file))
                continue
            }
            all.append(Sample(name: stem, image: imagesDir + "/" + file, mask: masksDir + "/" + mask))
        }
        if list == nil, let first = unlabelled.first {
            throw DatasetError.missingMask(image: first.image, masksFolder: masksDir)
        }
        if let list {
            let unlabelledByStem = Dictionary(unlabelled.map { ($0.stem, $0.image) }, uniquingKeysWith: { a, _ in a })
            guard var text = fm.contents(atPath: list).map({ String(decoding: $0, as: UTF8.self) }) else {
                throw DatasetError.unreadableList(path: list)
            }
            // Editors on Windows start UTF-8 files with a byte-order mark; it is not part of the first name.
            if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
            let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
            var chosen: [Sample] = []
            var lineOf: [String: Int] = [:]
            // Any line ending (Windows list files end in "\r\n", which Swift reads as one Character).
            for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
                let entry = raw.trimmingCharacters(in: .whitespacesAndNewlines)
                if entry.isEmpty || entry.hasPrefix("#") { continue }
                let stem = Image.readableExtensions.contains((entry as NSString).pathExtension.lowercased())
                    ? (entry as NSString).deletingPathExtension : entry
                guard let s = byName[stem] else {
                    if let image = unlabelledByStem[stem] { throw DatasetError.missingMask(image: image, masksFolder: masksDir) }
                    throw DatasetError.listNamesMissingSample(list: list, line: i + 1, name: entry)
                }
                if let first = lineOf.updateValue(i + 1, forKey: stem) {
                    throw DatasetError.listNamesSampleTwice(list: list, line: i + 1, firstLine: first, name: entry)
                }
                chosen.append(s)
            }
            all = chosen
        }
        guard !all.isEmpty else { throw DatasetError.empty(path: list ?? root) }
        samples = all
        if list == nil {
            let used = Set(all.map(\.mask))
            unusedMasks = masks.map { masksDir + "/" + $0 }.filter { !used.contains($0) }
        }
    }

    public var count: Int { samples.count }

    /// Reads every sample once (image, mask, their sizes), on all cores: a broken file is found now, not
    /// when it is first needed (for a validation set, after the first epochs of training).
    @discardableResult
    public func verify() throws -> DatasetCheck {
        let found = try concurrentMap(count) { i -> (width: Int, height: Int, turned: Int) in
            let (image, _, turned) = try load(i)
            return (image.width, image.height, turned)
        }
        return DatasetCheck(sizes: found.map { ($0.width, $0.height) },
                            turnedAgainstMasks: found.indices.compactMap { found[$0].turned == 1 ? nil : (samples[$0].image, found[$0].turned) })
    }

    /// The sample at its own size: RGB image and label (binary: mask/255 > 0.5, colour masks by their
    /// grey value as OpenCV converts colour to grey; with several classes, class indices). A mask must have its image's size.
    public func loadOriginal(_ index: Int) throws -> (image: Image, label: [UInt8]) {
        let (image, label, _) = try load(index)
        return (image, label)
    }

    /// The sample, and the EXIF orientation its image was turned upright from where its mask was not
    /// turned too and the turn kept the photo's size (1 otherwise): a quarter-turn of a photo that is not
    /// square swaps its sides, so a mask drawn on the stored pixels fails the size check (which says why),
    /// and one that passes it was drawn upright.
    private func load(_ index: Int) throws -> (image: Image, label: [UInt8], turned: Int) {
        let s = samples[index]
        let image = try Image.read(at: s.image).rgb()
        let mask = try Image.read(at: s.mask)
        let keepsSize = image.orientation <= 4 || image.width == image.height
        let turned = image.orientation != 1 && mask.orientation == 1 && keepsSize ? image.orientation : 1
        guard mask.width == image.width, mask.height == image.height else {
            throw DatasetError.maskSizeMismatch(mask: s.mask, maskSize: [mask.width, mask.height], imageSize: [image.width, image.height])
        }
        let c = mask.channels
        var label = [UInt8](repeating: 0, count: mask.width * mask.height)
        if classes > 1 {
            // Class indices: the grey value (a colour mask's first channel), checked against the classes.
            for p in 0..<label.count {
                let value = mask.pixels[p * c]
                guard Int(value) <= classes else { throw DatasetError.labelOutOfRange(mask: s.mask, value: Int(value), classes: classes) }
                label[p] = value
            }
            return (image, label, turned)
        }
        // Crack where the grey value is above 127 (REFERENCE: mask/255 > 0.5). A colour mask is made grey
        // as OpenCV makes it (its fixed-point luminance, 0.299 R + 0.587 G + 0.114 B), not by the channel
        // mean, which put green strokes (grey 149) under the threshold.
        for p in 0..<label.count {
            let grey: Int
            if c == 3 {
                let (r, g, b) = (Int(mask.pixels[3 * p]), Int(mask.pixels[3 * p + 1]), Int(mask.pixels[3 * p + 2]))
                grey = (4899 * r + 9617 * g + 1868 * b + 8192) >> 14
            } else {
                grey = Int(mask.pixels[p * c])
            }
            label[p] = grey > 127 ? 1 : 0
        }
        return (image, label, turned)
    }

    /// Image (3, S, S) uint8 and label (S, S) uint8 ∈ {0, 1}; images of another size are resized to S
    /// (OpenCV's bicubic for the image, nearest for the label).
    public func load(_ index: Int, size: Int) throws -> (image: Tensor, label: Tensor) {
        var (image, label) = try loadOriginal(index)
        if image.width != size || image.height != size {
            label = Evaluator.resizeNearest(label, from: (image.width, image.height), to: (size, size))
            image = try Degrade.resizeBicubic(image, width: size, height: size)
        }
        return (try image.tensor(), try Tensor(label, shape: [size, size]))
    }
}
