import CTorchShim

/// Element-wise math with broadcasting, comparisons and reductions.
extension Tensor {
    enum BinaryOp: Int32 {
        case add = 0, sub, mul, div, pow, maximum, minimum, remainder, atan2
        case eq, ne, lt, le, gt, ge, logicalAnd, logicalOr, logicalXor, floorDivide
    }

    enum UnaryOp: Int32 {
        case neg = 0, abs, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid
        case relu, gelu, geluTanh, floor, ceil, round, sign, logicalNot, isnan
        case isfinite, square, reciprocal, log1p, expm1, silu, erf
    }

    @inline(__always)
    func binary(_ op: BinaryOp, _ other: Tensor) throws -> Tensor {
        try makeTensor { ct_binary(op.rawValue, handle, other.handle, $0) }
    }

    @inline(__always)
    func binary(_ op: BinaryOp, _ scalar: Double, reversed: Bool = false) throws -> Tensor {
        try makeTensor { ct_binary_scalar(op.rawValue, handle, scalar, reversed ? 1 : 0, $0) }
    }

    @inline(__always)
    func unary(_ op: UnaryOp) throws -> Tensor {
        try makeTensor { ct_unary(op.rawValue, handle, $0) }
    }

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.add, b) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.sub, b) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.mul, b) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.div, b) }
    public static func + (a: Tensor, s: Double) throws -> Tensor { try a.binary(.add, s) }
    public static func - (a: Tensor, s: Double) throws -> Tensor { try a.binary(.sub, s) }
    public static func * (a: Tensor, s: Double) throws -> Tensor { try a.binary(.mul, s) }
    public static func / (a: Tensor, s: Double) throws -> Tensor { try a.binary(.div, s) }
    public static func + (s: Double, a: Tensor) throws -> Tensor { try a.binary(.add, s) }
    public static func - (s: Double, a: Tensor) throws -> Tensor { try a.binary(.sub, s, reversed: true) }
    public static func * (s: Double, a: Tensor) throws -> Tensor { try a.binary(.mul, s) }
    public static func / (s: Double, a: Tensor) throws -> Tensor { try a.binary(.div, s, reversed: true) }
    public static prefix func - (a: Tensor) throws -> Tensor { try a.unary(.neg) }

    public func pow(_ exponent: Tensor) throws -> Tensor { try binary(.pow, exponent) }
    public func pow(_ exponent: Double) throws -> Tensor { try binary(.pow, exponent) }
    public func maximum(_ other: Tensor) throws -> Tensor { try binary(.maximum, other) }
    public func minimum(_ other: Tensor) throws -> Tensor { try binary(.minimum, other) }
    public func remainder(_ other: Tensor) throws -> Tensor { try binary(.remainder, other) }
    public func remainder(_ s: Double) throws -> Tensor { try binary(.remainder, s) }
    public func floorDivide(_ other: Tensor) throws -> Tensor { try binary(.floorDivide, other) }
    public func atan2(_ other: Tensor) throws -> Tensor { try binary(.atan2, other) }

    public func eq(_ other: Tensor) throws -> Tensor { try binary(.eq, other) }
    public func ne(_ other: Tensor) throws -> Tensor { try binary(.ne, other) }
    public func lt(_ other: Tensor) throws -> Tensor { try binary(.lt, other) }
    public func le(_ other: Tensor) throws -> Tensor { try binary(.le, other) }
    public func gt(_ other: Tensor) throws -> Tensor { try binary(.gt, other) }
    public func ge(_ other: Tensor) throws -> Tensor { try binary(.ge, other) }
    public func eq(_ s: Double) throws -> Tensor { try binary(.eq, s) }
    public func ne(_ s: Double) throws -> Tensor { try binary(.ne, s) }
    public func lt(_ s: Double) throws -> Tensor { try binary(.lt, s) }
    public func le(_ s: Double) throws -> Tensor { try binary(.le, s) }
    public func gt(_ s: Double) throws -> Tensor { try binary(.gt, s) }
    public func ge(_ s: Double) throws -> Tensor { try binary(.ge, s) }
    public func logicalAnd(_ other: Tensor) throws -> Tensor { try binary(.logicalAnd, other) }
    public func logicalOr(_ other: Tensor) throws -> Tensor { try binary(.logicalOr, other) }
    public func logicalXor(_ other: Tensor) throws -> Tensor { try binary(.logicalXor, other) }
    public func logicalNot() throws -> Tensor { try unary(.logicalNot) }

    public func abs() throws -> Tensor { try unary(.abs) }
    public func exp() throws -> Tensor { try unary(.exp) }
    public func log() throws -> Tensor { try unary(.log) }
    public func log1p() throws -> Tensor { try unary(.log1p) }
    public func expm1() throws -> Tensor { try unary(.expm1) }
    public func sqrt() throws -> Tensor { try unary(.sqrt) }
    public func rsqrt() throws -> Tensor { try unary(.rsqrt) }
    public func sin() throws -> Tensor { try unary(.sin) }
    public func cos() throws -> Tensor { try unary(.cos) }
    public func tanh() throws -> Tensor { try unary(.tanh) }
    public func sigmoid() throws -> Tensor { try unary(.sigmoid) }
    public func erf() throws -> Tensor { try unary(.erf) }
    public func floor() throws -> Tensor { try unary(.floor) }
    public func ceil() throws -> Tensor { try unary(.ceil) }
    public func round() throws -> Tensor { try unary(.round) }
    public func sign() throws -> Tensor { try unary(.sign) }
    public func square() throws -> Tensor { try unary(.square) }
    public func reciprocal() throws -> Tensor { try unary(.reciprocal) }
    public func isNaN() throws -> Tensor { try unary(.isnan) }
    public func isFinite() throws -> Tensor { try unary(.isfinite) }

    /// `cond ? a : b`, broadcasting.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try makeTensor { ct_where(condition.handle, a.handle, b.handle, $0) }
    }

    public func clamp(min: Double? = nil, max: Double? = nil) throws -> Tensor {
        try makeTensor { ct_clamp(handle, min ?? .nan, max ?? .nan, $0) }
    }

    public func maskedFill(_ mask: Tensor, value: Double) throws -> Tensor {
        try makeTensor { ct_masked_fill(handle, mask.handle, value, $0) }
    }

    // MARK: - Reductions (empty `dims` = over everything)

    public func sum(dims: [Int] = [], keepDim: Bool = false, dtype: DType? = nil) throws -> Tensor {
        try withInt64s(dims) { p, n in try makeTensor { ct_sum(handle, p, n, keepDim ? 1 : 0, dtype?.rawValue ?? -1, $0) } }
    }

    public func mean(dims: [Int] = [], keepDim: Bool = false, dtype: DType? = nil) throws -> Tensor {
        try withInt64s(dims) { p, n in try makeTensor { ct_mean(handle, p, n, keepDim ? 1 : 0, dtype?.rawValue ?? -1, $0) } }
    }

    public func amax(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withInt64s(dims) { p, n in try makeTensor { ct_amax(handle, p, n, keepDim ? 1 : 0, $0) } }
    }

    public func amin(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withInt64s(dims) { p, n in try makeTensor { ct_amin(handle, p, n, keepDim ? 1 : 0, $0) } }
    }

    /// Maximum along `dim`, with the index where it occurs.
    public func max(dim: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        var v: ct_tensor? = nil
        var i: ct_tensor? = nil
        try check(ct_max_dim(handle, Int64(dim), keepDim ? 1 : 0, &v, &i))
        return (Tensor(owning: v!), Tensor(owning: i!))
    }

    public func argmax(dim: Int, keepDim: Bool = false) throws -> Tensor {
        try makeTensor { ct_argmax(handle, Int64(dim), keepDim ? 1 : 0, $0) }
    }

    /// |a − b| ≤ atol + rtol·|b| everywhere (shapes must broadcast).
    public func allClose(_ other: Tensor, rtol: Double = 1e-5, atol: Double = 1e-8) throws -> Bool {
        var r: Int32 = 0
        try check(ct_all_close(handle, other.handle, rtol, atol, &r))
        return r != 0
    }
}
