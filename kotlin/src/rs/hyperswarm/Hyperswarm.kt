// The idiomatic Kotlin face of hyperswarm-rs: entry points with named, defaulted arguments
// and Flows over the generated bindings in `rs.hyperswarm.ffi` (uniffi, not edited by hand).
// The types themselves (Swarm, Connection, Discovery, KeyPair, Testnet, SwarmEvent,
// HyperswarmException) are the generated ones; this file only adds what uniffi cannot say.
package rs.hyperswarm

import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.flow
import rs.hyperswarm.ffi.Connection
import rs.hyperswarm.ffi.HyperswarmException
import rs.hyperswarm.ffi.KeyPair
import rs.hyperswarm.ffi.Swarm
import rs.hyperswarm.ffi.SwarmConfig
import rs.hyperswarm.ffi.SwarmEvent
import rs.hyperswarm.ffi.Testnet
import rs.hyperswarm.ffi.createSwarm
import rs.hyperswarm.ffi.createTestnet

/** Starting points: swarms and local testnets. */
object Hyperswarm {
    /**
     * Starts a swarm on its own DHT node. [bootstrap] lists `host:port` nodes; `null` means
     * the public HyperDHT. Argument errors throw [HyperswarmException] subclasses.
     */
    suspend fun swarm(
        bootstrap: List<String>? = null,
        keyPair: KeyPair? = null,
        host: String? = null,
        port: Int = 0,
        maxPeers: Int? = null,
        maxParallel: Int? = null,
    ): Swarm {
        // Range-checked here so a bad port is a typed error, not a silent wrap-around.
        if (port !in 0..65535) throw HyperswarmException.InvalidArgument("ERR_INVALID_ARGUMENT: port $port is out of range")
        if (maxPeers != null && maxPeers < 0) throw HyperswarmException.InvalidArgument("ERR_INVALID_ARGUMENT: maxPeers is negative")
        if (maxParallel != null && maxParallel < 0) throw HyperswarmException.InvalidArgument("ERR_INVALID_ARGUMENT: maxParallel is negative")
        return createSwarm(
            SwarmConfig(
                bootstrap = bootstrap,
                keyPair = keyPair,
                host = host,
                port = port.toUShort(),
                maxPeers = maxPeers?.toUInt(),
                maxParallel = maxParallel?.toUInt(),
            ),
        )
    }

    /** A local testnet of [size] DHT nodes on 127.0.0.1; pass its `bootstrap()` to [swarm]. */
    suspend fun testnet(size: Int = 3): Testnet {
        if (size <= 0) throw HyperswarmException.InvalidArgument("ERR_INVALID_ARGUMENT: a testnet needs at least one node")
        return createTestnet(size.toUInt())
    }

    /** Shuts every live swarm down, e.g. before the process exits. */
    suspend fun shutdownAll() = rs.hyperswarm.ffi.shutdownAll()
}

/**
 * The swarm's connections as they come, ending when the swarm shuts down. Collect it
 * once: every connection is delivered to one collector. Don't combine it with
 * [Swarm.setListener] or [events], which take from the same queue.
 */
val Swarm.connections: Flow<Connection>
    get() = flow {
        while (true) emit(nextConnection() ?: break)
    }

/** Every event (connections and counter updates), ending when the swarm shuts down. */
val Swarm.events: Flow<SwarmEvent>
    get() = flow {
        while (true) emit(nextEvent() ?: break)
    }

/** The peer's data as it arrives, in chunks of at most [maxChunk] bytes, until it ends. */
fun Connection.incoming(maxChunk: Int = 65536): Flow<ByteArray> = flow {
    if (maxChunk <= 0) throw HyperswarmException.InvalidArgument("ERR_INVALID_ARGUMENT: maxChunk must be positive, not $maxChunk")
    while (true) emit(read(maxChunk.toUInt()) ?: break)
}

/** Writes [text] as UTF-8. */
suspend fun Connection.write(text: String) = write(text.encodeToByteArray())

/**
 * Reads exactly [size] bytes; throws [HyperswarmException.ConnectionClosed] when the peer
 * ends the stream first, [HyperswarmException.InvalidArgument] for a negative size.
 */
suspend fun Connection.readExactly(size: Int): ByteArray {
    if (size < 0) throw HyperswarmException.InvalidArgument("ERR_INVALID_ARGUMENT: cannot read $size bytes")
    val out = java.io.ByteArrayOutputStream(size)
    while (out.size() < size) {
        val chunk = read(minOf(size - out.size(), 65536).toUInt())
            ?: throw HyperswarmException.ConnectionClosed("ERR_CONNECTION_CLOSED: stream ended after ${out.size()} of $size bytes")
        out.write(chunk)
    }
    return out.toByteArray()
}

/** Reads up to and including the next `\n` and returns the line without it; `null` at the end. */
suspend fun Connection.readLine(): String? {
    val out = java.io.ByteArrayOutputStream()
    while (true) {
        val b = read(1u) ?: return if (out.size() == 0) null else out.toString(Charsets.UTF_8)
        if (b[0] == '\n'.code.toByte()) return out.toString(Charsets.UTF_8)
        out.write(b)
    }
}

/** The bytes as lowercase hex, as keys and topics are usually shown. */
fun ByteArray.toHex(): String = joinToString("") { "%02x".format(it) }
