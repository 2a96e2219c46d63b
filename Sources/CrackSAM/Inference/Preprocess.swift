/// Turning image files into model input, as CrackSAM does: RGB, resized to S×S with OpenCV's bicubic
/// (the one resize training, evaluation and prediction share), scaled to [0, 1].
public enum Preprocess {
    /// (3, S, S) float32 in [0, 1].
    public static func image(at path: String, size: Int) throws -> Tensor {
        try image(Image.read(at: path).rgb(), size: size)
    }

    public static func image(_ image: Image, size: Int) throws -> Tensor {
        let rgb = image.rgb()
        let sized = rgb.width == size && rgb.height == size ? rgb : try Degrade.resizeBicubic(rgb, width: size, height: size)
        return try sized.tensor().to(dtype: .float32) / 255.0
    }
}
