// The Kotlin binding end to end: typed errors, two swarms on a local testnet exchanging
// bytes (through the Flow wrapper and through a listener called from Rust), and a
// connection to a JS Hyperswarm peer (tests/interop/js-swarm.js). Run by `cargo xtask
// mobile` inside a fresh network namespace; prints `N passed, N failed`.
package rs.hyperswarm.test

import java.io.File
import java.util.concurrent.TimeUnit
import kotlin.random.Random
import kotlin.system.exitProcess
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import rs.hyperswarm.Hyperswarm
import rs.hyperswarm.connections
import rs.hyperswarm.readExactly
import rs.hyperswarm.readLine
import rs.hyperswarm.toHex
import rs.hyperswarm.write
import rs.hyperswarm.ffi.Connection
import rs.hyperswarm.ffi.HyperswarmException
import rs.hyperswarm.ffi.KeyPair
import rs.hyperswarm.ffi.PeerInfo
import rs.hyperswarm.ffi.SwarmListener
import rs.hyperswarm.ffi.SwarmStats
import rs.hyperswarm.ffi.Testnet

private val TIMEOUT = 60.seconds

private fun check(cond: Boolean, what: String) {
    if (!cond) throw AssertionError(what)
}

private inline fun <reified E : Throwable> expectThrows(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("$what: expected ${E::class.simpleName}, got $e")
    }
    throw AssertionError("$what: expected ${E::class.simpleName}, nothing was thrown")
}

private suspend fun <T> withTestnet(body: suspend (List<String>) -> T): T {
    val testnet: Testnet = Hyperswarm.testnet(3)
    try {
        return body(testnet.bootstrap())
    } finally {
        testnet.shutdown()
    }
}

private suspend fun badArguments() = withTestnet { bootstrap ->
    val e = expectThrows<HyperswarmException.InvalidKey>("31-byte seed") { KeyPair(ByteArray(31)) }
    check(e.message!!.startsWith("ERR_INVALID_KEY"), "message carries the code: ${e.message}")
    expectThrows<HyperswarmException.InvalidKey>("short secret key") { KeyPair.fromSecretKey(ByteArray(10)) }

    val seed = ByteArray(32) { it.toByte() }
    val kp = KeyPair(seed)
    check(kp.publicKey().contentEquals(KeyPair(seed).publicKey()), "a seed gives one key pair")
    check(KeyPair.fromSecretKey(kp.secretKey()).publicKey().contentEquals(kp.publicKey()), "secret key round trip")

    val bad = kotlin.runCatching { Hyperswarm.swarm(bootstrap = bootstrap, host = "not-an-ip") }.exceptionOrNull()
    check(bad is HyperswarmException.InvalidArgument, "bad host: $bad")
    val port = kotlin.runCatching { Hyperswarm.swarm(bootstrap = bootstrap, port = 70000) }.exceptionOrNull()
    check(port is HyperswarmException.InvalidArgument, "bad port: $port")

    val swarm = Hyperswarm.swarm(bootstrap = bootstrap, keyPair = kp)
    check(swarm.publicKey().contentEquals(kp.publicKey()), "the swarm uses the given identity")
    val topic = kotlin.runCatching { swarm.join(ByteArray(31)) }.exceptionOrNull()
    check(topic is HyperswarmException.InvalidTopic, "short topic: $topic")
    val key = kotlin.runCatching { swarm.joinPeer(ByteArray(5)) }.exceptionOrNull()
    check(key is HyperswarmException.InvalidKey, "short peer key: $key")
    swarm.shutdown()
    check(swarm.isShutDown(), "shut down")
    val after = kotlin.runCatching { swarm.join(ByteArray(32)) }.exceptionOrNull()
    check(after is HyperswarmException.Destroyed, "join after shutdown: $after")
    check(swarm.nextConnection() == null, "no connections after shutdown")
}

/** Sends [data] one way and checks it arrives whole. */
private suspend fun send(from: Connection, to: Connection, data: ByteArray) = coroutineScope {
    val writing = launch { from.write(data) }
    val got = to.readExactly(data.size)
    writing.join()
    check(got.contentEquals(data), "${data.size} bytes arrive intact")
}

private suspend fun twoSwarms() = withTestnet { bootstrap ->
    val a = Hyperswarm.swarm(bootstrap = bootstrap)
    val b = Hyperswarm.swarm(bootstrap = bootstrap)
    try {
        val topic = Random.nextBytes(32)
        coroutineScope {
            check(a.join(topic, server = true, client = false).flushed(), "announced")
            val atA = async { a.connections.first() }
            b.join(topic, server = false, client = true)
            val atB = b.connections.first()
            val conA = atA.await()
            check(conA.remotePublicKey().contentEquals(b.publicKey()), "a sees b's key")
            check(atB.remotePublicKey().contentEquals(a.publicKey()), "b sees a's key")
            check(conA.handshakeHash().contentEquals(atB.handshakeHash()), "same handshake hash")
            check(atB.isInitiator() && !conA.isInitiator(), "b dialled")
            send(atB, conA, Random.nextBytes(200_000))
            send(conA, atB, Random.nextBytes(100_000))
            val negative = kotlin.runCatching { conA.readExactly(-1) }.exceptionOrNull()
            check(negative is HyperswarmException.InvalidArgument, "negative read size: $negative")
            atB.end()
            check(conA.read() == null, "a reads the end of b's stream")
            conA.end()
            check(atB.read() == null, "b reads the end of a's stream")
            atB.abort()
            val closed = kotlin.runCatching { atB.write(byteArrayOf(1)) }.exceptionOrNull()
            check(closed is HyperswarmException.ConnectionClosed, "write after abort: $closed")
        }
    } finally {
        a.shutdown()
        b.shutdown()
    }
}

private suspend fun listener() = withTestnet { bootstrap ->
    val a = Hyperswarm.swarm(bootstrap = bootstrap)
    val b = Hyperswarm.swarm(bootstrap = bootstrap)
    try {
        val got = Channel<Pair<Connection, String>>(Channel.UNLIMITED)
        val peers = Channel<PeerInfo>(Channel.UNLIMITED)
        a.setListener(object : SwarmListener {
            override fun onConnection(connection: Connection, peer: PeerInfo) {
                peers.trySend(peer)
                got.trySend(connection to Thread.currentThread().name)
            }
            override fun onUpdate(stats: SwarmStats) {}
        })
        val topic = Random.nextBytes(32)
        check(a.join(topic, server = true, client = false).flushed(), "announced")
        b.join(topic, server = false, client = true)
        val atB = b.connections.first()
        val (atA, thread) = got.receive()
        check(thread != "main", "called from a Rust thread, not the caller's: $thread")
        check(peers.receive().publicKey.contentEquals(b.publicKey()), "peer info names b")
        atB.write("ping\n")
        check(atA.readLine() == "ping", "the listener's connection carries data")
        check(a.stats().connections >= 1uL, "stats count the connection")
    } finally {
        a.shutdown()
        b.shutdown()
    }
}

private fun field(line: String, name: String): String? =
    Regex("\"$name\":\"([^\"]*)\"").find(line)?.groupValues?.get(1)

private suspend fun jsInterop() = withTestnet { bootstrap ->
    val dir = System.getenv("HYPERSWARM_INTEROP_DIR") ?: throw AssertionError("HYPERSWARM_INTEROP_DIR is not set")
    val topic = Random.nextBytes(32)
    val js = ProcessBuilder(
        "node", File(dir, "js-swarm.js").path, "join", topic.toHex(),
        "--bootstrap", bootstrap.joinToString(","), "--server", "--greet",
    ).redirectError(ProcessBuilder.Redirect.INHERIT).start()
    val lines = Channel<String>(Channel.UNLIMITED)
    Thread {
        js.inputStream.bufferedReader().forEachLine { lines.trySend(it) }
        lines.close()
    }.apply { isDaemon = true }.start()
    suspend fun event(name: String): String {
        for (line in lines) if (field(line, "event") == name) return line
        throw AssertionError("the JS peer exited before `$name` (exit code ${js.waitFor()})")
    }
    val swarm = Hyperswarm.swarm(bootstrap = bootstrap)
    try {
        val jsKey = field(event("ready"), "public_key")!!
        check(event("flushed").contains("\"ok\":true"), "the JS peer announced the topic")
        swarm.join(topic, server = false, client = true)
        val conn = swarm.connections.first()
        check(conn.remotePublicKey().toHex() == jsKey, "the connection is to the JS peer")
        check(conn.readLine() == "hello $jsKey", "the JS peer's greeting arrives")
        check(field(event("connection"), "remote_public_key") == swarm.publicKey().toHex(), "JS sees our key")
        conn.write("ping from kotlin")
        val data = event("data")
        check(field(data, "text") == "ping from kotlin", "JS received our bytes: $data")
    } finally {
        swarm.shutdown()
        js.outputStream.close()
        withContext(Dispatchers.IO) {
            if (!js.waitFor(10, TimeUnit.SECONDS)) js.destroyForcibly()
        }
    }
}

fun main() {
    val tests: List<Pair<String, suspend () -> Unit>> = listOf(
        "bad arguments raise typed exceptions" to ::badArguments,
        "two swarms on a testnet exchange bytes (Flow)" to ::twoSwarms,
        "a listener implemented in Kotlin receives connections" to ::listener,
        "a JS hyperswarm peer connects and exchanges bytes" to ::jsInterop,
    )
    var passed = 0
    var failed = 0
    runBlocking {
        for ((name, test) in tests) {
            try {
                withTimeout(TIMEOUT) { test() }
                println("ok - $name")
                passed++
            } catch (e: Throwable) {
                println("FAIL - $name: $e")
                e.printStackTrace()
                failed++
            }
        }
        Hyperswarm.shutdownAll()
    }
    println("kotlin: $passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
