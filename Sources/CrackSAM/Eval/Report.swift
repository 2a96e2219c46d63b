import Foundation

/// Paper-style tables of evaluation results: rows are models, columns are dataset variants (Table 7).
public enum EvaluationReport {
    static func column(_ r: EvaluationResult) -> String { r.variant == "clean" ? r.dataset : "\(r.dataset) (\(r.variant))" }

    static func ordered(_ values: [String]) -> [String] {
        var seen = Set<String>(), out: [String] = []
        for v in values where seen.insert(v).inserted { out.append(v) }
        return out
    }

    /// IoU (mean over images) table, plus the other figures below it.
    public static func markdown(_ results: [EvaluationResult]) -> String {
        let models = ordered(results.map(\.model)), columns = ordered(results.map(column))
        func cell(_ m: String, _ c: String, _ f: (EvaluationResult) -> Double) -> String {
            results.first { $0.model == m && column($0) == c }.map { String(format: "%.4f", f($0)) } ?? "–"
        }
        // A name with "|" would split its cell: escaped, as Markdown reads "\|".
        func md(_ name: String) -> String { name.replacingOccurrences(of: "|", with: "\\|") }
        var lines = ["IoU (mean over images):", "", "| model | " + columns.map(md).joined(separator: " | ") + " |",
                     "|---|" + String(repeating: "---|", count: columns.count)]
        for m in models { lines.append("| \(md(m)) | " + columns.map { cell(m, $0, \.iou) }.joined(separator: " | ") + " |") }
        lines += ["", "All figures (Pr, Re, F1, IoU: means over images; pooled IoU: over all pixels):", "",
                  "| model | dataset | variant | images | Pr | Re | F1 | IoU | pooled IoU |", "|---|---|---|---|---|---|---|---|---|"]
        for r in results {
            lines.append(String(format: "| %@ | %@ | %@ | %ld | %.4f | %.4f | %.4f | %.4f | %.4f |", md(r.model), md(r.dataset), r.variant, r.images,
                                r.precision, r.recall, r.f1, r.iou, r.pooledIoU))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A CSV field: quoted (quotes doubled) when it holds a comma, a quote or a line break, as RFC 4180
    /// has it; file and model names may. Every CSV the tool writes with names in it goes through here.
    public static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    public static func csv(_ results: [EvaluationResult]) -> String {
        var lines = ["model,dataset,variant,images,precision,recall,f1,iou,pooled_iou"]
        for r in results {
            lines.append([csvField(r.model), csvField(r.dataset), r.variant].joined(separator: ",")
                + String(format: ",%ld,%.6f,%.6f,%.6f,%.6f,%.6f", r.images, r.precision, r.recall, r.f1, r.iou, r.pooledIoU))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One row per image of every evaluation: its pixel counts and scores (which images a model fails on).
    public static func perImageCSV(_ results: [EvaluationResult]) -> String {
        var lines = ["model,dataset,variant,image,precision,recall,f1,iou,predicted_pixels,truth_pixels,intersection_pixels"]
        for r in results {
            for image in r.imageScores {
                let s = image.scores
                lines.append([csvField(r.model), csvField(r.dataset), r.variant, csvField(image.image)].joined(separator: ",")
                    + String(format: ",%.6f,%.6f,%.6f,%.6f,%ld,%ld,%ld", s.precision, s.recall, s.f1, s.iou, image.predicted, image.truth,
                             image.intersection))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func json(_ results: [EvaluationResult]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return try encoder.encode(results)
    }

    /// IoU against the added Gaussian kernel size, one line per model and dataset (Figure 12).
    public static func blurPlot(_ results: [EvaluationResult]) -> Image {
        let palette: [(UInt8, UInt8, UInt8)] = [(200, 60, 40), (40, 90, 200), (40, 150, 70), (150, 60, 170), (220, 140, 20), (60, 60, 60)]
        var series: [LinePlot.Series] = []
        let groups = ordered(results.map { "\($0.model)|\($0.dataset)" })
        for (i, g) in groups.enumerated() {
            let points = results.filter { "\($0.model)|\($0.dataset)" == g && $0.variant.hasPrefix("blur:") }
                .compactMap { r -> (x: Double, y: Double)? in Double(r.variant.dropFirst(5)).map { ($0, r.iou) } }
                .sorted { $0.x < $1.x }
            if !points.isEmpty { series.append(.init(points: points, color: palette[i % palette.count])) }
        }
        return LinePlot(title: "IoU vs Gaussian blur kernel size", xLabel: "kernel size", series: series).render()
    }
}
