import ArgumentParser
import CrackSAM
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune CrackSAM (delta + prompt encoder + mask decoder) on a crack dataset.",
        discussion: """
            Writes RUN_DIR/config.json, metrics.csv, val.csv, epoch_N.pth and best.pth (deltas in the authors'
            format, with .json sidecars), state.safetensors (resumable) and loss.png / val_iou.png.
            Ctrl-C finishes the step, writes a resumable checkpoint and exits; continue with --resume RUN_DIR.

            Data parallel: --nproc N runs N ranks on this machine; under torchrun, SLURM or any launcher that
            sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, each process is one rank. --batch is
            per rank (the global batch is batch × ranks); the loss is that of the global batch; rank 0 writes
            the run directory. A run resumes on any number of ranks.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var peft: PEFTOptions

    @Option(help: "Training dataset folder (images/ and masks/).") var data: String?
    @Option(help: "List file selecting training samples.") var dataList: String?
    @Option(help: "Validation dataset folder.") var val: String?
    @Option(help: "List file selecting validation samples.") var valList: String?
    @Option(help: "Official SAM checkpoint (sam_vit_*.pth); default: Meta's file in weights/; not needed for --vit custom.") var sam: String?
    @Option(help: "Run directory to create.") var out: String?
    @Option(help: "Continue the run in this directory, as its config.json describes it (flags that would change it are refused; --workers, --threads, --max-steps, --nproc, the GPU's index and the speed flags may differ, --checkpoint-activations may be turned on, and --stop-epoch may move).") var resume: String?

    @Option(help: "Epochs the schedule spans (default \(TrainingOptions().epochs)).") var epochs: Int?
    @Option(help: "Stop after this epoch (the authors stop at 100 of 140); with --resume, where the run stops now.") var stopEpoch: Int?
    @Option(help: "Images per step (default \(TrainingOptions().batch)).") var batch: Int?
    @Option(help: "Base learning rate (default \(TrainingOptions().lr)).") var lr: Double?
    @Option(help: "Warm-up steps (default \(TrainingOptions().warmup)).") var warmup: Int?
    @Option(help: "Power of the polynomial decay (default \(TrainingOptions().polyPower)).") var polyPower: Double?
    @Option(help: "AdamW weight decay (default \(TrainingOptions().weightDecay)).") var weightDecay: Double?
    @Option(help: "fp16 (with a dynamic loss scaler), bf16 or off; default fp16 on CUDA, off on the CPU.") var amp: String?
    @Option(help: "TF32 matmuls on CUDA: on or off (default on).") var tf32: String?
    @Option(help: "Validate every N epochs (default \(TrainingOptions().valEvery)).") var valEvery: Int?
    @Option(help: "Save epoch_N.pth every N epochs (default \(TrainingOptions().saveEvery)).") var saveEvery: Int?
    @Option(help: "Seed (weights, shuffling, augmentation; default \(TrainingOptions().seed)).") var seed: UInt64?
    @Option(help: "cpu, cuda or cuda:N (default \(TrainingOptions().device)).") var device: String?
    @Option(help: "Background loader threads.") var workers = TrainingOptions().workers
    @Option(help: "libtorch CPU threads.") var threads: Int?
    @Flag(help: "Disable augmentation.") var noAugment = false
    @Option(help: "Stop (resumably) after this many steps in this invocation.") var maxSteps: Int?
    @Option(help: "Run this many data-parallel ranks on this machine.") var nproc: Int?
    @Option(help: "Distributed backend: nccl, gloo (CUDA tensors through the host), or auto: nccl on CUDA when built in, else gloo.")
    var distBackend = "auto"
    @Option(help: "Seconds a rendezvous or collective may wait for the other ranks before failing.") var distTimeout = 300.0
    @Flag(help: "After every step, check that all ranks hold identical weights.") var verifySync = false
    @Flag(help: .hidden) var float64 = false
    @Flag(help: "Random weights for --vit b|l|h instead of --sam: for speed measurements only (not a crack model).")
    var randomWeights = false
    @Flag(help: "Recompute the encoder's activations in the backward: much less memory, one more encoder forward per step.")
    var checkpointActivations = false
    @Flag(inversion: .prefixedNo, help: "Convolutions on channels-last (NHWC) tensors (default: on CUDA, where cuDNN runs NHWC faster; off on the CPU).")
    var channelsLast: Bool?
    @Option(help: "Read the loss back every N steps, not inside each step (default 10 on CUDA, 1 on the CPU).") var syncEvery: Int?
    @Flag(help: "Capture the training step in a CUDA graph after two eager steps and replay it (CUDA, one process, --sync-every > 1).")
    var cudaGraph = false

    struct RunConfig: Codable {
        var options: TrainingOptions
        var backbone: String
        var imageSize: Int
        var numClasses: Int
        var embedDim: Int
        var depth: Int
        var heads: Int
        var globalBlocks: [Int]
        var patchSize: Int?
        var peft: PEFTConfig
        var sam: String?
        var randomWeights: Bool?
        var data: String
        var dataList: String?
        var val: String?
        var valList: String?

        /// What `train` checks before writing a config: the recipe, the delta, the device, the model's sizes.
        func validate() throws {
            try options.validate()
            try peft.validate()
            guard Device(options.device) != nil else { throw TorchError.invalidArgument("device '\(options.device)' is not cpu, cuda or cuda:N") }
            if backbone == SAMConfig.Backbone.custom.rawValue {
                var config = SAMConfig(backbone: .custom, embedDim: embedDim, depth: depth, heads: heads, globalBlocks: globalBlocks,
                                       imageSize: imageSize, numClasses: numClasses)
                config.patchSize = patchSize ?? config.patchSize
                try config.validate()
            } else {
                guard let b = SAMConfig.Backbone(rawValue: backbone), b != .custom else {
                    throw TorchError.invalidArgument("backbone '\(backbone)' is none of vit_b, vit_l, vit_h, custom")
                }
                try SAMConfig.named(b, imageSize: imageSize, numClasses: numClasses).validate()
            }
        }
    }

    /// A JSON decoding error in a line: which key, and what was wrong with it.
    static func explain(_ error: DecodingError) -> String {
        func path(_ keys: [CodingKey]) -> String { keys.isEmpty ? "the top level" : "'" + keys.map(\.stringValue).joined(separator: ".") + "'" }
        func kind(_ type: Any.Type) -> String {
            let name = "\(type)"
            if name.hasPrefix("Dictionary") { return "an object" }
            if name.hasPrefix("Array") { return "a list" }
            if ["Int", "Int64", "UInt64", "Double", "Float"].contains(name) { return "a number" }
            if name == "Bool" { return "true or false" }
            if name == "String" { return "a string" }
            return "a \(name)"
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context.codingPath + [key])) is missing"
        case .typeMismatch(let type, let context): return "\(path(context.codingPath)) is not \(kind(type))"
        case .valueNotFound(let type, let context): return "\(path(context.codingPath)) is null, not \(kind(type))"
        case .dataCorrupted(let context): return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// A resumed run keeps the recipe its config.json records. A flag that would change it (given, and
    /// not what the run has) is refused rather than ignored; flags left at their defaults say nothing.
    func refuseChangesToTheRecipe(of run: RunConfig, at directory: String) throws {
        let o = run.options, d = TrainingOptions()  // the flags' defaults are the recipe's
        var changed: [(flag: String, given: String, saved: String)] = []
        func check<T: Equatable>(_ flag: String, _ given: T?, _ saved: T?, isDefault: Bool = false) {
            guard let given, !isDefault, given != saved else { return }
            changed.append((flag, "\(given)", saved.map { "\($0)" } ?? "none"))
        }
        check("--data", data, run.data)
        check("--data-list", dataList, run.dataList)
        check("--val", val, run.val)
        check("--val-list", valList, run.valList)
        check("--sam", sam, run.sam)
        check("--epochs", epochs, o.epochs)
        check("--batch", batch, o.batch)
        check("--lr", lr, o.lr)
        check("--warmup", warmup, o.warmup)
        check("--poly-power", polyPower, o.polyPower)
        check("--weight-decay", weightDecay, o.weightDecay)
        check("--amp", amp, o.amp.rawValue)
        check("--tf32", tf32, o.tf32 ? "on" : "off")
        check("--val-every", valEvery, o.valEvery)
        check("--save-every", saveEvery, o.saveEvery)
        check("--seed", seed, o.seed)
        // The device's kind is the recipe's (cpu or cuda: --amp's default follows it); which GPU is the
        // machine's, as under a launcher, where a run given --device cuda records each rank's cuda:N.
        func kind(_ device: String) -> String { device.hasPrefix("cuda") ? "cuda" : device }
        check("--device", device.map(kind), kind(o.device))
        check("--no-augment", noAugment, !o.augment, isDefault: !noAugment)
        check("--sync-every", syncEvery, o.syncEvery)
        check("--random-weights", randomWeights, run.randomWeights ?? false, isDefault: !randomWeights)
        // The model's flags are compared as given, --vit or not: a run is resumed without one.
        if let vit = model.vit {
            check("--vit", vit.lowercased() == "custom" ? "custom" : SAMConfig.Backbone(argument: vit)?.rawValue ?? vit, run.backbone)
        }
        check("--image-size", model.imageSize, run.imageSize)
        check("--num-classes", model.numClasses, run.numClasses, isDefault: model.numClasses == 1)
        check("--embed-dim", model.embedDim, run.embedDim)
        check("--depth", model.depth, run.depth)
        check("--heads", model.heads, run.heads)
        let blocks = model.globalBlocks?.lowercased() == "none" ? ""
            : model.globalBlocks?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ",")
        check("--global-blocks", blocks, run.globalBlocks.map(String.init).joined(separator: ","))
        check("--patch-size", model.patchSize, run.patchSize ?? 16)
        let peftGiven = [peft.deltaType, peft.loraTargets].contains { $0 != nil } || peft.rank != nil || peft.adapterDim != nil
            || peft.adapterScale != nil
        if peftGiven {
            let given = try peft.resolve(over: run.peft)
            check("--delta-type", peft.deltaType.map { _ in given.deltaType.rawValue }, run.peft.deltaType.rawValue)
            check("--rank", peft.rank, run.peft.rank)
            check("--lora-targets", peft.loraTargets.map { _ in given.targetString }, run.peft.targetString)
            check("--adapter-dim", peft.adapterDim, run.peft.adapterDim)
            check("--adapter-scale", peft.adapterScale, run.peft.adapterScale)
        }
        guard changed.isEmpty else {
            let list = changed.map { "\($0.flag) \($0.given) (the run has \($0.saved))" }.joined(separator: ", ")
            throw ValidationError("--resume \(directory) continues the run as its config.json describes it; these flags would change it: "
                + "\(list). Start a new run with --out to change them.")
        }
    }

    func validate() throws {
        if valList != nil && val == nil && resume == nil { throw ValidationError("--val-list selects samples of --val, which is not given") }
        if let resume, let out, out != resume {
            throw ValidationError("--out \(out) starts a new run and --resume \(resume) continues one: give one of them")
        }
        if let tf32, !["on", "off"].contains(tf32) { throw ValidationError("--tf32 must be on or off (got '\(tf32)')") }
        if let threads { try requirePositive(threads, "--threads") }
        // Checked on the flag, not in TrainingOptions: a run saved with 0 (which the loader reads as 1)
        // must still resume.
        try requirePositive(workers, "--workers")
        try ProcessGroup.validate(timeout: distTimeout)
    }

    func run() throws {
        // The recipe's flags are nil when not given (so that --resume can tell "--lr 0.0004" given from
        // the default left alone); a new run takes the defaults.
        let d = TrainingOptions()
        let (epochs, batch, lr, warmup) = (self.epochs ?? d.epochs, self.batch ?? d.batch, self.lr ?? d.lr, self.warmup ?? d.warmup)
        let (polyPower, weightDecay, tf32) = (self.polyPower ?? d.polyPower, self.weightDecay ?? d.weightDecay, self.tf32 ?? "on")
        let (valEvery, saveEvery, seed, device) = (self.valEvery ?? d.valEvery, self.saveEvery ?? d.saveEvery, self.seed ?? d.seed, self.device ?? d.device)
        let environment = try DistributedEnvironment.fromEnvironment()
        if try Launcher.launchIfAsked(nproc: nproc, environment: environment) { return }
        if let threads { Torch.threads = threads }
        let runConfig: RunConfig
        // A resume may move where the run stops (the authors stop at epoch 100 of a 140-epoch schedule; a run
        // stopped there may go on): the schedule spans --epochs either way. Recorded in config.json.
        var stopMoved = false
        let runDirectory: String
        if let resume {
            runDirectory = resume
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: resume, isDirectory: &isFolder) else {
                throw TrainingError.notARun(path: resume, reason: "no such folder")
            }
            guard isFolder.boolValue else {
                let folder = (resume as NSString).deletingLastPathComponent
                throw ValidationError("--resume takes the run's folder (\(folder.isEmpty ? "." : folder)), not a file in it (\(resume))")
            }
            guard let json = FileManager.default.contents(atPath: resume + "/config.json") else {
                throw TrainingError.notARun(path: resume, reason: "no config.json")
            }
            var c: RunConfig
            do {
                c = try JSONDecoder().decode(RunConfig.self, from: json)
            } catch let error as DecodingError {
                throw TrainingError.notARun(path: resume, reason: "config.json is not a run's configuration: \(Train.explain(error))")
            }
            // Values no run could have written (an edited or damaged file) are named with the file.
            do { try c.validate() } catch { throw TrainingError.notARun(path: resume, reason: "config.json: \(error)") }
            try refuseChangesToTheRecipe(of: c, at: resume)
            c.options.maxSteps = maxSteps
            if let stopEpoch, stopEpoch != c.options.lastEpoch {
                guard stopEpoch <= c.options.epochs else {
                    throw ValidationError("--stop-epoch \(stopEpoch) is past the run's --epochs \(c.options.epochs), which its schedule spans")
                }
                if (environment?.rank ?? 0) == 0 {
                    print("the run now stops after epoch \(stopEpoch) (it was to stop after epoch \(c.options.lastEpoch)); config.json records it")
                }
                c.options.stopEpoch = stopEpoch
                stopMoved = true
            }
            // What depends on the machine, not the recipe, may change when a run moves.
            if workers != TrainingOptions().workers { c.options.workers = workers }
            if checkpointActivations { c.options.checkpointActivations = true }
            // The GPU is this rank's own, whatever device the run was saved from; a single process takes
            // the GPU it is given.
            if let environment, c.options.device.hasPrefix("cuda") {
                c.options.device = "cuda:\(environment.localRank)"
            } else if c.options.device.hasPrefix("cuda"), device.hasPrefix("cuda") {
                c.options.device = device
            }
            runConfig = c
        } else {
            guard let data, let out else { throw ValidationError("--data and --out are required (or --resume RUN_DIR)") }
            guard let config = try model.config() else { throw ValidationError("--vit is required") }
            guard Device(device) != nil else { throw ValidationError("--device must be cpu, cuda or cuda:N") }
            var o = TrainingOptions()
            o.epochs = epochs
            o.stopEpoch = stopEpoch ?? (epochs == 140 ? 100 : nil)
            if let stopEpoch, stopEpoch > epochs {
                throw ValidationError("--stop-epoch \(stopEpoch) is past --epochs \(epochs): the run would end at epoch \(epochs)")
            }
            o.batch = batch
            o.lr = lr
            o.warmup = warmup
            o.polyPower = polyPower
            o.weightDecay = weightDecay
            let ampName = amp ?? (device.hasPrefix("cuda") ? "fp16" : "off")
            guard let a = TrainingOptions.AMP(rawValue: ampName) else { throw ValidationError("--amp must be fp16, bf16 or off") }
            o.amp = a
            if let dev = Device(device) { warnIfFloat16OnCPU(a.dtype, device: dev) }
            o.tf32 = tf32 != "off"
            o.valEvery = valEvery
            o.saveEvery = saveEvery
            o.seed = seed
            o.device = device
            if let environment, environment.worldSize > 1, device == "cuda" { o.device = "cuda:\(environment.localRank)" }
            o.workers = workers
            o.augment = !noAugment
            o.maxSteps = maxSteps
            o.float64 = float64 ? true : nil
            o.checkpointActivations = checkpointActivations ? true : nil
            o.syncEvery = syncEvery ?? (device.hasPrefix("cuda") ? 10 : 1)
            // Refused here, before the run directory is made.
            do { try o.validate() } catch { throw ValidationError("\(error)") }
            // Without --sam, Meta's file in weights/ when it is there, recorded so a resume finds the same one.
            let samPath = sam ?? (config.backbone == .custom || randomWeights ? nil : ModelBuilder.weightsInFolder(config.backbone))
            if sam == nil, let samPath { FileHandle.standardError.write(Data("using \(samPath) (no --sam given)\n".utf8)) }
            runConfig = RunConfig(options: o, backbone: config.backbone.rawValue, imageSize: config.imageSize, numClasses: config.numClasses,
                                  embedDim: config.embedDim, depth: config.depth, heads: config.heads, globalBlocks: config.globalBlocks,
                                  patchSize: config.patchSize, peft: try peft.resolve(),
                                  sam: samPath, randomWeights: randomWeights ? true : nil, data: data, dataList: dataList, val: val, valList: valList)
            runDirectory = out
            // Before the datasets are read and the model is built: an --out that cannot be a run folder.
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: out, isDirectory: &isFolder), !isFolder.boolValue {
                throw ValidationError("--out \(out) is a file; name a folder for the run")
            }
            // Nothing is made yet (a run that cannot start leaves nothing), but the folder that will hold it
            // must take files.
            var existing = out
            while !FileManager.default.fileExists(atPath: existing) && !Folder.parent(of: existing).isEmpty { existing = Folder.parent(of: existing) }
            if !FileManager.default.fileExists(atPath: existing) { existing = "" }
            do { try Folder.requireWritable(existing) } catch { throw ValidationError("--out \(out): \(error)") }
        }
        // Before the run directory is made: a run that cannot start must leave nothing to --resume.
        try Device(runConfig.options.device)?.requireAvailable()

        let onCUDA = runConfig.options.device.hasPrefix("cuda")
        Torch.channelsLastConvolutions = channelsLast ?? onCUDA
        if cudaGraph {
            guard onCUDA else { throw ValidationError("--cuda-graph needs a CUDA device (--device cuda)") }
            guard (runConfig.options.syncEvery ?? 1) > 1 else {
                throw ValidationError("--cuda-graph needs --sync-every above 1: a captured step cannot read its loss back")
            }
            guard (environment?.worldSize ?? 1) == 1 else {
                throw ValidationError("--cuda-graph runs in one process: with data parallelism the gradient all-reduce sits inside the step")
            }
            guard CUDAGraph.isCompiled else {
                throw ValidationError("--cuda-graph: this build has no CUDA graphs (they need the CUDA runtime headers at build time; see scripts/gpu-build)")
            }
        }
        let backendName = distBackend == "auto" ? (onCUDA && ProcessGroup.ncclAvailable ? "nccl" : "gloo") : distBackend
        guard let backend = ProcessGroup.Backend(rawValue: backendName) else { throw ValidationError("--dist-backend must be auto, gloo or nccl") }
        // One rank of a data-parallel job: join the group before anything is written. A job of one rank
        // runs without a group unless a backend is named (a check of that backend on one GPU).
        let group = try environment.flatMap { env in
            env.worldSize > 1 || distBackend != "auto" ? try ProcessGroup(environment: env, backend: backend, timeout: distTimeout) : nil
        }
        let leader = (group?.rank ?? 0) == 0
        // Datasets first: a bad dataset fails before anything is written.
        let trainSet = try CrackDataset(root: runConfig.data, list: runConfig.dataList, classes: runConfig.numClasses)
        let valSet = try runConfig.val.map { try CrackDataset(root: $0, list: runConfig.valList, classes: runConfig.numClasses) }
        if leader {
            for ds in [trainSet] + (valSet.map { [$0] } ?? []) { warnAboutUnusedMasks(ds) }
            warnAboutUnusedSplits(runConfig.data, list: runConfig.dataList, split: "train.txt", suggestion: "--data-list \(runConfig.data)/train.txt")
            if let val = runConfig.val { warnAboutUnusedSplits(val, list: runConfig.valList, split: "val.txt", suggestion: "--val-list \(val)/val.txt") }
        }
        // A folder holding another run is refused before the data check, which takes a while.
        if resume == nil { try Trainer.checkNewRun(at: runDirectory) }
        // Ctrl-C or SIGTERM from here on stops the run where nothing is lost: during the data check or the
        // model's loading, before anything is written; later, after a step, with a checkpoint.
        StopRequest.catchSignals()
        // Every file read once now, not when its batch comes: a broken image or a mask of another size ends
        // the run before it starts, not hours in. Each rank reads its share.
        let (rank, ranks) = (group?.rank ?? 0, group?.worldSize ?? 1)
        if leader { print("checking \(trainSet.count) training\(valSet.map { " and \($0.count) validation" } ?? "") samples") }
        var broken: Error?
        do {
            // Each rank says what its own share holds (other ranks' shares name other files).
            for ds in [trainSet] + (valSet.map { [$0] } ?? []) {
                let check = try ds.subset(DataParallel.shard(ds.count, rank: rank, worldSize: ranks)).verify()
                if let warning = check.orientationWarning(dataset: ds.root) { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            }
        } catch {
            broken = error
        }
        // Every rank learns whether any share had a broken file, so none goes on to write the run folder.
        if let group, try group.anyRank(broken != nil), broken == nil {
            throw stopForAnotherRank(CommandFailure(description: "another rank found a file it cannot read (its output names it); nothing was written"),
                                     leader: leader)
        }
        if let broken { throw broken }
        var modelOptions = model
        modelOptions.vit = runConfig.backbone == "custom" ? "custom" : String(runConfig.backbone.dropFirst(4))
        modelOptions.imageSize = runConfig.imageSize
        modelOptions.numClasses = runConfig.numClasses
        if runConfig.backbone == "custom" {
            modelOptions.embedDim = runConfig.embedDim
            modelOptions.depth = runConfig.depth
            modelOptions.heads = runConfig.heads
            modelOptions.globalBlocks = runConfig.globalBlocks.map(String.init).joined(separator: ",")
            modelOptions.patchSize = runConfig.patchSize ?? 16
        }
        var peftOptions = PEFTOptions()
        // Each set, as an unparsed option may not be read; a size the delta does not use is nil (given, it
        // would be refused as ignored).
        let peftRecorded = runConfig.peft
        peftOptions.deltaType = peftRecorded.deltaType.rawValue
        peftOptions.rank = peftRecorded.usesLoRA ? peftRecorded.rank : nil
        peftOptions.loraTargets = peftRecorded.usesLoRA ? peftRecorded.targetString : nil
        peftOptions.adapterDim = peftRecorded.usesAdapter ? peftRecorded.adapterDim : nil
        peftOptions.adapterScale = peftRecorded.usesAdapter ? peftRecorded.adapterScale : nil
        let net = try ModelBuilder(model: modelOptions, peft: peftOptions, sam: runConfig.sam, delta: nil, seed: runConfig.options.seed,
                                   randomWeights: runConfig.randomWeights == true).build()
        if try StopRequest.agreed(across: group) {
            if !leader { throw ExitCode.failure }
            throw CommandFailure(description: "stopped by a signal before training; nothing was written")
        }

        if leader && (resume == nil || stopMoved) {
            if resume == nil { try Trainer.prepareNewRun(at: runDirectory) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let json = try encoder.encode(runConfig)
            try AtomicFile.write(to: runDirectory + "/config.json") { try json.write(to: URL(fileURLWithPath: $0)) }
        }
        let tty = isatty(STDERR_FILENO) != 0
        // The other ranks wait here until rank 0 has prepared the run directory (or failed to).
        try group?.barrier()
        let trainer = try Trainer(model: net, train: trainSet, validation: valSet, options: runConfig.options, runDirectory: runDirectory,
                                  parallel: group.map { DataParallel(group: $0) },
                                  log: { line in
                                      if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                                      print(line)
                                      fflush(stdout)
                                  },
                                  progress: tty ? { FileHandle.standardError.write(Data(("\r\u{1B}[K" + $0).utf8)) } : nil)
        trainer.verifySync = verifySync
        trainer.stepper.cudaGraph = cudaGraph
        // What a killed write left behind (its process gone) is removed, by rank 0, which writes here.
        if leader { AtomicFile.removeLeftovers(in: runDirectory) }
        if resume != nil { try trainer.resume() }
        if leader { print("training \(runConfig.peft.deltaType.rawValue) on \(runConfig.backbone): \(trainSet.count) images, "
            + "\(net.trainableParameterCount) trainable parameters, run directory \(runDirectory)"
            + (group.map { ", \($0.worldSize) ranks (\($0.backend.rawValue)), global batch \(runConfig.options.batch * $0.worldSize)" } ?? "")) }
        let outcome: Trainer.Outcome
        do {
            outcome = try trainer.run()
        } catch let error as TrainingError {
            guard case .batchFailedOnAnotherRank = error else { throw error }
            throw stopForAnotherRank(error, leader: leader)
        } catch let error as TorchError {
            // A file of the run that could not be written (a full disk): what was saved before still stands.
            guard case .io = error else { throw error }
            throw CommandFailure(description: "\(error)\n" + (trainer.savedStep.map {
                "the run's state after step \($0) is kept: once the file can be written, continue with crack-cli train --resume \(runDirectory)"
            } ?? "no state was saved yet: once the file can be written, start the run again (crack-cli train --resume \(runDirectory))"))
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        guard leader else {
            // Rank 0 says it stopped and where the state is; the others fail quietly.
            if case .stoppedBySignal = outcome { throw ExitCode.failure }
            return
        }
        switch outcome {
        case .finished:
            let best = runDirectory + "/best.pth"
            print("done: \(trainer.step) steps; " + (FileManager.default.fileExists(atPath: best)
                ? "best delta (on validation) \(best)" : "deltas \(runDirectory)/epoch_\(runConfig.options.lastEpoch).pth (no validation set, no best.pth)"))
        case .interrupted(let step):
            print("stopped at step \(step) with a resumable checkpoint; resume with: crack-cli train --resume \(runDirectory)")
        case .stoppedBySignal(let step):
            print("stopped at step \(step) with a resumable checkpoint; resume with: crack-cli train --resume \(runDirectory)")
            // Not a finished run: `train && eval`, or a scheduler, must not take it for one.
            throw StopRequest.Interrupted()
        }
    }
}
