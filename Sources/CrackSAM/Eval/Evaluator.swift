import Foundation

/// Scores of one model on one dataset variant.
public struct EvaluationResult: Codable, Equatable, Sendable {
    public var model: String
    public var dataset: String
    /// "clean", "case1", "case2" or "blur:K".
    public var variant: String
    public var images: Int
    /// Means over images with the authors' edge rules (what the paper reports).
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var iou: Double
    /// Σ|P∩G| / Σ|P∪G| over all pixels of all images (a different number: large images weigh more).
    public var pooledIoU: Double
    /// Each image's pixel counts, in the dataset's order (for a per-image report; not in the JSON summary).
    public var imageScores: [ImageScore] = []

    // "pooled_iou" in the JSON report (snake case would make it "pooled_io_u"), as in the CSV.
    enum CodingKeys: String, CodingKey {
        case model, dataset, variant, images, precision, recall, f1, iou
        case pooledIoU = "pooled_iou"
    }
}

/// One image's prediction against its label, at the label's size: |P|, |G| and |P∩G| in pixels.
public struct ImageScore: Equatable, Sendable {
    /// The sample's name (its image file's stem).
    public var image: String
    public var predicted: Int
    public var truth: Int
    public var intersection: Int

    /// Pr, Re, F1 and IoU with the authors' edge rules.
    public var scores: SegmentationScores { SegmentationScores(predicted: predicted, truth: truth, intersection: intersection) }
}

/// Anything that turns S×S RGB images into binary crack masks (0/1, S×S, row-major): CrackSAM, or a
/// stand-in in tests.
public protocol MaskPredictor {
    var inputSize: Int { get }
    /// How images of another size are brought to `inputSize`, and so how predictions go back.
    var resize: ResizeMethod { get }
    /// 0/1 masks at inputSize × inputSize, one per image (of any size).
    func predict(_ images: [Image]) throws -> [[UInt8]]
}

/// CrackSAM as a mask predictor: argmax over the logits' channels, crack = any class but 0.
public struct SAMPredictor: MaskPredictor {
    public let model: SAMModel
    public let device: Device
    public let amp: DType?
    public let resize: ResizeMethod

    public init(model: SAMModel, device: Device = .cpu, amp: DType? = nil, resize: ResizeMethod = .spline) {
        self.model = model
        self.device = device
        self.amp = amp
        self.resize = resize
    }

    public var inputSize: Int { model.config.imageSize }

    /// Images of any size as one input batch (B, 3, S, S) on `device`, each brought to S by `resize`.
    public static func inputBatch(_ images: [Image], size: Int, resize: ResizeMethod, device: Device) throws -> Tensor {
        // One image per thread: resampling a large photo (a spline through 12 megapixels) is the slow part.
        let inputs = try concurrentMap(images.count) { try Preprocess.image(images[$0], size: size, resize: resize) }
        return try Tensor.stack(inputs).to(device: device)
    }

    /// 0/1 crack masks (S × S each, row-major; crack = any class but 0) from logits (B, C+1, S, S).
    public static func masks(fromLogits logits: Tensor) throws -> [[UInt8]] {
        let (b, s) = (logits.size(0), logits.size(2) * logits.size(3))
        let flat = try logits.argmax(dim: 1).gt(0).to(device: .cpu).to(dtype: .uint8).toArray(of: UInt8.self)
        return (0..<b).map { Array(flat[($0 * s)..<(($0 + 1) * s)]) }
    }

    /// Logits (B, C+1, S, S) for images of any size (resized to S×S), in inference mode (under autocast when asked).
    func logits(_ images: [Image]) throws -> Tensor {
        let input = try SAMPredictor.inputBatch(images, size: inputSize, resize: resize, device: device)
        return try Torch.withInferenceMode {
            if let amp { return try Torch.withAutocast(device: device, dtype: amp) { try model(input).logits } }
            return try model(input).logits
        }
    }

    public func predict(_ images: [Image]) throws -> [[UInt8]] {
        try Torch.withInferenceMode { try SAMPredictor.masks(fromLogits: logits(images)) }
    }
}

/// Zero-shot evaluation: each image (at its own size) is degraded if asked, resized to S (the predictor's
/// ResizeMethod: by default the authors' cubic-spline zoom), segmented, and the prediction is resized back
/// (nearest) and scored against the label at the original size (REFERENCE "Evaluation").
public final class Evaluator {
    public let predictor: MaskPredictor
    public let name: String
    let batch: Int
    /// Data-parallel evaluation: each rank scores every worldSize-th image and the sums are all-reduced,
    /// so every rank returns the scores of the whole dataset.
    public let group: ProcessGroup?

    public init(predictor: MaskPredictor, name: String, batch: Int = 4, group: ProcessGroup? = nil) {
        self.predictor = predictor
        self.name = name
        self.batch = max(batch, 1)
        self.group = group
    }

    /// Nearest-neighbour resize of a single-channel mask, as OpenCV's INTER_NEAREST.
    public static func resizeNearest(_ mask: [UInt8], from: (Int, Int), to: (Int, Int)) -> [UInt8] {
        let (sw, sh) = from, (dw, dh) = to
        if sw == dw && sh == dh { return mask }
        var out = [UInt8](repeating: 0, count: dw * dh)
        // OpenCV's arithmetic to the bit: the reciprocal of its scale dw/sw, not sw/dw. The two differ where
        // x·sw/dw is a whole number (9·448/576 = 7 exactly, 1/(576/448)·9 just under it).
        let fx = 1 / (Double(dw) / Double(sw)), fy = 1 / (Double(dh) / Double(sh))
        for y in 0..<dh {
            let sy = min(Int((Double(y) * fy).rounded(.down)), sh - 1)
            for x in 0..<dw {
                out[y * dw + x] = mask[sy * sw + min(Int((Double(x) * fx).rounded(.down)), sw - 1)]
            }
        }
        return out
    }

    /// Crack pixels predicted, crack pixels in the label, and both, of one image (masks of one size, 0/1
    /// or any value for crack).
    public static func pixelCounts(predicted: [UInt8], truth: [UInt8]) -> (predicted: Int, truth: Int, intersection: Int) {
        var (a, b, both) = (0, 0, 0)
        for p in 0..<truth.count {
            let (pp, gg) = (predicted[p] != 0, truth[p] != 0)
            if pp { a += 1 }
            if gg { b += 1 }
            if pp && gg { both += 1 }
        }
        return (a, b, both)
    }

    /// Scores the model on the dataset (with the degradation applied), writing each image's mask into
    /// `savePredictions` when given. An evaluation that fails or is stopped is not reported, so the masks
    /// it wrote are removed again (and its folder, left empty): they would match no row, and keep the
    /// folder from the next run.
    public func evaluate(_ dataset: CrackDataset, name datasetName: String, degradation: Degradation? = nil,
                         savePredictions: String? = nil) throws -> EvaluationResult {
        let whole = dataset
        let mine = group.map { DataParallel.shard(whole.count, rank: $0.rank, worldSize: $0.worldSize) } ?? Array(0..<whole.count)
        let dataset = group == nil ? whole : whole.subset(mine)
        let s = predictor.inputSize
        var counts: [(predicted: Int, truth: Int, intersection: Int)] = []
        if let savePredictions { try Folder.make(savePredictions) }
        var written: [String] = [], finished = false
        defer {
            if !finished, let savePredictions {
                for file in written { unlink(file) }
                rmdir(savePredictions)  // only when empty: never another run's masks
            }
        }
        // With data parallelism a rank's failure (an image that broke since the check, say) is not thrown
        // before the all-reduce below: the others wait in it, and learn of it there.
        var failure: Error?
        do {
            for start in stride(from: 0, to: dataset.count, by: batch) {
                // A single process stops between batches when asked; ranks stop between evaluations (the
                // caller's agreed check), since their shards need not have the same number of batches.
                if group == nil && StopRequest.isRequested { throw StopRequest.Interrupted() }
                let indices = Array(start..<min(start + batch, dataset.count))
                // Decoding and degradation in parallel; the model runs on the whole batch.
                let items = try concurrentMap(indices.count) { j -> (Image, [UInt8]) in
                    var (image, label) = try dataset.loadOriginal(indices[j])
                    if let degradation { image = try degradation.apply(to: image) }
                    return (image, label)
                }
                let masks = try predictor.predict(items.map(\.0))
                for (j, (image, label)) in items.enumerated() {
                    let pred = predictor.resize.maskBack(masks[j], from: (s, s), to: (image.width, image.height))
                    counts.append(Evaluator.pixelCounts(predicted: pred, truth: label))
                    if let savePredictions {
                        let file = savePredictions + "/" + dataset.samples[indices[j]].name + ".png"
                        try Image(width: image.width, height: image.height, channels: 1, pixels: pred.map { $0 != 0 ? 255 : 0 }).write(to: file)
                        written.append(file)
                    }
                }
            }
        } catch where group != nil {
            failure = error
        }
        if let group {
            // Every rank's counts in their images' places (the shards are disjoint, so a sum gathers them;
            // float64 holds pixel counts exactly): each rank then scores the whole dataset in its order.
            var flat = [Double](repeating: 0, count: 3 * whole.count)
            for (k, i) in mine.enumerated() where k < counts.count {
                (flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) = (Double(counts[k].predicted), Double(counts[k].truth), Double(counts[k].intersection))
            }
            flat += group.failureFlags(failure)
            let gathered = try Tensor(flat, shape: [flat.count])
            try group.allReduce(gathered)
            let v = try gathered.toArray(of: Double.self)
            try group.throwIfAnyFailed(own: failure, flags: v[(3 * whole.count)...],
                                       work: "its share of \(datasetName) (\(degradation?.description ?? "clean"))")
            counts = (0..<whole.count).map { (Int(v[3 * $0]), Int(v[3 * $0 + 1]), Int(v[3 * $0 + 2])) }
        }
        let images = counts.enumerated().map { i, c in
            ImageScore(image: whole.samples[i].name, predicted: c.predicted, truth: c.truth, intersection: c.intersection)
        }
        let mean = SegmentationScores.mean(images.map(\.scores))
        let pooledIntersection = images.reduce(0) { $0 + $1.intersection }
        let pooledUnion = images.reduce(0) { $0 + $1.predicted + $1.truth - $1.intersection }
        var result = EvaluationResult(model: name, dataset: datasetName, variant: degradation?.description ?? "clean", images: images.count,
                                      precision: mean.precision, recall: mean.recall, f1: mean.f1, iou: mean.iou,
                                      pooledIoU: pooledUnion == 0 ? 1 : Double(pooledIntersection) / Double(pooledUnion))
        result.imageScores = images
        finished = true
        return result
    }
}
