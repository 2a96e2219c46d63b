import Foundation
import XCTest
@testable import CrackSAM

/// A TCP port nobody listens on right now (bind to port 0, read what the kernel gave, close).
func freeTCPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

final class DistributedTests: XCTestCase {
    /// Runs `body` as each rank of a Gloo group on its own thread of this process.
    func withGroup(_ worldSize: Int, timeout: Double = 30, _ body: @escaping @Sendable (ProcessGroup) throws -> Void) throws {
        let port = freeTCPPort()
        let errors = NSLock()
        nonisolated(unsafe) var failures: [String] = []
        // One thread per rank (not concurrentPerform: it runs only as many at once as there are cores,
        // and a rank that has not started would keep the others waiting in the rendezvous).
        let done = DispatchGroup()
        for rank in 0..<worldSize {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                do {
                    let env = DistributedEnvironment(rank: rank, worldSize: worldSize, localRank: rank, masterAddress: "127.0.0.1", masterPort: port)
                    let group = try ProcessGroup(environment: env, timeout: timeout)
                    try body(group)
                } catch {
                    errors.lock(); failures.append("rank \(rank): \(error)"); errors.unlock()
                }
            }
            thread.start()
        }
        done.wait()
        XCTAssertEqual(failures, [])
    }

    func testEnvironmentVariables() throws {
        XCTAssertNil(try DistributedEnvironment.fromEnvironment([:]))
        let env = try XCTUnwrap(DistributedEnvironment.fromEnvironment(
            ["WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "node7", "MASTER_PORT": "29400"]))
        XCTAssertEqual(env, DistributedEnvironment(rank: 3, worldSize: 4, localRank: 1, masterAddress: "node7", masterPort: 29400))
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"])) {
            XCTAssertEqual("\($0)", "RANK=2 must be in 0..<2")
        }
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "1"])) {
            XCTAssertEqual("\($0)", "MASTER_ADDR is not set (WORLD_SIZE is)")
        }
        XCTAssertThrowsError(try DistributedEnvironment.fromEnvironment(["WORLD_SIZE": "two"])) {
            XCTAssertEqual("\($0)", "WORLD_SIZE=two is not an integer")
        }
    }

    func testCollectivesOverLoopback() throws {
        try withGroup(3) { group in
            let r = Double(group.rank)
            // all-reduce: sum, max
            let t = try Tensor([1 + r, 10 * r], shape: [2])
            try group.allReduce(t)
            XCTAssertEqual(try t.toArray(of: Double.self), [6, 30])
            let m = try Tensor([Float(r)], shape: [1])
            try group.allReduce(m, op: .max)
            XCTAssertEqual(try m.toArray(of: Float.self), [2])
            // broadcast from rank 1
            let b = try Tensor([Float(r), Float(r)], shape: [2])
            try group.broadcast(b, from: 1)
            XCTAssertEqual(try b.toArray(of: Float.self), [1, 1])
            // all-gather
            let g = try group.allGather(Tensor([Int64(group.rank) * 7], shape: [1]))
            XCTAssertEqual(g.shape, [3, 1])
            XCTAssertEqual(try g.toArray(of: Int64.self), [0, 7, 14])
            try group.barrier()
        }
    }

    func testBucketedGradientSumAndBroadcast() throws {
        try withGroup(2) { group in
            // Three parameters of mixed dtypes; buckets of 16 bytes force several collectives.
            let params = try [Parameter(Tensor.ones([3]) * Double(group.rank + 1)),
                              Parameter(Tensor.ones([2, 2]) * Double(group.rank + 1)),
                              Parameter(Tensor.ones([1]).to(dtype: .float64) * Double(group.rank + 1))]
            for p in params { try (p.tensor * 3.0).sum().backward() }
            let dp = DataParallel(group: group, bucketBytes: 16)
            XCTAssertEqual(dp.buckets(params.map(\.tensor)).map(\.count), [1, 1, 1])
            try dp.sumGradients(params)
            for p in params { XCTAssertEqual(try p.tensor.grad!.to(dtype: .float64).toArray(of: Double.self), Array(repeating: 6, count: p.count)) }
            XCTAssertEqual(try dp.divergence(params), 1)
            let module = try Linear(3, 2)
            let dp2 = DataParallel(group: group)
            XCTAssertEqual(dp2.buckets(module.namedSlots().map(\.parameter.tensor)).count, 1)
            try dp2.broadcastState(of: module)
            XCTAssertEqual(try dp2.divergence(module.namedParameters().map(\.parameter)), 0)
        }
    }
}
