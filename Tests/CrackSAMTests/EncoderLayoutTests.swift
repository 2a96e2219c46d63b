import XCTest
import CrackSAM

/// The encoder's token layout: on NCHW convolutions (the CPU's default) the patch embedding is a permuted
/// view, and a residual stream left in that layout makes every layer norm copy its input (and its
/// gradient) to contiguous memory. The encoder makes the tokens contiguous once; of the copies left, only
/// one per block (inside libtorch's attention backward) grows with the depth.
final class EncoderLayoutTests: XCTestCase {
    func testLayerNormsDoNotCopyTheResidualStream() throws {
        func contiguousCopies(depth: Int) throws -> Int {
            var config = SAMConfig(backbone: .custom, embedDim: 32, depth: depth, heads: 2,
                                   globalBlocks: Array(0..<depth), imageSize: 64)
            config.promptDim = 16
            let encoder = try ImageEncoderViT(config: config)
            try encoder.freeze()  // as in CrackSAM: the gradient flows through the blocks, not into their weights
            let x = try Tensor.randn([2, 3, 64, 64]).requiresGrad(true)
            let (_, profile) = try Profiler.record(cuda: false) { try encoder(x).sum().backward() }
            return profile.opsBySelfHostTime().first { $0.name == "aten::contiguous" }?.calls ?? 0
        }
        let shallow = try contiguousCopies(depth: 1), deep = try contiguousCopies(depth: 3)
        // One per block remains, inside libtorch's CPU flash-attention backward (its output gradient).
        XCTAssertLessThanOrEqual(deep - shallow, 2, "two more blocks added \(deep - shallow) copies to contiguous memory")
    }
}
