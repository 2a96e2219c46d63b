import ArgumentParser
import CrackSAM
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks whose figures go in docs/BENCHMARKS.md.",
        subcommands: [Ops.self, Encoder.self])

    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per-op overhead of a loop of tiny ops (a+b, *, relu, sum on 2×2), µs per op.")

        @Option(help: "Loop iterations (4 ops each).")
        var iterations = 50_000

        @Option(help: "libtorch CPU threads.")
        var threads = 1

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            Torch.threads = threads
            let us = try Diagnostics.tinyOpOverhead(iterations: iterations)
            if json {
                try printJSON(["us_per_op": us, "iterations": iterations, "threads": threads, "libtorch": Torch.version])
            } else {
                print(String(format: "swift: %.3f µs/op (%d iterations × 4 ops, %d thread(s))", us, iterations, threads))
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

        @Option(help: "Autocast dtype on CUDA: fp16, bf16 or off.")
        var amp = "off"

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            if let threads { Torch.threads = threads }
            guard let device = Device(device) else { throw ValidationError("bad --device '\(self.device)'") }
            var config = try model.config() ?? .vitB()
            config.numClasses = model.numClasses
            let encoder = try ParameterInit.withDevice(device) { try ImageEncoderViT(config: config) }
            let input = try Tensor.rand([batch, 3, config.imageSize, config.imageSize], device: device)
            let dtype: DType? = amp == "off" ? nil : DType(name: amp)
            func forward() throws {
                if let dtype, device != .cpu {
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
            let median = times.sorted()[times.count / 2]
            if json {
                try printJSON(["backbone": config.backbone.rawValue, "image_size": config.imageSize, "batch": batch,
                               "threads": Torch.threads, "device": "\(device)", "median_seconds": median, "times": times])
            } else {
                print(String(format: "%@ encoder at %d px, batch %d, %@, %d thread(s): median %.3f s over %d runs",
                             config.backbone.rawValue, config.imageSize, batch, "\(device)", Torch.threads, median, iterations))
            }
        }
    }
}
