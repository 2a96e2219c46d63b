import Foundation

/// `transform` applied to 0..<count on all cores, results in index order. Once a call has thrown, the
/// calls not yet begun are skipped (a million synthetic images went on rendering after the disk filled);
/// the first error thrown (by completion order) is rethrown once the running ones have finished.
/// Decoding, resampling and rendering images, which do not depend on each other, share this.
func concurrentMap<T>(_ count: Int, _ transform: (Int) throws -> T) throws -> [T] {
    var results = [T?](repeating: nil, count: count)
    var failure: Error?
    let lock = NSLock()
    DispatchQueue.concurrentPerform(iterations: count) { i in
        lock.lock(); let failed = failure != nil; lock.unlock()
        if failed { return }
        do {
            let value = try transform(i)
            lock.lock(); results[i] = value; lock.unlock()
        } catch {
            lock.lock(); failure = failure ?? error; lock.unlock()
        }
    }
    if let failure { throw failure }
    return results.map { $0! }
}
