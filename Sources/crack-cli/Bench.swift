import ArgumentParser
import CrackSAM
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks whose figures go in docs/BENCHMARKS.md.",
        subcommands: [Ops.self, Encoder.self, DataLoading.self, TrainStepBench.self, InferBench.self, Agree.self, GraphAgree.self])

    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per-op overhead of a loop of tiny ops (a+b, *, relu, sum on 2×2), µs per op.")

        @Option(help: "Loop iterations (4 ops each).")
        var iterations = 50_000

        @Option(help: "libtorch CPU threads.")
        var threads = 1

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            try requirePositive(iterations, "--iterations")
            try requirePositive(threads, "--threads")
        }

        func run() throws {
            Torch.threads = threads
            let us = try Diagnostics.tinyOpOverhead(iterations: iterations)
            if json {
                try printJSON(["us_per_op": us, "iterations": iterations, "threads": threads, "libtorch": Torch.version])
            } else {
                print(String(format: "swift: %.3f µs/op (%ld iterations × 4 ops, %ld thread(s))", us, iterations, threads))
            }
        }
    }

    struct Encoder: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Image-encoder forward time (random weights, inference mode); median of the timed runs.")

        @OptionGroup var model: ModelOptions

        @Option(help: "Images per forward.")
        var batch = 1

        @Option(help: "Timed forwards (after one warm-up).")
        var iterations = 5

        @Option(help: "libtorch CPU threads.")
        var threads: Int?

        @Option(help: "cpu, cuda or cuda:N.")
        var device = "cpu"

        @Option(help: "Autocast dtype: fp16, bf16 or off (on the CPU too, as bench train).")
        var amp = "off"

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            try requirePositive(batch, "--batch")
            try requirePositive(iterations, "--iterations")
            if let threads { try requirePositive(threads, "--threads") }
            _ = try autocastDType(amp)
        }

        func run() throws {
            if let threads { Torch.threads = threads }
            guard let device = Device(device) else { throw ValidationError("bad --device '\(self.device)'") }
            // ViT-B unless --vit says otherwise, with the size flags applied (they were dropped without --vit).
            var m = model
            if m.vit == nil { m.vit = "b" }
            guard var config = try m.config() else { throw ValidationError("--vit is required") }
            config.numClasses = model.numClasses
            let encoder = try ParameterInit.withDevice(device) { try ImageEncoderViT(config: config) }
            let input = try Tensor.rand([batch, 3, config.imageSize, config.imageSize], device: device)
            let dtype = try autocastDType(amp)
            func forward() throws {
                if let dtype {
                    _ = try Torch.withAutocast(device: device, dtype: dtype) { try encoder(input) }
                } else {
                    _ = try encoder(input)
                }
                if case .cuda(let i) = device { try CUDA.synchronize(device: i) }
            }
            let times: [Double] = try Torch.withInferenceMode {
                try forward()
                return try (0..<iterations).map { _ in
                    let start = DispatchTime.now().uptimeNanoseconds
                    try forward()
                    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                }
            }
            // The middle run, or the mean of the middle two (an even count gave the slower one).
            let sorted = times.sorted()
            let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            if json {
                try printJSON(["backbone": config.backbone.rawValue, "image_size": config.imageSize, "batch": batch,
                               "threads": Torch.threads, "device": "\(device)", "amp": amp, "median_seconds": median, "times": times])
            } else {
                print(String(format: "%@ encoder at %ld px, batch %ld, amp %@, %@, %ld thread(s): median %.3f s over %ld runs",
                             config.backbone.rawValue, config.imageSize, batch, amp, "\(device)", Torch.threads, median, iterations))
            }
        }
    }

    struct DataLoading: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "data",
            abstract: "Images/s the training loader sustains (decode + augment + batch), without a model.")

        @Option(help: "Dataset folder; default: a generated set of 448×448 JPEG photos with PNG masks.")
        var data: String?

        @Option(help: "Input size S.") var imageSize = 448
        @Option(help: "Images per batch.") var batch = 8
        @Option(help: "Loader threads.") var workers = 2
        @Option(help: "Epochs to time (after one warm-up batch).") var epochs = 2
        @Flag(help: "Disable augmentation.") var noAugment = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            try requirePositive(batch, "--batch")
            try requirePositive(workers, "--workers")
            try requirePositive(epochs, "--epochs")
            // As for models (SAMConfig's limit): a larger square is an allocation that fails in a loader thread.
            guard (16...16384).contains(imageSize) else { throw ValidationError("--image-size must be between 16 and 16384 (got \(imageSize))") }
        }

        func run() throws {
            var root = data
            if root == nil {
                root = NSTemporaryDirectory() + "cracksam-bench-data-\(getpid())"
                try generate(root!, count: 64)
            }
            let dataset = try CrackDataset(root: root!)
            var images = 0
            var seconds = 0.0
            for epoch in 0..<epochs {
                let loader = BatchLoader(dataset: dataset, size: imageSize, batchSize: batch, epoch: epoch, shuffleSeed: 1,
                                         augmenter: noAugment ? nil : Augmenter(seed: 1), workers: workers)
                let start = DispatchTime.now().uptimeNanoseconds
                while let b = try loader.nextBatch() { images += b.names.count }
                seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }
            if data == nil { try? FileManager.default.removeItem(atPath: root!) }
            let rate = Double(images) / seconds
            if json {
                try printJSON(["images_per_s": rate, "images": images, "seconds": seconds, "workers": workers, "batch": batch,
                               "image_size": imageSize, "augment": !noAugment])
            } else {
                print(String(format: "%.1f images/s (%ld images in %.2f s, %ld workers, batch %ld, %ld px, augmentation %@)", rate, images,
                             seconds, workers, batch, imageSize, noAugment ? "off" : "on"))
            }
        }

        /// Photo-like noise with a dark line: JPEG images (as crack datasets ship) and PNG masks.
        func generate(_ root: String, count: Int) throws {
            try FileManager.default.createDirectory(atPath: root + "/images", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/masks", withIntermediateDirectories: true)
            var rng = SplitMix64(seed: 7)
            let n = 448
            for i in 0..<count {
                var rgb = [UInt8](repeating: 0, count: n * n * 3)
                var mask = [UInt8](repeating: 0, count: n * n)
                for j in 0..<(n * n * 3) { rgb[j] = UInt8(110 + Int(rng.next() % 60)) }
                let x0 = Int(rng.next() % UInt64(n - 40)) + 20
                for y in 0..<n {
                    let x = x0 + Int(12 * sin(Double(y) / 40))
                    for dx in -2...2 { mask[y * n + x + dx] = 255; for c in 0..<3 { rgb[(y * n + x + dx) * 3 + c] = 35 } }
                }
                try Image(width: n, height: n, channels: 3, pixels: rgb).write(to: root + "/images/\(i).jpg", jpegQuality: 90)
                try Image(width: n, height: n, channels: 1, pixels: mask).write(to: root + "/masks/\(i).png")
            }
        }
    }
}
