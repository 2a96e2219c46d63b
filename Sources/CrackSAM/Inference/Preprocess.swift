/// Turning image files into model input, as CrackSAM does: RGB, brought to S×S (see ResizeMethod: by
/// default the authors' cubic-spline zoom; images already S×S are not resampled at all), scaled to [0, 1].
public enum Preprocess {
    /// (3, S, S) float32 in [0, 1] (a spline may overshoot that range a little at sharp edges).
    public static func image(at path: String, size: Int, resize: ResizeMethod = .spline) throws -> Tensor {
        try image(Image.read(at: path).rgb(), size: size, resize: resize)
    }

    public static func image(_ image: Image, size: Int, resize: ResizeMethod = .spline) throws -> Tensor {
        let rgb = image.rgb()
        if rgb.width == size && rgb.height == size { return try rgb.tensor().to(dtype: .float32) / 255.0 }
        switch resize {
        case .opencv:
            return try Degrade.resizeBicubic(rgb, width: size, height: size).tensor().to(dtype: .float32) / 255.0
        case .spline:
            return try Tensor(SplineZoom.cubic(rgb, width: size, height: size), shape: [3, size, size])
        }
    }
}
