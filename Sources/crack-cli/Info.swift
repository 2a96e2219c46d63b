import ArgumentParser
import CrackSAM
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show libtorch, devices and threads, and measure matmul throughput.")

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Option(help: "CPU threads for libtorch (default: libtorch's choice).")
    var threads: Int?

    @Option(help: "Matrix side for the matmul measurement.")
    var matmulSize = 1024

    @Option(help: "Seconds per matmul measurement (0 skips it; default 1, or 0 with --vit).")
    var seconds: Double?

    @OptionGroup var model: ModelOptions
    @OptionGroup var peft: PEFTOptions

    func run() throws {
        if let threads {
            try requirePositive(threads, "--threads")
            Torch.threads = threads
        }
        let seconds = self.seconds ?? (model.vit == nil ? 1.0 : 0.0)
        guard seconds.isFinite, (0...3600).contains(seconds) else { throw ValidationError("--seconds must be between 0 and 3600 (got \(seconds))") }
        guard (1...16384).contains(matmulSize) else { throw ValidationError("--matmul-size must be between 1 and 16384 (got \(matmulSize))") }
        var modelReport: [String: Any]?
        if let config = try model.config() {
            // Built on the meta device: shapes only, so counting ViT-H allocates nothing.
            let sam = try SAMModel(config: config, device: .meta)
            let delta = try peft.resolve(over: PEFTConfig(deltaType: .none))
            if delta.deltaType != .none { try sam.applyPEFT(delta) }
            modelReport = [
                "delta_type": delta.deltaType.rawValue,
                "backbone": config.backbone.rawValue, "image_size": config.imageSize, "num_classes": config.numClasses,
                "total_parameters": sam.parameterCount, "trainable_parameters": sam.trainableParameterCount,
                "image_encoder_parameters": sam.imageEncoder.parameterCount,
                "prompt_encoder_parameters": sam.promptEncoder.parameterCount,
                "mask_decoder_parameters": sam.maskDecoder.parameterCount,
            ]
        }
        var devices: [[String: Any]] = []
        var cpu: [String: Any] = ["device": "cpu", "threads": Torch.threads]
        if seconds > 0 {
            cpu["matmul_gflops"] = try Diagnostics.matmulGFLOPS(device: .cpu, size: matmulSize, seconds: seconds)
        }
        devices.append(cpu)
        for i in 0..<CUDA.deviceCount {
            var d: [String: Any] = ["device": "cuda:\(i)"]
            if let mem = try? CUDA.memoryInfo(device: i) { d["memory_total_bytes"] = mem.total; d["memory_free_bytes"] = mem.free }
            if seconds > 0 {
                d["matmul_gflops_fp32"] = try Diagnostics.matmulGFLOPS(device: .cuda(i), size: max(matmulSize, 4096), seconds: seconds)
                d["matmul_gflops_fp16"] = try Diagnostics.matmulGFLOPS(device: .cuda(i), size: max(matmulSize, 4096), seconds: seconds,
                                                                        dtype: .float16)
            }
            devices.append(d)
        }
        var report: [String: Any] = [
            "libtorch": Torch.version, "cuda_available": CUDA.isAvailable, "cuda_devices": CUDA.deviceCount,
            "tf32": Torch.allowTF32, "devices": devices, "nccl_compiled": ProcessGroup.ncclAvailable,
            "cuda_graphs_compiled": CUDAGraph.isCompiled,
        ]
        if let problem = CUDA.loadProblem { report["cuda_load_problem"] = problem }
        if let modelReport { report.merge(modelReport) { $1 } }
        if json { try printJSON(report); return }
        print("libtorch      \(Torch.version)")
        print("CUDA          \(CUDA.isAvailable ? "\(CUDA.deviceCount) device(s)" : "not available")")
        if let problem = CUDA.loadProblem { print("              libtorch_cuda is present but did not load: \(problem)") }
        print("built with    NCCL \(ProcessGroup.ncclAvailable ? "yes" : "no"), CUDA graphs \(CUDAGraph.isCompiled ? "yes" : "no")")
        print("CPU threads   \(Torch.threads)")
        for d in devices {
            let name = d["device"] as! String
            var parts: [String] = []
            if let g = d["matmul_gflops"] as? Double { parts.append(String(format: "matmul %ld² fp32: %.1f GFLOP/s", matmulSize, g)) }
            if let g = d["matmul_gflops_fp32"] as? Double { parts.append(String(format: "fp32 %.0f GFLOP/s", g)) }
            if let g = d["matmul_gflops_fp16"] as? Double { parts.append(String(format: "fp16 %.0f GFLOP/s", g)) }
            if let t = d["memory_total_bytes"] as? Int { parts.append(String(format: "%.1f GiB", Double(t) / 1_073_741_824)) }
            if !parts.isEmpty { print(name.padding(toLength: 14, withPad: " ", startingAt: 0) + parts.joined(separator: ", ")) }
        }
        if let m = modelReport {
            func n(_ key: String) -> String { (m[key] as! Int).formatted(.number.grouping(.automatic)) }
            print("")
            print("model         \(m["backbone"]!) at \(m["image_size"]!) px, \(m["num_classes"]!) class(es), delta: \(m["delta_type"]!)")
            print("  image encoder   \(n("image_encoder_parameters"))  (frozen but for the delta)")
            print("  prompt encoder  \(n("prompt_encoder_parameters"))")
            print("  mask decoder    \(n("mask_decoder_parameters"))")
            print("  total           \(n("total_parameters"))")
            print("  trainable       \(n("trainable_parameters"))")
        }
    }
}
