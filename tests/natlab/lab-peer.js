'use strict'
// A hyperdht peer for the NAT lab: the JS half of `cargo xtask natlab`. It speaks the same
// JSON events as `hyperswarm listen|connect --json`, so either side can be swapped.
//
//   node lab-peer.js server --bootstrap B --seed HEX
//       listens on the seed's key pair and echoes; prints `listening` {public_key, nat},
//       `connection` and `closed` per client; runs until stdin closes or SIGTERM.
//   node lab-peer.js client --bootstrap B --key HEX [--bytes N] [--timeout SEC]
//       connects once, writes N random bytes, reads them back; prints `connected`, then
//       `echoed` {bytes, equal, connect_ms, first_byte_ms} or `error` {code, message};
//       exits 1 on failure. Both end with `stats` {nat, punches}.
//
// The DHT binds 0.0.0.0: each lab peer namespace has only its LAN interface and lo.
// `nat` is dht-rpc's own view (firewalled, randomized, host:port), to check that the
// implementation sees the NAT the lab built.

const crypto = require('crypto')
const { performance } = require('perf_hooks')
const { dht: DHT, log, fail, emit, parseArgs, parseLabAddrs, hex32 } = require('./lab-common')

const [role, ...rest] = process.argv.slice(2)
const args = parseArgs(rest, { bootstrap: null, seed: null, key: null, bytes: '65536', timeout: '60' })
const bootstrap = parseLabAddrs(args.bootstrap)
if (bootstrap.length === 0) fail('--bootstrap is required')

const dht = new DHT({ bootstrap })

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
  const conn = dht.connect(key)
  const received = []
  let got = 0
  let connectMs = null
  let firstByteMs = null
  conn.on('error', (err) => {
    clearTimeout(timer)
    emit({ event: 'error', code: err.code || null, message: err.message, ms: performance.now() - started })
    done(false)
  })
  conn.on('open', () => {
    connectMs = performance.now() - started
    const remote = `${conn.rawStream.remoteHost}:${conn.rawStream.remotePort}`
    emit({ event: 'connected', remote_public_key: conn.remotePublicKey.toString('hex'), remote, connect_ms: connectMs })
    // secret-stream frames each write whole; keep frames modest.
    for (let at = 0; at < n; at += 65536) conn.write(data.subarray(at, at + 65536))
  })
  conn.on('data', (d) => {
    if (firstByteMs === null) firstByteMs = performance.now() - started
    received.push(d)
    got += d.byteLength
    if (got >= n) conn.end()
  })
  conn.on('close', () => {
    if (connectMs === null) return
    clearTimeout(timer)
    const equal = got === n && Buffer.concat(received).equals(data)
    emit({ event: 'echoed', bytes: got, equal, connect_ms: connectMs, first_byte_ms: firstByteMs })
    done(equal)
  })
}

async function main () {
  await dht.fullyBootstrapped()
  emit({ event: 'bootstrapped', nat: nat() })
  if (role === 'server') return server()
  if (role === 'client') return client()
  fail(`unknown role ${role} (server | client)`)
}

main().catch((err) => fail(err.stack || String(err)))
