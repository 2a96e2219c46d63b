import ArgumentParser
import CrackSAM
import Foundation

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run CrackSAM on images and write the raw mask logits and image embeddings.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var peft: PEFTOptions

    @Option(help: "Official SAM checkpoint (sam_vit_*.pth); not needed for --vit custom.")
    var sam: String?

    @Option(help: "A trained delta (authors' format .pth, or .safetensors); its recorded settings are used unless flags say otherwise.")
    var delta: String?

    @Argument(help: "PNG or JPEG images (resized to the input size when they differ).")
    var images: [String]

    @Option(help: "Write logits (key 'logits', float32 [N, num_classes+1, S, S]) to this .safetensors file.")
    var saveLogits: String?

    @Option(help: "Write image embeddings (key 'embedding', [N, 256, S/16, S/16]) to this .safetensors file.")
    var saveEmbedding: String?

    @Flag(help: "Also load the checkpoint's mask tokens, hypernetworks and IoU head (a file whose decoder already has num-classes + 1 tokens); by default they are CrackSAM's fresh, seeded initialisation.")
    var keepDecoderHead = false

    @Flag(help: "Load what fits and list missing, unexpected and mis-shaped keys as a warning instead of failing.")
    var nonStrict = false

    @Option(help: "Seed for the fresh decoder head.")
    var seed: UInt64 = 3407

    @Option(help: "Images per forward pass.")
    var batch = 4

    @Option(help: "cpu, cuda or cuda:N.")
    var device = "cpu"

    @Option(help: "libtorch CPU threads.")
    var threads: Int?

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        guard Device(device) != nil else { throw ValidationError("--device must be cpu, cuda or cuda:N (got '\(device)')") }
    }

    func run() throws {
        if let threads { Torch.threads = threads }
        let device = Device(device)!
        let net = try ModelBuilder(model: model, peft: peft, sam: sam, delta: delta, keepDecoderHead: keepDecoderHead,
                                   nonStrict: nonStrict, seed: seed).build()
        let config = net.config
        if device != .cpu { try net.move(to: device) }

        var logits: [Tensor] = []
        var embeddings: [Tensor] = []
        try Torch.withInferenceMode {
            for start in stride(from: 0, to: images.count, by: batch) {
                let paths = Array(images[start..<min(start + batch, images.count)])
                let input = try Tensor.stack(paths.map { try Preprocess.image(at: $0, size: config.imageSize) })
                let out = try net(input.to(device: device))
                let l = try out.logits.to(device: .cpu, dtype: .float32)
                logits.append(l)
                if saveEmbedding != nil { embeddings.append(try out.imageEmbedding.to(device: .cpu, dtype: .float32)) }
                let crack = try l.argmax(dim: 1).gt(0).to(dtype: .float32).mean(dims: [1, 2]).floats()
                for (path, fraction) in zip(paths, crack) {
                    print(String(format: "%@  crack pixels %.2f%%", path, 100 * fraction))
                }
            }
        }
        let names = String(decoding: try JSONSerialization.data(withJSONObject: images), as: UTF8.self)
        let metadata = ["images": names, "backbone": config.backbone.rawValue, "image_size": String(config.imageSize)]
        if let saveLogits {
            try SafeTensors.save(["logits": try Tensor.cat(logits)], metadata: metadata, to: saveLogits)
            print("logits → \(saveLogits)")
        }
        if let saveEmbedding {
            try SafeTensors.save(["embedding": try Tensor.cat(embeddings)], metadata: metadata, to: saveEmbedding)
            print("embeddings → \(saveEmbedding)")
        }
    }
}
