/// Per-image segmentation metrics with the authors' edge rules (REFERENCE "Evaluation"):
/// with A = |P|, B = |G|, I = |P∩G|: if A > 0 and B > 0, Pr = I/A, Re = I/B, F1 = 2I/(A+B), IoU = I/|P∪G|;
/// if A = B = 0 all four are 1; otherwise all four are 0.
public struct SegmentationScores: Equatable, Sendable {
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var iou: Double

    public init(precision: Double, recall: Double, f1: Double, iou: Double) {
        self.precision = precision
        self.recall = recall
        self.f1 = f1
        self.iou = iou
    }

    public init(predicted a: Int, truth b: Int, intersection i: Int) {
        if a > 0 && b > 0 {
            let (i, a, b) = (Double(i), Double(a), Double(b))
            self.init(precision: i / a, recall: i / b, f1: 2 * i / (a + b), iou: i / (a + b - i))
        } else if a == 0 && b == 0 {
            self.init(precision: 1, recall: 1, f1: 1, iou: 1)
        } else {
            self.init(precision: 0, recall: 0, f1: 0, iou: 0)
        }
    }

    /// Scores of each image of a batch: binary predictions and labels (B, H, W), any dtype, nonzero = crack.
    public static func perImage(predicted: Tensor, truth: Tensor) throws -> [SegmentationScores] {
        let p = try predicted.ne(0), g = try truth.ne(0)
        let a = try p.sum(dims: [1, 2], dtype: .int64).toArray(of: Int64.self)
        let b = try g.sum(dims: [1, 2], dtype: .int64).toArray(of: Int64.self)
        let i = try p.logicalAnd(g).sum(dims: [1, 2], dtype: .int64).toArray(of: Int64.self)
        return (0..<a.count).map { SegmentationScores(predicted: Int(a[$0]), truth: Int(b[$0]), intersection: Int(i[$0])) }
    }

    /// The mean over images, as the paper reports.
    public static func mean(_ scores: [SegmentationScores]) -> SegmentationScores {
        let n = Double(max(scores.count, 1))
        return SegmentationScores(precision: scores.map(\.precision).reduce(0, +) / n, recall: scores.map(\.recall).reduce(0, +) / n,
                                  f1: scores.map(\.f1).reduce(0, +) / n, iou: scores.map(\.iou).reduce(0, +) / n)
    }
}
