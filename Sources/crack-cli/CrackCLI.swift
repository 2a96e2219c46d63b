import ArgumentParser
import CrackSAM
import Foundation

@main
struct CrackCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crack-cli",
        abstract: "CrackSAM: fine-tune Segment Anything for crack segmentation and benchmark it zero-shot.",
        subcommands: [Info.self, SynthCommand.self, Train.self, Eval.self, Predict.self, Export.self, DegradeCommand.self, Bench.self],
        defaultSubcommand: Info.self
    )
}

/// Prints a JSON object with sorted keys (stable for scripts and diffs).
func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
