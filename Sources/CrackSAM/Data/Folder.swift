import Foundation

/// Output folders, made with their parents. A failure names the folder and gives the system's reason
/// ("a file is in the way", "Permission denied"), not Foundation's error dump.
public enum Folder {
    public static func make(_ path: String) throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
            if isFolder.boolValue { return }
            throw DataError.cannotWrite(path: path, reason: "a file is in the way of this folder")
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try make(parent) }
        if mkdir(path, 0o777) != 0 && errno != EEXIST {
            throw DataError.cannotWrite(path: path, reason: "cannot create the folder: \(String(cString: strerror(errno)))")
        }
    }
}
