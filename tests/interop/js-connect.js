'use strict'
// Encrypted connections through the DHT, JS side.
//
//   node js-connect.js server --bootstrap B --seed HEX [--reject HEX]
//       listens on the seed's key pair and echoes every connection; prints `listening`, then
//       `connection` per client and `closed` {bytes} when it ends; refuses the client key
//       --reject (firewall); runs until stdin closes or SIGTERM.
//   node js-connect.js relay --bootstrap B --seed HEX
//       runs a blind relay (the blind-relay package) on the seed's key pair; prints
//       `listening`, then `pair` per pairing half it sees.
//   (client and server also take --relay-through KEY and --no-holepunch.)
//   node js-connect.js client --bootstrap B --key HEX [--seed HEX] [--bytes N] [--count C] [--serial]
//       opens C connections at once (one after another with --serial); each writes N random
//       bytes, reads them back, compares, ends; prints `connected`, then `echoed` {index,
//       bytes, equal, connect_ms, first_byte_ms, mib_per_s} or `error` {index, code}. Exits 1
//       if any failed.

const HyperDHT = require('hyperdht')
const crypto = require('crypto')
const b4a = require('b4a')
const { parseArgs, parseAddrs, emit, log, hex, fail, watchdog, onTimeout, run } = require('./common')

const [op, ...rest] = process.argv.slice(2)
const args = parseArgs(rest, {
  bootstrap: null, seed: null, key: null, reject: null, bytes: '65536', count: '1', timeout: '60', serial: false,
  firewalled: false, 'no-lan': false, 'no-holepunch': false, 'relay-through': null
})
const dog = watchdog(Number(args.timeout))

function bytes32 (s, what) {
  if (!s || !/^[0-9a-fA-F]{64}$/.test(s)) fail(`--${what} must be 64 hex chars`)
  return b4a.from(s, 'hex')
}

run(async () => {
  const bootstrap = parseAddrs(args.bootstrap)
  if (bootstrap.length === 0) fail('--bootstrap is required (never the public DHT)')
  // --firewalled: never conclude the DHT socket is reachable (as behind a NAT), so the
  // other side must holepunch; --no-lan: no LAN shortcut for clients.
  const dht = new HyperDHT({ bootstrap, host: '127.0.0.1', quickFirewall: !args.firewalled })
  await dht.fullyBootstrapped()

  const relayThrough = args['relay-through'] ? bytes32(args['relay-through'], 'relay-through') : null
  const holepunch = args['no-holepunch'] ? () => false : undefined

  if (op === 'relay') {
    const RelayServer = require('blind-relay').Server
    const keyPair = HyperDHT.keyPair(bytes32(args.seed, 'seed'))
    const relay = new RelayServer({ createStream: (opts) => dht.createRawStream({ ...opts, framed: true }) })
    const server = dht.createServer((socket) => {
      const session = relay.accept(socket, { id: socket.remotePublicKey })
      session.on('pair', (isInitiator) => emit({ event: 'pair', is_initiator: isInitiator }))
      session.on('error', (err) => log('relay session error', err.message))
    })
    await server.listen(keyPair)
    emit({ event: 'listening', public_key: hex(keyPair.publicKey) })
    clearTimeout(dog)
    const stop = async () => {
      await server.close()
      await relay.close()
      await dht.destroy()
      process.exit(0)
    }
    process.stdin.on('end', stop)
    process.stdin.resume()
    process.on('SIGTERM', stop)
    return
  }

  if (op === 'server') {
    const keyPair = HyperDHT.keyPair(bytes32(args.seed, 'seed'))
    const reject = args.reject ? bytes32(args.reject, 'reject') : null
    const firewall = reject ? (remotePublicKey) => b4a.equals(remotePublicKey, reject) : undefined
    const server = dht.createServer({ firewall, relayThrough, holepunch }, (conn) => {
      const key = hex(conn.remotePublicKey)
      emit({ event: 'connection', remote_public_key: key })
      let bytes = 0
      conn.on('error', (err) => log('connection error', err.message))
      conn.on('data', (d) => { bytes += d.byteLength; conn.write(d) })
      conn.on('end', () => conn.end())
      conn.on('close', () => emit({ event: 'closed', remote_public_key: key, bytes }))
    })
    await server.listen(keyPair)
    emit({ event: 'listening', public_key: hex(keyPair.publicKey) })
    clearTimeout(dog)
    const stop = async () => {
      await server.close()
      await dht.destroy()
      process.exit(0)
    }
    process.stdin.on('end', stop)
    process.stdin.resume()
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    return
  }

  if (op === 'client') {
    const n = Number(args.bytes)
    const key = bytes32(args.key, 'key')
    const keyPair = args.seed ? HyperDHT.keyPair(bytes32(args.seed, 'seed')) : HyperDHT.keyPair()
    const { performance } = require('perf_hooks')
    const one = (index) => new Promise((resolve) => {
      const started = performance.now()
      const data = crypto.randomBytes(n)
      const conn = dht.connect(key, { keyPair, localConnection: !args['no-lan'], relayThrough, holepunch })
      const received = []
      let got = 0
      let connectMs = null
      let firstByteMs = null
      conn.on('error', (err) => {
        emit({ event: 'error', index, code: err.code || null, message: err.message })
        resolve(false)
      })
      conn.on('open', () => {
        connectMs = performance.now() - started
        const raw = conn.rawStream
        const remoteAddress = raw ? `${raw.remoteHost}:${raw.remotePort}` : null
        emit({ event: 'connected', index, remote_public_key: hex(conn.remotePublicKey), remote_address: remoteAddress })
        // secret-stream frames each write whole, and a frame holds at most 16 MiB - 1.
        for (let at = 0; at < n; at += 65536) conn.write(data.subarray(at, at + 65536))
      })
      // A stalled transfer shows where it stopped.
      onTimeout.push(() => {
        const raw = conn.rawStream
        log('stuck connection', JSON.stringify({
          index,
          got,
          writableLength: conn.writableLength,
          rawWritableLength: raw && raw.writableLength,
          rawReadableLength: raw && raw.readableLength,
          inflight: raw && raw.inflight,
          cwnd: raw && raw.cwnd,
          rtt: raw && raw.rtt,
          rtoCount: raw && raw.rtoCount,
          retransmits: raw && raw.retransmits,
          bytesTransmitted: raw && raw.bytesTransmitted,
          bytesReceived: raw && raw.bytesReceived,
          packetsTransmitted: raw && raw.packetsTransmitted,
          packetsReceived: raw && raw.packetsReceived
        }))
      })
      conn.on('data', (d) => {
        if (firstByteMs === null) firstByteMs = performance.now() - started
        received.push(d)
        got += d.byteLength
        if (got >= n) conn.end()
      })
      conn.on('close', () => {
        if (connectMs === null) return
        const equal = got === n && b4a.equals(b4a.concat(received), data)
        const seconds = (performance.now() - started - connectMs) / 1000
        const mibPerS = (2 * got) / (1024 * 1024) / Math.max(seconds, 1e-9)
        emit({ event: 'echoed', index, bytes: got, equal, connect_ms: connectMs, first_byte_ms: firstByteMs, mib_per_s: mibPerS })
        resolve(equal)
      })
    })
    const count = Number(args.count)
    let results = []
    if (args.serial) {
      for (let i = 0; i < count; i++) results.push(await one(i))
    } else {
      results = await Promise.all(Array.from({ length: count }, (_, i) => one(i)))
    }
    await dht.destroy()
    process.exit(results.every(Boolean) ? 0 : 1)
  }

  fail(`unknown op ${op} (server | client)`)
})
