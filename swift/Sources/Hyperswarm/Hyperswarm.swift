// The idiomatic Swift face of hyperswarm-rs: entry points with defaulted arguments and
// AsyncStreams over the generated bindings (module HyperswarmUniffi, re-exported, never
// edited by hand). Swarm, Connection, Discovery, KeyPair, Testnet, SwarmEvent and
// HyperswarmError are the generated types; this file adds what uniffi cannot express.
@_exported import HyperswarmUniffi
import Foundation

/// Starting points: swarms and local testnets.
public enum Hyperswarm {
    /// Starts a swarm on its own DHT node. `bootstrap` lists `host:port` nodes; `nil` means
    /// the public HyperDHT. Bad arguments throw `HyperswarmError` cases.
    public static func swarm(
        bootstrap: [String]? = nil,
        keyPair: KeyPair? = nil,
        host: String? = nil,
        port: UInt16 = 0,
        maxPeers: UInt32? = nil,
        maxParallel: UInt32? = nil
    ) async throws -> Swarm {
        try await createSwarm(config: SwarmConfig(
            bootstrap: bootstrap,
            keyPair: keyPair,
            host: host,
            port: port,
            maxPeers: maxPeers,
            maxParallel: maxParallel
        ))
    }

    /// A local testnet of `size` DHT nodes on 127.0.0.1; pass its `bootstrap()` to `swarm`.
    public static func testnet(size: UInt32 = 3) async throws -> Testnet {
        try await createTestnet(size: size)
    }

    /// Shuts every live swarm down, e.g. before the process exits.
    public static func shutdownAll() async {
        await HyperswarmUniffi.shutdownAll()
    }
}

extension Swarm {
    /// The swarm's connections as they come, finishing when the swarm shuts down. Iterate
    /// it once: each connection goes to one iterator. Don't combine it with `events` or
    /// `setListener`, which take from the same queue.
    public var connections: AsyncStream<Connection> {
        AsyncStream { await self.nextConnection() }
    }

    /// Every event (connections and counter updates), finishing when the swarm shuts down.
    public var events: AsyncStream<SwarmEvent> {
        AsyncStream { await self.nextEvent() }
    }

    /// Joins `topic` (32 bytes) as server and/or client.
    @discardableResult
    public func join(_ topic: Data, server: Bool = true, client: Bool = true) async throws -> Discovery {
        try await join(topic: topic, server: server, client: client)
    }
}

extension Connection {
    /// The peer's data as it arrives, finishing when the peer ends the stream.
    public var incoming: AsyncThrowingStream<Data, Error> {
        AsyncThrowingStream { try await self.read(max: 65536) }
    }

    /// Writes `data`, returning once the stream has taken it.
    public func write(_ data: Data) async throws {
        try await write(data: data)
    }

    /// Writes `text` as UTF-8.
    public func write(_ text: String) async throws {
        try await write(data: Data(text.utf8))
    }

    /// Reads exactly `count` bytes; throws `HyperswarmError.ConnectionClosed` when the peer
    /// ends the stream first, `HyperswarmError.InvalidArgument` for a negative count.
    public func read(exactly count: Int) async throws -> Data {
        guard count >= 0 else {
            throw HyperswarmError.InvalidArgument(message: "ERR_INVALID_ARGUMENT: cannot read \(count) bytes")
        }
        var out = Data()
        out.reserveCapacity(count)
        while out.count < count {
            guard let chunk = try await read(max: UInt32(min(count - out.count, 65536))) else {
                throw HyperswarmError.ConnectionClosed(
                    message: "ERR_CONNECTION_CLOSED: stream ended after \(out.count) of \(count) bytes")
            }
            out.append(chunk)
        }
        return out
    }

    /// Reads up to and including the next newline and returns the line without it; `nil`
    /// at the end of the stream.
    public func readLine() async throws -> String? {
        var line = Data()
        while let byte = try await read(max: 1) {
            if byte.first == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return line.isEmpty ? nil : String(decoding: line, as: UTF8.self)
    }
}

extension Data {
    /// The bytes as lowercase hex, as keys and topics are usually shown.
    public var hexString: String {
        map { String(format: "%02x", $0) }.joined()
    }
}
