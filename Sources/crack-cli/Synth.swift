import ArgumentParser
import CrackSAM
import Foundation

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a synthetic crack dataset (images/, masks/, train.txt, val.txt, test.txt).",
        discussion: """
            Surfaces: asphalt pavement (aggregate, tar, wear), concrete (pores, formwork), facades (tiles, render,
            paint). Cracks: branching random walks with tapering width 1–15 px, hairlines, longitudinal and
            transverse runs, alligator networks. Distractors, never labelled: shadow, lane, joint, stain, oil,
            leaves, manhole, tire, lowlight, blur, jpeg. Same seed, same bytes.
            """)

    /// A million images is a hundred times Khanhha's training set.
    static let maxCount = 1_000_000
    /// Twice a 12-megapixel phone photo's long side; a canvas this size already takes gigabytes.
    static let maxSize = 8192

    @Option(help: "Output folder.") var out: String
    @Option(help: "Number of images (up to 1,000,000).") var count: Int
    @Option(help: "Image side in pixels (16 to 8192).") var size = 448
    @Option(help: "pavement, concrete, facade or mixed.") var style = "mixed"
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Comma-separated distractors to allow (default all), or 'none'.") var distractors: String?
    @Option(help: "Fraction of images with no crack.") var crackFree = 0.1
    @Flag(help: "Render surfaces and distractors only (empty masks).") var noCracks = false
    @Option(help: "Also write a 4×4 montage of the first 16 samples (mask outlines in red) to this PNG.") var montage: String?

    func run() throws {
        // Bounded above too: a --size of 10⁶ or a --count of 10¹¹ aborted on memory rather than failing.
        guard (1...SynthCommand.maxCount).contains(count) else {
            throw ValidationError("--count must be from 1 to \(SynthCommand.maxCount) (got \(count))")
        }
        guard (16...SynthCommand.maxSize).contains(size) else {
            throw ValidationError("--size must be from 16 to \(SynthCommand.maxSize) pixels (got \(size))")
        }
        guard (0...1).contains(crackFree) else { throw ValidationError("--crack-free must be a fraction from 0 to 1 (got \(crackFree))") }
        var o = SynthOptions()
        o.size = size
        guard let s = SynthStyle(rawValue: style) else { throw ValidationError("--style must be pavement, concrete, facade or mixed") }
        o.style = s
        o.seed = seed
        o.crackFree = crackFree
        o.cracks = !noCracks
        if let distractors {
            if distractors == "none" {
                o.distractors = []
            } else {
                o.distractors = Set(try distractors.split(separator: ",").map { name in
                    guard let d = Distractor(rawValue: String(name)) else {
                        throw ValidationError("unknown distractor '\(name)'; choose from \(Distractor.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return d
                })
            }
        }
        if let montage {
            try requireImageExtension(montage, "--montage")
            try requireNotAFolder(montage, "--montage")
            // In images/ or masks/ it would replace a sample (or add an image with no mask), and on --out
            // itself it would fail only once the whole dataset was written.
            try requireOutputsApart([(montage, "--montage")], fromFiles: [(out, "the dataset's folder (--out)")],
                                    folders: [(out + "/images", "the dataset's images"), (out + "/masks", "the dataset's masks")])
        }
        // Writing into a dataset would mix the two (and leave the old one's extra samples behind). The
        // temporary files of a synth that was killed mid-write are not a dataset: they go first.
        for sub in ["images", "masks"] {
            AtomicFile.removeLeftovers(in: out + "/" + sub)
            let files = (try? FileManager.default.contentsOfDirectory(atPath: out + "/" + sub)) ?? []
            guard files.isEmpty else {
                throw ValidationError("\(out) already holds a dataset (\(sub)/ has \(files.count) files): choose another --out, or remove it first")
            }
        }
        if let montage { try prepareFolder(for: montage, "--montage") }  // before the dataset is written, not after
        let createdOut = !FileManager.default.fileExists(atPath: out)
        StopRequest.catchSignals()
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            try Synth.write(to: out, count: count, options: o, shouldStop: { StopRequest.isRequested })
        } catch {
            // Synth.write took its samples back; the folders it made go too, so the rerun starts clean.
            for sub in ["images", "masks"] { rmdir(out + "/" + sub) }
            if createdOut { rmdir(out) }
            if error is StopRequest.Interrupted {
                throw CommandFailure(description: "stopped by a signal; the images written so far were removed (the same --seed makes the same dataset)")
            }
            throw error
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print(String(format: "%ld %@ images (%ld px) → %@ in %.1f s", count, style, size, out, seconds))
        if let montage {
            try Synth.montage((0..<min(16, count)).map { Synth.render(index: $0, options: o) }).write(to: montage)
            print("montage → \(montage)")
        }
    }
}
