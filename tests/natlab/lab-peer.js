'use strict'
// A hyperdht peer for the NAT lab: the JS half of `cargo xtask natlab`. It speaks the same
// JSON events as `hyperswarm listen|connect --json`, so either side can be swapped.
//
//   node lab-peer.js server --bootstrap B --seed HEX
//       listens on the seed's key pair and echoes; prints `listening` {public_key, nat},
//       `connection` and `closed` per client; runs until stdin closes or SIGTERM.
//       A relayed connection that moves to a direct path prints `upgraded` {upgraded_ms}.
//   node lab-peer.js client --bootstrap B --key HEX [--bytes N] [--timeout SEC]
//                    [--relay-through KEY --relay-host IP] [--until-direct SEC]
//       connects once, writes N random bytes, reads them back; prints `connected`, then
//       `echoed` {bytes, equal, connect_ms, first_byte_ms, relayed_at_open, path,
//       upgraded_ms, direct_address, sha256_sent, sha256_echoed} or `error` {code, message};
//       exits 1 on failure. Both end with `stats` {nat, punches}. --relay-through pairs
//       through that blind relay alongside the punch; the stream counts as relayed while
//       its remote host is --relay-host (hyperdht does not expose the relay state).
//       --until-direct SEC: paced writes (about 1.6 MiB/s) until the stream is direct or
//       SEC have passed since it opened, then N more bytes, so the SHA-256 comparison
//       covers bytes sent across the move off the relay.
//   node lab-peer.js relay --bootstrap B --seed HEX --host IP
//       a blind relay (the blind-relay package) bound to IP; prints `listening`
//       {public_key, address}, then `pair` per pairing half; runs until stdin closes.
//
// The DHT binds 0.0.0.0: each lab peer namespace has only its LAN interface and lo.
// `nat` is dht-rpc's own view (firewalled, randomized, host:port), to check that the
// implementation sees the NAT the lab built.

const crypto = require('crypto')
const { performance } = require('perf_hooks')
const { dht: DHT, interop, log, fail, emit, parseArgs, parseLabAddrs, hex32 } = require('./lab-common')

const [role, ...rest] = process.argv.slice(2)
const args = parseArgs(rest, {
  bootstrap: null,
  seed: null,
  key: null,
  bytes: '65536',
  timeout: '60',
  host: null,
  'relay-through': null,
  'relay-host': null,
  'until-direct': null
})
const bootstrap = parseLabAddrs(args.bootstrap)
if (bootstrap.length === 0) fail('--bootstrap is required')

// A relay shares the internet namespace with the bootstrap nodes, so it binds its own address;
// it stands for a relay on a public server, so it says it is reachable: dht-rpc's own check
// does not conclude so in this three-node DHT, and then every peer would have to holepunch
// the relay too (which fails from behind a random NAT).
const dht = new DHT(args.host ? { bootstrap, host: args.host, firewalled: false } : { bootstrap })

function nat () {
  return { host: dht.host, port: dht.port, firewalled: dht.firewalled, randomized: dht.randomized }
}

function stats () {
  const p = dht.stats.punches
  emit({ event: 'stats', nat: nat(), punches: { consistent: p.consistent, random: p.random, open: p.open } })
}

async function server () {
  const keyPair = DHT.keyPair(hex32(args.seed, 'seed'))
  const srv = dht.createServer((conn) => {
    const key = conn.remotePublicKey.toString('hex')
    const remote = `${conn.rawStream.remoteHost}:${conn.rawStream.remotePort}`
    emit({ event: 'connection', remote_public_key: key, remote })
    const opened = performance.now()
    // hyperdht moves a relayed stream with changeRemote, which ends in 'remote-changed'.
    conn.rawStream.once('remote-changed', () => {
      const raw = conn.rawStream
      emit({ event: 'upgraded', remote_public_key: key, remote_address: `${raw.remoteHost}:${raw.remotePort}`, upgraded_ms: performance.now() - opened })
    })
    let bytes = 0
    conn.on('error', (err) => log('connection error:', err.code || err.message))
    conn.on('data', (d) => { bytes += d.byteLength; conn.write(d) })
    conn.on('end', () => conn.end())
    conn.on('close', () => emit({ event: 'closed', remote_public_key: key, bytes }))
  })
  await srv.listen(keyPair)
  emit({ event: 'listening', public_key: keyPair.publicKey.toString('hex'), nat: nat() })
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    stats()
    await srv.close()
    await dht.destroy()
    process.exit(0)
  }
  process.stdin.on('end', stop)
  process.stdin.resume()
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

async function client () {
  const key = hex32(args.key, 'key')
  const n = Number(args.bytes)
  const relayThrough = args['relay-through'] ? hex32(args['relay-through'], 'relay-through') : null
  const untilDirect = args['until-direct'] === null ? null : Number(args['until-direct']) * 1000
  if (untilDirect !== null && !(untilDirect >= 0)) fail('--until-direct must be a number of seconds')
  const data = crypto.randomBytes(n)
  const done = (ok) => {
    stats()
    dht.destroy().finally(() => process.exit(ok ? 0 : 1))
  }
  // hyperdht has no overall connect deadline of its own.
  const timer = setTimeout(() => {
    emit({ event: 'error', code: 'TIMEOUT', message: `no echo within ${args.timeout} s` })
    done(false)
  }, Number(args.timeout) * 1000)

  const started = performance.now()
  const conn = dht.connect(key, relayThrough ? { relayThrough } : {})
  const received = []
  const sentHash = crypto.createHash('sha256')
  const echoedHash = crypto.createHash('sha256')
  let sent = 0
  let got = 0
  let connectMs = null
  let firstByteMs = null
  let relayedAtOpen = false
  let upgradedMs = null
  let directAddress = null
  let ended = false
  conn.on('error', (err) => {
    clearTimeout(timer)
    emit({ event: 'error', code: err.code || null, message: err.message, ms: performance.now() - started })
    done(false)
  })
  conn.on('open', () => {
    connectMs = performance.now() - started
    const raw = conn.rawStream
    const remote = `${raw.remoteHost}:${raw.remotePort}`
    relayedAtOpen = args['relay-host'] !== null && raw.remoteHost === args['relay-host']
    emit({ event: 'connected', remote_public_key: conn.remotePublicKey.toString('hex'), remote, connect_ms: connectMs, relayed: relayedAtOpen })
    if (relayedAtOpen) {
      raw.once('remote-changed', () => {
        upgradedMs = performance.now() - started - connectMs
        directAddress = `${raw.remoteHost}:${raw.remotePort}`
      })
    }
    if (untilDirect === null) {
      // secret-stream frames each write whole; keep frames modest.
      for (let at = 0; at < n; at += 65536) conn.write(data.subarray(at, at + 65536))
      sent = n
      return
    }
    // Paced: 16 KiB every 10 ms until direct (then n more bytes) or the time is up.
    let directAt = relayedAtOpen ? null : 0
    const pace = setInterval(() => {
      if (directAt === null && upgradedMs !== null) directAt = sent
      const finished = directAt !== null
        ? sent >= directAt + n
        : sent >= n && performance.now() - started - connectMs >= untilDirect
      if (finished) {
        clearInterval(pace)
        ended = true
        conn.end()
        return
      }
      const chunk = crypto.randomBytes(16384)
      sentHash.update(chunk)
      sent += chunk.byteLength
      conn.write(chunk)
    }, 10)
    conn.once('close', () => clearInterval(pace))
  })
  conn.on('data', (d) => {
    if (firstByteMs === null) firstByteMs = performance.now() - started
    if (untilDirect === null) {
      received.push(d)
    } else {
      echoedHash.update(d)
    }
    got += d.byteLength
    // With --until-direct the pacer ends our side; the echo's end closes the stream.
    if (untilDirect === null && got >= n) conn.end()
  })
  conn.on('close', () => {
    if (connectMs === null) return
    clearTimeout(timer)
    let equal
    let sha = {}
    if (untilDirect === null) {
      equal = got === n && Buffer.concat(received).equals(data)
    } else {
      sha = { sha256_sent: sentHash.digest('hex'), sha256_echoed: echoedHash.digest('hex') }
      equal = ended && got === sent && sha.sha256_sent === sha.sha256_echoed
    }
    const path = !relayedAtOpen ? 'direct' : upgradedMs !== null ? 'upgraded' : 'relayed'
    emit({
      event: 'echoed',
      bytes: got,
      equal,
      connect_ms: connectMs,
      first_byte_ms: firstByteMs,
      relayed_at_open: relayedAtOpen,
      path,
      upgraded_ms: upgradedMs,
      direct_address: directAddress,
      ...sha
    })
    done(equal)
  })
}

/** A blind relay (the blind-relay package) on the seed's key pair. */
async function relay () {
  const { Server: RelayServer } = interop('blind-relay')
  const keyPair = DHT.keyPair(hex32(args.seed, 'seed'))
  const relay = new RelayServer({ createStream: (opts) => dht.createRawStream({ ...opts, framed: true }) })
  const srv = dht.createServer((socket) => {
    const session = relay.accept(socket, { id: socket.remotePublicKey })
    session.on('pair', (isInitiator) => emit({ event: 'pair', is_initiator: isInitiator }))
    session.on('error', (err) => log('relay session error:', err.message))
  })
  await srv.listen(keyPair)
  emit({ event: 'listening', public_key: keyPair.publicKey.toString('hex'), address: `${dht.host}:${dht.port}` })
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await srv.close()
    await relay.close()
    await dht.destroy()
    process.exit(0)
  }
  process.stdin.on('end', stop)
  process.stdin.resume()
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

async function main () {
  await dht.fullyBootstrapped()
  emit({ event: 'bootstrapped', nat: nat() })
  if (role === 'server') return server()
  if (role === 'client') return client()
  if (role === 'relay') return relay()
  fail(`unknown role ${role} (server | client | relay)`)
}

main().catch((err) => fail(err.stack || String(err)))
