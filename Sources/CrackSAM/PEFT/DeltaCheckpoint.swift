import Foundation
import OrderedCollections

/// Delta checkpoints in the authors' key format (REFERENCE "Delta checkpoint file"): `w_a_000`, `w_b_000`, …
/// plus every `prompt_encoder.*` and `mask_decoder.*` entry of the state dict.
extension SAMModel {
    /// The delta's slots under the authors' keys, in the order the authors write them.
    func deltaSlots() -> [(key: String, parameter: Parameter)] {
        guard let delta else { return [] }
        var out: [(key: String, parameter: Parameter)] = []
        func k(_ letter: String, _ index: Int, _ suffix: String = "") -> String {
            "w_\(letter)_" + String(format: "%03ld", index) + suffix
        }
        if delta.config.usesAdapter {
            for (letter, adapters, layer) in [("a", delta.attentionAdapters, \Adapter.down), ("b", delta.attentionAdapters, \Adapter.up),
                                              ("c", delta.mlpAdapters, \Adapter.down), ("d", delta.mlpAdapters, \Adapter.up)] {
                for (i, adapter) in adapters.enumerated() {
                    let linear = adapter[keyPath: layer]
                    out.append((k(letter, i), linear.weight))
                    if let bias = linear.bias { out.append((k(letter, i, "_bia"), bias)) }
                }
            }
        }
        if delta.config.usesLoRA {
            // Within a block, targets in q, k, v, o order: for "qv", w_a_{2i} is block i's q and w_a_{2i+1} its v.
            let suffix = delta.config.deltaType == .both ? "_l" : ""
            let targets = delta.config.loraTargets
            for (letter, layer) in [("a", \LoRAPair.a), ("b", \LoRAPair.b)] {
                for (i, pairs) in delta.lora.enumerated() {
                    for (j, t) in targets.enumerated() {
                        if let pair = pairs[t] { out.append((k(letter, i * targets.count + j, suffix), pair[keyPath: layer].weight)) }
                    }
                }
            }
        }
        return out
    }

    /// The trainable state in the authors' format: delta weights, then prompt encoder and mask decoder.
    public func deltaStateDict() -> StateDict {
        var out = StateDict()
        for (k, p) in deltaSlots() { out[k] = p.tensor }
        for (k, p) in promptEncoder.namedSlots(prefix: "prompt_encoder.") { out[k] = p.tensor }
        for (k, p) in maskDecoder.namedSlots(prefix: "mask_decoder.") { out[k] = p.tensor }
        return out
    }

    /// Loads a delta in the authors' format; every missing, unexpected or mis-shaped key is named.
    public func loadDelta(_ stateDict: StateDict, source: String) throws {
        let slots = try checkDelta(stateDict, source: source)
        try Torch.withNoGrad {
            for (k, p) in slots { try p.assign(stateDict[k]!) }
        }
    }

    /// The delta's slots by key, after checking that `stateDict` fills every one with its shape and has
    /// no other key: what loadDelta would refuse, found without loading (on a meta-device model too).
    @discardableResult
    public func checkDelta(_ stateDict: StateDict, source: String) throws -> OrderedDictionary<String, Parameter> {
        var slots: OrderedDictionary<String, Parameter> = [:]
        for (k, p) in deltaSlots() { slots[k] = p }
        for (k, p) in promptEncoder.namedSlots(prefix: "prompt_encoder.") { slots[k] = p }
        for (k, p) in maskDecoder.namedSlots(prefix: "mask_decoder.") { slots[k] = p }
        var report = LoadReport()
        report.unexpected = stateDict.keys.filter { slots[$0] == nil }
        for (k, p) in slots {
            guard let t = stateDict[k] else { report.missing.append(k); continue }
            if t.shape != p.shape { report.mismatched.append(.init(key: k, expected: p.shape, actual: t.shape)) }
        }
        guard report.isClean else { throw TorchError.stateDictMismatch(source: source, report: report) }
        try stateDict.requireFinite(source: source)
        return slots
    }

    public var deltaDescription: DeltaDescription {
        let custom = config.backbone != .custom ? nil
            : DeltaDescription.CustomBackbone(embedDim: config.embedDim, depth: config.depth, heads: config.heads,
                                              globalBlocks: config.globalBlocks, patchSize: config.patchSize)
        return DeltaDescription(peft: delta?.config ?? PEFTConfig(deltaType: .none), backbone: config.backbone.rawValue,
                                imageSize: config.imageSize, numClasses: config.numClasses, customBackbone: custom, initSeed: initSeed)
    }

    /// Writes the delta: `.safetensors` with the description as metadata, otherwise a `.pth` that
    /// `torch.load` reads, holding its description (and a copy in a `<file>.json` sidecar). Atomic.
    public func saveDelta(to path: String) throws {
        let description = deltaDescription
        if path.lowercased().hasSuffix(".safetensors") {
            try SafeTensors.save(deltaStateDict(), metadata: description.metadata, to: path)
        } else {
            try PyTorchCheckpoint.save(deltaStateDict(), description: description.metadata, to: path)
        }
    }
}

/// Reading delta files and what they say about themselves.
public enum DeltaFile {
    /// Whether the file carries its description (safetensors metadata, or a .pth's own record or
    /// sidecar); without one, `read` infers it from the keys and assumes what keys cannot show.
    public static func isDescribed(at path: String) -> Bool {
        if path.lowercased().hasSuffix(".safetensors") { return (try? SafeTensors.metadata(at: path))?["format"] == "cracksam-delta" }
        return (try? PyTorchCheckpoint.description(of: path)) != nil
    }

    /// The tensors and, when recorded (metadata, record or sidecar) or inferable from the keys, the description.
    public static func read(at path: String) throws -> (tensors: StateDict, description: DeltaDescription?) {
        if path.lowercased().hasSuffix(".safetensors") {
            let contents = try SafeTensors.load(at: path)
            try refuseExport(contents.metadata["format"], path: path)
            try refuseWholeModel(contents.tensors, path: path)
            if contents.metadata["format"] == "cracksam-delta" {
                return (contents.tensors, try DeltaDescription(metadata: contents.metadata, source: path))
            }
            return (contents.tensors, infer(contents.tensors))
        }
        let tensors = try PyTorchCheckpoint.loadStateDict(at: path)
        if let described = try PyTorchCheckpoint.description(of: path) {
            try refuseExport(described.metadata["format"], path: path)
            return (tensors, try DeltaDescription(metadata: described.metadata, source: described.source))
        }
        try refuseWholeModel(tensors, path: path)
        return (tensors, infer(tensors))
    }

    /// Meta's checkpoint or an export without its description, given where a delta goes.
    static func refuseWholeModel(_ tensors: StateDict, path: String) throws {
        guard tensors["image_encoder.patch_embed.proj.weight"] != nil else { return }
        throw TorchError.malformedCheckpoint(path: path, reason: "it holds a whole SAM model (image_encoder.*), not a delta; "
            + "pass it as --sam \(path)")
    }

    /// `export`'s merged and full files hold a whole model: they are read with --sam, not as a delta.
    static func refuseExport(_ format: String?, path: String) throws {
        switch format {
        case "sam-merged"?:
            throw TorchError.malformedCheckpoint(path: path, reason: "it is a merged export (export --merge: SAM weights with the "
                + "delta folded in), not a delta; pass it as --sam \(path)")
        case "cracksam-full"?:
            throw TorchError.malformedCheckpoint(path: path, reason: "it is a full export (SAM weights and the delta), not a delta; "
                + "pass it as --sam \(path)")
        default: return
        }
    }

    /// What an authors' delta without a description must be, from its keys and shapes. LoRA targets
    /// cannot be seen in the keys; two per block (q, v: the authors' setting) is assumed and checked
    /// against the block count of a known backbone.
    public static func infer(_ sd: StateDict) -> DeltaDescription? {
        let hasAdapter = sd["w_c_000"] != nil
        let loraKey = sd["w_a_000_l"] != nil ? "_l" : ""
        let hasLoRA = !hasAdapter ? sd["w_a_000"] != nil : sd["w_a_000_l"] != nil
        let type: PEFTConfig.DeltaType = hasAdapter && hasLoRA ? .both : hasAdapter ? .adapter : hasLoRA ? .lora : .none
        var peft = PEFTConfig(deltaType: type)
        var dim: Int?
        var depth: Int?
        if hasAdapter, let down = sd["w_a_000"], down.rank == 2 {
            peft.adapterDim = down.size(0)
            dim = down.size(1)
            depth = sd.keys.filter { $0.hasPrefix("w_c_") && !$0.hasSuffix("_bia") }.count
        }
        if hasLoRA, let a = sd["w_a_000" + loraKey], a.rank == 2 {
            peft.rank = a.size(0)
            dim = dim ?? a.size(1)
            let pairs = sd.keys.filter { $0.hasPrefix("w_a_") && ($0.hasSuffix("_l") == (loraKey == "_l")) && !$0.hasSuffix("_bia") }.count
            depth = depth ?? pairs / 2
        }
        let backbone: String
        switch (dim, depth) {
        case (768?, 12?): backbone = SAMConfig.Backbone.vitB.rawValue
        case (1024?, 24?): backbone = SAMConfig.Backbone.vitL.rawValue
        case (1280?, 32?): backbone = SAMConfig.Backbone.vitH.rawValue
        default: backbone = "unknown"
        }
        let tokens = sd["mask_decoder.mask_tokens.weight"]?.size(0) ?? 2
        return DeltaDescription(peft: peft, backbone: backbone, imageSize: 448, numClasses: max(tokens - 1, 1))
    }
}
