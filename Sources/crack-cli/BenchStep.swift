import ArgumentParser
import CrackSAM
import Foundation

/// What `bench train` and `bench infer` share: the model (random weights in SAM's layout, the delta
/// injected), the device, and the matmul peak measured in the same run for MFU.
struct StepBenchOptions: ParsableArguments {
    @OptionGroup var model: ModelOptions
    @OptionGroup var peft: PEFTOptions
    @Option(help: "Images per step.") var batch = 8
    @Option(help: "Autocast: bf16, fp16 or off (default bf16 on CUDA, off on the CPU).") var amp: String?
    @Option(help: "Timed steps.") var steps = 20
    @Option(help: "Untimed warm-up steps before them.") var warmup = 3
    @Option(help: "cpu, cuda or cuda:N.") var device = "cpu"
    @Option(help: "libtorch CPU threads.") var threads: Int?
    @Option(help: "Side of the square matrices of the matmul peak measurement (default 8192 on CUDA, 1024 on the CPU).")
    var peakSize: Int?
    @Flag(help: "TF32 matmuls off (on CUDA).") var noTF32 = false
    @Flag(help: "Recompute the encoder's activations in the backward (bench train).") var checkpointActivations = false
    @Flag(inversion: .prefixedNo, help: "Convolutions on channels-last (NHWC) tensors (default: on CUDA, off on the CPU).")
    var channelsLast: Bool?
    @Flag(help: "Capture the training step in a CUDA graph and time its replays (bench train, CUDA).") var cudaGraph = false
    @Option(help: "After the timed steps, run this many more under libtorch's profiler and print where the time goes (ops by self device time and kernels on CUDA, ops by self host time on the CPU).")
    var profileSteps = 0
    @Option(help: "With --profile-steps: also write the profile's Chrome trace here, with each op's input shapes (open it in Perfetto; scripts/trace-report sums it up).") var trace: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        try requirePositive(batch, "--batch")
        try requirePositive(steps, "--steps")
        if warmup < 0 { throw ValidationError("--warmup must be 0 or more (got \(warmup))") }
        if let threads { try requirePositive(threads, "--threads") }
        // A small product measures launch overhead, not the peak: MFU against it came out above 100 %.
        if let peakSize, !(256...65536).contains(peakSize) { throw ValidationError("--peak-size must be between 256 and 65536 (got \(peakSize))") }
        if profileSteps != 0 { try requirePositive(profileSteps, "--profile-steps") }
        if trace != nil && profileSteps == 0 { throw ValidationError("--trace needs --profile-steps N") }
        // libtorch's trace writer says nothing when it cannot write (a folder, a missing one): checked first.
        if let trace { try requireNotAFolder(trace, "--trace") }
        // Found only after the peak measurement and the warm-up steps, or (graph-agree) after every step.
        if cudaGraph, Device(device) == .cpu { throw ValidationError("--cuda-graph captures the step on a CUDA device: pass --device cuda") }
    }

    func setUp() throws -> (net: SAMModel, device: Device, amp: TrainingOptions.AMP) {
        if let trace { try prepareFolder(for: trace, "--trace") }
        if let threads { Torch.threads = threads }
        guard let dev = Device(device) else { throw ValidationError("--device must be cpu, cuda or cuda:N") }
        let ampName = amp ?? (dev == .cpu ? "off" : "bf16")
        guard let a = TrainingOptions.AMP(rawValue: ampName) else { throw ValidationError("--amp must be fp16, bf16 or off (got '\(ampName)')") }
        warnIfFloat16OnCPU(a.dtype, device: dev)
        var m = model
        if m.vit == nil { m.vit = "b" }
        if m.imageSize == nil { m.imageSize = 448 }
        guard let config = try m.config() else { throw ValidationError("--vit is required") }
        let peftConfig = try peft.resolve(over: PEFTConfig(deltaType: .lora))
        Torch.allowTF32 = !noTF32
        Torch.channelsLastConvolutions = channelsLast ?? (dev != .cpu)
        try Torch.manualSeed(0)
        let net = try ParameterInit.withDevice(dev) { () throws -> SAMModel in
            let net = try SAMModel(config: config)
            try net.applyPEFT(peftConfig)
            return net
        }
        return (net, dev, a)
    }

    /// Dense matmul throughput in the dtype the model's products run in (the autocast dtype, on the CPU
    /// as on CUDA), TFLOP/s: a bf16 step measured against a float32 peak would report an MFU above 100 %.
    /// The faster of the two layouts the model runs (`mm`, and nn.Linear's a · bᵀ + bias), one second
    /// each: the peak is the best product the device does in that dtype, whichever path libtorch takes.
    func peakTFLOPs(device: Device, amp: TrainingOptions.AMP) throws -> (tflops: Double, dtype: DType) {
        let dtype: DType = amp.dtype ?? .float32
        let n = peakSize ?? (device == .cpu ? 1024 : 8192)
        let best = try [Diagnostics.ProductForm.matmul, .linear].map {
            try Diagnostics.matmulGFLOPS(device: device, size: n, seconds: 1, dtype: dtype, form: $0)
        }.max()!
        return (best / 1000, dtype)
    }

    /// Everything a step benchmark starts from: the model, its step, the matmul peak and a random batch
    /// of images already on the device.
    func prepare() throws -> (net: SAMModel, device: Device, amp: TrainingOptions.AMP, stepper: TrainingStep,
                              peak: (tflops: Double, dtype: DType), images: Tensor) {
        let (net, device, amp) = try setUp()
        let peak = try peakTFLOPs(device: device, amp: amp)
        let stepper = try TrainingStep(model: net, amp: amp, weightDecay: 0.01, device: device)
        let s = net.config.imageSize
        return (net, device, amp, stepper, peak, try Tensor.rand([batch, 3, s, s], device: device))
    }

    /// Seconds the device spends on `steps` calls of `body` (after the warm-up the caller ran), with the
    /// peak-memory counter reset first unless `resetPeak` is false (a CUDA graph's memory pool is made at
    /// its capture, in the warm-up: a peak counted from after it would leave the pool out).
    func timeSteps(device: Device, resetPeak: Bool = true, _ body: () throws -> Void) throws -> Double {
        if case .cuda(let i) = device {
            try CUDA.synchronize(device: i)
            if resetPeak { try CUDA.resetPeakMemory(device: i) }
        }
        let timer = try DeviceTimer(device: device)
        try timer.begin()
        for _ in 0..<steps { try body() }
        return try timer.stop()
    }

    /// With --profile-steps: `body` that many more times under the profiler. The tables are printed after
    /// the report (or go into its JSON); the profiler's own cost is not in the timed figures. A profiler
    /// that fails (no CUPTI on the machine, say) is a warning: the timed figures are still reported.
    func profile(device: Device, _ body: () throws -> Void) throws -> Profile? {
        guard profileSteps > 0 else { return nil }
        do {
            if case .cuda(let i) = device { try CUDA.synchronize(device: i) }
            let profile = try Profiler.record(cuda: device != .cpu, shapes: trace != nil) {
                for _ in 0..<profileSteps { try body() }
                if case .cuda(let i) = device { try CUDA.synchronize(device: i) }
            }.profile
            if let trace {
                try profile.saveTrace(to: trace)
                guard FileManager.default.fileExists(atPath: trace) else { throw DataError.cannotWrite(path: trace, reason: "libtorch wrote no trace") }
            }
            return profile
        } catch {
            FileHandle.standardError.write(Data("warning: the profile of \(profileSteps) more steps failed: \(error)\n".utf8))
            return nil
        }
    }

    /// The tables of a profile: on CUDA, ops by the device time of the kernels they launched, and kernels;
    /// on the CPU, ops by their own host time. `stepMs` (the timed ms/step) shows how busy the device was.
    func profileTables(_ profile: Profile, device: Device, stepMs: Double) -> (text: String, rows: [[String: Any]]) {
        let n = Double(profileSteps)
        func json(_ rows: [Profile.Row]) -> [[String: Any]] {
            rows.prefix(30).map { ["name": $0.name, "calls_per_step": Double($0.calls) / n, "ms_per_step": Double($0.ns) / 1e6 / n] }
        }
        if device == .cpu {
            let rows = profile.opsBySelfHostTime()
            let total = rows.map(\.ns).reduce(0, +)
            let head = String(format: "profile of %ld steps: %ld ops/step, %.1f ms/step of host time in ops", profileSteps,
                              Int((Double(profile.opCount) / n).rounded()), Double(total) / 1e6 / n)
            return ([head, Profile.table(rows, title: "self host time by op", steps: profileSteps, total: total, top: 25)].joined(separator: "\n"),
                    json(rows))
        }
        let busy = Double(profile.deviceTimeNs) / 1e6 / n
        let head = String(format: "profile of %ld steps: the device is busy %.2f ms/step (%.0f%% of the timed %.2f ms/step), %ld kernels "
            + "and copies/step, %ld ops/step", profileSteps, busy, 100 * busy / stepMs, stepMs,
            Int((Double(profile.deviceEventCount) / n).rounded()), Int((Double(profile.opCount) / n).rounded()))
        let ops = profile.opsBySelfDeviceTime()
        return ([head, Profile.table(ops, title: "self device time by op", steps: profileSteps, total: profile.deviceTimeNs, top: 25),
                 Profile.table(profile.kernels(), title: "device time by kernel", steps: profileSteps, total: profile.deviceTimeNs, top: 15)]
                    .joined(separator: "\n"), json(ops))
    }

    func report(mode: String, net: SAMModel, device: Device, amp: TrainingOptions.AMP, seconds: Double, flopsPerStep: Double,
                peak: (tflops: Double, dtype: DType), profile: Profile? = nil, extra: [String: Any] = [:]) throws {
        let perStep = seconds / Double(steps)
        let imagesPerSecond = Double(batch * steps) / seconds
        let tflops = flopsPerStep / perStep / 1e12
        var memoryGiB: Double?
        if case .cuda(let i) = device { memoryGiB = Double(try CUDA.memory(device: i).peakAllocated) / Double(1 << 30) }
        let c = net.config
        var out: [String: Any] = [
            "mode": mode, "backbone": c.backbone.rawValue, "image_size": c.imageSize, "batch": batch, "amp": amp.rawValue,
            "device": "\(device)", "steps": steps, "images_per_s": imagesPerSecond, "ms_per_step": perStep * 1000,
            "flops_per_step": flopsPerStep, "achieved_tflops": tflops, "peak_matmul_tflops": peak.tflops,
            "peak_matmul_dtype": "\(peak.dtype)", "mfu": tflops / peak.tflops, "libtorch": Torch.version,
            "trainable_parameters": net.trainableParameterCount, "channels_last": Torch.channelsLastConvolutions, "tf32": device != .cpu && !noTF32,
        ]
        if let memoryGiB { out["peak_memory_gib"] = memoryGiB }
        for (k, v) in extra { out[k] = v }
        let tables = profile.map { profileTables($0, device: device, stepMs: perStep * 1000) }
        if let tables {
            out["profile_steps"] = profileSteps
            out["profile_ops"] = tables.rows
            if device != .cpu, let profile { out["profile_device_busy_ms_per_step"] = Double(profile.deviceTimeNs) / 1e6 / Double(profileSteps) }
        }
        if json {
            try printJSON(out)
        } else {
            print(String(format: "%@ %@ at %ld px, batch %ld, amp %@, %@: %.2f images/s, %.1f ms/step, %.2f TFLOP/s achieved "
                + "(%.3g TFLOP/step), matmul peak %.2f TFLOP/s (%@), MFU %.1f%%%@", mode, c.backbone.rawValue, c.imageSize, batch,
                amp.rawValue, "\(device)", imagesPerSecond, perStep * 1000, tflops, flopsPerStep / 1e12, peak.tflops, "\(peak.dtype)",
                100 * tflops / peak.tflops, memoryGiB.map { String(format: ", peak CUDA memory %.2f GiB", $0) } ?? ""))
            if let tables { print(tables.text) }
        }
    }
}

extension Bench {
    struct TrainStepBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train",
            abstract: "Training steps per second on a device-resident batch: images/s, ms/step, peak memory, TFLOP/s, MFU.",
            discussion: """
                Random weights in SAM's layout with the delta (default LoRA q,v rank 4), random images and labels
                already on the device: what the model, loss and optimizer cost, not the data loader (`bench data`).
                FLOPs are counted from the products the step runs (forward and the backward products autograd
                needs); MFU divides the achieved rate by a dense matmul rate measured in the same run.
                """)

        @OptionGroup var options: StepBenchOptions

        func run() throws {
            let (net, device, amp, stepper, peak, images) = try options.prepare()
            let s = net.config.imageSize
            let labels = try Tensor.randint(0, 2, shape: [options.batch, s, s], device: device)
            // The first warm-up step is also the one whose products are counted: without checkpointing, so
            // that MFU counts the model's FLOPs, not the recomputation (as MFU is usually defined).
            // Only the detached value outlives this step: its graph kept alive would break a CUDA-graph capture.
            let (value, counted) = try { () throws -> (CrackLoss.Value, FlopCounter.Count) in
                let (value, counted) = try FlopCounter.count { try stepper.forward(images: images, labels: labels) }
                try stepper.update(value, lr: 1e-4, sync: false)
                return (try value.detached(), counted)
            }()
            stepper.checkpointActivations = options.checkpointActivations
            stepper.cudaGraph = options.cudaGraph
            // With a graph, the warm-up also covers the eager steps before the capture, the capture and a replay.
            let warmup = options.cudaGraph ? max(options.warmup, TrainingStep.eagerStepsBeforeCapture + 2) : options.warmup
            for _ in 1..<max(warmup, 1) { _ = try stepper.step(images: images, labels: labels, lr: 1e-4) }
            if options.cudaGraph && !stepper.isCaptured {
                throw ValidationError("the CUDA graph capture failed: \(stepper.cudaGraphFailure ?? "no capture was made")")
            }
            var last = value
            let seconds = try options.timeSteps(device: device, resetPeak: !options.cudaGraph) {
                last = try stepper.step(images: images, labels: labels, lr: 1e-4)
            }
            let loss = try last.loss.item()
            guard loss.isFinite else { throw ValidationError("the benchmark's loss is \(loss)") }
            let profile = try options.profile(device: device) { _ = try stepper.step(images: images, labels: labels, lr: 1e-4) }
            try options.report(mode: "train", net: net, device: device, amp: amp, seconds: seconds, flopsPerStep: counted.total,
                               peak: peak, profile: profile, extra: ["forward_flops_per_step": counted.forward, "last_loss": loss,
                                       "checkpoint_activations": options.checkpointActivations, "cuda_graph": options.cudaGraph])
        }
    }

    struct InferBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "infer",
            abstract: "Inference throughput (forward and argmax, inference mode) on a device-resident batch.")

        @OptionGroup var options: StepBenchOptions

        func validate() throws {
            // Training-step options: timing inference with them would report a set-up that did not run.
            if options.cudaGraph { throw ValidationError("--cuda-graph captures the training step: it is for bench train") }
            if options.checkpointActivations { throw ValidationError("--checkpoint-activations recomputes in the backward: it is for bench train") }
        }

        func run() throws {
            let (net, device, amp, stepper, peak, images) = try options.prepare()
            let (seconds, counted, profile): (Double, FlopCounter.Count, Profile?) = try Torch.withInferenceMode {
                let counted = try FlopCounter.count { try stepper.logits(images).argmax(dim: 1) }.flops
                for _ in 1..<max(options.warmup, 1) { _ = try stepper.logits(images).argmax(dim: 1) }
                let seconds = try options.timeSteps(device: device) { _ = try stepper.logits(images).argmax(dim: 1) }
                return (seconds, counted, try options.profile(device: device) { _ = try stepper.logits(images).argmax(dim: 1) })
            }
            try options.report(mode: "infer", net: net, device: device, amp: amp, seconds: seconds, flopsPerStep: counted.total,
                               peak: peak, profile: profile)
        }
    }
}

extension Bench {
    struct Agree: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agree",
            abstract: "Numerical sanity of mixed precision: masks under bf16/fp16 autocast vs float32, same model and images.",
            discussion: """
                Prints the IoU of the two binary masks pooled over all images and the smallest per-image IoU (two
                empty masks count as 1), and the fraction of pixels that differ. Use real weights (--sam, --delta)
                and real images (--data): random weights give near-tied logits that any rounding flips.
                """)

        @OptionGroup var model: ModelOptions
        @OptionGroup var peft: PEFTOptions
        @Option(help: "Official SAM checkpoint.") var sam: String?
        @Option(help: "A trained delta.") var delta: String?
        @Option(help: "Dataset folder (images/ and masks/); the first --count images are used.") var data: String?
        @Option(help: "Images to compare.") var count = 16
        @Option(help: "Images per forward.") var batch = 4
        @Option(help: "Autocast dtype to compare with float32: bf16 or fp16.") var amp = "bf16"
        @Option(help: "cpu, cuda or cuda:N.") var device = "cpu"
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            try requirePositive(count, "--count")
            try requirePositive(batch, "--batch")
        }

        func run() throws {
            guard let dev = Device(device) else { throw ValidationError("--device must be cpu, cuda or cuda:N") }
            guard let dtype = try autocastDType(amp) else { throw ValidationError("--amp must be bf16 or fp16") }
            warnIfFloat16OnCPU(dtype, device: dev)
            var peftOptions = peft
            if delta == nil && peft.deltaType == nil { peftOptions.deltaType = "none" }
            let net = try ModelBuilder(model: model, peft: peftOptions, sam: sam, delta: delta).build()
            if dev != .cpu { try net.move(to: dev) }
            let s = net.config.imageSize
            var images: [Image] = []
            if let data {
                let ds = try CrackDataset(root: data)
                for i in 0..<min(count, ds.count) {
                    let image = try ds.loadOriginal(i).0
                    images.append(image.width == s && image.height == s ? image : try Degrade.resizeBicubic(image, width: s, height: s))
                }
            } else {
                var rng = SplitMix64(seed: 1)
                images = (0..<count).map { _ in Image(width: s, height: s, channels: 3, pixels: (0..<(s * s * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }) }
            }
            let full = SAMPredictor(model: net, device: dev), mixed = SAMPredictor(model: net, device: dev, amp: dtype)
            var inter = 0, union = 0, differing = 0, worst = 1.0
            for start in stride(from: 0, to: images.count, by: batch) {
                let chunk = Array(images[start..<min(start + batch, images.count)])
                let a = try full.predict(chunk), b = try mixed.predict(chunk)
                for (x, y) in zip(a, b) {
                    var i = 0, u = 0
                    for p in 0..<x.count {
                        let (px, py) = (x[p] != 0, y[p] != 0)
                        if px && py { i += 1 }
                        if px || py { u += 1 }
                        if px != py { differing += 1 }
                    }
                    inter += i
                    union += u
                    worst = min(worst, u == 0 ? 1 : Double(i) / Double(u))
                }
            }
            let pooled = union == 0 ? 1 : Double(inter) / Double(union)
            let fraction = Double(differing) / Double(max(images.count * s * s, 1))
            if json {
                try printJSON(["images": images.count, "amp": amp, "device": "\(dev)", "pooled_iou": pooled, "min_image_iou": worst,
                               "differing_pixel_fraction": fraction, "crack_pixels_fp32_or_amp": union])
            } else {
                print(String(format: "%ld images, %@ vs float32 on %@: mask IoU %.4f pooled, %.4f worst image; %.5f%% of pixels differ",
                             images.count, amp, "\(dev)", pooled, worst, 100 * fraction))
                if union == 0 { print("both precisions predict no crack anywhere: nothing was compared (use a model that finds cracks)") }
            }
        }
    }
}

extension Bench {
    struct GraphAgree: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "graph-agree",
            abstract: "The training step replayed from a CUDA graph vs run eagerly: same weights, same batches, same rates.",
            discussion: """
                Three copies of one model (random weights in SAM's layout, the delta injected) take --steps steps on the
                same random batches with a learning rate that changes every step: one replays a CUDA graph (captured
                after two eager steps), two run eagerly. Prints the largest relative difference of the per-step losses
                and of the trained weights between graph and eager, and between the two eager runs (the GPU's own
                run-to-run noise). Exits non-zero when graph and eager differ by more than 4× that noise (at least 1e-4).
                """)

        @OptionGroup var options: StepBenchOptions

        func validate() throws {
            // On the CPU it trained three models for every step, then said CUDA graphs need CUDA.
            if Device(options.device) == .cpu {
                throw ValidationError("graph-agree replays a CUDA graph: pass --device cuda (the default is cpu)")
            }
            guard options.steps > TrainingStep.eagerStepsBeforeCapture + 1 else {
                throw ValidationError("--steps must exceed \(TrainingStep.eagerStepsBeforeCapture + 1) so that some steps replay the graph")
            }
            // Options of the timed benchmarks that this comparison has no use for would be ignored.
            let unused = [("--profile-steps", options.profileSteps != 0), ("--trace", options.trace != nil), ("--peak-size", options.peakSize != nil),
                          ("--cuda-graph", options.cudaGraph)].filter(\.1).map(\.0)
            if !unused.isEmpty { throw ValidationError("\(unused.joined(separator: ", ")): not used by graph-agree") }
        }

        func run() throws {
            let (graphNet, device, amp) = try options.setUp()
            let (eagerNet, _, _) = try options.setUp()
            let (againNet, _, _) = try options.setUp()
            let graphed = try TrainingStep(model: graphNet, amp: amp, weightDecay: 0.01, device: device)
            let eager = try TrainingStep(model: eagerNet, amp: amp, weightDecay: 0.01, device: device)
            let again = try TrainingStep(model: againNet, amp: amp, weightDecay: 0.01, device: device)
            for stepper in [graphed, eager, again] { stepper.checkpointActivations = options.checkpointActivations }
            graphed.cudaGraph = true
            func lossDifference(_ a: [Double], _ b: [Double]) -> Double {
                zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-12) }.max() ?? 0
            }
            func weightDifference(_ a: SAMModel, _ b: SAMModel) throws -> Double {
                var worst = 0.0
                for (x, y) in zip(a.trainableParameters(), b.trainableParameters()) {
                    let scale = try y.parameter.tensor.abs().amax().to(dtype: .float64).item()
                    let diff = try (x.parameter.tensor - y.parameter.tensor).abs().amax().to(dtype: .float64).item()
                    worst = max(worst, diff / max(scale, 1e-12))
                }
                return worst
            }
            // The three are made from the same seed; check it, since everything below assumes it.
            guard try weightDifference(graphNet, eagerNet) == 0, try weightDifference(againNet, eagerNet) == 0 else {
                throw ValidationError("the three copies of the model do not start from the same weights")
            }
            let s = graphNet.config.imageSize
            try Torch.manualSeed(1)
            var losses: [[Tensor]] = [[], [], []]
            for k in 0..<options.steps {
                let images = try Tensor.rand([options.batch, 3, s, s], device: device)
                let labels = try Tensor.randint(0, 2, shape: [options.batch, s, s], device: device)
                let lr = 1e-4 * Double(k + 1) / Double(options.steps)
                for (i, stepper) in [graphed, eager, again].enumerated() {
                    losses[i].append(try stepper.step(images: images, labels: labels, lr: lr).loss)
                }
            }
            guard graphed.isCaptured else { throw ValidationError("the CUDA graph capture failed: \(graphed.cudaGraphFailure ?? "no capture was made")") }
            let values = try losses.map { try Tensor.stack($0.map { try $0.detach().to(dtype: .float64).reshape([]) }).to(device: .cpu).toArray(of: Double.self) }
            let graphLoss = lossDifference(values[0], values[1]), noiseLoss = lossDifference(values[2], values[1])
            let graphWeights = try weightDifference(graphNet, eagerNet), noiseWeights = try weightDifference(againNet, eagerNet)
            let finite = values.allSatisfy { $0.allSatisfy(\.isFinite) }
            let agree = finite && graphLoss <= max(4 * noiseLoss, 1e-4) && graphWeights <= max(4 * noiseWeights, 1e-4)
            let replayed = options.steps - TrainingStep.eagerStepsBeforeCapture - 1
            if options.json {
                try printJSON(["steps": options.steps, "replayed_steps": replayed, "backbone": graphNet.config.backbone.rawValue,
                               "image_size": s, "batch": options.batch, "amp": amp.rawValue, "device": "\(device)",
                               "graph_vs_eager_loss_rel": graphLoss, "eager_vs_eager_loss_rel": noiseLoss,
                               "graph_vs_eager_weight_rel": graphWeights, "eager_vs_eager_weight_rel": noiseWeights,
                               "losses_graph": values[0], "losses_eager": values[1], "agree": agree])
            } else {
                print(String(format: "%ld steps (%ld replayed from the graph), %@ %@: losses differ by %.3g relative (eager vs eager %.3g), "
                    + "trained weights by %.3g (eager vs eager %.3g): %@", options.steps, replayed, graphNet.config.backbone.rawValue,
                    amp.rawValue, graphLoss, noiseLoss, graphWeights, noiseWeights, agree ? "agree" : "DISAGREE"))
            }
            if !agree { throw ExitCode(1) }
        }
    }
}
