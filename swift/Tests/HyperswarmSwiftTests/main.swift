// The Swift binding end to end: typed errors, two swarms on a local testnet exchanging
// bytes (through the AsyncStream layer and through a listener called from Rust), and a
// connection to a JS Hyperswarm peer (tests/interop/js-swarm.js). Run by `cargo xtask
// mobile` inside a fresh network namespace; prints `N passed, N failed`.
import Foundation
import Hyperswarm

struct Failure: Error, CustomStringConvertible {
    let description: String
}

func check(_ cond: Bool, _ what: @autoclosure () -> String) throws {
    if !cond { throw Failure(description: what()) }
}

/// Runs `body`, failing after `seconds`. A body stuck in a call that ignores cancellation is
/// left behind rather than waited for, so one hung test cannot hang the run.
func withTimeout(_ seconds: Double, _ body: @escaping @Sendable () async throws -> Void) async throws {
    final class Once: @unchecked Sendable {
        private let lock = NSLock()
        private var done = false
        func claim() -> Bool {
            lock.lock()
            defer { lock.unlock() }
            if done { return false }
            done = true
            return true
        }
    }
    let once = Once()
    try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, Error>) in
        let work = Task {
            do {
                try await body()
                if once.claim() { cont.resume() }
            } catch {
                if once.claim() { cont.resume(throwing: error) }
            }
        }
        Task {
            try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            if once.claim() {
                work.cancel()
                cont.resume(throwing: Failure(description: "timed out after \(seconds) s"))
            }
        }
    }
}

func randomData(_ count: Int) -> Data {
    var g = SystemRandomNumberGenerator()
    return Data((0..<count).map { _ in UInt8.random(in: 0...255, using: &g) })
}

func withTestnet<T>(_ body: ([String]) async throws -> T) async throws -> T {
    let testnet = try await Hyperswarm.testnet(size: 3)
    defer { testnet.shutdown() }
    return try await body(testnet.bootstrap())
}

func badArguments() async throws {
    try await withTestnet { bootstrap in
        do {
            _ = try KeyPair(seed: Data(count: 31))
            throw Failure(description: "a 31-byte seed was accepted")
        } catch HyperswarmError.InvalidKey(let message) {
            try check(message.hasPrefix("ERR_INVALID_KEY"), "message carries the code: \(message)")
        }
        do {
            _ = try KeyPair.fromSecretKey(secretKey: Data(count: 10))
            throw Failure(description: "a 10-byte secret key was accepted")
        } catch HyperswarmError.InvalidKey {}

        let seed = Data((0..<32).map { UInt8($0) })
        let kp = try KeyPair(seed: seed)
        try check(kp.publicKey() == (try KeyPair(seed: seed)).publicKey(), "a seed gives one key pair")
        try check(try KeyPair.fromSecretKey(secretKey: kp.secretKey()).publicKey() == kp.publicKey(), "secret key round trip")

        do {
            _ = try await Hyperswarm.swarm(bootstrap: bootstrap, host: "not-an-ip")
            throw Failure(description: "a bad host was accepted")
        } catch HyperswarmError.InvalidArgument {}

        let swarm = try await Hyperswarm.swarm(bootstrap: bootstrap, keyPair: kp)
        try check(swarm.publicKey() == kp.publicKey(), "the swarm uses the given identity")
        do {
            try await swarm.join(Data(count: 31))
            throw Failure(description: "a 31-byte topic was accepted")
        } catch HyperswarmError.InvalidTopic {}
        do {
            try swarm.joinPeer(publicKey: Data(count: 5))
            throw Failure(description: "a 5-byte key was accepted")
        } catch HyperswarmError.InvalidKey {}
        try await swarm.shutdown()
        try check(swarm.isShutDown(), "shut down")
        do {
            try await swarm.join(Data(count: 32))
            throw Failure(description: "join after shutdown succeeded")
        } catch HyperswarmError.Destroyed {}
        let next = await swarm.nextConnection()
        try check(next == nil, "no connections after shutdown")
    }
}

/// Sends `data` one way and checks it arrives whole.
func send(_ from: Connection, _ to: Connection, _ data: Data) async throws {
    async let writing: Void = from.write(data)
    let got = try await to.read(exactly: data.count)
    try await writing
    try check(got == data, "\(data.count) bytes arrive intact")
}

func firstConnection(_ swarm: Swarm) async throws -> Connection {
    for await conn in swarm.connections { return conn }
    throw Failure(description: "the swarm shut down before a connection came")
}

func twoSwarms() async throws {
    try await withTestnet { bootstrap in
        let a = try await Hyperswarm.swarm(bootstrap: bootstrap)
        let b = try await Hyperswarm.swarm(bootstrap: bootstrap)
        do {
            let topic = randomData(32)
            try check(try await a.join(topic, server: true, client: false).flushed(), "announced")
            async let atA = firstConnection(a)
            try await b.join(topic, server: false, client: true)
            let atB = try await firstConnection(b)
            let conA = try await atA
            try check(conA.remotePublicKey() == b.publicKey(), "a sees b's key")
            try check(atB.remotePublicKey() == a.publicKey(), "b sees a's key")
            try check(conA.handshakeHash() == atB.handshakeHash(), "same handshake hash")
            try check(atB.isInitiator() && !conA.isInitiator(), "b dialled")
            try await send(atB, conA, randomData(200_000))
            try await send(conA, atB, randomData(100_000))
            do {
                _ = try await conA.read(exactly: -1)
                throw Failure(description: "a negative read size was accepted")
            } catch HyperswarmError.InvalidArgument {}
            try await atB.end()
            try check(try await conA.read() == nil, "a reads the end of b's stream")
            try await conA.end()
            var chunks = 0
            for try await _ in atB.incoming { chunks += 1 }
            try check(chunks == 0, "b reads the end of a's stream")
            atB.abort()
            do {
                try await atB.write("after abort")
                throw Failure(description: "a write after abort succeeded")
            } catch HyperswarmError.ConnectionClosed {}
        } catch {
            try? await a.shutdown()
            try? await b.shutdown()
            throw error
        }
        try await a.shutdown()
        try await b.shutdown()
    }
}

/// A listener implemented in Swift; Rust calls it from one of its own threads.
final class Collector: SwarmListener, @unchecked Sendable {
    let stream: AsyncStream<(Connection, PeerInfo, Bool)>
    private let continuation: AsyncStream<(Connection, PeerInfo, Bool)>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: (Connection, PeerInfo, Bool).self)
    }

    func onConnection(connection: Connection, peer: PeerInfo) {
        continuation.yield((connection, peer, Thread.isMainThread))
    }

    func onUpdate(stats: SwarmStats) {}
}

func listener() async throws {
    try await withTestnet { bootstrap in
        let a = try await Hyperswarm.swarm(bootstrap: bootstrap)
        let b = try await Hyperswarm.swarm(bootstrap: bootstrap)
        defer {
            Task { try? await a.shutdown(); try? await b.shutdown() }
        }
        let collector = Collector()
        a.setListener(listener: collector)
        let topic = randomData(32)
        try check(try await a.join(topic, server: true, client: false).flushed(), "announced")
        try await b.join(topic, server: false, client: true)
        let atB = try await firstConnection(b)
        var it = collector.stream.makeAsyncIterator()
        guard let (atA, peer, onMain) = await it.next() else {
            throw Failure(description: "the listener never got a connection")
        }
        try check(!onMain, "called from a Rust thread, not the main thread")
        try check(peer.publicKey == b.publicKey(), "peer info names b")
        try await atB.write("ping\n")
        try check(try await atA.readLine() == "ping", "the listener's connection carries data")
        try check(try a.stats().connections >= 1, "stats count the connection")
    }
}

/// The JSON lines a child process prints, as they come.
func lines(of handle: FileHandle) -> AsyncStream<String> {
    AsyncStream { continuation in
        Thread {
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    continuation.yield(String(decoding: pending[pending.startIndex..<nl], as: UTF8.self))
                    pending = Data(pending[(nl + 1)...])
                }
            }
            continuation.finish()
        }.start()
    }
}

func json(_ line: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
}

func jsInterop() async throws {
    guard let dir = ProcessInfo.processInfo.environment["HYPERSWARM_INTEROP_DIR"] else {
        throw Failure(description: "HYPERSWARM_INTEROP_DIR is not set")
    }
    try await withTestnet { bootstrap in
        let topic = randomData(32)
        let js = Process()
        js.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        js.arguments = ["node", dir + "/js-swarm.js", "join", topic.hexString,
                        "--bootstrap", bootstrap.joined(separator: ","), "--server", "--greet"]
        let stdout = Pipe()
        let stdin = Pipe()
        js.standardOutput = stdout
        js.standardInput = stdin
        try js.run()
        var events = lines(of: stdout.fileHandleForReading).makeAsyncIterator()
        func event(_ name: String) async throws -> [String: Any] {
            while let line = await events.next() {
                let e = json(line)
                if e["event"] as? String == name { return e }
            }
            throw Failure(description: "the JS peer exited before `\(name)`")
        }
        let swarm = try await Hyperswarm.swarm(bootstrap: bootstrap)
        do {
            let jsKey = try await event("ready")["public_key"] as? String
            try check(try await event("flushed")["ok"] as? Bool == true, "the JS peer announced the topic")
            try await swarm.join(topic, server: false, client: true)
            let conn = try await firstConnection(swarm)
            try check(conn.remotePublicKey().hexString == jsKey, "the connection is to the JS peer")
            try check(try await conn.readLine() == "hello \(jsKey ?? "")", "the JS peer's greeting arrives")
            try check(try await event("connection")["remote_public_key"] as? String == swarm.publicKey().hexString,
                      "JS sees our key")
            try await conn.write("ping from swift")
            let data = try await event("data")
            try check(data["text"] as? String == "ping from swift", "JS received our bytes: \(data)")
        } catch {
            try? await swarm.shutdown()
            js.terminate()
            throw error
        }
        try await swarm.shutdown()
        try stdin.fileHandleForWriting.close()
        js.waitUntilExit()
    }
}

let tests: [(String, @Sendable () async throws -> Void)] = [
    ("bad arguments raise typed errors", { try await badArguments() }),
    ("two swarms on a testnet exchange bytes (AsyncStream)", { try await twoSwarms() }),
    ("a listener implemented in Swift receives connections", { try await listener() }),
    ("a JS hyperswarm peer connects and exchanges bytes", { try await jsInterop() }),
]
var passed = 0
var failed = 0
for (name, test) in tests {
    do {
        try await withTimeout(60, test)
        print("ok - \(name)")
        passed += 1
    } catch {
        print("FAIL - \(name): \(error)")
        failed += 1
    }
}
await Hyperswarm.shutdownAll()
print("swift: \(passed) passed, \(failed) failed")
exit(failed == 0 ? 0 : 1)
