import ArgumentParser
import CrackSAM

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
        let image = try Image.read(at: input)
        try d.apply(to: image).write(to: output)
        print("\(output): \(d) of \(input) (\(image.width)×\(image.height))")
    }
}
