import ArgumentParser
import CrackSAM
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks whose figures go in docs/BENCHMARKS.md.",
        subcommands: [Ops.self])

    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per-op overhead of a loop of tiny ops (a+b, *, relu, sum on 2×2), µs per op.")

        @Option(help: "Loop iterations (4 ops each).")
        var iterations = 50_000

        @Option(help: "libtorch CPU threads.")
        var threads = 1

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            Torch.threads = threads
            let us = try Diagnostics.tinyOpOverhead(iterations: iterations)
            if json {
                try printJSON(["us_per_op": us, "iterations": iterations, "threads": threads, "libtorch": Torch.version])
            } else {
                print(String(format: "swift: %.3f µs/op (%d iterations × 4 ops, %d thread(s))", us, iterations, threads))
            }
        }
    }
}
