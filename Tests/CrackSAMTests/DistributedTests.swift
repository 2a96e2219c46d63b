import Foundation
import XCTest
@testable import CrackSAM

final class DistributedTests: XCTestCase {
    /// Runs `body` as each rank of a Gloo group on its own thread of this process.
    func withGroup(_ worldSize: Int, timeout: Double = 30, _ body: @escaping @Sendable (ProcessGroup) throws -> Void) throws {
        let port = DistributedEnvironment.freeLocalPort()
        let errors = NSLock()
        nonisolated(unsafe) var failures: [String] = []
        // One thread per rank (not concurrentPerform: it runs only as many at once as there are cores,
        // and a rank that has not started would keep the others waiting in the rendezvous).
        let done = DispatchGroup()
        for rank in 0..<worldSize {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                do {
                    let env = DistributedEnvironment(rank: rank, worldSize: worldSize, localRank: rank, masterAddress: "127.0.0.1", masterPort: port)
                    let group = try ProcessGroup(environment: env, timeout: timeout)
                    try body(group)
                } catch {
                    errors.lock(); failures.append("rank \(rank): \(error)"); errors.unlock()
                }
            }
            thread.start()
        }
        done.wait()
        XCTAssertEqual(failures, [])
    }

    func testEnvironmentVariables() throws {
        XCTAssertNil(try DistributedEnvironment.fromEnvironment([:]))
        let env = try XCTUnwrap(DistributedEnvironment.fromEnvironment(
            ["WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "node7", "MASTER_PORT": "29400"]))
        XCTAssertEqual(env, DistributedEnvironment(rank: 3, worldSize: 4, localRank: 1, masterAddress: "node7", masterPort: 29400))
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"])) {
            XCTAssertEqual("\($0)", "RANK=2 must be in 0..<2")
        }
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "1"])) {
            XCTAssertEqual("\($0)", "MASTER_ADDR is not set (WORLD_SIZE is)")
        }
        // Past 32 bits the group's size trapped; a local rank is a GPU index.
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "2147483648", "RANK": "0", "MASTER_ADDR": "a", "MASTER_PORT": "1"])) {
            XCTAssertEqual("\($0)", "WORLD_SIZE=2147483648 must be between 1 and 65536")
        }
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "128", "MASTER_ADDR": "a",
                                                                         "MASTER_PORT": "1"])) {
            XCTAssertEqual("\($0)", "LOCAL_RANK=128 must be in 0…127 (a GPU index on its machine)")
        }
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "two"])) {
            XCTAssertEqual("\($0)", "WORLD_SIZE=two is not an integer")
        }
    }

    /// NCCL reduces CUDA tensors only: the host tensors the trainer and eval reduce (the stop flag, the
    /// validation sums, per-image counts) go through the rank's own GPU, and nothing moves under Gloo.
    /// (NCCL itself runs only on a GPU machine: scripts/gpu-bench's NCCL check takes these paths.)
    func testHostTensorsAreStagedThroughTheRanksGPUForNCCL() {
        XCTAssertEqual(ProcessGroup.stagingDevice(backend: .nccl, tensorDevice: .cpu, localRank: 3), .cuda(3))
        XCTAssertNil(ProcessGroup.stagingDevice(backend: .nccl, tensorDevice: .cuda(3), localRank: 3))
        XCTAssertNil(ProcessGroup.stagingDevice(backend: .gloo, tensorDevice: .cpu, localRank: 0))
        XCTAssertNil(ProcessGroup.stagingDevice(backend: .gloo, tensorDevice: .cuda(1), localRank: 1))
    }

    func testCollectivesOverLoopback() throws {
        try withGroup(3) { group in
            let r = Double(group.rank)
            // all-reduce: sum, max
            let t = try Tensor([1 + r, 10 * r], shape: [2])
            try group.allReduce(t)
            XCTAssertEqual(try t.toArray(of: Double.self), [6, 30])
            let m = try Tensor([Float(r)], shape: [1])
            try group.allReduce(m, op: .max)
            XCTAssertEqual(try m.toArray(of: Float.self), [2])
            // broadcast from rank 1
            let b = try Tensor([Float(r), Float(r)], shape: [2])
            try group.broadcast(b, from: 1)
            XCTAssertEqual(try b.toArray(of: Float.self), [1, 1])
            // all-gather
            let g = try group.allGather(Tensor([Int64(group.rank) * 7], shape: [1]))
            XCTAssertEqual(g.shape, [3, 1])
            XCTAssertEqual(try g.toArray(of: Int64.self), [0, 7, 14])
            try group.barrier()
        }
    }

    func testBucketedGradientSumAndBroadcast() throws {
        try withGroup(2) { group in
            // Three parameters of mixed dtypes; buckets of 16 bytes force several collectives.
            let params = try [Parameter(Tensor.ones([3]) * Double(group.rank + 1)),
                              Parameter(Tensor.ones([2, 2]) * Double(group.rank + 1)),
                              Parameter(Tensor.ones([1]).to(dtype: .float64) * Double(group.rank + 1))]
            for p in params { try (p.tensor * 3.0).sum().backward() }
            let dp = DataParallel(group: group, bucketBytes: 16)
            XCTAssertEqual(dp.buckets(params.map(\.tensor)).map(\.count), [1, 1, 1])
            try dp.sumGradients(params)
            for p in params { XCTAssertEqual(try p.tensor.grad!.to(dtype: .float64).toArray(of: Double.self), Array(repeating: 6, count: p.count)) }
            XCTAssertEqual(try dp.divergence(params), 1)
            let module = try Linear(3, 2)
            let dp2 = DataParallel(group: group)
            XCTAssertEqual(dp2.buckets(module.namedSlots().map(\.parameter.tensor)).count, 1)
            try dp2.broadcastState(of: module)
            XCTAssertEqual(try dp2.divergence(module.namedParameters().map(\.parameter)), 0)
        }
    }

    /// The global-batch loss: the ranks' objectives' gradients, summed, are the gradient of the whole
    /// batch's loss, and every rank reports the whole batch's loss (float64, so rounding is out of the way).
    func testGlobalBatchLossMatchesOneProcess() throws {
        try Torch.manualSeed(7)
        let logits = try Tensor.randn([4, 2, 6, 5]).to(dtype: .float64)
        let target = try Tensor.randint(0, 2, shape: [4, 6, 5])
        let whole = try logits.detach().requiresGrad(true)
        let reference = try CrackLoss()(logits: whole, target: target)
        try reference.objective.backward()
        let expectedGrad = try XCTUnwrap(whole.grad).toArray(of: Double.self)
        let expectedLoss = try reference.loss.item()
        nonisolated(unsafe) var grads: [[Double]] = [[], []]
        nonisolated(unsafe) var losses: [Double] = [0, 0]
        try withGroup(2) { group in
            let part = try logits.narrow(dim: 0, start: 2 * group.rank, length: 2).detach().requiresGrad(true)
            let v = try CrackLoss()(logits: part, target: target.narrow(dim: 0, start: 2 * group.rank, length: 2), group: group)
            try v.objective.backward()
            grads[group.rank] = try XCTUnwrap(part.grad).toArray(of: Double.self)
            losses[group.rank] = try v.loss.item()
        }
        XCTAssertEqual(losses[0], expectedLoss, accuracy: 1e-13)
        XCTAssertEqual(losses[1], expectedLoss, accuracy: 1e-13)
        let combined = grads[0] + grads[1]
        XCTAssertEqual(combined.count, expectedGrad.count)
        let worst = zip(combined, expectedGrad).map { abs($0 - $1) }.max() ?? 1
        XCTAssertLessThan(worst, 1e-15 + 1e-12 * (expectedGrad.map(abs).max() ?? 0))
    }

    /// Each global batch is split into equal, disjoint parts; an epoch not divisible by the world size is
    /// padded with its first samples, as DistributedSampler does.
    func testLoaderSharesOfEachGlobalBatch() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 7)
        let ds = try CrackDataset(root: dir + "/data")
        let single = BatchLoader(dataset: ds, size: 16, batchSize: 2, epoch: 3, shuffleSeed: 5, workers: 1)
        defer { single.stop() }
        var covered: [Int] = []
        for b in 0..<2 {
            let loaders = (0..<2).map { BatchLoader(dataset: ds, size: 16, batchSize: 2, epoch: 3, shuffleSeed: 5, workers: 1, rank: $0, worldSize: 2) }
            defer { loaders.forEach { $0.stop() } }
            XCTAssertEqual(loaders[0].batchCount, 2)
            let parts = loaders.map { Array($0.indices(ofBatch: b)) }
            XCTAssertEqual(parts[0].count, parts[1].count)
            covered += parts[0] + parts[1]
        }
        XCTAssertEqual(covered.count, 8)
        XCTAssertEqual(Array(covered.prefix(7)), single.order)
        XCTAssertEqual(covered[7], single.order[0])
        XCTAssertEqual(Trainer.batchesPerEpoch(7, batch: 2, worldSize: 2), 2)
        XCTAssertEqual(Trainer.batchesPerEpoch(7, batch: 2, worldSize: 1), 4)
    }

    // MARK: - Data-parallel training and evaluation through crack-cli (Gloo over loopback)

    let tiny = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32",
                "--patch-size", "8", "--warmup", "1", "--workers", "1", "--epochs", "5"]

    /// The largest relative difference (max |Δ| / max |a|) over the delta tensors of two state files.
    func stateDifference(_ a: String, _ b: String) throws -> (worst: Double, key: String, count: Int) {
        let x = try SafeTensors.load(at: a).tensors, y = try SafeTensors.load(at: b).tensors
        var worst = 0.0, worstKey = "", count = 0
        for (k, t) in x where k.hasPrefix("delta.") {
            let u = try XCTUnwrap(y[k], k)
            let t64 = try t.to(dtype: .float64), u64 = try u.to(dtype: .float64)
            let r = try (t64 - u64).abs().amax().item() / max(try t64.abs().amax().item(), 1e-30)
            count += 1
            if r >= worst { worst = r; worstKey = k }
        }
        return (worst, worstKey, count)
    }

    func lossColumn(_ run: String) throws -> [Double] {
        try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { Double($0.split(separator: ",")[2])! }
    }

    /// 2 ranks × batch 2 for 3 steps = 1 rank × batch 4 on the same samples: the global batch's loss
    /// (CE mean and a Dice over all of its pixels) and summed share gradients make the step the same.
    /// In float64 the weights agree to rounding (≤ 1e-6 relative asked; ~1e-12 seen); in float32 the
    /// logged losses agree, while Adam amplifies float32 rounding in near-zero gradients.
    func testTwoRanksTrainLikeOneRankWithTheWholeBatch() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 8)
        for precision in [["--float64"], []] {
            let tag = precision.isEmpty ? "32" : "64"
            _ = try crackCLI(["train"] + tiny + precision + ["--data", dir + "/data", "--out", dir + "/one" + tag, "--batch", "4", "--max-steps", "3"])
            let out = try crackCLI(["train"] + tiny + precision + ["--data", dir + "/data", "--out", dir + "/two" + tag, "--batch", "2",
                                                                   "--max-steps", "3", "--nproc", "2", "--verify-sync"])
            XCTAssertTrue(out.contains("2 ranks (gloo), global batch 4"), out)
            // Every rank holds the same weights after every step (checked across ranks by --verify-sync).
            for step in 1...3 { XCTAssertTrue(out.contains("step \(step): trainable weights of 2 ranks differ by at most 0\n"), out) }
            let one = try lossColumn(dir + "/one" + tag), two = try lossColumn(dir + "/two" + tag)
            XCTAssertEqual(one.count, 3)
            for (a, b) in zip(one, two) { XCTAssertEqual(a, b, accuracy: 2e-6 * abs(a)) }
            let diff = try stateDifference(dir + "/one" + tag + "/state.safetensors", dir + "/two" + tag + "/state.safetensors")
            print("float\(tag): 1 rank × batch 4 vs 2 ranks × batch 2 after 3 steps: \(diff.count) tensors, worst relative max error \(diff.worst) (\(diff.key))")
            if !precision.isEmpty { XCTAssertLessThanOrEqual(diff.worst, 1e-6) }
        }
        // Only rank 0 wrote: one metrics file, no stray files from rank 1.
        XCTAssertEqual(try lossColumn(dir + "/two64").count, 3)
    }

    /// A run saved on 2 ranks continues on 1 at the same sample of the epoch.
    func testResumeOnAnotherWorldSize() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 8)
        _ = try crackCLI(["train"] + tiny + ["--data", dir + "/data", "--out", dir + "/run", "--batch", "2", "--max-steps", "1", "--nproc", "2"])
        let out = try crackCLI(["train", "--resume", dir + "/run", "--max-steps", "3"])
        XCTAssertTrue(out.contains("the run was saved with 2 rank(s) and continues on 1: sample 4 of epoch 1 (saved at sample 4), step 2"), out)
        let rows = try String(contentsOfFile: dir + "/run/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: ",").prefix(2).joined(separator: ",") }
        // 8 images: 2 global batches of 4 per epoch on 2 ranks, 4 batches of 2 on 1.
        XCTAssertEqual(rows, ["1,1", "3,1", "4,1", "5,2"])
        // The other way, 1 rank to 2: fewer, larger steps. Sample 6 of 8 is global batch 1 of 2 on two
        // ranks (step 1), and the rows numbered past it are dropped, so the steps stay in order.
        _ = try crackCLI(["train"] + tiny + ["--data", dir + "/data", "--out", dir + "/run2", "--batch", "2", "--max-steps", "3"])
        let more = try crackCLI(["train", "--resume", dir + "/run2", "--max-steps", "3", "--nproc", "2"])
        XCTAssertTrue(more.contains("metrics.csv: 2 row(s) after step 1 (steps 2…3, counted on 1 rank(s)) are dropped: steps are now counted "
            + "in global batches of 2 rank(s)"), more)
        // Not said to have been written after the last checkpoint (found by the user-journey round: it was
        // the checkpoint's own step).
        XCTAssertFalse(more.contains("after the last checkpoint"), more)
        let renumbered = try String(contentsOfFile: dir + "/run2/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: ",").prefix(2).joined(separator: ",") }
        XCTAssertEqual(renumbered, ["1,1", "2,1", "3,2", "4,2"])
    }

    /// Evaluation split over 3 ranks (uneven shares) gives the single process's scores.
    func testShardedEvaluationMergesToTheSameScores() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 7)
        let model = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32", "--patch-size", "8"]
        _ = try crackCLI(["eval"] + model + ["--dataset", "d=" + dir + "/data", "--noise", "case1", "--json", dir + "/one.json",
                                             "--per-image", dir + "/one.csv"])
        let out = try crackCLI(["eval"] + model + ["--dataset", "d=" + dir + "/data", "--noise", "case1", "--json", dir + "/three.json", "--nproc", "3",
                                                   "--per-image", dir + "/three.csv"])
        // Every image's counts come back to rank 0 in the dataset's order: the same rows as one process.
        let rows = try String(contentsOfFile: dir + "/three.csv", encoding: .utf8)
        XCTAssertEqual(rows, try String(contentsOfFile: dir + "/one.csv", encoding: .utf8))
        XCTAssertEqual(rows.split(separator: "\n").count, 1 + 2 * 7)
        XCTAssertTrue(out.contains("— 7 images"), out)
        let decode = { (path: String) in
            try JSONDecoder().decode([EvaluationResult].self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let one = try decode(dir + "/one.json"), three = try decode(dir + "/three.json")
        XCTAssertEqual(one.count, 2)
        XCTAssertEqual(one.count, three.count)
        for (a, b) in zip(one, three) {
            XCTAssertEqual(a.images, b.images)
            XCTAssertEqual(a.pooledIoU, b.pooledIoU)
            for (x, y) in [(a.precision, b.precision), (a.recall, b.recall), (a.f1, b.f1), (a.iou, b.iou)] { XCTAssertEqual(x, y, accuracy: 1e-12) }
        }
    }

    /// Starts rank `rank` of a 2-rank training job with its output in files.
    /// Starts rank `rank` of two running crack-cli `arguments` (by default a long training run on dir/data),
    /// in `dir`, its stdout and stderr in dir/rank<N>.out and .err.
    func startRank(_ rank: Int, port: Int, dir: String, timeout: Int, arguments: [String]? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("crack-cli")
        p.arguments = (arguments ?? ["train"] + tiny + ["--data", dir + "/data", "--out", dir + "/run", "--batch", "2", "--epochs", "100000"])
            + ["--dist-timeout", String(timeout)]
        p.environment = ProcessInfo.processInfo.environment.merging(DistributedEnvironment.localVariables(rank: rank, worldSize: 2, port: port)) { $1 }
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        _ = FileManager.default.createFile(atPath: dir + "/rank\(rank).out", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/rank\(rank).err", contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: dir + "/rank\(rank).out")
        p.standardError = FileHandle(forWritingAtPath: dir + "/rank\(rank).err")
        try p.run()
        return p
    }

    /// Waits until rank 0's output (dir/rank0.out) shows `marker`; false, failing the test, when rank 0
    /// exits first or `deadline` passes.
    func waitForRankZero(toSay marker: String, in dir: String, ranks: [Process], until deadline: Date, poll: useconds_t = 50_000) -> Bool {
        while !((try? String(contentsOfFile: dir + "/rank0.out", encoding: .utf8))?.contains(marker) ?? false) {
            guard ranks[0].isRunning && Date() < deadline else {
                XCTFail("rank 0 did not say '\(marker)'")
                return false
            }
            usleep(poll)
        }
        return true
    }

    /// A rank that dies (SIGKILL) or hangs (SIGSTOP) makes the other exit non-zero with a clear error,
    /// within the collective timeout, instead of waiting forever.
    func testADeadOrHungRankMakesTheOtherExit() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 8)
        for (signal, timeout) in [(SIGKILL, 20), (SIGSTOP, 4)] {
            try? FileManager.default.removeItem(atPath: dir + "/run")
            let port = DistributedEnvironment.freeLocalPort()
            let rank0 = try startRank(0, port: port, dir: dir, timeout: timeout)
            let rank1 = try startRank(1, port: port, dir: dir, timeout: timeout)
            defer { kill(rank1.processIdentifier, SIGKILL); kill(rank0.processIdentifier, SIGKILL) }
            // Wait until training is under way (rank 0 logs step 1).
            guard waitForRankZero(toSay: "step 1/", in: dir, ranks: [rank0, rank1], until: Date().addingTimeInterval(60)) else { return }
            let killed = Date()
            kill(rank1.processIdentifier, signal)
            while rank0.isRunning && Date().timeIntervalSince(killed) < Double(timeout) + 30 { usleep(50_000) }
            let waited = Date().timeIntervalSince(killed)
            XCTAssertFalse(rank0.isRunning, "rank 0 still running \(waited) s after rank 1 got signal \(signal)")
            rank0.waitUntilExit()
            XCTAssertNotEqual(rank0.terminationStatus, 0)
            XCTAssertLessThan(waited, Double(timeout) + 10)
            let err = try String(contentsOfFile: dir + "/rank0.err", encoding: .utf8)
            XCTAssertTrue(err.contains("rank 0 of 2: all-reduce failed"), err)
            print("rank 1 got signal \(signal): rank 0 exited with status \(rank0.terminationStatus) after \(String(format: "%.1f", waited)) s (timeout \(timeout) s)")
        }
    }

    /// An image that breaks during a data-parallel evaluation (after the check) in one rank's share: that
    /// rank still meets the others in the all-reduce, so every rank stops there at once, the one that read
    /// it naming the file and the others naming the rank (before, they waited on a rank that had thrown).
    func testAnImageBrokenMidEvaluationStopsEveryRankThere() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 5)
        let data = try CrackDataset(root: dir + "/data")
        let image = data.samples[3].image  // rank 1's share: samples 1 and 3
        let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: image))
        let results = eachRank(2) { group in
            try Evaluator(predictor: EvalTests.DarkPixels(inputSize: 32), name: "m", batch: 1, group: group).evaluate(data, name: "D")
        }
        guard case .failure(let first) = results[0], case .failure(let second) = results[1] else { return XCTFail("\(results)") }
        XCTAssertEqual(first as? DistributedError, .failedOnAnotherRank(rank: 1, work: "its share of D (clean)"))
        XCTAssertEqual("\(first)", "rank 1 could not finish its share of D (clean) (its output says why)")
        XCTAssertTrue("\(second)".contains(image), "\(second)")
        // Mended, the same ranks score it.
        try bytes.write(to: URL(fileURLWithPath: image))
        let again = eachRank(2) { group in
            try Evaluator(predictor: EvalTests.DarkPixels(inputSize: 32), name: "m", batch: 1, group: group).evaluate(data, name: "D").images
        }
        XCTAssertEqual(try again.map { try $0.get() }, [5, 5])
    }

    /// Through crack-cli, two ranks (their outputs apart): a file broken during the run stops both with
    /// the state saved, and each message is said once: the rank that read the file names it, rank 0 says
    /// where the state is, and another rank says nothing.
    func testAFileBrokenMidRunIsReportedOnceAndTheStateSaved() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 8)
        let port = DistributedEnvironment.freeLocalPort()
        let ranks = [try startRank(0, port: port, dir: dir, timeout: 20), try startRank(1, port: port, dir: dir, timeout: 20)]
        defer { ranks.forEach { kill($0.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(60)
        guard waitForRankZero(toSay: "step 1/", in: dir, ranks: ranks, until: deadline) else { return }
        // Read again at the latest in the next epoch, by one rank or the other.
        let image = dir + "/data/images/s5.png"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: image))
        while ranks.contains(where: \.isRunning) && Date() < deadline.addingTimeInterval(60) { usleep(50_000) }
        ranks.forEach { $0.waitUntilExit() }
        let err = try (0..<2).map { try String(contentsOfFile: dir + "/rank\($0).err", encoding: .utf8) }
        let saved = try XCTUnwrap(SafeTensors.load(at: dir + "/run/state.safetensors").metadata["step"])
        let said = "is saved in \(dir)/run/state.safetensors: mend the file and --resume"
        let reader = try XCTUnwrap((0..<2).first { err[$0].contains(image) }, "\(err)")
        XCTAssertTrue(err[reader].contains("; stopped. The state after step \(saved) " + said), err[reader])
        XCTAssertEqual(err[reader].components(separatedBy: said).count, 2, "said once: \(err[reader])")
        // The rank that read it fails (status 1); the other stops for it (status 3, Launcher.stoppedForAnotherRank).
        XCTAssertEqual(ranks.map(\.terminationStatus), reader == 0 ? [1, 3] : [3, 1])
        if reader == 1 {
            XCTAssertEqual(err[0], "Error: rank 1 could not make its batch (its output says why); stopped. The state after step \(saved) is saved in "
                           + "\(dir)/run/state.safetensors: mend what it names and --resume\n")
        } else {
            XCTAssertEqual(err[1], "", "rank 1 leaves it to rank 0")
        }
        let rows = try String(contentsOfFile: dir + "/run/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertEqual(rows.last.map { String($0.split(separator: ",")[0]) }, saved, "every step done is saved")
        print("rank \(reader) read the broken file; both stopped with step \(saved) saved. rank 0 said: \(err[0])rank 1 said: \(err[1])")
    }

    /// Through crack-cli, eval on two ranks: an image broken during the run (after the up-front check)
    /// stops both. Rank 1, which read it, names it and fails (status 1); rank 0 says which rank could not
    /// finish, reports and writes the evaluations that finished under the partial names, and exits 3.
    /// (The test watches rank 0's result lines in its log file as they are printed: into a file they used
    /// to be held until exit.)
    func testEvalStopsEveryRankForAnImageBrokenMidRunAndKeepsWhatFinished() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 60)
        let port = DistributedEnvironment.freeLocalPort()
        let model = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32", "--patch-size", "8"]
        // (In its folder, where the blur plot goes by default.)
        let eval = ["eval"] + model + ["--dataset", "D=" + dir + "/data", "--blur-sweep", "1,3,5,7,9,11,13,15", "--json", dir + "/r.json"]
        let ranks = try (0..<2).map { try startRank($0, port: port, dir: dir, timeout: 20, arguments: eval) }
        defer { ranks.forEach { kill($0.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(120)
        guard waitForRankZero(toSay: "(clean)", in: dir, ranks: ranks, until: deadline, poll: 20_000) else { return }
        // s9 sorts last of the 60 names: rank 1's last image of each of the 9 passes (shards are strided).
        let image = dir + "/data/images/s9.png"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: image))
        while ranks.contains(where: \.isRunning) && Date() < deadline { usleep(50_000) }
        ranks.forEach { $0.waitUntilExit() }
        let out = try String(contentsOfFile: dir + "/rank0.out", encoding: .utf8)
        let err = try (0..<2).map { try String(contentsOfFile: dir + "/rank\($0).err", encoding: .utf8) }
        XCTAssertEqual(ranks.map(\.terminationStatus), [3, 1], "\(err)")
        XCTAssertTrue(err[1].contains(image), err[1])
        XCTAssertTrue(err[0].hasPrefix("Error: rank 1 could not finish its share of D (") && err[0].hasSuffix(") (its output says why)\n"), err[0])
        let finished = out.components(separatedBy: "images/s").count - 1
        XCTAssertTrue((1..<9).contains(finished), out)
        XCTAssertTrue(out.contains("stopped by an error; the \(finished) evaluation(s) that finished are reported and written:"), out)
        let partial = try JSONDecoder().decode([EvaluationResult].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/r.partial.json")))
        XCTAssertEqual(partial.count, finished)
        XCTAssertEqual(partial.first?.variant, "clean")
        XCTAssertEqual(partial.first?.images, 60)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r.json"), "a partial result is never written as the whole one")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/blur-sweep.partial.png"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/blur-sweep.png"), out)
        XCTAssertEqual(try String(contentsOfFile: dir + "/rank1.out", encoding: .utf8), "", "rank 1 leaves the report to rank 0")
    }

    /// SIGTERM or SIGINT to `--nproc`'s launcher alone stops every rank (SIGINT was not passed on: found
    /// by the user-journey round, the run went on to its end); what finished is written, rank 0 says it
    /// was stopped by a signal (once), and no rank is named as the one that failed (it said "rank 0 exited
    /// with status 1").
    func testASignalToTheLauncherStopsTheRanksWithoutBlamingOne() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 60)
        let model = ["--vit", "custom", "--embed-dim", "32", "--depth", "2", "--heads", "2", "--global-blocks", "1", "--image-size", "32", "--patch-size", "8"]
        for (name, signal) in [("term", SIGTERM), ("int", SIGINT)] {
            let (status, out) = try interruptedCLI(["eval"] + model + ["--dataset", "D=" + dir + "/data", "--blur-sweep", "1,3,5,7,9,11,13,15,17,19,21",
                                                                       "--blur-plot", dir + "/\(name).png", "--json", dir + "/\(name).json", "--nproc", "2"],
                                                   after: "images/s", signal: signal)
            XCTAssertEqual(status, 1, out)
            XCTAssertEqual(out.components(separatedBy: "stopped by a signal (Ctrl-C or SIGTERM)").count, 2, out)
            XCTAssertFalse(out.contains("exited with status"), out)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/\(name).partial.json"), out)
        }
    }

    /// --nproc: a rank that fails fails the launcher, which names it.
    func testLauncherFailsWhenARankFails() throws {
        let dir = try Oracle.scratch()
        let out = try crackCLI(["train"] + tiny + ["--data", dir + "/missing", "--out", dir + "/run", "--nproc", "2"], expectSuccess: false)
        // (The ranks' own messages, written at the same moment, may interleave.)
        XCTAssertTrue(out.contains("exited with status 1; the other ranks "), out)
    }

    /// A broken file in another rank's share of the up-front check stops every rank before the run folder
    /// is written (rank 0 used to go on and write config.json, leaving a run that could not be resumed).
    func testABrokenFileInAnotherRanksShareLeavesNothing() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 6)
        let image = dir + "/data/images/s1.png"  // sample 1: rank 1's share of two
        let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: image))
        let out = try crackCLI(["train"] + tiny + ["--data", dir + "/data", "--out", dir + "/run", "--batch", "1", "--nproc", "2"],
                               expectSuccess: false)
        // (The ranks' messages, written at the same moment, may interleave character by character.)
        // The launcher names the rank that read the file, not rank 0, which stopped for it (status 3), and
        // the ranks stopped by themselves.
        XCTAssertTrue(out.contains("rank 1 exited with status 1; the other ranks stopped with it"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/config.json"), out)
    }


    /// Runs `body` as each rank of a Gloo group on its own thread of this process; each rank's outcome.
    func eachRank<T>(_ worldSize: Int, _ body: @escaping (ProcessGroup) throws -> T) -> [Result<T, Error>] {
        let port = DistributedEnvironment.freeLocalPort()
        let lock = NSLock()
        nonisolated(unsafe) var results = [Result<T, Error>?](repeating: nil, count: worldSize)
        nonisolated(unsafe) let body = body
        let done = DispatchGroup()
        for rank in 0..<worldSize {
            done.enter()
            Thread {
                defer { done.leave() }
                let result = Result<T, Error> {
                    let env = DistributedEnvironment(rank: rank, worldSize: worldSize, localRank: rank, masterAddress: "127.0.0.1", masterPort: port)
                    return try body(try ProcessGroup(environment: env, timeout: 30))
                }
                lock.lock(); results[rank] = result; lock.unlock()
            }.start()
        }
        done.wait()
        return results.map { $0! }
    }

    /// Two ranks training the tiny model of TrainerTests on `train` (one model per rank, made before the
    /// threads start: drawing both at once from the global generator would not repeat).
    func trainOnTwoRanks(_ train: CrackDataset, validation: CrackDataset? = nil, _ options: TrainingOptions, run: String,
                         resume: Bool = false) throws -> [Result<Trainer.Outcome, Error>] {
        nonisolated(unsafe) let models = try (0..<2).map { _ in
            try Torch.manualSeed(11)
            let m = try SAMModel(config: TrainerTests.tiny)
            try m.applyPEFT(PEFTConfig(deltaType: .lora, rank: 2))
            return m
        }
        if !resume { try Trainer.prepareNewRun(at: run) }
        return eachRank(2) { group in
            let t = try Trainer(model: models[group.rank], train: train, validation: validation, options: options, runDirectory: run,
                                parallel: DataParallel(group: group), log: { _ in })
            // Every step, the ranks' weights are compared (a difference stops the run).
            t.verifySync = true
            if resume { try t.resume() }
            return try t.run()
        }
    }

    /// A training file that breaks during the run on one rank (it passed the check at the start) stops
    /// every rank at the same step with the steps done saved: no rank waits for another in a collective,
    /// and nothing since the last checkpoint is lost. The rank stands a NaN batch in until the next
    /// read-back, where the stand-in count in the loss's all-reduce tells the others; the steps from it on
    /// (skipped on the device) are undone, so the state equals a run stopped there (fp16 scale included).
    /// Mended, the run resumes and finishes. Cases: read back every step or every 3 (the failure first in
    /// its window, or second), fp16, rank 0 or 1 failing, both failing at once.
    func testAFileBrokenMidRunOnOneRankStopsEveryRankWithTheStepsDone() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 12)
        let data = try CrackDataset(root: dir + "/data")
        // 12 samples, 2 ranks × batch 1: 6 steps; with --sync-every 3 read back after steps 3 and 6. The
        // broken samples are in the ranks' shares of global batch `batch` (step batch + 1).
        let cases: [(every: Int, amp: TrainingOptions.AMP, ranks: [Int], batch: Int)] =
            [(1, .off, [1], 4), (1, .fp16, [0], 4), (3, .off, [1], 3), (3, .fp16, [0], 4), (3, .off, [0, 1], 4)]
        for (n, c) in cases.enumerated() {
            let tag = "every \(c.every), \(c.amp), broken on rank(s) \(c.ranks) in step \(c.batch + 1)"
            var o = TrainerTests.options()
            o.epochs = 1
            o.batch = 1
            o.syncEvery = c.every
            o.amp = c.amp
            var stopped = o
            stopped.maxSteps = c.batch
            let reference = dir + "/reference-\(n)"
            for r in try trainOnTwoRanks(data, stopped, run: reference) { XCTAssertEqual(try r.get(), .interrupted(step: c.batch), tag) }

            var images: [(path: String, bytes: Data)] = []
            for rank in c.ranks {
                let loader = BatchLoader(dataset: data, size: TrainerTests.tiny.imageSize, batchSize: 1, shuffleSeed: o.seed, rank: rank, worldSize: 2)
                let path = data.samples[try XCTUnwrap(loader.indices(ofBatch: c.batch).first)].image
                loader.stop()
                images.append((path, try Data(contentsOf: URL(fileURLWithPath: path))))
            }
            for (path, bytes) in images { try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path)) }
            let run = dir + "/run-\(n)"
            let state = run + "/state.safetensors"
            let results = try trainOnTwoRanks(data, o, run: run)
            for (path, bytes) in images { try bytes.write(to: URL(fileURLWithPath: path)) }
            for (rank, result) in results.enumerated() {
                guard case .failure(let error) = result else { XCTFail("\(tag): rank \(rank) finished"); continue }
                if let mine = c.ranks.firstIndex(of: rank) {
                    guard case TrainingError.batchFailed(let reason, c.batch, state, nil) = error else { XCTFail("\(tag): \(error)"); continue }
                    XCTAssertTrue(reason.contains(images[mine].path), reason)
                } else {
                    XCTAssertEqual(error as? TrainingError, .batchFailedOnAnotherRank(rank: c.ranks[0], atStep: c.batch, checkpoint: state), tag)
                    XCTAssertTrue("\(error)".hasPrefix("rank \(c.ranks[0]) could not make its batch (its output says why); stopped. "
                                                        + "The state after step \(c.batch) is saved in \(state)"), "\(error)")
                }
            }
            // The same state as the run stopped after that step: weights, moments, step counters, fp16 scale.
            let saved = try SafeTensors.load(at: state), expected = try SafeTensors.load(at: reference + "/state.safetensors")
            XCTAssertEqual(saved.tensors.keys.sorted(), expected.tensors.keys.sorted(), tag)
            for (key, t) in expected.tensors { XCTAssertEqual(try saved.tensors[key]?.bytes(), try t.bytes(), "\(tag): \(key)") }
            for key in ["step", "batch_in_epoch", "skipped_steps"] { XCTAssertEqual(saved.metadata[key], expected.metadata[key], "\(tag): \(key)") }
            if c.amp == .fp16 { XCTAssertTrue(saved.tensors.keys.contains("scaler.scale"), tag) }
            let rows = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            XCTAssertEqual(rows.map { String($0.split(separator: ",")[0]) }, (1...c.batch).map(String.init), tag)
            for r in try trainOnTwoRanks(data, o, run: run, resume: true) { XCTAssertEqual(try r.get(), .finished, tag) }
            XCTAssertEqual(try SafeTensors.load(at: state).metadata["step"], "6", tag)
        }
    }

    /// The same for a validation file in another rank's share: every rank stops after the epoch's steps,
    /// saved as its last batch, and the resumed run validates the epoch.
    func testAValidationFileBrokenMidRunOnAnotherRankKeepsTheEpoch() throws {
        let dir = try Oracle.scratch()
        try makeTestDataset(dir + "/data", count: 8)
        try makeTestDataset(dir + "/val", count: 4)
        let data = try CrackDataset(root: dir + "/data"), validation = try CrackDataset(root: dir + "/val")
        let image = validation.samples[1].image  // rank 1's share: every second sample from 1
        let bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: image))
        var o = TrainerTests.options()
        o.epochs = 2
        let run = dir + "/run", state = run + "/state.safetensors"
        let results = try trainOnTwoRanks(data, validation: validation, o, run: run)
        guard case .failure(let first) = results[0], case .failure(let second) = results[1] else { return XCTFail("\(results)") }
        XCTAssertEqual(first as? TrainingError, .batchFailedOnAnotherRank(rank: 1, atStep: 2, checkpoint: state))
        guard case TrainingError.batchFailed(let reason, 2, state, nil) = second else { return XCTFail("\(second)") }
        XCTAssertTrue(reason.contains(image), reason)
        let saved = try SafeTensors.load(at: state).metadata
        XCTAssertEqual([saved["step"], saved["epoch"], saved["batch_in_epoch"]], ["2", "0", "2"])
        try bytes.write(to: URL(fileURLWithPath: image))
        for r in try trainOnTwoRanks(data, validation: validation, o, run: run, resume: true) { XCTAssertEqual(try r.get(), .finished) }
        let epochs = try String(contentsOfFile: run + "/val.csv", encoding: .utf8).split(separator: "\n").dropFirst().map { $0.split(separator: ",")[0] }
        XCTAssertEqual(epochs, ["1", "2"], "epoch 1 validated on resume")
    }
}
