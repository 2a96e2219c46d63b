/// Turning image files into model input, as CrackSAM does: RGB, resized to S×S with bicubic
/// interpolation when needed (rounded back to 8 bits, as an image resize would), scaled to [0, 1].
public enum Preprocess {
    /// (3, S, S) float32 in [0, 1].
    public static func image(at path: String, size: Int) throws -> Tensor {
        try image(Image.read(at: path).rgb(), size: size)
    }

    public static func image(_ image: Image, size: Int) throws -> Tensor {
        var t = try image.rgb().tensor()
        if image.width != size || image.height != size {
            t = try t.to(dtype: .float32).unsqueeze(dim: 0).interpolate(size: (size, size), mode: .bicubic)
                .round().clamp(min: 0, max: 255).squeeze(dim: 0)
        }
        return try t.to(dtype: .float32) / 255.0
    }
}
