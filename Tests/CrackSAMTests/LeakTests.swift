import CrackSAM
import XCTest

/// Every handle the shim hands out is freed when its Swift Tensor goes away.
final class LeakTests: XCTestCase {
    func testTenThousandIterationsOfOpsAndBackwardLeaveNoHandles() throws {
        let start = Tensor.liveCount
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
        _ = w
    }

    func testCheckpointRoundTripLeavesNoHandles() throws {
        let d = try Oracle.scratch()
        let start = Tensor.liveCount
        do {
            try PyTorchCheckpoint.save(["a": try Tensor.randn([3, 3]), "b": try Tensor.ones([2], dtype: .int64)], to: d + "/x.pth")
            for _ in 0..<50 {
                _ = try PyTorchCheckpoint.loadStateDict(at: d + "/x.pth")
                try SafeTensors.save(try PyTorchCheckpoint.loadStateDict(at: d + "/x.pth"), to: d + "/x.safetensors")
                _ = try SafeTensors.load(at: d + "/x.safetensors")
            }
        }
        XCTAssertEqual(Tensor.liveCount, start)
    }
}
