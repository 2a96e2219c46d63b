import ArgumentParser
import CrackSAM

/// The options every command that builds a model shares.
struct ModelOptions: ParsableArguments {
    @Option(help: "SAM backbone: b, l or h.")
    var vit: String?

    @Option(help: "Input size S (a multiple of 16); CrackSAM uses 448.")
    var imageSize = 448

    @Option(help: "Crack classes (masks come out with num-classes + 1 channels, 0 = background).")
    var numClasses = 1

    /// The configuration, or nil when no --vit was given.
    func config() throws -> SAMConfig? {
        guard let vit else { return nil }
        guard let backbone = SAMConfig.Backbone(argument: vit) else {
            throw ValidationError("--vit must be b, l or h (got '\(vit)')")
        }
        let config = try SAMConfig.named(backbone, imageSize: imageSize, numClasses: numClasses)
        do { try config.validate() } catch { throw ValidationError("\(error)") }
        return config
    }

    func requiredConfig() throws -> SAMConfig {
        guard let config = try config() else { throw ValidationError("--vit b|l|h is required") }
        return config
    }
}
