import ArgumentParser
import CrackSAM
import Foundation

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run CrackSAM on images and write the raw mask logits and image embeddings.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var peft: PEFTOptions

    @Option(help: "Official SAM checkpoint (sam_vit_*.pth), or a model exported by `export` (merged or full); default: Meta's file in weights/; not needed for --vit custom.")
    var sam: String?

    @Option(help: "A trained delta (authors' format .pth, or .safetensors); its recorded settings are used unless flags say otherwise.")
    var delta: String?

    @Argument(help: "PNG, JPEG or BMP images, or folders of them.")
    var inputs: [String]

    @Option(help: "resize: each image resized to S and the mask back (as the paper); tile: S×S windows at full resolution.")
    var mode = "resize"

    @Option(help: "Tile overlap in pixels (tile mode; default 64, or S/4 when that is less).")
    var overlap: Int?

    @Option(help: "Resize mode's resampling of an image that is not S×S: spline (the authors' scipy.ndimage.zoom, cubic spline on [0, 1] floats, the mask back with its order 0) or opencv (8-bit bicubic, nearest back). Default: spline.")
    var resize: ResizeMethod?

    @Option(help: "Write <name>_mask.png, <name>_overlay.png and measurements.csv/.json into this folder.")
    var out: String?

    @Flag(help: "Replace the results of an earlier predict: its measurements.csv/.json in --out, and the --save-logits/--save-embedding files.")
    var force = false

    @Option(help: "Pixel size in millimetres: measurements in mm and mm².")
    var mmPerPixel: Double?

    @Option(help: "Pinholes of at most this many pixels inside a crack (specks the model left out, no wider than they lie deep in the crack) count as crack in the measurements; the masks are written as predicted. 0 keeps every hole. Default: \(CrackGeometry.defaultMaxHoleArea).")
    var fillHoles: Int?

    @Option(help: "Write logits (key 'logits', float32 [N, num_classes+1, S, S]) to this .safetensors file.")
    var saveLogits: String?

    @Option(help: "Write image embeddings (key 'embedding', [N, 256, S/16, S/16]) to this .safetensors file.")
    var saveEmbedding: String?

    @Flag(help: "Also load the checkpoint's mask tokens, hypernetworks and IoU head. Without it they are kept for a model this tool exported (or any head without Meta's 4 tokens), and Meta's are replaced by CrackSAM's fresh, seeded initialisation.")
    var keepDecoderHead = false

    @Flag(help: "Load what fits and list missing, unexpected and mis-shaped keys as a warning instead of failing.")
    var nonStrict = false

    @Option(help: "Seed for the fresh decoder head.")
    var seed: UInt64 = 3407

    @Option(help: "Images per forward pass.")
    var batch = 4

    @Option(help: "cpu, cuda or cuda:N.")
    var device = "cpu"

    @Option(help: "libtorch CPU threads.")
    var threads: Int?

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one image or folder") }
        guard ["resize", "tile"].contains(mode) else { throw ValidationError("--mode must be resize or tile") }
        // Options the chosen mode would ignore without a word.
        if mode == "tile" && resize != nil {
            throw ValidationError("--resize is resize mode's resampling; tile mode reads S×S windows at full resolution")
        }
        if mode == "resize" && overlap != nil { throw ValidationError("--overlap is for --mode tile") }
        if force && out == nil && saveLogits == nil && saveEmbedding == nil {
            throw ValidationError("--force replaces an earlier predict's results in --out FOLDER (or --save-logits/--save-embedding), which is not given")
        }
        if mmPerPixel != nil && out == nil {
            throw ValidationError("--mm-per-pixel sets the units of the measurements, which are written with --out FOLDER")
        }
        if let fillHoles {
            if out == nil { throw ValidationError("--fill-holes is for the measurements, which are written with --out FOLDER") }
            guard fillHoles >= 0 else { throw ValidationError("--fill-holes must be 0 or more pixels (got \(fillHoles))") }
        }
        if mode == "tile" && (saveLogits != nil || saveEmbedding != nil) {
            throw ValidationError("--save-logits/--save-embedding describe the S×S forward of resize mode")
        }
        try requirePositive(batch, "--batch")
        if let threads { try requirePositive(threads, "--threads") }
        guard Device(device) != nil else { throw ValidationError("--device must be cpu, cuda or cuda:N (got '\(device)')") }
        // NaN used to fail in the JSON writer after every image had run; 0 gave lengths of 0 mm.
        // A metre per pixel is already a satellite's view; past it, areas overflow into inf.
        if let mmPerPixel, !(mmPerPixel.isFinite && mmPerPixel >= 1e-6 && mmPerPixel <= 1000) {
            throw ValidationError("--mm-per-pixel must be a pixel size from 1e-6 to 1000 mm (got \(mmPerPixel))")
        }
        // Checked before the work: they used to fail only when written, after every image had run.
        for (option, path) in [("--save-logits", saveLogits), ("--save-embedding", saveEmbedding)] {
            guard let path else { continue }
            guard path.lowercased().hasSuffix(".safetensors") else {
                throw ValidationError("\(option) \(path): the tensors are written as safetensors; name the file .safetensors")
            }
            try requireNotAFolder(path, option)
        }
        try requireDistinctOutputs([(saveLogits, "--save-logits"), (saveEmbedding, "--save-embedding")].compactMap { p, o in p.map { ($0, o) } })
    }

    /// A size for the CSV and the summary line: in pixels with `pixels`'s fixed decimals; in millimetres
    /// with 6 significant digits, since a microscope's pixel (down to 1e-6 mm) gives areas of 1e-9 mm²,
    /// which fixed decimals print as 0.
    static func shown(_ value: Double, _ unit: String, pixels: String) -> String {
        String(format: unit == "px" ? pixels : "%.6g", value)
    }

    func run() throws {
        if let threads { Torch.threads = threads }
        // The tensors are written after every image has run: their folders exist first.
        if let saveLogits { try prepareFolder(for: saveLogits, "--save-logits") }
        if let saveEmbedding { try prepareFolder(for: saveEmbedding, "--save-embedding") }
        // An earlier run's measurements are not replaced without a word (and a run whose every input
        // fails would leave them empty): refused before the model is built.
        if let out, !force, let earlier = ["measurements.json", "measurements.csv"].first(where: { FileManager.default.fileExists(atPath: out + "/" + $0) }) {
            throw ValidationError("\(out) holds the results of an earlier predict (\(earlier)); pass --force to replace them, or choose another --out")
        }
        for (option, path) in [("--save-logits", saveLogits), ("--save-embedding", saveEmbedding)] {
            if let path, !force, FileManager.default.fileExists(atPath: path) {
                throw ValidationError("\(option) \(path) exists (an earlier predict's?); pass --force to replace it, or name another file")
            }
        }
        let resize = self.resize ?? .spline
        let device = Device(device)!
        try device.requireAvailable()
        var builder = ModelBuilder(model: model, peft: peft, sam: sam, delta: delta, keepDecoderHead: keepDecoderHead ? true : nil,
                                   nonStrict: nonStrict, seed: seed)
        builder.freshDelta = .refused
        let net = try builder.build()
        let config = net.config
        if device != .cpu { try net.move(to: device) }

        var images: [String] = []
        for input in inputs {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: input, isDirectory: &isDir), isDir.boolValue {
                // Other image formats are kept in the list: reading them fails, and they are reported as skipped.
                // Predicting into the folder it reads: the masks and overlays written there are not inputs.
                let isOut = out.map { samePath($0, input) } ?? false
                let files = try FileManager.default.contentsOfDirectory(atPath: input).sorted().filter {
                    let ext = ($0 as NSString).pathExtension.lowercased()
                    if isOut && ($0.hasSuffix("_mask.png") || $0.hasSuffix("_overlay.png")) { return false }
                    return Image.readableExtensions.contains(ext) || Image.unreadableImageExtensions.contains(ext)
                }
                images += files.map { input + "/" + $0 }
            } else {
                images.append(input)
            }
        }
        guard !images.isEmpty else { throw ValidationError("no PNG, JPEG or BMP files in \(inputs.joined(separator: ", "))") }
        if let out {
            // <stem>_mask.png and <stem>_overlay.png: two inputs of one stem would overwrite each other's. (A
            // file of a format that is not read writes nothing: it is reported as skipped.)
            var byStem: [String: String] = [:]
            for path in images where !Image.unreadableImageExtensions.contains((path as NSString).pathExtension.lowercased()) {
                let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
                if let other = byStem.updateValue(path, forKey: stem) {
                    throw ValidationError("\(other) and \(path) would both write \(out)/\(stem)_mask.png: predict them into different --out folders")
                }
            }
            try Folder.make(out)
        }
        let predictor = SAMPredictor(model: net, device: device, resize: resize)
        let s = config.imageSize
        // Tiles step by S − overlap: an overlap outside 0..<S has no such step, and past S/2 every pixel
        // is segmented more than four times (at S − 1, a step of 1 pixel: a tile per pixel, for hours).
        let overlap = self.overlap ?? min(64, s / 4)
        guard mode != "tile" || (0...s / 2).contains(overlap) else {
            throw ValidationError("--overlap must be from 0 to \(s / 2), half the tile size S = \(s) (got \(overlap))")
        }
        var logits: [Tensor] = []
        var embeddings: [Tensor] = []
        var measurements: [ImageMeasurement] = []
        // An unreadable image is reported and skipped: the others' results are still written, and the
        // command fails at the end, naming it.
        var done: [String] = [], unreadable: [String] = []
        // Ctrl-C or SIGTERM stops between batches; the measurements and tensors of the images done are
        // still written (a second signal ends the process at once).
        StopRequest.catchSignals()
        var interrupted = false
        for start in stride(from: 0, to: images.count, by: batch) {
            if StopRequest.isRequested {
                interrupted = true
                break
            }
            var paths: [String] = [], originals: [Image] = []
            for path in images[start..<min(start + batch, images.count)] {
                do {
                    originals.append(try Image.read(at: path).rgb())
                    paths.append(path)
                } catch {
                    FileHandle.standardError.write(Data("skipped: \(error)\n".utf8))
                    unreadable.append(path)
                }
            }
            guard !paths.isEmpty else { continue }
            var masks: [[UInt8]] = []
            if mode == "tile" {
                do {
                    for image in originals {
                        let plan = TilePlan(width: image.width, height: image.height, tile: s, overlap: overlap)
                        masks.append(try plan.run(image, with: predictor, batch: batch).map { $0 > 0.5 ? 1 : 0 })
                    }
                } catch is StopRequest.Interrupted {
                    // Stopped inside a photo: the photos tiled whole are written, the one in progress is not.
                    interrupted = true
                    paths.removeLast(paths.count - masks.count)
                    originals.removeLast(originals.count - masks.count)
                }
            } else {
                let batchTensor = try SAMPredictor.inputBatch(originals, size: s, resize: resize, device: device)
                let output = try Torch.withInferenceMode { try net(batchTensor) }
                if saveLogits != nil { logits.append(try output.logits.to(device: .cpu, dtype: .float32)) }
                if saveEmbedding != nil { embeddings.append(try output.imageEmbedding.to(device: .cpu, dtype: .float32)) }
                for (mask, image) in zip(try SAMPredictor.masks(fromLogits: output.logits), originals) {
                    masks.append(resize.maskBack(mask, from: (s, s), to: (image.width, image.height)))
                }
            }
            done += paths
            for (j, path) in paths.enumerated() {
                let image = originals[j], mask = masks[j]
                let fraction = Double(mask.reduce(0) { $0 + Int($1) }) / Double(mask.count)
                var line = String(format: "%@  crack pixels %.2f%%", path, 100 * fraction)
                if let out {
                    let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
                    try Image(width: image.width, height: image.height, channels: 1, pixels: mask.map { $0 != 0 ? 255 : 0 })
                        .write(to: "\(out)/\(stem)_mask.png")
                    var overlay = image.pixels
                    for p in 0..<mask.count where mask[p] != 0 {
                        overlay[p * 3] = UInt8(0.45 * Double(overlay[p * 3]) + 0.55 * 255)
                        overlay[p * 3 + 1] = UInt8(0.45 * Double(overlay[p * 3 + 1]))
                        overlay[p * 3 + 2] = UInt8(0.45 * Double(overlay[p * 3 + 2]))
                    }
                    try Image(width: image.width, height: image.height, channels: 3, pixels: overlay).write(to: "\(out)/\(stem)_overlay.png")
                    let m = CrackGeometry.measure(mask, width: image.width, height: image.height, image: path, mmPerPixel: mmPerPixel,
                                                  maxHoleArea: fillHoles ?? CrackGeometry.defaultMaxHoleArea)
                    measurements.append(m)
                    line += String(format: ", %ld crack(s), length %@ %@, mean width %@ %@", m.cracks.count,
                                   Predict.shown(m.totalLength, m.unit, pixels: "%.1f"), m.unit, Predict.shown(m.meanWidth, m.unit, pixels: "%.2f"), m.unit)
                }
                print(line)
            }
            if interrupted { break }
        }
        // Nothing predicted (every input unreadable, or stopped before the first): nothing to write, and
        // no empty measurements that a retry would then have to --force over.
        if let out, !done.isEmpty {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            try AtomicFile.write(try encoder.encode(measurements), to: out + "/measurements.json")
            var csv = ["image,crack,unit,area,length,mean_width,max_width,orientation_deg,pixels"]
            for m in measurements {
                let sizes = { (values: [Double]) in values.map { Predict.shown($0, m.unit, pixels: "%.4f") }.joined(separator: ",") }
                csv.append(String(format: "%@,all,%@,%@,,%ld", EvaluationReport.csvField(m.image), m.unit,
                                  sizes([m.totalArea, m.totalLength, m.meanWidth, m.maxWidth]), m.cracks.reduce(0) { $0 + $1.pixels }))
                for c in m.cracks {
                    csv.append(String(format: "%@,%ld,%@,%@,%.2f,%ld", EvaluationReport.csvField(m.image), c.id, m.unit,
                                      sizes([c.area, c.length, c.meanWidth, c.maxWidth]), c.orientation, c.pixels))
                }
            }
            try AtomicFile.write(Data((csv.joined(separator: "\n") + "\n").utf8), to: out + "/measurements.csv")
            print("masks, overlays and measurements → \(out)")
        }
        let names = String(decoding: try JSONSerialization.data(withJSONObject: done), as: UTF8.self)
        let metadata = ["images": names, "backbone": config.backbone.rawValue, "image_size": String(config.imageSize)]
        if let saveLogits, !logits.isEmpty {
            try SafeTensors.save(["logits": try Tensor.cat(logits)], metadata: metadata, to: saveLogits)
            print("logits → \(saveLogits)")
        }
        if let saveEmbedding, !embeddings.isEmpty {
            try SafeTensors.save(["embedding": try Tensor.cat(embeddings)], metadata: metadata, to: saveEmbedding)
            print("embeddings → \(saveEmbedding)")
        }
        if interrupted {
            throw CommandFailure(description: "stopped by a signal after \(done.count + unreadable.count) of \(images.count) images; "
                + "the results of the \(done.count) predicted are written" + (unreadable.isEmpty ? "" : " (skipped: " + unreadable.joined(separator: ", ") + ")"))
        }
        guard unreadable.isEmpty else {
            throw CommandFailure(description: "\(unreadable.count) of \(images.count) images could not be read and were skipped: "
                + unreadable.joined(separator: ", ") + (done.isEmpty ? "" : " (the other \(done.count) were predicted)"))
        }
    }
}
