import ArgumentParser
import CrackSAM
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a fine-tuned model: merged SAM weights, a full state dict, or the delta alone.",
        discussion: """
            Default: the full state dict (official SAM keys plus the delta under its own keys, e.g.
            image_encoder.blocks.0.attn.adapter.down.weight, ….attn.qkv.lora_q.a.weight) and the config
            (safetensors metadata, or in a .pth a cracksam.json record that torch.load passes over, copied
            to a <file>.json sidecar).
            --merge: LoRA folded into qkv/proj, a plain SAM state dict with the trained prompt encoder and
            decoder, loadable by Meta-layout code (LoRA only: adapters cannot be folded); it says what it
            is in the same way.
            Merged and full exports load back with --sam FILE (their trained decoder head is kept).
            --delta-only: the delta in the authors' format (w_a_000, …, prompt_encoder.*, mask_decoder.*).
            The format follows the extension: .safetensors, otherwise a torch.save .pth.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var peft: PEFTOptions

    @Option(help: "Official SAM checkpoint (sam_vit_*.pth); default: Meta's file in weights/; not needed for --vit custom.")
    var sam: String?

    @Option(help: "The trained delta.")
    var delta: String

    @Option(help: "Output file (.pth or .safetensors).")
    var out: String

    @Flag(help: "Fold LoRA into the SAM weights.")
    var merge = false

    @Flag(help: "Write only the delta, in the authors' format.")
    var deltaOnly = false

    @Flag(help: "Overwrite an existing output.")
    var force = false

    func validate() throws {
        if merge && deltaOnly { throw ValidationError("--merge and --delta-only exclude each other") }
    }

    func run() throws {
        let sidecar = PyTorchCheckpoint.sidecarPath(for: out)
        let safetensors = out.lowercased().hasSuffix(".safetensors")
        let targets = safetensors ? [out] : [out, sidecar]
        for target in targets { try requireNotAFolder(target, "--out") }
        // --force replaces an earlier export, never the files the export is made from.
        for (input, option) in [(delta, "--delta"), (sam, "--sam")] {
            guard let input else { continue }
            for source in [input, PyTorchCheckpoint.sidecarPath(for: input)] where targets.contains(where: { samePath($0, source) }) {
                throw ValidationError("--out \(out) would write over \(source), which \(option) reads; name another file")
            }
        }
        if !force, let existing = targets.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw ValidationError("\(existing) exists; pass --force to overwrite it")
        }
        // Made before the model is built (a ViT-H takes a while to load), not found missing after.
        try prepareFolder(for: out, "--out")
        // A model's worth of temporary file from an export that was killed mid-write (18.6 MB for a small
        // model, gigabytes for ViT-H) is not left for good; and a Ctrl-C from here on stops before the
        // write, or lets the write in progress finish, rather than leaving another.
        let folder = Folder.parent(of: out)
        AtomicFile.removeLeftovers(in: folder.isEmpty ? "." : folder)
        StopRequest.catchSignals()
        var builder = ModelBuilder(model: model, peft: peft, sam: sam, delta: delta)
        builder.freshDelta = .refused
        let net = try builder.build()
        let description = net.deltaDescription
        if StopRequest.isRequested { throw CommandFailure(description: "stopped by a signal before writing; nothing was written") }
        func save(_ stateDict: StateDict, _ metadata: [String: String]) throws {
            if safetensors {
                try SafeTensors.save(stateDict, metadata: metadata, to: out)
            } else {
                try PyTorchCheckpoint.save(stateDict, description: metadata, to: out)
            }
        }
        if deltaOnly {
            try net.saveDelta(to: out)
        } else if merge {
            let merged = try net.mergedStateDict()
            // The mark that tells --sam this is a CrackSAM model whose decoder head is to be kept (Meta's
            // state-dict loaders read neither the record inside nor the sidecar: the .pth stays a plain SAM state dict).
            // Described as a model with no delta (the delta is folded in), custom backbone sizes included, so
            // --sam FILE needs no model flags.
            var metadata = DeltaDescription(peft: PEFTConfig(deltaType: .none), backbone: description.backbone,
                                            imageSize: description.imageSize, numClasses: description.numClasses,
                                            customBackbone: description.customBackbone).metadata
            metadata["format"] = "sam-merged"
            // What was folded in, for the record (only LoRA folds: Merge refuses adapters).
            if description.peft.usesLoRA {
                (metadata["merged_delta_type"], metadata["merged_rank"], metadata["merged_lora_targets"]) =
                    (description.peft.deltaType.rawValue, String(description.peft.rank), description.peft.targetString)
            }
            try save(merged, metadata)
        } else {
            let full = net.stateDict()
            var metadata = description.metadata
            metadata["format"] = "cracksam-full"
            try save(full, metadata)
        }
        if StopRequest.isRequested { FileHandle.standardError.write(Data("a signal came during the write, which was finished first\n".utf8)) }
        print("wrote \(out) (\(deltaOnly ? "delta, authors' format" : merge ? "merged SAM state dict" : "full state dict"); \(description.peft.deltaType.rawValue) on \(description.backbone))")
    }
}
