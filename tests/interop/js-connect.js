'use strict'
// Encrypted connections through the DHT, JS side.
//
//   node js-connect.js server --bootstrap B --seed HEX
//       listens on the seed's key pair and echoes every connection; prints `listening`, then
//       `connection` per client; runs until stdin closes or SIGTERM.
//   node js-connect.js client --bootstrap B --key HEX [--bytes N]
//       connects to the key, writes N random bytes, reads them back, compares, ends;
//       prints `connected` and `echoed` {bytes, equal}.

const HyperDHT = require('hyperdht')
const crypto = require('crypto')
const b4a = require('b4a')
const { parseArgs, parseAddrs, emit, log, hex, fail, watchdog, run } = require('./common')

const [op, ...rest] = process.argv.slice(2)
const args = parseArgs(rest, { bootstrap: null, seed: null, key: null, bytes: '65536', timeout: '60' })
const dog = watchdog(Number(args.timeout))

function bytes32 (s, what) {
  if (!s || !/^[0-9a-fA-F]{64}$/.test(s)) fail(`--${what} must be 64 hex chars`)
  return b4a.from(s, 'hex')
}

run(async () => {
  const bootstrap = parseAddrs(args.bootstrap)
  if (bootstrap.length === 0) fail('--bootstrap is required (never the public DHT)')
  const dht = new HyperDHT({ bootstrap, host: '127.0.0.1' })
  await dht.fullyBootstrapped()

  if (op === 'server') {
    const keyPair = HyperDHT.keyPair(bytes32(args.seed, 'seed'))
    const server = dht.createServer((conn) => {
      emit({ event: 'connection', remote_public_key: hex(conn.remotePublicKey) })
      conn.on('error', (err) => log('connection error', err.message))
      conn.on('data', (d) => conn.write(d))
      conn.on('end', () => conn.end())
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
    const data = crypto.randomBytes(n)
    const conn = dht.connect(bytes32(args.key, 'key'))
    const received = []
    let got = 0
    await new Promise((resolve, reject) => {
      conn.on('error', reject)
      conn.on('open', () => {
        emit({ event: 'connected', remote_public_key: hex(conn.remotePublicKey) })
        conn.write(data)
      })
      conn.on('data', (d) => {
        received.push(d)
        got += d.byteLength
        if (got >= n) conn.end()
      })
      conn.on('close', resolve)
    })
    const equal = b4a.equals(b4a.concat(received), data)
    emit({ event: 'echoed', bytes: got, equal })
    await dht.destroy()
    process.exit(equal ? 0 : 1)
  }

  fail(`unknown op ${op} (server | client)`)
})
