import Foundation

/// Measurements `crack-cli info` and `crack-cli bench` report.
public enum Diagnostics {
    /// How the measured product is laid out.
    public enum ProductForm: Sendable {
        /// a · b, both row-major: `torch.mm`.
        case matmul
        /// a · bᵀ + bias, the weight stored (out, in): what nn.Linear (and so every projection of the model)
        /// runs. On the CPU libtorch sends it down another path, many times faster in reduced precision
        /// (float16: 38 against 1.1 GFLOP/s for `mm` on a 2-core EPYC), so a peak measured with `mm` alone
        /// put the model's MFU above 100 %.
        case linear
    }

    /// Dense matmul throughput: n×n by n×n repeated for about `seconds`, 2n³ flops each.
    public static func matmulGFLOPS(device: Device = .cpu, size n: Int = 1024, seconds: Double = 1.0,
                                    dtype: DType = .float32, form: ProductForm = .matmul) throws -> Double {
        let a = try Tensor.randn([n, n], dtype: dtype, device: device)
        let b = try Tensor.randn([n, n], dtype: dtype, device: device)
        let bias = form == .linear ? try Tensor.randn([n], dtype: dtype, device: device) : nil
        func product() throws -> Tensor { form == .linear ? try a.linear(weight: b, bias: bias) : try a.matmul(b) }
        func sync() throws { if case .cuda(let i) = device { try CUDA.synchronize(device: i) } }
        return try Torch.withInferenceMode {
            for _ in 0..<2 { _ = try product() }  // warm-up: kernel selection, allocator
            try sync()
            var iterations = 0
            let start = DispatchTime.now().uptimeNanoseconds
            var elapsed = 0.0
            repeat {
                _ = try product()
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
