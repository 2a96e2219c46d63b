import CrackSAM
import Foundation
import XCTest

/// The profiler behind `bench --profile-steps`: its events against PyTorch's own profiler, and the
/// arithmetic of its tables (self host time, self device time) on events whose answer is known.
final class ProfilerTests: XCTestCase {
    /// The same ops as Tests/Oracles/profiler_oracle.py, which records them with torch.profiler: every op
    /// is seen as often as PyTorch's profiler sees it, forward and backward.
    func testOpCountsMatchPyTorchsProfiler() throws {
        let dir = try Oracle.scratch()
        try Oracle.run("profiler_oracle.py", [dir + "/counts.json"])
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/counts.json"))) as! [String: Int]
        let x = try Tensor.randn([8, 16])
        let w = try Tensor.randn([4, 16]).requiresGrad(true), b = try Tensor.randn([4]).requiresGrad(true)
        let g = try Tensor.randn([8, 4])
        let (_, profile) = try Profiler.record(cuda: false) {
            let s = try x.linear(weight: w, bias: b).gelu().softmax(dim: -1)
            try (s * s).layerNorm([4]).backward(gradient: g)
        }
        let ours = Dictionary(uniqueKeysWithValues: profile.opsBySelfHostTime().map { ($0.name, $0.calls) })
        XCTAssertEqual(ours, expected)
        XCTAssertEqual(profile.opCount, expected.values.reduce(0, +))
        XCTAssertEqual(profile.deviceTimeNs, 0)
        XCTAssertEqual(profile.deviceEventCount, 0)
        // Self times add up to the time of the outermost ops, and none is negative.
        let rows = profile.opsBySelfHostTime()
        XCTAssertTrue(rows.allSatisfy { $0.ns >= 0 })
        XCTAssertGreaterThan(rows.map(\.ns).reduce(0, +), 0)

        let trace = dir + "/trace.json"
        try profile.saveTrace(to: trace)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: trace))) as? [String: Any]
        let traceEvents = try XCTUnwrap(json?["traceEvents"] as? [[String: Any]])
        XCTAssertTrue(traceEvents.contains { $0["name"] as? String == "aten::gelu_backward" })
    }

    /// Nested ops on two threads: each op's self time is its duration less its direct children's.
    func testSelfHostTimeSubtractsNestedOps() {
        func op(_ name: String, thread: UInt64, _ start: Int64, _ duration: Int64) -> Profile.Event {
            Profile.Event(name: name, onDevice: false, activity: 0, thread: thread, startNs: start, durationNs: duration,
                          correlation: 0, linkedCorrelation: 0)
        }
        let profile = Profile(events: [
            op("aten::linear", thread: 1, 0, 100), op("aten::t", thread: 1, 5, 10), op("aten::addmm", thread: 1, 20, 70),
            op("aten::copy_", thread: 1, 30, 20),  // inside addmm
            op("aten::t", thread: 2, 10, 40),  // another thread: overlaps linear in time, nests in nothing
            op("aten::gelu", thread: 1, 100, 30),  // starts as linear ends: a sibling, not a child
        ])
        let rows = Dictionary(uniqueKeysWithValues: profile.opsBySelfHostTime().map { ($0.name, $0) })
        XCTAssertEqual(rows["aten::linear"], Profile.Row(name: "aten::linear", calls: 1, ns: 20))
        XCTAssertEqual(rows["aten::addmm"], Profile.Row(name: "aten::addmm", calls: 1, ns: 50))
        XCTAssertEqual(rows["aten::copy_"], Profile.Row(name: "aten::copy_", calls: 1, ns: 20))
        XCTAssertEqual(rows["aten::t"], Profile.Row(name: "aten::t", calls: 2, ns: 50))
        XCTAssertEqual(rows["aten::gelu"], Profile.Row(name: "aten::gelu", calls: 1, ns: 30))
    }

    /// Kernels count toward the op whose correlation they carry (the innermost op that launched them), as
    /// PyTorch's self CUDA time does; unclaimed device work (a replayed graph) is "(no op)".
    func testDeviceTimeGoesToTheLaunchingOp() {
        func op(_ name: String, _ correlation: UInt64, _ start: Int64, _ duration: Int64) -> Profile.Event {
            Profile.Event(name: name, onDevice: false, activity: 0, thread: 1, startNs: start, durationNs: duration,
                          correlation: correlation, linkedCorrelation: 0)
        }
        func kernel(_ name: String, _ linked: UInt64, _ duration: Int64) -> Profile.Event {
            Profile.Event(name: name, onDevice: true, activity: 1, thread: 9, startNs: 0, durationNs: duration,
                          correlation: 100 + linked, linkedCorrelation: linked)
        }
        let launch = Profile.Event(name: "cudaLaunchKernel", onDevice: false, activity: 3, thread: 1, startNs: 2, durationNs: 1,
                                   correlation: 7, linkedCorrelation: 2)
        let profile = Profile(events: [
            op("aten::linear", 1, 0, 50), op("aten::addmm", 2, 1, 40), kernel("gemm_bf16", 2, 300), kernel("gemm_bf16", 2, 200),
            op("aten::gelu", 3, 60, 10), kernel("gelu_kernel", 3, 70), launch, kernel("graph_kernel", 42, 11),
        ])
        XCTAssertEqual(profile.opsBySelfDeviceTime(), [
            Profile.Row(name: "aten::addmm", calls: 1, ns: 500), Profile.Row(name: "aten::gelu", calls: 1, ns: 70),
            Profile.Row(name: "(no op)", calls: 0, ns: 11), Profile.Row(name: "aten::linear", calls: 1, ns: 0),
        ])
        XCTAssertEqual(profile.kernels(), [
            Profile.Row(name: "gemm_bf16", calls: 2, ns: 500), Profile.Row(name: "gelu_kernel", calls: 1, ns: 70),
            Profile.Row(name: "graph_kernel", calls: 1, ns: 11),
        ])
        XCTAssertEqual(profile.deviceTimeNs, 581)
        XCTAssertEqual(profile.opCount, 3)
        let table = Profile.table(profile.opsBySelfDeviceTime(), title: "self device time by op", steps: 2, total: profile.deviceTimeNs, top: 2)
        XCTAssertEqual(table.split(separator: "\n").map(String.init), [
            "self device time by op",
            "   ms/step   share calls/step  name",
            "     0.000   86.1%       0.5   aten::addmm",
            "     0.000   12.0%       0.5   aten::gelu",
            "     0.000    1.9%       0.5   (2 more)",
        ])
    }
}
