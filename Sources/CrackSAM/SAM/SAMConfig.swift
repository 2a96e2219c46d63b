/// Shape of a SAM/CrackSAM model: the ViT backbone (REFERENCE "SAM graph") plus CrackSAM's image size
/// and number of classes.
public struct SAMConfig: Equatable, Sendable {
    public enum Backbone: String, CaseIterable, Sendable {
        case vitB = "vit_b", vitL = "vit_l", vitH = "vit_h", custom

        /// "b", "vit_b", "vit-b" → .vitB
        public init?(argument: String) {
            switch argument.lowercased().replacingOccurrences(of: "-", with: "_") {
            case "b", "vit_b": self = .vitB
            case "l", "vit_l": self = .vitL
            case "h", "vit_h": self = .vitH
            default: return nil
            }
        }
    }

    public var backbone: Backbone
    public var embedDim: Int
    public var depth: Int
    public var heads: Int
    /// Blocks that attend over the whole token grid; the others attend within 14×14 windows.
    public var globalBlocks: [Int]
    public var imageSize: Int
    public var numClasses: Int
    public var patchSize = 16
    public var windowSize = 14
    public var mlpRatio = 4
    /// The image embedding's channels (the neck's output), also the decoder's width.
    public var promptDim = 256

    public init(backbone: Backbone, embedDim: Int, depth: Int, heads: Int, globalBlocks: [Int], imageSize: Int = 448,
                numClasses: Int = 1) {
        self.backbone = backbone
        self.embedDim = embedDim
        self.depth = depth
        self.heads = heads
        self.globalBlocks = globalBlocks
        self.imageSize = imageSize
        self.numClasses = numClasses
    }

    public static func vitB(imageSize: Int = 448, numClasses: Int = 1) -> SAMConfig {
        SAMConfig(backbone: .vitB, embedDim: 768, depth: 12, heads: 12, globalBlocks: [2, 5, 8, 11], imageSize: imageSize,
                  numClasses: numClasses)
    }

    public static func vitL(imageSize: Int = 448, numClasses: Int = 1) -> SAMConfig {
        SAMConfig(backbone: .vitL, embedDim: 1024, depth: 24, heads: 16, globalBlocks: [5, 11, 17, 23], imageSize: imageSize,
                  numClasses: numClasses)
    }

    public static func vitH(imageSize: Int = 448, numClasses: Int = 1) -> SAMConfig {
        SAMConfig(backbone: .vitH, embedDim: 1280, depth: 32, heads: 16, globalBlocks: [7, 15, 23, 31], imageSize: imageSize,
                  numClasses: numClasses)
    }

    public static func named(_ backbone: Backbone, imageSize: Int = 448, numClasses: Int = 1) throws -> SAMConfig {
        switch backbone {
        case .vitB: return vitB(imageSize: imageSize, numClasses: numClasses)
        case .vitL: return vitL(imageSize: imageSize, numClasses: numClasses)
        case .vitH: return vitH(imageSize: imageSize, numClasses: numClasses)
        case .custom: throw TorchError.invalidArgument("a custom backbone needs explicit sizes")
        }
    }

    /// Side of the token grid (S/16).
    public var gridSize: Int { imageSize / patchSize }
    public var numMaskTokens: Int { numClasses + 1 }

    public func validate() throws {
        // Counts first: the divisibility checks below would trap on a zero.
        for (name, value) in [("patch size", patchSize), ("embed dim", embedDim), ("depth", depth), ("heads", heads),
                              ("MLP ratio", mlpRatio), ("prompt dim", promptDim), ("window size", windowSize)] where value < 1 {
            throw TorchError.invalidArgument("\(name) must be at least 1 (got \(value))")
        }
        guard imageSize > 0, imageSize % patchSize == 0 else {
            throw TorchError.invalidArgument("image size \(imageSize) is not a positive multiple of the patch size \(patchSize)")
        }
        guard embedDim % heads == 0 else { throw TorchError.invalidArgument("embed dim \(embedDim) is not divisible by \(heads) heads") }
        guard numClasses >= 1 else { throw TorchError.invalidArgument("num_classes must be at least 1") }
        // Masks are 8-bit: their grey values name at most 256 classes.
        guard numClasses <= 256 else { throw TorchError.invalidArgument("num_classes must be at most 256 (got \(numClasses))") }
        // Sizes far past any SAM (ViT-H: 1280 wide, 32 deep, 0.64 billion parameters) are refused by
        // name, not met as an allocation failure after minutes of drawing weights (or none at all).
        for (name, value, limit) in [("patch size", patchSize, 256), ("image size", imageSize, 16384), ("embed dim", embedDim, 16384),
                                     ("depth", depth, 1024), ("heads", heads, 1024), ("MLP ratio", mlpRatio, 64),
                                     ("prompt dim", promptDim, 16384), ("window size", windowSize, 1024)] where value > limit {
            throw TorchError.invalidArgument("\(name) must be at most \(limit) (got \(value))")
        }
        let parameters = Double(depth) * Double(embedDim) * Double(embedDim) * Double(4 + 2 * mlpRatio)
        guard parameters <= 20e9 else {
            throw TorchError.invalidArgument(String(format: "an encoder %ld wide and %ld deep has about %.3g parameters, past any SAM "
                + "(ViT-H has 0.64 billion)", embedDim, depth, parameters))
        }
        if let bad = globalBlocks.first(where: { $0 < 0 || $0 >= depth }) {
            throw TorchError.invalidArgument("global block \(bad) is outside 0..<\(depth)")
        }
    }
}
