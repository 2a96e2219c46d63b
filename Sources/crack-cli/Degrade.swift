import ArgumentParser
import CrackSAM
import Foundation

struct DegradeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "degrade",
        abstract: "Write the noisy version of an image, as eval's noisy test sets make it.",
        discussion: "case1: HSV value − 50, then Gaussian blur 9. case2: Gaussian blur 21, ½ bicubic down and up. blur:K: Gaussian blur K (odd).")

    @Option(help: "case1, case2 or blur:K.") var `case`: String
    @Argument(help: "Input PNG, JPEG or BMP.") var input: String
    @Argument(help: "Output (.png, or .jpg/.jpeg).") var output: String

    func run() throws {
        guard let d = Degradation(`case`) else { throw ValidationError("--case must be case1, case2 or blur:K with K odd, 1 to \(Degradation.maxBlurSize) (got '\(`case`)')") }
        // The noisy copy never replaces the photo it was made from.
        guard !samePath(input, output) else { throw ValidationError("the output \(output) is the input image; name another file") }
        try requireImageExtension(output, "output")
        try requireNotAFolder(output, "output")
        let image = try Image.read(at: input)
        try prepareFolder(for: output, "output")
        try d.apply(to: image).write(to: output)
        print("\(output): \(d) of \(input) (\(image.width)×\(image.height))")
    }
}
