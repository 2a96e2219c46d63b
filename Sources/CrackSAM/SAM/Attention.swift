/// The image encoder's multi-head self-attention with decomposed relative position bias
/// (Meta's `image_encoder.blocks.i.attn`): fused `qkv`, `proj`, and `rel_pos_h` / `rel_pos_w`.
///
/// The relative-position term is built as an additive bias and handed to scaled_dot_product_attention
/// with the logits, so CUDA can still choose a fused kernel; it equals Meta's explicit
/// softmax(q·kᵀ·scale + rel_h + rel_w)·v (tested).
public final class Attention: Module, UnaryLayer {
    /// Replaceable so PEFT can wrap the fused projection (LoRA on q/k/v).
    public var qkv: UnaryLayer { didSet { register(child: "qkv", qkv) } }
    public var proj: UnaryLayer { didSet { register(child: "proj", proj) } }
    public let relPosH: Parameter
    public let relPosW: Parameter
    let heads: Int
    let dim: Int
    private var relIndexCache: [Int: Tensor] = [:]

    /// `gridSize`: the side of what one attention call sees (the window, or the whole token grid).
    public init(dim: Int, heads: Int, gridSize: Int) throws {
        self.dim = dim
        self.heads = heads
        qkv = try Linear(dim, dim * 3)
        proj = try Linear(dim, dim)
        relPosH = try Parameter(ParameterInit.zeros([2 * gridSize - 1, dim / heads]))
        relPosW = try Parameter(ParameterInit.zeros([2 * gridSize - 1, dim / heads]))
        super.init()
        register("rel_pos_h", relPosH)
        register("rel_pos_w", relPosW)
        register(child: "qkv", qkv)
        register(child: "proj", proj)
    }

    /// x: (B, H, W, C) → (B, H, W, C).
    public func forward(_ x: Tensor) throws -> Tensor {
        let s = x.shape
        let (b, h, w) = (s[0], s[1], s[2])
        let headDim = dim / heads
        // (B, HW, 3, heads, hd) → (3, B, heads, HW, hd): q, k and v stay strided views of the projection.
        // Four-dimensional on purpose: libtorch's fused attention kernels take only (B, heads, L, E)
        // tensors, and a bias of (B, heads, L, L); three-dimensional inputs fall back to the unfused path.
        let qkv = try self.qkv(x).reshape([b, h * w, 3, heads, headDim]).permute([2, 0, 3, 1, 4])
        let q = try qkv.select(dim: 0, index: 0)
        let k = try qkv.select(dim: 0, index: 1)
        let v = try qkv.select(dim: 0, index: 2)
        let bias = try relativePositionBias(q: q, height: h, width: w)
        let out = try Tensor.scaledDotProductAttention(query: q, key: k, value: v, bias: bias)  // (B, heads, HW, hd)
        return try proj(out.permute([0, 2, 1, 3]).reshape([b, h, w, dim]))
    }

    /// rel_h[b, i, j, k] = q[b, i, j]·R_h[i, k] and rel_w likewise, summed into a (B, heads, HW, HW) bias.
    /// Uses the unscaled q, as Meta's add_decomposed_rel_pos does. q: (B, heads, HW, hd), any strides.
    /// Each table row meets its own queries: one batched product per row of the grid (batch h for rel_h,
    /// w for rel_w) over every (window, head, column), so the tables are never expanded per window and
    /// q is laid out once for each direction.
    func relativePositionBias(q: Tensor, height h: Int, width w: Int) throws -> Tensor {
        let (b, heads, c) = (q.size(0), q.size(1), q.size(3))
        let bn = b * heads
        let rh = try relativeTable(relPosH.tensor, size: h)  // (h, kh, c)
        let rw = try relativeTable(relPosW.tensor, size: w)  // (w, kw, c)
        let grid = try q.view([b, heads, h, w, c])
        // (h, bn·w, c) @ (h, c, kh) → (h, bn·w, kh) → (bn, h, w, kh). The two small products are made
        // contiguous so that the sum below is laid out (bn, h, w, kh, kw), a view of the bias.
        let relH = try grid.permute([2, 0, 1, 3, 4]).reshape([h, bn * w, c]).bmm(rh.transpose(1, 2))
            .view([h, bn, w, h]).permute([1, 0, 2, 3]).contiguous()
        // (w, bn·h, c) @ (w, c, kw) → (w, bn·h, kw) → (bn, h, w, kw)
        let relW = try grid.permute([3, 0, 1, 2, 4]).reshape([w, bn * h, c]).bmm(rw.transpose(1, 2))
            .view([w, bn, h, w]).permute([1, 2, 0, 3]).contiguous()
        return try (relH.unsqueeze(dim: 4) + relW.unsqueeze(dim: 3)).view([b, heads, h * w, h * w])
    }

    /// Meta's get_rel_pos for equal query and key sizes: rows of the table at (i − j + size − 1),
    /// after resizing the table linearly when it was made for another size.
    func relativeTable(_ table: Tensor, size: Int) throws -> Tensor {
        let rows = 2 * size - 1
        var t = table
        if t.size(0) != rows {
            // 1-D linear resize (align_corners=false) = bilinear on a (1, C, 1, L) image.
            t = try t.transpose(0, 1).reshape([1, t.size(1), 1, t.size(0)])
                .interpolate(size: (1, rows), mode: .bilinear).reshape([t.size(1), rows]).transpose(0, 1)
        }
        let index: Tensor
        if let cached = relIndexCache[size], cached.device == t.device {
            index = cached
        } else {
            var idx = [Int64]()
            idx.reserveCapacity(size * size)
            for i in 0..<size { for j in 0..<size { idx.append(Int64(i - j + size - 1)) } }
            index = try Tensor(idx, shape: [size * size]).to(device: t.device)
            relIndexCache[size] = index
        }
        return try t.indexSelect(dim: 0, index: index).view([size, size, t.size(1)])
    }
}
