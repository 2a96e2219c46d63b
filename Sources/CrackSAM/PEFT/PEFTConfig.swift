import Foundation

/// Which parameter-efficient delta a CrackSAM model carries (REFERENCE "Fine-tuning deltas").
public struct PEFTConfig: Equatable, Sendable, Codable {
    public enum DeltaType: String, CaseIterable, Sendable, Codable {
        /// Adapters: sequential after attention, parallel beside the MLP.
        case adapter
        /// LoRA on the fused qkv (any of q, k, v) and/or the attention output projection (o).
        case lora
        /// Adapter and LoRA in every block.
        case both
        /// Head only: no delta; only the prompt encoder and mask decoder train.
        case none
    }

    public enum Target: Character, CaseIterable, Sendable, Codable {
        case q = "q", k = "k", v = "v", o = "o"
    }

    public var deltaType: DeltaType
    public var rank: Int
    /// In canonical order q, k, v, o (the order of the authors' w_a/w_b keys within a block).
    public var loraTargets: [Target]
    public var adapterDim: Int
    public var adapterScale: Double

    public init(deltaType: DeltaType = .lora, rank: Int = 4, loraTargets: [Target] = [.q, .v], adapterDim: Int = 32,
                adapterScale: Double = 0.2) {
        self.deltaType = deltaType
        self.rank = rank
        self.loraTargets = Target.allCases.filter { loraTargets.contains($0) }
        self.adapterDim = adapterDim
        self.adapterScale = adapterScale
    }

    public var usesLoRA: Bool { deltaType == .lora || deltaType == .both }
    public var usesAdapter: Bool { deltaType == .adapter || deltaType == .both }

    /// "qv" → [.q, .v]
    public static func parseTargets(_ text: String) throws -> [Target] {
        var out: [Target] = []
        for c in text.lowercased() {
            guard let t = Target(rawValue: c) else {
                throw TorchError.invalidArgument("LoRA target '\(c)' is not one of q, k, v, o")
            }
            if !out.contains(t) { out.append(t) }
        }
        guard !out.isEmpty else { throw TorchError.invalidArgument("no LoRA targets given") }
        return Target.allCases.filter { out.contains($0) }
    }

    public var targetString: String { String(loraTargets.map(\.rawValue)) }

    public func validate() throws {
        if usesLoRA {
            guard (1...65536).contains(rank) else { throw TorchError.invalidArgument("LoRA rank must be between 1 and 65536 (got \(rank))") }
            guard !loraTargets.isEmpty else { throw TorchError.invalidArgument("LoRA needs at least one target") }
        }
        if usesAdapter {
            guard (1...65536).contains(adapterDim) else {
                throw TorchError.invalidArgument("adapter dim must be between 1 and 65536 (got \(adapterDim))")
            }
            guard adapterScale.isFinite else { throw TorchError.invalidArgument("adapter scale must be finite") }
        }
    }
}

/// Everything needed to rebuild the model a delta belongs to; stored with a delta (a JSON record
/// inside a `.pth`, copied to a sidecar; metadata for `.safetensors`) so loading needs no flags.
public struct DeltaDescription: Equatable, Sendable, Codable {
    public var peft: PEFTConfig
    public var backbone: String
    public var imageSize: Int
    public var numClasses: Int
    /// A custom backbone's sizes. Its frozen encoder is in no file: the delta is only meaningful on the
    /// same encoder, made again from these and `initSeed`. nil for Meta's backbones and for files written
    /// before the sizes were kept.
    public var customBackbone: CustomBackbone?
    /// The seed the frozen weights were drawn with, where they came from the random generator rather
    /// than a file (a custom backbone; Meta's layout under `train --random-weights`). nil: from a file.
    public var initSeed: UInt64?

    public struct CustomBackbone: Equatable, Sendable, Codable {
        public var embedDim: Int
        public var depth: Int
        public var heads: Int
        public var globalBlocks: [Int]
        public var patchSize: Int

        public init(embedDim: Int, depth: Int, heads: Int, globalBlocks: [Int], patchSize: Int) {
            self.embedDim = embedDim
            self.depth = depth
            self.heads = heads
            self.globalBlocks = globalBlocks
            self.patchSize = patchSize
        }
    }

    public init(peft: PEFTConfig, backbone: String, imageSize: Int, numClasses: Int, customBackbone: CustomBackbone? = nil,
                initSeed: UInt64? = nil) {
        self.peft = peft
        self.backbone = backbone
        self.imageSize = imageSize
        self.numClasses = numClasses
        self.customBackbone = customBackbone
        self.initSeed = initSeed
    }

    /// Flat string map (safetensors metadata, a .pth's record and its sidecar share it).
    public var metadata: [String: String] {
        var m = [
            "format": "cracksam-delta", "delta_type": peft.deltaType.rawValue, "backbone": backbone, "image_size": String(imageSize),
            "num_classes": String(numClasses),
        ]
        // Sizes only of what the delta has: a merged export's "rank 4, q,v" were defaults, not what was merged.
        if peft.usesLoRA { (m["rank"], m["lora_targets"]) = (String(peft.rank), peft.targetString) }
        if peft.usesAdapter { (m["adapter_dim"], m["adapter_scale"]) = (String(peft.adapterDim), String(peft.adapterScale)) }
        if let c = customBackbone {
            m["embed_dim"] = String(c.embedDim)
            m["depth"] = String(c.depth)
            m["heads"] = String(c.heads)
            m["global_blocks"] = c.globalBlocks.map(String.init).joined(separator: ",")
            m["patch_size"] = String(c.patchSize)
        }
        if let initSeed { m["init_seed"] = String(initSeed) }
        return m
    }

    /// Reads a description (a .pth's record or sidecar, safetensors metadata), checked as the flags it stands for are: a
    /// bad value is named with the file, not as a flag the user never gave.
    public init(metadata m: [String: String], source: String) throws {
        do {
            try self.init(unchecked: m, source: source)
            try peft.validate()
            if let c = customBackbone {
                guard backbone == SAMConfig.Backbone.custom.rawValue else {
                    throw TorchError.invalidArgument("it gives a custom encoder's sizes for backbone '\(backbone)'")
                }
                var config = SAMConfig(backbone: .custom, embedDim: c.embedDim, depth: c.depth, heads: c.heads, globalBlocks: c.globalBlocks,
                                       imageSize: imageSize, numClasses: numClasses)
                config.patchSize = c.patchSize
                try config.validate()
            } else if let b = SAMConfig.Backbone(rawValue: backbone), b != .custom {
                try SAMConfig.named(b, imageSize: imageSize, numClasses: numClasses).validate()
            } else {
                // The authors' files ("unknown"), and custom ones written before the sizes were kept.
                guard ["unknown", SAMConfig.Backbone.custom.rawValue].contains(backbone) else {
                    throw TorchError.invalidArgument("backbone '\(backbone)' is none of vit_b, vit_l, vit_h, custom")
                }
                guard (1...16384).contains(imageSize) else { throw TorchError.invalidArgument("image size \(imageSize) is outside 1…16384") }
                guard (1...256).contains(numClasses) else { throw TorchError.invalidArgument("num_classes \(numClasses) is outside 1…256") }
            }
        } catch TorchError.invalidArgument(let reason) {
            throw TorchError.malformedCheckpoint(path: source, reason: "its description: \(reason)")
        }
    }

    private init(unchecked m: [String: String], source: String) throws {
        func need(_ key: String) throws -> String {
            guard let v = m[key] else { throw TorchError.malformedCheckpoint(path: source, reason: "delta description lacks '\(key)'") }
            return v
        }
        func int(_ key: String) throws -> Int {
            guard let v = Int(try need(key)) else { throw TorchError.malformedCheckpoint(path: source, reason: "'\(key)' is not an integer") }
            return v
        }
        guard let type = PEFTConfig.DeltaType(rawValue: try need("delta_type")) else {
            throw TorchError.malformedCheckpoint(path: source, reason: "unknown delta_type '\(m["delta_type"] ?? "")'")
        }
        // A kind's sizes are needed where the delta has that kind; older files wrote all four always.
        let defaults = PEFTConfig()
        let lora = type == .lora || type == .both, adapter = type == .adapter || type == .both
        func size(_ key: String, needed: Bool, _ fallback: Int) throws -> Int { needed || m[key] != nil ? try int(key) : fallback }
        var scale = defaults.adapterScale
        if adapter || m["adapter_scale"] != nil {
            guard let s = Double(try need("adapter_scale")) else {
                throw TorchError.malformedCheckpoint(path: source, reason: "'adapter_scale' is not a number")
            }
            scale = s
        }
        let targets = lora || m["lora_targets"] != nil ? try PEFTConfig.parseTargets(try need("lora_targets")) : defaults.loraTargets
        peft = PEFTConfig(deltaType: type, rank: try size("rank", needed: lora, defaults.rank), loraTargets: targets,
                          adapterDim: try size("adapter_dim", needed: adapter, defaults.adapterDim), adapterScale: scale)
        backbone = try need("backbone")
        imageSize = try int("image_size")
        numClasses = try int("num_classes")
        if m["embed_dim"] != nil {
            let list = try need("global_blocks")
            let globals: [Int] = list.isEmpty ? [] : try list.split(separator: ",", omittingEmptySubsequences: false).map { item in
                guard let i = Int(item) else {
                    throw TorchError.malformedCheckpoint(path: source, reason: "'global_blocks' is not a list of block indices")
                }
                return i
            }
            customBackbone = CustomBackbone(embedDim: try int("embed_dim"), depth: try int("depth"), heads: try int("heads"),
                                            globalBlocks: globals, patchSize: try int("patch_size"))
        }
        if let s = m["init_seed"] {
            guard let v = UInt64(s) else { throw TorchError.malformedCheckpoint(path: source, reason: "'init_seed' is not a seed") }
            initSeed = v
        }
    }
}
