import ArgumentParser
import CrackSAM
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot benchmark: several models on several datasets, clean and noisy, in one run.",
        discussion: """
            Per model, dataset and variant: Pr, Re, F1 and IoU as means over images (the authors' edge rules)
            and the pooled IoU over all pixels. Prints a paper-style table (rows: models, columns: datasets).
            --delta may repeat; `--delta none` is the untrained model (SAM with a fresh decoder head).
            Data parallel: --nproc N (or a torchrun-style launcher's RANK/WORLD_SIZE/MASTER_* variables)
            splits every dataset over the ranks and merges the scores; rank 0 prints and writes the reports.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var peft: PEFTOptions

    @Option(help: "Official SAM checkpoint, or a model exported by `export` (merged or full); default: Meta's file in weights/; not needed for --vit custom.") var sam: String?
    @Flag(help: "Also load --sam's mask tokens, hypernetworks and IoU head. Without it they are kept for a model this tool exported (or any head without Meta's 4 tokens), and Meta's are replaced by CrackSAM's fresh, seeded initialisation.")
    var keepDecoderHead = false
    @Option(help: "A trained delta (repeatable), NAME=FILE to name its rows, or 'none' (the untrained model).") var delta: [String] = []
    @Option(help: "NAME=DIR (images/ and masks/), repeatable; NAME=DIR:LIST to select samples.") var dataset: [String] = []
    @Option(help: "Noisy variants, comma separated: case1,case2.") var noise: String?
    @Option(help: "Gaussian kernel sizes to sweep, comma separated (odd), e.g. 1,5,9,13,17,21,25.") var blurSweep: String?
    @Option(help: "Images per forward pass.") var batch = 4
    @Option(help: "An image that is not S×S: spline (the authors' scipy.ndimage.zoom: cubic spline on [0, 1] floats, the prediction back with its order 0) or opencv (8-bit bicubic, nearest back).")
    var resize: ResizeMethod = .spline
    @Option(help: "cpu, cuda or cuda:N.") var device = "cpu"
    @Option(help: "Autocast: fp16, bf16 or off (on the CPU too, where fp16 is usually slow).") var amp = "off"
    @Option(help: "libtorch CPU threads.") var threads: Int?
    @Option(help: "Write predicted masks under DIR/<model>/<dataset>/<variant>/.") var savePredictions: String?
    @Option(help: "Write all results as JSON.") var json: String?
    @Option(help: "Write all results as CSV.") var csv: String?
    @Option(help: "Write every image's scores and pixel counts as CSV (one row per model, dataset, variant and image).")
    var perImage: String?
    @Option(help: "Write the tables as Markdown.") var markdown: String?
    @Option(name: .customLong("blur-plot"), help: "Where the blur-sweep plot goes (with --blur-sweep; default blur-sweep.png).")
    var blurPlotOption: String?
    var blurPlot: String { blurPlotOption ?? "blur-sweep.png" }
    @Option(help: "Run this many data-parallel ranks on this machine.") var nproc: Int?
    @Option(help: "Seconds a rendezvous or collective may wait for the other ranks before failing.") var distTimeout = 300.0

    /// The models of the --delta specs and the names their rows and saved predictions go under: NAME=FILE
    /// as given; otherwise the file's stem, with as many of its folders as make it unique (runs/lora/best.pth
    /// and runs/adapter/best.pth are lora/best and adapter/best, not best twice); "none" is the untrained model.
    static func models(_ specs: [String]) throws -> [(name: String, file: String?)] {
        var named: [(name: String?, file: String?)] = try specs.map { spec in
            if spec == "none" { return ("untrained", nil) }
            if let eq = spec.firstIndex(of: "="), eq != spec.startIndex, !FileManager.default.fileExists(atPath: spec),
               !spec[..<eq].contains("/") {
                let (name, file) = (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
                if name == "." || name == ".." {
                    throw ValidationError("--delta name '\(name)' would be a path in --save-predictions; name it otherwise")
                }
                if file.isEmpty { throw ValidationError("--delta \(spec): NAME=FILE with a file (or NAME=none)") }
                return (name, file == "none" ? nil : file)
            }
            return (nil, spec)
        }
        // Path components of the unnamed files, stem last.
        let parts = named.map { m in
            m.name == nil ? (URL(fileURLWithPath: m.file!).deletingPathExtension().path.split(separator: "/").map(String.init)) : []
        }
        var depth = named.indices.map { _ in 1 }
        func auto(_ i: Int) -> String { parts[i].suffix(depth[i]).joined(separator: "/") }
        var grew = true
        while grew {
            grew = false
            let unnamed = named.indices.filter { named[$0].name == nil }
            let taken = named.compactMap(\.name)
            let names = unnamed.map { auto($0) }  // this round's names: every clashing one grows together
            for (k, i) in unnamed.enumerated() where depth[i] < parts[i].count {
                if names.enumerated().contains(where: { $0.offset != k && $0.element == names[k] }) || taken.contains(names[k]) {
                    depth[i] += 1
                    grew = true
                }
            }
        }
        for i in named.indices where named[i].name == nil { named[i].name = auto(i) }
        var seen: Set<String> = []
        for (i, m) in named.enumerated() where !seen.insert(m.name!).inserted {
            throw ValidationError("--delta \(specs[i]): another model is already named '\(m.name!)' (name them with NAME=FILE)")
        }
        return named.map { ($0.name!, $0.file) }
    }

    /// The files written after the evaluation, with their options: checked and given folders before it.
    var outputFiles: [(path: String, option: String)] {
        var files: [(path: String, option: String)] = []
        if let json { files.append((json, "--json")) }
        if let csv { files.append((csv, "--csv")) }
        if let perImage { files.append((perImage, "--per-image")) }
        if let markdown { files.append((markdown, "--markdown")) }
        if blurSweep != nil { files.append((blurPlot, "--blur-plot")) }
        return files
    }

    /// The clean set and --noise's variants, then --blur-sweep's kernels.
    func degradations() throws -> (variants: [Degradation?], sweep: [Degradation]) {
        var variants: [Degradation?] = [nil]
        for v in (noise ?? "").split(separator: ",") {
            guard let d = Degradation(String(v)) else { throw ValidationError("--noise takes case1 and/or case2 (got '\(v)')") }
            // The same variant twice would give two rows of one evaluation.
            guard !variants.contains(d) else { throw ValidationError("--noise names \(v) twice") }
            variants.append(d)
        }
        var sweep: [Degradation] = []
        for k in (blurSweep ?? "").split(separator: ",") {
            guard let n = Int(k), let d = Degradation("blur:\(n)") else {
                throw ValidationError("--blur-sweep sizes must be odd, 1 to \(Degradation.maxBlurSize) (got '\(k)')")
            }
            guard !sweep.contains(d) else { throw ValidationError("--blur-sweep names \(n) twice") }
            sweep.append(d)
        }
        return (variants, sweep)
    }

    func validate() throws {
        _ = try degradations()  // before the datasets are read, which takes a while
        try requirePositive(batch, "--batch")
        if let threads { try requirePositive(threads, "--threads") }
        try ProcessGroup.validate(timeout: distTimeout)
        _ = try autocastDType(amp)
        _ = try Eval.models(delta.isEmpty ? ["none"] : delta)
        if blurSweep != nil { try requireImageExtension(blurPlot, "--blur-plot") }
        if blurSweep == nil && blurPlotOption != nil { throw ValidationError("--blur-plot is the plot of --blur-sweep, which is not given") }
        for file in outputFiles { try requireNotAFolder(file.path, file.option) }
        try requireDistinctOutputs(outputFiles)
        var names: Set<String> = []
        for spec in dataset {
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex else {
                throw ValidationError("--dataset must be NAME=DIR with a name and a folder (got '\(spec)')")
            }
            // The name labels the tables' rows and the saved predictions' folders: two the same would mix them,
            // and a path of its own (.., a/b) would put predictions outside --save-predictions.
            let name = String(spec[..<eq])
            if name == "." || name == ".." || name.contains("/") {
                throw ValidationError("--dataset name '\(name)' would be a path in --save-predictions; name it without '/' or dots alone")
            }
            guard names.insert(name).inserted else {
                throw ValidationError("--dataset names must differ: '\(spec[..<eq])' is given twice")
            }
        }
    }

    func run() throws {
        let environment = try DistributedEnvironment.fromEnvironment()
        if try Launcher.launchIfAsked(nproc: nproc, environment: environment) { return }
        let group = try environment.flatMap { $0.worldSize > 1 ? try ProcessGroup(environment: $0, timeout: distTimeout) : nil }
        let leader = (group?.rank ?? 0) == 0
        func print(_ line: String) { if leader { Swift.print(line) } }
        if let threads { Torch.threads = threads }
        guard !dataset.isEmpty else { throw ValidationError("give at least one --dataset NAME=DIR") }
        guard var dev = Device(device) else { throw ValidationError("--device must be cpu, cuda or cuda:N") }
        if let environment, environment.worldSize > 1, device == "cuda" { dev = .cuda(environment.localRank) }
        try dev.requireAvailable()
        var datasets: [(String, CrackDataset)] = []
        var listFiles: [(path: String, what: String)] = []
        for spec in dataset {
            let eq = spec.firstIndex(of: "=")!  // validate() checked the form
            let name = String(spec[..<eq])
            var dir = String(spec[spec.index(after: eq)...]), list: String?
            // DIR:LIST, unless the whole of it is a folder (a folder name may hold a colon).
            var isFolder: ObjCBool = false
            let whole = FileManager.default.fileExists(atPath: dir, isDirectory: &isFolder) && isFolder.boolValue
            if !whole, let colon = dir.lastIndex(of: ":") {
                list = String(dir[dir.index(after: colon)...])
                dir = String(dir[..<colon])
                guard FileManager.default.fileExists(atPath: list!) else {
                    throw ValidationError("--dataset \(spec): no list file \(list!)")
                }
            }
            if let list { listFiles.append((list, "the list file of --dataset \(name)")) }
            datasets.append((name, try CrackDataset(root: dir, list: list, classes: model.numClasses)))
            if leader { warnAboutUnusedMasks(datasets[datasets.count - 1].1) }
        }
        // Every model checked now (its files, flags, and the delta's keys against a model that holds no
        // memory): a broken last --delta is found before the hours spent on the first.
        var models = try Eval.models(delta.isEmpty ? ["none"] : delta)
        if let sam, FileManager.default.fileExists(atPath: sam),
           ["sam-merged", "cracksam-full"].contains(try SAMCheckpointFile.metadata(at: sam)["format"] ?? "") {
            // --sam is a trained model (an export): its rows carry its name, not "untrained".
            let stem = URL(fileURLWithPath: sam).deletingPathExtension().lastPathComponent
            models = models.map { $0.file == nil && $0.name == "untrained" ? (stem, nil) : $0 }
        }
        // The PEFT sizes apply to every model that takes them (a LoRA and an adapter delta side by side);
        // one that no model takes would be ignored without a word.
        var anyLoRA = false, anyAdapter = false
        // "untrained" beside deltas trained on a custom encoder is that encoder (its sizes, input size and
        // drawn weights, or --sam's) with a fresh head: drawn from the flags' sizes and seed, its row compared
        // another model. So the deltas are checked first, and the encoder they record is kept for it; deltas on
        // different custom encoders have no one untrained model to compare with.
        var encoder: (file: String, description: DeltaDescription)?
        let untrained = models.contains { $0.file == nil }
        // Likewise its input size: the one the deltas were all trained at (without --image-size).
        var trainedSizes: [(file: String, size: Int)] = []
        var untrainedSize: Int? {
            guard model.imageSize == nil, let first = trainedSizes.first else { return nil }
            return first.size
        }
        for (name, file) in models.filter({ $0.file != nil }) + models.filter({ $0.file == nil }) {
            let (config, peftConfig, description) = try builder(for: file, encoder: encoder?.description, imageSize: untrainedSize).check()
            if let file, let size = description?.imageSize {
                if untrained, model.imageSize == nil, let other = trainedSizes.first(where: { $0.size != size }) {
                    throw ValidationError("--delta none: \(other.file) was trained at \(other.size) px and \(file) at \(size) px; pass "
                        + "--image-size to measure every model at one size")
                }
                trainedSizes.append((file, size))
            }
            if let file, config.backbone == .custom, let d = description, d.customBackbone != nil {
                if let e = encoder?.description, untrained,
                   d.customBackbone != e.customBackbone || (model.imageSize == nil && d.imageSize != e.imageSize) || d.initSeed != e.initSeed {
                    throw ValidationError("--delta none: \(encoder!.file) and \(file) were trained on different custom encoders, so no one "
                        + "untrained model compares with both; evaluate it beside each separately")
                }
                if encoder == nil { encoder = (file, d) }
            }
            (anyLoRA, anyAdapter) = (anyLoRA || peftConfig.usesLoRA, anyAdapter || peftConfig.usesAdapter)
            // Masks are read for --num-classes: binary, or class indices. A model of another class count
            // would be scored against labels read the other way.
            guard config.numClasses == model.numClasses else {
                throw ValidationError("\(file ?? name) has \(config.numClasses) crack classes: pass --num-classes \(config.numClasses), "
                    + "so that masks are read as \(config.numClasses > 1 ? "class indices" : "binary")")
            }
        }
        if !anyLoRA && !anyAdapter, let type = peft.deltaType, type.lowercased() != "none" {
            throw ValidationError("--delta-type \(type) is for the deltas, but no model evaluated has one (--delta FILE)")
        }
        if !anyLoRA, let flag = peft.loraSizeFlags.first {
            throw ValidationError("\(flag) sets LoRA, but no model evaluated has a LoRA delta")
        }
        if !anyAdapter, let flag = peft.adapterSizeFlags.first {
            throw ValidationError("\(flag) sets the adapter, but no model evaluated has an adapter delta")
        }
        // Every file read once now (decoding is cheap next to the model): a broken one in the last dataset
        // is found before the hours spent on the first.
        let (variants, sweep) = try degradations()
        for (_, ds) in datasets {
            let check = try ds.verify()
            if leader, let warning = check.orientationWarning(dataset: ds.root) {
                FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
            }
            // A noisy variant that cannot be made of an image would stop the run halfway, after hours.
            for d in variants.compactMap({ $0 }) + sweep {
                if let i = check.sizes.firstIndex(where: { min($0.width, $0.height) < d.minimumSize }) {
                    throw ValidationError("\(ds.samples[i].image) is \(check.sizes[i].width)×\(check.sizes[i].height): --noise \(d) "
                        + "halves each image, and it has no half; leave it out of the dataset (a list file) or drop \(d)")
                }
            }
        }
        // Outputs leave the inputs alone (a --json named like the delta replaced it after the run), and the
        // masks go where no output file or input is: both checked before hours of evaluation.
        let modelFiles = models.compactMap(\.file).map { ($0, "a model being evaluated (--delta)") }
        let inputFiles = modelFiles + (sam.map { [($0, "the --sam checkpoint")] } ?? []) + listFiles
        let datasetFolders = datasets.flatMap { name, ds in
            [(ds.root + "/images", "the images of --dataset \(name)"), (ds.root + "/masks", "the masks of --dataset \(name)")]
        }
        try requireOutputsApart(outputFiles, fromFiles: inputFiles, folders: datasetFolders)
        if let savePredictions {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: savePredictions, isDirectory: &isFolder), !isFolder.boolValue {
                throw ValidationError("--save-predictions \(savePredictions) is a file; name a folder for the masks")
            }
            try requireOutputsApart([(savePredictions, "--save-predictions")], fromFiles: inputFiles, folders: datasetFolders)
            // The masks go to DIR/<model>/…: an output file there would stand where a folder must be made.
            let modelFolders = Set(models.map(\.name) + (sam.map { [URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent] } ?? []))
            for file in outputFiles {
                if samePath(file.path, savePredictions) || modelFolders.contains(where: {
                    samePath(file.path, savePredictions + "/" + $0) || isInside(file.path, folder: savePredictions + "/" + $0) }) {
                    throw ValidationError("\(file.option) \(file.path) lies where --save-predictions \(savePredictions) writes its masks; write it elsewhere")
                }
            }
        }
        // Where the results go exists before hours of evaluation, not after.
        for file in outputFiles { try prepareFolder(for: file.path, file.option) }
        // Masks of an earlier eval in a folder this one writes would mix with its own (one stopped halfway
        // leaves the earlier masks of the images it did not reach): refused before any work.
        if let savePredictions {
            // The untrained model's rows take the --sam file's name when its head turns out to be trained
            // (known once the file is read): both names are checked.
            let names = models.flatMap { model -> [String] in
                guard model.file == nil, model.name == "untrained", let sam else { return [model.name] }
                return [model.name, URL(fileURLWithPath: sam).deletingPathExtension().lastPathComponent]
            }
            for name in names {
                for (datasetName, _) in datasets {
                    for variant in variants + sweep.map(Optional.some) {
                        let folder = Eval.predictionFolder(savePredictions, model: name, dataset: datasetName, variant: variant)
                        if let earlier = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.sorted().first {
                            throw ValidationError("--save-predictions \(savePredictions): \(folder) holds an earlier eval's masks (\(earlier)), "
                                + "which this one's would mix with; choose another folder, or remove that one")
                        }
                    }
                }
            }
        }
        let ampType = try autocastDType(amp)
        warnIfFloat16OnCPU(ampType, device: dev)
        var results: [EvaluationResult] = []
        // Ctrl-C or SIGTERM stops between batches, and what finished is reported as on an error.
        StopRequest.catchSignals()
        do {
            for (given, file) in models {
                var modelBuilder = builder(for: file, encoder: encoder?.description, imageSize: untrainedSize)
                modelBuilder.printsNotes = leader
                let (net, trainedHead) = try modelBuilder.buildReporting()
                // --sam alone holding a trained model (an export whose description was lost): not "untrained".
                let name = file == nil && given == "untrained" && trainedHead
                    ? URL(fileURLWithPath: sam!).deletingPathExtension().lastPathComponent : given
                if dev != .cpu { try net.move(to: dev) }
                let evaluator = Evaluator(predictor: SAMPredictor(model: net, device: dev, amp: ampType, resize: resize), name: name, batch: batch, group: group)
                for (datasetName, ds) in datasets {
                    for variant in variants + sweep.map(Optional.some) {
                        let save = savePredictions.map { Eval.predictionFolder($0, model: name, dataset: datasetName, variant: variant) }
                        if try StopRequest.agreed(across: group) { throw StopRequest.Interrupted() }
                        let start = DispatchTime.now().uptimeNanoseconds
                        let r = try evaluator.evaluate(ds, name: datasetName, degradation: variant, savePredictions: save)
                        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                        print(String(format: "%@ on %@ (%@): IoU %.4f, F1 %.4f, pooled IoU %.4f — %ld images, %.1f images/s", name, datasetName,
                                     r.variant, r.iou, r.f1, r.pooledIoU, r.images, Double(r.images) / seconds))
                        results.append(r)
                    }
                }
            }
        } catch {
            // Another rank's failure is said by that rank (why) and by rank 0 (with what finished), not by all.
            var anotherRank = false
            if case DistributedError.failedOnAnotherRank = error { anotherRank = true }
            // What finished is kept: an unreadable image in the last dataset must not cost the hours before it.
            if leader, !results.isEmpty {
                let cause = error is StopRequest.Interrupted ? "a signal" : "an error"
                print("")
                print("stopped by \(cause); the \(results.count) evaluation(s) that finished are reported and written:")
                try report(results, stoppedBy: cause, plot: !sweep.isEmpty)
            }
            if anotherRank { throw stopForAnotherRank(error, leader: leader) }
            // A signal stops every rank: rank 0 says so (once), the others fail quietly.
            if error is StopRequest.Interrupted && !leader { throw ExitCode.failure }
            throw error
        }
        guard leader else { return }
        try report(results, stoppedBy: nil, plot: !sweep.isEmpty)
    }

    /// Where --save-predictions puts one evaluation's masks: DIR/<model>/<dataset>/<variant>.
    static func predictionFolder(_ root: String, model: String, dataset: String, variant: Degradation?) -> String {
        "\(root)/\(model)/\(dataset)/\(variant?.description.replacingOccurrences(of: ":", with: "") ?? "clean")"
    }

    /// The model of one --delta (nil: --sam alone: the untrained model, or a model `export` wrote).
    /// `encoder`: for the untrained model, the custom encoder the deltas beside it record.
    func builder(for file: String?, encoder: DeltaDescription? = nil, imageSize: Int? = nil) -> ModelBuilder {
        var b = ModelBuilder(model: model, peft: peft, sam: sam, delta: file, keepDecoderHead: keepDecoderHead ? true : nil)
        b.refuseUnusedPEFTSizes = false
        b.freshDelta = .ignored
        if file == nil { (b.encoderOf, b.imageSizeOf) = (encoder, imageSize) }
        return b
    }

    /// Prints the tables and writes --json, --csv, --per-image, --markdown and the blur plot. A run that
    /// was stopped (`stoppedBy`) writes them under partial names (r.json → r.partial.json), so a partial
    /// result is never taken for a whole one and never replaces the complete files of an earlier run.
    func report(_ results: [EvaluationResult], stoppedBy cause: String?, plot: Bool) throws {
        let table = (cause.map { "(partial: the evaluation was stopped by \($0))\n\n" } ?? "") + EvaluationReport.markdown(results)
        print("")
        print(table)
        func target(_ path: String) -> String { cause == nil ? path : Eval.partialPath(path) }
        var written: [String] = []
        if let json { try AtomicFile.write(try EvaluationReport.json(results), to: target(json)); written.append(target(json)) }
        if let csv { try AtomicFile.write(Data(EvaluationReport.csv(results).utf8), to: target(csv)); written.append(target(csv)) }
        if let perImage {
            try AtomicFile.write(Data(EvaluationReport.perImageCSV(results).utf8), to: target(perImage))
            written.append(target(perImage))
        }
        if let markdown { try AtomicFile.write(Data(table.utf8), to: target(markdown)); written.append(target(markdown)) }
        if plot {
            try EvaluationReport.blurPlot(results).write(to: target(blurPlot))
            print("blur sweep plot → \(target(blurPlot))")
        }
        if cause != nil && !written.isEmpty { print("partial results → " + written.joined(separator: ", ")) }
    }

    /// r.json → r.partial.json; a name without an extension gets ".partial" appended.
    static func partialPath(_ path: String) -> String {
        let nameStart = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        if let dot = path[nameStart...].lastIndex(of: "."), dot != nameStart {
            return path[..<dot] + ".partial" + path[dot...]
        }
        return path + ".partial"
    }
}
