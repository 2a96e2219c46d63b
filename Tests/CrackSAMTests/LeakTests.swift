import CrackSAM
import XCTest

/// Every handle the shim hands out is freed when its Swift Tensor goes away, and every other handle
/// (errors, guards, archives, profiles) when its use ends, on error paths too.
final class LeakTests: XCTestCase {
    func testTenThousandIterationsOfOpsAndBackwardLeaveNoHandles() throws {
        let start = Tensor.liveCount, handles = Tensor.liveHandleCount
        let w = try Tensor.randn([4, 4]).requiresGrad(true)
        for i in 0..<10_000 {
            let x = try Tensor.rand([2, 4])
            let h = try x.linear(weight: w).gelu().softmax(dim: -1)
            let loss = try (h * h).sum() + 1.0
            try loss.backward()
            if i % 100 == 0 { try w.clearGrad() }
            _ = try? x.matmul(x)  // a failing op must not leak either
            _ = try w.grad.map { try $0.mean().item() }
        }
        XCTAssertEqual(Tensor.liveCount, start + 1, "only `w` is still alive")
        XCTAssertEqual(Tensor.liveHandleCount, handles, "the failing ops' errors are freed")
        _ = w
    }

    func testCheckpointRoundTripLeavesNoHandles() throws {
        let d = try Oracle.scratch()
        let start = Tensor.liveCount, handles = Tensor.liveHandleCount
        do {
            try PyTorchCheckpoint.save(["a": try Tensor.randn([3, 3]), "b": try Tensor.ones([2], dtype: .int64)], to: d + "/x.pth")
            for _ in 0..<50 {
                _ = try PyTorchCheckpoint.loadStateDict(at: d + "/x.pth")
                try SafeTensors.save(try PyTorchCheckpoint.loadStateDict(at: d + "/x.pth"), to: d + "/x.safetensors")
                _ = try SafeTensors.load(at: d + "/x.safetensors")
            }
        }
        XCTAssertEqual(Tensor.liveCount, start)
        XCTAssertEqual(Tensor.liveHandleCount, handles, "the archives' readers and writers are freed")
        // A damaged archive fails with its reader and error freed.
        try Data("PK\u{3}\u{4} not really a zip".utf8).write(to: URL(fileURLWithPath: d + "/bad.pth"))
        for _ in 0..<10 { XCTAssertThrowsError(try PyTorchCheckpoint.loadStateDict(at: d + "/bad.pth")) }
        XCTAssertEqual(Tensor.liveHandleCount, handles)
    }

    /// Guards (no-grad, inference mode, autocast) and profiles end with their scope, thrown out of or not;
    /// a failing guard or profiler call frees its error.
    func testGuardsProfilesAndTheirErrorsLeaveNoHandles() throws {
        let handles = Tensor.liveHandleCount
        struct Stop: Error {}
        for _ in 0..<20 {
            XCTAssertThrowsError(try Torch.withInferenceMode { () throws -> Void in throw Stop() })
            XCTAssertThrowsError(try Torch.withAutocast(device: .cpu, dtype: .bfloat16) { () throws -> Void in throw Stop() })
            XCTAssertThrowsError(try Torch.withAutocast(device: .cpu, dtype: .float32) { () throws -> Void in })  // refused dtype
            XCTAssertThrowsError(try Profiler.record(cuda: false) { () throws -> Void in throw Stop() })
            _ = try Profiler.record(cuda: false) { try Tensor.ones([2]).sum() }
        }
        XCTAssertEqual(Tensor.liveHandleCount, handles)
    }
}
