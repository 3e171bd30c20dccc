'use strict'
// The lab's DHT: three hyperdht bootstrap nodes on 198.18.0.1-3 (in hsr-inet).
//
//   node lab-dht.js [--ips 198.18.0.1,198.18.0.2,198.18.0.3] [--port 49737]
//
// Prints `{"event":"ready","bootstrap":[...]}` once all three know each other, then runs
// until stdin closes or SIGTERM/SIGINT.
//
// Each node binds its own address: with several addresses on one interface a socket on
// 0.0.0.0 would answer from the route's preferred source, which a NAT drops as not
// matching its mapping, and node ids (hash of host:port) would not match what peers see.
// DHT.bootstrapper() also tells the node its public address from the start.

const { dht: DHT, parseArgs, emit, fail } = require('./lab-common')

const args = parseArgs(process.argv.slice(2), { ips: '198.18.0.1,198.18.0.2,198.18.0.3', port: '49737' })
const ips = args.ips.split(',')
const port = Number(args.port)
const nodes = []

async function main () {
  const started = Date.now()
  const first = DHT.bootstrapper(port, ips[0], { host: ips[0] })
  nodes.push(first)
  await first.fullyBootstrapped()
  for (const ip of ips.slice(1)) {
    const node = DHT.bootstrapper(port, ip, { host: ip, bootstrap: [{ host: ips[0], port }] })
    nodes.push(node)
    await node.fullyBootstrapped()
  }
  emit({ event: 'ready', bootstrap: ips.map((ip) => `${ip}:${port}`), ms: Date.now() - started })
}

let closing = false
async function shutdown () {
  if (closing) return
  closing = true
  for (const node of nodes.reverse()) await node.destroy()
  process.exit(0)
}

process.once('SIGTERM', shutdown)
process.once('SIGINT', shutdown)
process.stdin.on('end', shutdown)
process.stdin.resume()
main().catch((err) => fail(err.stack || String(err)))
