import Foundation

/// `transform` applied to 0..<count on all cores, results in index order. Every call runs; the first
/// error thrown (by completion order) is rethrown once all have finished. Decoding, resampling and
/// rendering images, which do not depend on each other, share this.
func concurrentMap<T>(_ count: Int, _ transform: (Int) throws -> T) throws -> [T] {
    var results = [T?](repeating: nil, count: count)
    var failure: Error?
    let lock = NSLock()
    DispatchQueue.concurrentPerform(iterations: count) { i in
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
