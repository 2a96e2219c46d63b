import ArgumentParser
import CrackSAM
import Foundation

/// The options every command that builds a model shares.
struct ModelOptions: ParsableArguments {
    @Option(help: "SAM backbone: b, l or h (or custom, sized by --embed-dim/--depth/--heads/--global-blocks).")
    var vit: String?

    // A custom backbone's sizes: given, else what a delta records, else 64, 4, 4, "1,3", 16.
    @Option(help: "--vit custom: token width (default 64, or what the delta records).") var embedDim: Int?
    @Option(help: "--vit custom: number of blocks (default 4).") var depth: Int?
    @Option(help: "--vit custom: attention heads (default 4).") var heads: Int?
    @Option(help: "--vit custom: blocks with global attention, comma separated, or none (default 1,3).") var globalBlocks: String?
    @Option(help: "--vit custom: patch size (default 16).") var patchSize: Int?

    @Option(help: "Input size S (a multiple of 16); default 448, or what a delta file records.")
    var imageSize: Int?

    @Option(help: "Crack classes (masks come out with num-classes + 1 channels, 0 = background).")
    var numClasses = 1

    /// The configuration, or nil when no --vit was given and no custom backbone is recorded. `recorded`:
    /// the custom backbone a delta (`source`) was trained on, whose sizes fill in those not given; a
    /// given size that differs is refused, since the delta fits only the encoder it was trained with.
    /// `recordedImageSize`: the input size the delta was trained at, the default for --image-size (448
    /// need not be a multiple of a custom patch size).
    func config(recorded: DeltaDescription.CustomBackbone? = nil, recordedImageSize: Int? = nil, source: String? = nil) throws -> SAMConfig? {
        guard let vit = vit ?? (recorded == nil ? nil : "custom") else { return nil }
        let config: SAMConfig
        if vit.lowercased() == "custom" {
            // A small SAM-shaped backbone (random init): for demos and tests without SAM weights.
            // "none" (or empty, as a resumed run's config rebuilds it): windowed attention in every block.
            let globals = try globalBlocks.map { list -> [Int] in
                list.isEmpty || list.lowercased() == "none" ? [] : try list.split(separator: ",", omittingEmptySubsequences: false).map { item in
                    guard let i = Int(item.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationError("--global-blocks takes block indices, comma separated (got '\(list)')")
                    }
                    return i
                }
            }
            if let r = recorded {
                func list(_ blocks: [Int]) -> String { blocks.map(String.init).joined(separator: ",") }
                let sizes: [(flag: String, given: String?, trained: String)] = [
                    ("--embed-dim", embedDim.map(String.init), String(r.embedDim)),
                    ("--depth", depth.map(String.init), String(r.depth)),
                    ("--heads", heads.map(String.init), String(r.heads)),
                    ("--global-blocks", globals.map(list), list(r.globalBlocks)),
                    ("--patch-size", patchSize.map(String.init), String(r.patchSize)),
                ]
                for size in sizes {
                    if let given = size.given, given != size.trained {
                        throw ValidationError("\(source ?? "the delta") was trained on a custom backbone with \(size.flag) \(size.trained), "
                            + "but \(size.flag) \(given) was given")
                    }
                }
            }
            var c = SAMConfig(backbone: .custom, embedDim: embedDim ?? recorded?.embedDim ?? 64, depth: depth ?? recorded?.depth ?? 4,
                              heads: heads ?? recorded?.heads ?? 4, globalBlocks: globals ?? recorded?.globalBlocks ?? [1, 3],
                              imageSize: imageSize ?? recordedImageSize ?? 448, numClasses: numClasses)
            c.patchSize = patchSize ?? recorded?.patchSize ?? 16
            config = c
        } else {
            guard let backbone = SAMConfig.Backbone(argument: vit) else {
                throw ValidationError("--vit must be b, l or h (got '\(vit)')")
            }
            // Meta's backbones have fixed sizes: a size flag would be ignored without a word.
            let sizeFlags = [("--embed-dim", embedDim != nil), ("--depth", depth != nil), ("--heads", heads != nil),
                             ("--global-blocks", globalBlocks != nil), ("--patch-size", patchSize != nil)].filter(\.1).map(\.0)
            if !sizeFlags.isEmpty {
                throw ValidationError("\(sizeFlags.joined(separator: ", ")) set(s) the size of --vit custom; --vit \(vit) has Meta's fixed sizes")
            }
            config = try SAMConfig.named(backbone, imageSize: imageSize ?? 448, numClasses: numClasses)
        }
        do { try config.validate() } catch { throw ValidationError("\(error)") }
        return config
    }

    func requiredConfig() throws -> SAMConfig {
        guard let config = try config() else { throw ValidationError("--vit b|l|h is required") }
        return config
    }
}

/// Delta options. Each is optional so that a delta file's own description is used unless a flag is
/// given (flags win); without either, CrackSAM's defaults apply (LoRA on q, v, rank 4; adapter m32 s0.2).
struct PEFTOptions: ParsableArguments {
    @Option(help: "adapter, lora, both or none (head only).")
    var deltaType: String?

    @Option(help: "LoRA rank.")
    var rank: Int?

    @Option(help: "LoRA targets, any of q, k, v, o (e.g. qv).")
    var loraTargets: String?

    @Option(help: "Adapter middle dimension.")
    var adapterDim: Int?

    @Option(help: "Scale of the parallel (MLP) adapter.")
    var adapterScale: Double?

    /// `base` (from a delta file's description, or the defaults) with the given flags applied on top.
    /// `refuseUnused`: a size the delta has no use for is refused (eval, which applies the flags to every
    /// model, checks that across its models instead).
    func resolve(over base: PEFTConfig = PEFTConfig(), refuseUnused: Bool = true) throws -> PEFTConfig {
        var c = base
        if let deltaType {
            guard let t = PEFTConfig.DeltaType(rawValue: deltaType.lowercased()) else {
                throw ValidationError("--delta-type must be adapter, lora, both or none (got '\(deltaType)')")
            }
            c.deltaType = t
        }
        if let rank { c.rank = rank }
        if let loraTargets {
            do { c.loraTargets = try PEFTConfig.parseTargets(loraTargets) } catch { throw ValidationError("\(error)") }
        }
        if let adapterDim { c.adapterDim = adapterDim }
        if let adapterScale { c.adapterScale = adapterScale }
        // A size the delta has no use for would be ignored without a word. (Not for a model without a delta:
        // eval scores the untrained model beside deltas that take the sizes.)
        if refuseUnused && !loraSizeFlags.isEmpty && !c.usesLoRA && c.deltaType != .none {
            throw ValidationError("\(loraSizeFlags.joined(separator: ", ")) set(s) LoRA, but the delta is \(c.deltaType.rawValue): pass --delta-type lora or both")
        }
        if refuseUnused && !adapterSizeFlags.isEmpty && !c.usesAdapter && c.deltaType != .none {
            throw ValidationError("\(adapterSizeFlags.joined(separator: ", ")) set(s) the adapter, but the delta is \(c.deltaType.rawValue): "
                + "pass --delta-type adapter or both")
        }
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }

    /// Refuses a flag that contradicts what a file's description records (`recordedBy` names the file).
    func requireAgreement(with recorded: PEFTConfig, recordedBy file: String) throws {
        var given: [(flag: String, value: String, recorded: String)] = []
        if let deltaType { given.append(("--delta-type", deltaType.lowercased(), recorded.deltaType.rawValue)) }
        if recorded.usesLoRA {
            if let rank { given.append(("--rank", String(rank), String(recorded.rank))) }
            // The same set in another order ("vq") is the same delta.
            if let loraTargets, let targets = try? PEFTConfig.parseTargets(loraTargets) {
                given.append(("--lora-targets", Set(targets) == Set(recorded.loraTargets) ? recorded.targetString : loraTargets, recorded.targetString))
            }
        }
        if recorded.usesAdapter {
            if let adapterDim { given.append(("--adapter-dim", String(adapterDim), String(recorded.adapterDim))) }
            if let adapterScale, adapterScale != recorded.adapterScale {
                given.append(("--adapter-scale", String(adapterScale), String(recorded.adapterScale)))
            }
        }
        if let wrong = given.first(where: { $0.value != $0.recorded }) {
            throw ValidationError("\(file) records \(wrong.flag) \(wrong.recorded) (the delta it was trained with), but \(wrong.flag) "
                + "\(wrong.value) was given; leave the flag out: the file says it")
        }
    }

    /// The LoRA size flags given (what a delta without LoRA would ignore).
    var loraSizeFlags: [String] { [("--rank", rank != nil), ("--lora-targets", loraTargets != nil)].filter(\.1).map(\.0) }
    /// The adapter size flags given (what a delta without adapters would ignore).
    var adapterSizeFlags: [String] { [("--adapter-dim", adapterDim != nil), ("--adapter-scale", adapterScale != nil)].filter(\.1).map(\.0) }
}

/// Builds the model a command runs: backbone and delta settings from the flags, else from the delta
/// file's description; official SAM weights with CrackSAM's loading rules; then the delta.
struct ModelBuilder {
    var model: ModelOptions
    var peft: PEFTOptions
    /// nil: random initialisation (custom backbones, demos).
    var sam: String?
    var delta: String?
    /// nil: the file decides (a CrackSAM export's trained head is kept, Meta's is replaced); true: keep it.
    var keepDecoderHead: Bool?
    var nonStrict = false
    var seed: UInt64 = 3407
    /// Official backbones without --sam: random weights (speed measurements only).
    var randomWeights = false
    /// Whether a PEFT size this model's delta does not use is refused (see PEFTOptions.resolve).
    var refuseUnusedPEFTSizes = true
    /// What a model with no delta file makes of the PEFT flags.
    enum FreshDelta {
        /// A new delta of that kind (train, and bench's speed runs).
        case made
        /// Refused: predict and export have no delta to load into it, and a fresh adapter is random (a
        /// --delta-type adapter without --delta flipped 610 of 8192 mask pixels).
        case refused
        /// None: eval's untrained row, beside the deltas the flags are for.
        case ignored
    }
    var freshDelta = FreshDelta.made
    /// Whether the plan's notes are printed (one rank of several says them for all).
    var printsNotes = true
    /// For a model without a delta or --sam (the untrained one beside custom deltas in eval): the custom
    /// encoder a delta records (its sizes, input size and the seed its weights were drawn with), so that
    /// "untrained" is the trained models' encoder with a fresh head, not one drawn from the flags.
    var encoderOf: DeltaDescription?
    /// For the untrained model beside deltas in eval: the input size they were all trained at, so that its
    /// row is measured as theirs are (with --sam it ran at the flag's default 448 px beside 64 px deltas).
    var imageSizeOf: Int?

    /// Meta's checkpoint file of each official backbone.
    static let officialFileNames: [SAMConfig.Backbone: String] = [
        .vitB: "sam_vit_b_01ec64.pth", .vitL: "sam_vit_l_0b3195.pth", .vitH: "sam_vit_h_4b8939.pth",
    ]

    /// The backbone's checkpoint in weights/ (of the working directory), where users put Meta's files, when
    /// it is there: the checkpoint used when no --sam is given.
    static func weightsInFolder(_ backbone: SAMConfig.Backbone) -> String? {
        guard let name = officialFileNames[backbone], FileManager.default.fileExists(atPath: "weights/" + name) else { return nil }
        return "weights/" + name
    }

    /// What `build` makes, resolved from the flags and the files' descriptions; the SAM weights are not read.
    struct Plan {
        var config: SAMConfig
        var peft: PEFTConfig
        var description: DeltaDescription?
        var deltaTensors: StateDict?
        /// The SAM file to load (--sam, or Meta's file in weights/), nil for drawn weights.
        var sam: String?
        /// --sam is a full export (`export` without --merge): the model and its delta in one file.
        var fullExport: Bool
        /// Weights drawn from the generator in Meta's layout (train --random-weights deltas, speed runs).
        var random: Bool
        /// Lines for stderr when the model is built (where weights come from).
        var notes: [String]
    }

    func plan() throws -> Plan {
        var notes: [String] = []
        var description: DeltaDescription?
        var deltaTensors: StateDict?
        if let delta {
            let read = try DeltaFile.read(at: delta)
            (deltaTensors, description) = (read.tensors, read.description)
        }
        // A full export is described as a delta is: the model is made from that description, then loaded
        // whole. A merged export is described as a model without a delta (the delta is folded in).
        var fullExport = false
        var describedBy = delta
        // (A missing file is named where it is loaded, after the checks below that say more.)
        if let sam = self.sam, FileManager.default.fileExists(atPath: sam) {
            let metadata = try SAMCheckpointFile.metadata(at: sam)
            if metadata["format"] == "cracksam-full" {
                if let delta { throw ValidationError("\(sam) is a full export: it holds its delta already; drop --delta \(delta)") }
                description = try DeltaDescription(metadata: metadata, source: sam)
                fullExport = true
                describedBy = sam
            } else if metadata["format"] == "sam-merged", let delta {
                // Its delta is in its weights: another on top would apply LoRA twice (or a second delta).
                throw ValidationError("\(sam) is a merged export: its delta is folded into its weights already; drop --delta \(delta)")
            } else if metadata["format"] == "sam-merged", metadata["delta_type"] != nil {
                description = try DeltaDescription(metadata: metadata, source: sam)
                describedBy = sam
            }
        }
        // Another class count than the delta's does not fit its head (its mask tokens and IoU outputs).
        if let d = description, model.numClasses != 1, model.numClasses != d.numClasses, let describedBy {
            throw ValidationError("\(describedBy) was trained with \(d.numClasses) crack class(es); --num-classes \(model.numClasses) does not fit its head")
        }
        var config: SAMConfig
        // (With --sam the file holds its weights; the sizes and input size still come from the deltas.)
        let encoder = delta == nil ? encoderOf : nil
        if let c = try model.config(recorded: (description ?? encoder)?.customBackbone, recordedImageSize: (description ?? encoder)?.imageSize,
                                    source: describedBy) {
            config = c
            if let d = description, d.backbone != "unknown", d.backbone != c.backbone.rawValue {
                throw ValidationError("\(describedBy!) was trained on \(d.backbone), but --vit \(model.vit!) was given")
            }
            if model.imageSize == nil, let size = (description ?? encoder)?.imageSize { config.imageSize = size }
            if model.imageSize == nil, description == nil, encoder == nil, delta == nil, let size = imageSizeOf {
                config.imageSize = size
                notes.append("untrained: at \(size) px, the input size the deltas beside it were trained at (--image-size sets another)")
            }
            // The delta's classes (1 is also the flag's default).
            if let d = description { config.numClasses = d.numClasses }
        } else if let d = description, let backbone = SAMConfig.Backbone(rawValue: d.backbone), backbone != .custom {
            config = try SAMConfig.named(backbone, imageSize: model.imageSize ?? d.imageSize, numClasses: d.numClasses)
        } else {
            let why: String
            if let describedBy {
                why = " (\(describedBy) does not say which backbone it was trained on)"
            } else if let sam {
                why = ": \(sam) does not say which backbone it holds"
            } else {
                why = ""
            }
            throw ValidationError("--vit b|l|h (or custom, with its sizes) is required" + why)
        }
        if let e = encoder, let b = e.customBackbone, description == nil {
            let globals = b.globalBlocks.isEmpty ? "none" : b.globalBlocks.map(String.init).joined(separator: ",")
            let weights = sam.map { "weights of \($0)" } ?? "weights drawn with seed \(e.initSeed ?? seed)"
            notes.append("untrained: the custom encoder the deltas beside it were trained on (embed \(b.embedDim), depth \(b.depth), heads \(b.heads), "
                + "global blocks \(globals), patch \(b.patchSize), \(config.imageSize) px, \(weights)), with a fresh head")
        }
        // What this tool's own description records is what the file holds: a flag saying otherwise (LoRA
        // on q,k for a q,v delta) loaded v's trained weights as k's, since the authors' keys are positional.
        // (Whether the description was recorded or read from the keys: the delta, when there is one, is
        // what describes the model.)
        let recorded = describedBy.map { fullExport || DeltaFile.isDescribed(at: $0) } ?? false
        if let d = description, let describedBy, recorded {
            try peft.requireAgreement(with: d.peft, recordedBy: describedBy)
        }
        var peftConfig = try peft.resolve(over: description?.peft ?? PEFTConfig(deltaType: delta == nil ? .none : .lora),
                                          refuseUnused: refuseUnusedPEFTSizes)
        if delta == nil, !fullExport, freshDelta != .made {
            let given = (peft.deltaType.map { $0.lowercased() == "none" ? [] : ["--delta-type"] } ?? []) + peft.loraSizeFlags + peft.adapterSizeFlags
            if freshDelta == .refused, !given.isEmpty {
                throw ValidationError("\(given.joined(separator: ", ")) without --delta: there is no trained delta to load \(given.count == 1 ? "it" : "them") into "
                    + "(a fresh adapter is random); pass --delta FILE, or leave \(given.count == 1 ? "it" : "them") out")
            }
            peftConfig.deltaType = .none
        }
        // The authors' files carry no description: what the keys cannot show is assumed, and said.
        if let delta, let d = description, !recorded {
            var assumed: [String] = []
            if d.peft.usesLoRA && peft.loraTargets == nil { assumed.append("LoRA on q and v (--lora-targets)") }
            if d.peft.usesAdapter && peft.adapterScale == nil { assumed.append("adapter scale 0.2 (--adapter-scale)") }
            if config.backbone == .custom && sam == nil {
                assumed.append("custom encoder drawn at random with seed \(seed), as train draws it by default (a description would record the seed)")
            }
            if !assumed.isEmpty {
                let missing = delta.lowercased().hasSuffix(".safetensors") ? "none in its metadata" : "none inside it, no \(PyTorchCheckpoint.sidecarPath(for: delta))"
                notes.append("\(delta) carries no description (\(missing)): read from its keys as a "
                    + "\(d.peft.deltaType.rawValue) delta, assuming the authors' " + assumed.joined(separator: " and ")
                    + "; pass the flag if it was trained otherwise")
            }
        }
        // A custom encoder is in no file of the delta's: one trained on a --sam file's encoder needs that file
        // again, and one trained on drawn weights needs them drawn again. Either on the other ran without a
        // word (a delta of a file's encoder on weights drawn with the default seed scored as something else).
        if config.backbone == .custom, !fullExport, let d = description, d.customBackbone != nil, let delta {
            if d.initSeed == nil, self.sam == nil {
                throw ValidationError("\(delta) was trained on the custom encoder of a checkpoint file (train --sam), which the delta "
                    + "does not hold: pass that file as --sam")
            }
            if let drawn = d.initSeed, let given = self.sam {
                throw ValidationError("\(delta) was trained on a custom encoder drawn at random (seed \(drawn)), not on a file's: "
                    + "it does not fit --sam \(given); leave --sam out")
            }
        }
        // A delta trained on random weights in Meta's layout (train --random-weights, for speed runs) gets
        // them again; on Meta's checkpoint its scores would mean nothing.
        var random = randomWeights
        if config.backbone != .custom, !fullExport, let d = description, let drawn = d.initSeed, let delta {
            if let given = self.sam {
                throw ValidationError("\(delta) was trained on random \(d.backbone) weights (train --random-weights, seed \(drawn)), "
                    + "not on Meta's checkpoint: it does not fit --sam \(given)")
            }
            notes.append("\(delta) was trained on random \(d.backbone) weights (train --random-weights): drawn again with seed \(drawn)")
            random = true
        }
        var sam = self.sam
        if sam == nil, config.backbone != .custom, !random, let found = ModelBuilder.weightsInFolder(config.backbone) {
            notes.append("using \(found) (no --sam given)")
            sam = found
        }
        if sam == nil && config.backbone != .custom && !random {
            throw ValidationError("--sam FILE is required for --vit \(config.backbone.rawValue) (official SAM weights), "
                + "or \(ModelBuilder.officialFileNames[config.backbone]!) in weights/")
        }
        return Plan(config: config, peft: peftConfig, description: description, deltaTensors: deltaTensors, sam: sam,
                    fullExport: fullExport, random: random, notes: notes)
    }

    /// Everything `build` checks except the SAM weights: the files are there and readable as what they
    /// claim, the flags agree with the delta, and the delta's keys and shapes fit the model (made on the
    /// meta device, which holds no memory). `eval` runs it for every model before evaluating the first.
    func check() throws -> (config: SAMConfig, peft: PEFTConfig, description: DeltaDescription?) {
        let plan = try plan()
        if let sam = plan.sam, !FileManager.default.fileExists(atPath: sam) { throw TorchError.fileNotFound(path: sam) }
        let net = try ParameterInit.withDevice(.meta) { () throws -> SAMModel in
            let net = try SAMModel(config: plan.config)
            if plan.peft.deltaType != .none { try net.applyPEFT(plan.peft) }
            return net
        }
        if let tensors = plan.deltaTensors, let delta { try net.checkDelta(tensors, source: delta) }
        return (plan.config, plan.peft, plan.description)
    }

    func build() throws -> SAMModel { try buildReporting().model }

    /// The model, and whether --sam's own trained decoder head was loaded (a CrackSAM model, not Meta's).
    func buildReporting() throws -> (model: SAMModel, trainedHead: Bool) {
        let plan = try plan()
        if printsNotes { for note in plan.notes { FileHandle.standardError.write(Data((note + "\n").utf8)) } }
        let config = plan.config
        // Weights drawn from the generator are drawn with the seed the delta was trained with: the same
        // encoder (a delta on another one scores as if untrained).
        let drawnSeed = plan.sam == nil ? plan.description?.initSeed ?? (delta == nil ? encoderOf?.initSeed : nil) ?? seed : seed
        try Torch.manualSeed(drawnSeed)
        let net = try SAMModel(config: config)
        if plan.sam == nil { net.initSeed = drawnSeed }
        var trainedHead = false
        if let sam = plan.sam {
            let file = try SAMCheckpointFile.read(at: sam)
            if plan.fullExport {
                if plan.peft.deltaType != .none { try net.applyPEFT(plan.peft) }
                // Trained at another input size (--image-size differs): resized as Meta's checkpoints are.
                let report = try net.loadStateDict(net.resizedToInputSize(file.stateDict), strict: !nonStrict, source: sam)
                if !report.isClean {
                    FileHandle.standardError.write(Data("warning: \(sam) does not fully fit the model:\n\(report)\n".utf8))
                }
                return (net, true)
            }
            // A full export without its description: its delta keys would be "unexpected" one by one.
            if let key = file.stateDict.keys.first(where: { $0.contains(".lora_") || $0.contains(".lora.") || $0.contains(".adapter.") }) {
                let where_ = sam.lowercased().hasSuffix(".safetensors") ? "its metadata" : "inside it, or its sidecar \(PyTorchCheckpoint.sidecarPath(for: sam))"
                throw ValidationError("\(sam) holds a delta in its weights (\(key)): a full export whose description (\(where_)) "
                    + "is missing; put it back, or export the model again")
            }
            trainedHead = keepDecoderHead ?? file.hasCrackSAMHead
            let report = try net.loadSAMCheckpoint(file, strict: !nonStrict, keepDecoderHead: keepDecoderHead)
            if !report.isClean {
                FileHandle.standardError.write(Data("warning: \(sam) does not fully fit the model:\n\(report)\n".utf8))
            }
            if keepDecoderHead == nil, file.hasCrackSAMHead, delta == nil {
                FileHandle.standardError.write(Data("\(sam): a CrackSAM model (its decoder head has \(config.numClasses + 1) mask tokens): its trained head is loaded\n".utf8))
            }
            if file.hasCrackSAMHead, let delta {
                FileHandle.standardError.write(Data(("warning: \(sam) is a CrackSAM model (its decoder head has \(config.numClasses + 1) "
                    + "mask tokens), perhaps a merged export: \(delta) is applied on top of whatever delta it already holds\n").utf8))
            }
        }
        if plan.peft.deltaType != .none { try net.applyPEFT(plan.peft) }
        if let tensors = plan.deltaTensors, let delta { try net.loadDelta(tensors, source: delta) }
        return (net, trainedHead)
    }
}

/// `--resize spline|opencv`: ArgumentParser parses it, and names the valid values when it cannot.
extension ResizeMethod: ExpressibleByArgument {}
