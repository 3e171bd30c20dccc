'use strict'
// PING one or more nodes from an ephemeral JS node.
//
//   node js-ping.js --to host:port[,host:port...] [--bootstrap host:port,...]
//
// Prints one `pong` per address: {host, port, id, rtt_ms, address_id}, where
// `id` is the id the node put in its reply (null for ephemeral nodes) and
// `address_id` is the id a persistent node at that address must have
// (BLAKE2b of its encoded ipv4 address), so callers can check both.
// Exits 1 if any ping fails.

const HyperDHT = require('hyperdht')
const peer = require('dht-rpc/lib/peer')
const { parseArgs, parseAddrs, emit, log, hex, fail, watchdog, run } = require('./common')

run(async function main () {
  const args = parseArgs(process.argv.slice(2), { to: null, bootstrap: null, timeout: '30' })
  watchdog(Number(args.timeout))
  const to = parseAddrs(args.to)
  if (to.length === 0) fail('--to is required')

  // An explicit (possibly empty) bootstrap list: hyperdht would otherwise use
  // the public bootstrap nodes.
  const node = new HyperDHT({ ephemeral: true, bootstrap: parseAddrs(args.bootstrap), host: '127.0.0.1' })
  await node.fullyBootstrapped()

  let failed = 0
  for (const { host, port } of to) {
    const start = process.hrtime.bigint()
    try {
      const res = await node.ping({ host, port })
      const rtt = Number(process.hrtime.bigint() - start) / 1e6
      emit({
        event: 'pong',
        host,
        port,
        id: hex(res.from.id),
        rtt_ms: Math.round(rtt * 1000) / 1000,
        address_id: hex(peer.id(host, port))
      })
    } catch (err) {
      failed++
      log(`ping ${host}:${port} failed: ${err.message}`)
      emit({ event: 'ping-failed', host, port, error: err.message })
    }
  }

  await node.destroy()
  process.exit(failed ? 1 : 0)
})
