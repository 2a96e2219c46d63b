/// The image encoder's multi-head self-attention with decomposed relative position bias
/// (Meta's `image_encoder.blocks.i.attn`): fused `qkv`, `proj`, and `rel_pos_h` / `rel_pos_w`.
///
/// Meta adds rel_h[i, row(j)] + rel_w[i, col(j)] to the logits, an (L × L) bias per head. That bias is
/// a product in disguise: rel_h[i, ·] and rel_w[i, ·] are short rows (one entry per grid row / column),
/// and key j picks one entry of each. So the rows ride along as extra query columns and the keys get
/// the matching one-hot columns, and plain scaled_dot_product_attention, without any bias, computes
/// softmax(q·kᵀ·scale + rel_h + rel_w)·v (tested against Meta's explicit graph). No (L × L) tensor is
/// made or kept for the backward, no bias gradient is written and summed back down, and the fused
/// kernels, which take no bias (flash) or pad it (efficient), run as they are.
public final class Attention: Module, UnaryLayer {
    /// Replaceable so PEFT can wrap the fused projection (LoRA on q/k/v).
    public var qkv: UnaryLayer { didSet { register(child: "qkv", qkv) } }
    public var proj: UnaryLayer { didSet { register(child: "proj", proj) } }
    public let relPosH: Parameter
    public let relPosW: Parameter
    let heads: Int
    let dim: Int
    /// Constant tensors (table indices, key columns, zero padding) made once per shape, dtype and device.
    private var constants: [ConstantKey: Tensor] = [:]
    /// The frozen tables' product operands (productTable), one per table and grid side.
    private var tables: [TableSlot: (stamp: DerivedStamp, tensor: Tensor)] = [:]
    /// Hashed rather than spelled out: the cache is looked up a few times in every attention call.
    struct ConstantKey: Hashable {
        enum Kind { case index, columns, zeros }
        let kind: Kind
        let sizes: [Int]
        let dtype: DType
        let device: Device
        var inferenceMode = false
    }

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
        // (B, HW, 3, heads, hd) → (3, B, heads, HW, hd): q, k and v stay strided views of the projection,
        // and unbind's backward stacks their gradients straight into the projection's layout.
        let qkv = try self.qkv(x).reshape([b, h * w, 3, heads, headDim]).permute([2, 0, 3, 1, 4]).unbind(dim: 0)
        let (q, k, v) = (qkv[0], qkv[1], qkv[2])
        let width = Self.operandWidth(headDim: headDim, height: h, width: w)
        let queries = try extendedQueries(q, height: h, width: w, to: width)
        let keys = try extendedKeys(k, height: h, width: w, to: width)
        // The fused kernels want one head dimension for q, k and v: v gets zero columns, which only add
        // zero columns to the output, sliced off below. (A cat with the cached zeros writes v's copy once;
        // pad would fill the whole output first.)
        let values = try width > headDim
            ? Tensor.cat([v, zeros(width - headDim, like: v).expand([b, heads, h * w, width - headDim])], dim: 3) : v
        let scale = 1 / Double(headDim).squareRoot()
        var out = try FlopCounter.uncounted {
            try Tensor.scaledDotProductAttention(query: queries, key: keys, value: values, scale: scale)
        }
        if FlopCounter.isActive {
            // Counted as the model defines it (q·kᵀ and weights·v over hd), as PyTorch counts Meta's graph:
            // the folded columns stand for the bias add, and the padding is no work of the model.
            let rows = Double(b * heads * h * w)
            FlopCounter.attention(forward: 2 * 2 * rows * Double(h * w) * Double(headDim), operands: [q, k, v])
        }
        if width > headDim { out = try out.narrow(dim: 3, start: 0, length: headDim) }  // (B, heads, HW, hd)
        return try proj(out.permute([0, 2, 1, 3]).reshape([b, h, w, dim]))
    }

    /// The head dimension of the extended operands: hd + H + W, rounded up to a multiple of 8, which the
    /// fused CUDA kernels need for 16-bit inputs.
    static func operandWidth(headDim: Int, height: Int, width: Int) -> Int { (headDim + height + width + 7) / 8 * 8 }

    /// [q | rel_h/scale | rel_w/scale | 0], (B, heads, HW, width). rel_h[b, i, k] = q[b, i]·R_h[row(i), k]
    /// with the unscaled q, as in Meta's add_decomposed_rel_pos; dividing the tables by the softmax scale
    /// makes scale·(these columns · the keys' one-hots) come out as rel_h + rel_w (in exact arithmetic).
    /// Each table row meets its own queries in one batched product per grid row (for rel_h) or column
    /// (for rel_w), so the tables are never expanded per window; the cat lays the products out once.
    func extendedQueries(_ q: Tensor, height h: Int, width w: Int, to width: Int) throws -> Tensor {
        let (b, heads, c) = (q.size(0), q.size(1), q.size(3))
        let bn = b * heads
        let rh = try productTable(relPosH, size: h, like: q)  // (h, c, kh)
        let rw = try productTable(relPosW, size: w, like: q)  // (w, c, kw)
        let grid = try q.view([b, heads, h, w, c])
        // (h, bn·w, c) @ (h, c, kh) → (h, bn·w, kh), seen as (b, heads, h, w, kh)
        let relH = try grid.permute([2, 0, 1, 3, 4]).reshape([h, bn * w, c]).bmm(rh)
            .view([h, b, heads, w, h]).permute([1, 2, 0, 3, 4])
        // (w, bn·h, c) @ (w, c, kw) → (w, bn·h, kw), seen as (b, heads, h, w, kw)
        let relW = try grid.permute([3, 0, 1, 2, 4]).reshape([w, bn * h, c]).bmm(rw)
            .view([w, b, heads, h, w]).permute([1, 2, 3, 0, 4])
        var parts = [grid, relH, relW]
        let pad = width - (c + h + w)
        if pad > 0 { parts.append(try zeros(pad, like: relH).expand([b, heads, h, w, pad])) }
        return try Tensor.cat(parts, dim: 4).view([b, heads, h * w, width])
    }

    /// [k | onehot(row(j)) | onehot(col(j)) | 0], (B, heads, HW, width): the columns that pick key j's
    /// entries out of the queries' rel_h and rel_w rows.
    func extendedKeys(_ k: Tensor, height h: Int, width w: Int, to width: Int) throws -> Tensor {
        let (b, heads, c) = (k.size(0), k.size(1), k.size(3))
        let columns = try keyColumns(height: h, width: w, count: width - c, dtype: k.dtype, device: k.device)
        return try Tensor.cat([k.view([b, heads, h, w, c]), columns.expand([b, heads, h, w, width - c])], dim: 4)
            .view([b, heads, h * w, width])
    }

    /// The constant (H, W, n) block of extendedKeys.
    func keyColumns(height h: Int, width w: Int, count n: Int, dtype: DType, device: Device) throws -> Tensor {
        try constant(ConstantKey(kind: .columns, sizes: [h, w, n], dtype: dtype, device: device)) {
            var ones = [Float](repeating: 0, count: h * w * n)
            for i in 0..<h {
                for j in 0..<w {
                    ones[(i * w + j) * n + i] = 1
                    ones[(i * w + j) * n + h + j] = 1
                }
            }
            return try Tensor(ones, shape: [h, w, n]).to(device: device, dtype: dtype)
        }
    }

    /// n zeros of t's dtype on t's device, to be expanded into padding columns.
    func zeros(_ n: Int, like t: Tensor) throws -> Tensor {
        try constant(ConstantKey(kind: .zeros, sizes: [n], dtype: t.dtype, device: t.device)) {
            try Tensor.zeros([n], dtype: t.dtype, device: t.device)
        }
    }

    /// A cached constant. One made in inference mode is an inference tensor, which autograd refuses to
    /// save for a backward (index_select keeps its index): such ones are kept apart, so a model that
    /// evaluated first still trains.
    func constant(_ key: ConstantKey, make: () throws -> Tensor) throws -> Tensor {
        var key = key
        key.inferenceMode = Torch.isInferenceMode
        if let cached = constants[key] { return cached }
        let made = try make()
        constants[key] = made
        return made
    }

    /// A table as the products take it: Meta's get_rel_pos rows for a grid side of `size`, times √hd
    /// (the columns are divided by the softmax scale), as (size, c, size). A frozen table (CrackSAM's
    /// encoder) gives the same operand at every step, so it is kept, in autocast's dtype when autocast
    /// is on, rather than resized, gathered, scaled and cast again in every block of every forward
    /// (twice per step with activation checkpointing). It is made again when the table is replaced or
    /// changed in place (its version counter), autocast's dtype changes, or inference mode is entered or
    /// left. A table that trains is derived afresh, so that its gradient flows.
    func productTable(_ table: Parameter, size: Int, like q: Tensor) throws -> Tensor {
        let source = table.tensor
        func make() throws -> Tensor {
            try (relativeTable(source, size: size) * Double(source.size(1)).squareRoot()).transpose(1, 2)
        }
        let low = Torch.autocastDType(device: q.device)
        // A tensor made in inference mode has no version counter (no stamp): it is derived afresh every time.
        guard !source.requiresGrad, let stamp = DerivedStamp(of: source, dtype: low) else { return try make() }
        let slot = TableSlot(rows: table === relPosH, size: size)
        if let kept = tables[slot], kept.stamp == stamp { return kept.tensor }
        var made = try make()
        if let low { made = try made.to(dtype: low) }
        tables[slot] = (stamp, made)
        return made
    }

    struct TableSlot: Hashable {
        let rows: Bool
        let size: Int
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
        let index = try constant(ConstantKey(kind: .index, sizes: [size], dtype: .int64, device: t.device)) {
            var idx = [Int64]()
            idx.reserveCapacity(size * size)
            for i in 0..<size { for j in 0..<size { idx.append(Int64(i - j + size - 1)) } }
            return try Tensor(idx, shape: [size * size]).to(device: t.device)
        }
        return try t.indexSelect(dim: 0, index: index).view([size, size, t.size(1)])
    }
}
