import CImageIO
import Foundation

/// Problems with input images and datasets, each naming the file.
public enum DataError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case unreadableImage(path: String, reason: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadableImage(let path, let reason): return "\(path): cannot read image: \(reason)"
        case .cannotWrite(let path, let reason): return "\(path): cannot write: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

/// An 8-bit image in memory: height × width × channels, interleaved (channels 1 = grey, 3 = RGB).
public struct Image: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]
    /// The EXIF orientation (2…8) the file's pixels were turned upright from, 1 when it had none: where
    /// the pixels came from, not what they are, so images compare equal without it.
    public var orientation = 1

    public static func == (a: Image, b: Image) -> Bool {
        a.width == b.width && a.height == b.height && a.channels == b.channels && a.pixels == b.pixels
    }

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "pixel buffer does not match the size")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// Decodes a PNG or JPEG file (8-bit grey, RGB or palette; alpha dropped) with libpng / libjpeg, or an
    /// uncompressed BMP; upright by its EXIF orientation.
    public static func read(at path: String) throws -> Image {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError.unreadableImage(path: path, reason: FileManager.default.fileExists(atPath: path) ? "cannot open" : "no such file")
        }
        return try decode(data, path: path)
    }

    public static func decode(_ data: Data, path: String = "<memory>") throws -> Image {
        var image = cimg_image()
        var err = [CChar](repeating: 0, count: 512)
        let rc = data.withUnsafeBytes { raw in
            cimg_decode(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, &image, &err, err.count)
        }
        guard rc == 0 else { throw DataError.unreadableImage(path: path, reason: String(cString: err)) }
        defer { cimg_free(&image) }
        let n = Int(image.width) * Int(image.height) * Int(image.channels)
        var decoded = Image(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                            pixels: Array(UnsafeBufferPointer(start: image.pixels, count: n)))
        decoded.orientation = Int(image.orientation)
        return decoded
    }

    /// The extensions of files `read(at:)` decodes.
    public static let readableExtensions: Set<String> = ["png", "jpg", "jpeg", "jpe", "jfif", "bmp"]
    /// Image formats found among crack photos and datasets (CrackTree's BMP, TIFF scans, …) that are not
    /// read: commands name such files rather than pass over them.
    public static let unreadableImageExtensions: Set<String> = ["tif", "tiff", "webp", "gif", "jp2", "pgm", "ppm"]

    /// The extensions `write(to:)` takes.
    public static let writableExtensions = ["png", "jpg", "jpeg"]

    /// Writes PNG (.png) or JPEG (.jpg/.jpeg), as the path's extension says, atomically. Any other
    /// extension is refused: PNG bytes under a .gif or .tif name would mislead every other program.
    public func write(to path: String, jpegQuality: Int = 95) throws {
        let ext = (path as NSString).pathExtension.lowercased()
        guard Image.writableExtensions.contains(ext) else {
            throw DataError.cannotWrite(path: path, reason: "images are written as .png, .jpg or .jpeg, not '\(ext.isEmpty ? "no extension" : "." + ext)'")
        }
        let jpeg = ext != "png"
        var out: UnsafeMutablePointer<UInt8>? = nil
        var length = 0
        var err = [CChar](repeating: 0, count: 512)
        let rc = pixels.withUnsafeBufferPointer { p in
            jpeg ? cimg_encode_jpeg(p.baseAddress, Int32(width), Int32(height), Int32(channels), Int32(jpegQuality), &out, &length, &err, err.count)
                 : cimg_encode_png(p.baseAddress, Int32(width), Int32(height), Int32(channels), &out, &length, &err, err.count)
        }
        guard rc == 0, let out else { throw DataError.cannotWrite(path: path, reason: String(cString: err)) }
        defer { free(out) }
        let data = Data(bytes: out, count: length)
        do {
            try AtomicFile.write(to: path) { tmp in try data.write(to: URL(fileURLWithPath: tmp)) }
        } catch TorchError.io(_, let reason) {
            throw DataError.cannotWrite(path: path, reason: reason)
        } catch let error as TorchError {
            throw DataError.cannotWrite(path: path, reason: "\(error)")
        } catch {
            throw DataError.cannotWrite(path: path, reason: error.localizedDescription)
        }
    }

    /// Three channels (grey is replicated).
    public func rgb() -> Image {
        guard channels == 1 else { return self }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { out[3 * i] = pixels[i]; out[3 * i + 1] = pixels[i]; out[3 * i + 2] = pixels[i] }
        var coloured = Image(width: width, height: height, channels: 3, pixels: out)
        coloured.orientation = orientation
        return coloured
    }

    /// (channels, height, width) uint8 tensor.
    public func tensor() throws -> Tensor {
        try pixels.withUnsafeBytes { try Tensor(bytes: $0, dtype: .uint8, shape: [height, width, channels]) }.permute([2, 0, 1])
    }
}
