import CTorchShim
import Foundation

/// Times work queued on a device: CUDA events on the current stream (what the GPU spent, without
/// synchronising in between), the wall clock on the CPU, where work runs as it is issued.
public final class DeviceTimer {
    public let device: Device
    private var start: ct_event?
    private var end: ct_event?
    private var wallStart: UInt64 = 0

    public init(device: Device) throws {
        self.device = device
        if case .cuda(let i) = device {
            var a: ct_event? = nil, b: ct_event? = nil
            try check(ct_event_create(device.shimType, Int32(i), &a))
            start = a
            do { try check(ct_event_create(device.shimType, Int32(i), &b)) } catch { ct_event_free(a); throw error }
            end = b
        }
    }

    deinit {
        if let start { ct_event_free(start) }
        if let end { ct_event_free(end) }
    }

    public func begin() throws {
        if let start { try check(ct_event_record(start)) } else { wallStart = DispatchTime.now().uptimeNanoseconds }
    }

    /// Seconds since `begin()` (on CUDA: waits for the queued work to finish).
    public func stop() throws -> Double {
        guard let start, let end else { return Double(DispatchTime.now().uptimeNanoseconds - wallStart) / 1e9 }
        try check(ct_event_record(end))
        var ms = 0.0
        try check(ct_event_elapsed_ms(start, end, &ms))
        return ms / 1000
    }
}
