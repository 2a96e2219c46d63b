import Foundation

/// Measurements `crack-cli info` and `crack-cli bench` report.
public enum Diagnostics {
    /// Dense float32 matmul throughput: n×n by n×n repeated for about `seconds`, 2n³ flops each.
    public static func matmulGFLOPS(device: Device = .cpu, size n: Int = 1024, seconds: Double = 1.0,
                                    dtype: DType = .float32) throws -> Double {
        let a = try Tensor.randn([n, n], dtype: dtype, device: device)
        let b = try Tensor.randn([n, n], dtype: dtype, device: device)
        func sync() throws { if case .cuda(let i) = device { try CUDA.synchronize(device: i) } }
        return try Torch.withInferenceMode {
            for _ in 0..<2 { _ = try a.matmul(b) }  // warm-up: kernel selection, allocator
            try sync()
            var iterations = 0
            let start = DispatchTime.now().uptimeNanoseconds
            var elapsed = 0.0
            repeat {
                _ = try a.matmul(b)
                iterations += 1
                if iterations % 4 == 0 || device == .cpu {
                    try sync()
                    elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                }
            } while elapsed < seconds
            return 2.0 * Double(n) * Double(n) * Double(n) * Double(iterations) / elapsed / 1e9
        }
    }

    /// Per-op cost of a loop of tiny ops (2×2 tensors): what crossing the shim costs, not arithmetic.
    /// The same loop is timed in Python by scripts/bench-ops. Returns microseconds per op.
    public static func tinyOpOverhead(iterations: Int) throws -> Double {
        let a = try Tensor.rand([2, 2]), b = try Tensor.rand([2, 2])
        func body() throws {
            let x = try a + b
            let y = try x * a
            let z = try y.relu()
            _ = try z.sum()
        }
        for _ in 0..<min(1000, iterations) { try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { try body() }
        let ns = Double(DispatchTime.now().uptimeNanoseconds - start)
        return ns / 1000 / Double(iterations * 4)
    }
}
