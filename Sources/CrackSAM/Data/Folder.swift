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
        let parent = Folder.parent(of: path)
        if !parent.isEmpty && parent != path { try make(parent) }
        if mkdir(path, 0o777) != 0 && errno != EEXIST {
            throw DataError.cannotWrite(path: path, reason: "cannot create the folder: \(String(cString: strerror(errno)))")
        }
    }

    /// Fails, naming the folder and the system's reason, when no file can be made in it (read-only,
    /// /proc, no permission): found before hours of work whose results would go there, not after.
    public static func requireWritable(_ path: String) throws {
        let probe = (path.isEmpty ? "." : path) + "/.cracksam-write-check-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            throw DataError.cannotWrite(path: path.isEmpty ? "." : path, reason: "no file can be made in this folder: \(String(cString: strerror(errno)))")
        }
        close(fd)
        unlink(probe)
    }

    /// The folder part of a path ("runs/a/b" → "runs/a", "/x" → "/", "b" → ""), by string rules only.
    /// Not NSString.deletingLastPathComponent: swift-corelibs-foundation (Swift 6.3) traps on a path of
    /// one character ("d", ".", "a/"), which crashed `synth --out d`.
    public static func parent(of path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "" }
        var head = p[..<slash]
        while head.hasSuffix("/") { head = head.dropLast() }
        return head.isEmpty ? "/" : String(head)
    }
}
