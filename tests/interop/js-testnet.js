'use strict'
// A local HyperDHT testnet: N persistent, routable nodes on 127.0.0.1.
//
//   node js-testnet.js --size N [--port P] [--bootstrap host:port,...]
//
// Without --bootstrap the first node is a bootstrapper on --port (default
// 10001) and the others join it; with --bootstrap all N nodes join that list.
// Nodes are created like hyperdht/testnet.js does (`ephemeral: false,
// firewalled: false`) so they become persistent during their first bootstrap
// instead of after ~20 minutes of adaptive stability checks.
// Prints one `ready` event, then runs until stdin closes or SIGTERM/SIGINT.

const HyperDHT = require('hyperdht')
const { parseArgs, parseAddrs, emit, log, hex, fail, run } = require('./common')

const HOST = '127.0.0.1'

run(async function main () {
  const args = parseArgs(process.argv.slice(2), {
    size: '10',
    port: '10001',
    bootstrap: null,
    'ready-timeout': '90'
  })
  const size = Number(args.size)
  if (!Number.isInteger(size) || size < 1) fail('--size must be a positive integer')

  // Bootstrapping a node that never gets answers would hang forever; bound it.
  const readyTimer = setTimeout(() => fail('testnet did not become ready in time'), Number(args['ready-timeout']) * 1000)

  const nodes = []
  let closing = false
  const shutdown = async (why) => {
    if (closing) return
    closing = true
    log(`shutting down (${why})`)
    const killer = setTimeout(() => fail('destroy took too long'), 10000)
    killer.unref()
    for (let i = nodes.length - 1; i >= 0; i--) await nodes[i].destroy()
    emit({ event: 'closed' })
    process.exit(0)
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
  process.stdin.on('end', () => shutdown('stdin closed'))
  process.stdin.on('error', () => shutdown('stdin error'))
  process.stdin.resume()

  let bootstrap = parseAddrs(args.bootstrap)
  if (bootstrap.length === 0) {
    const port = Number(args.port)
    const first = HyperDHT.bootstrapper(port, HOST, { host: HOST })
    nodes.push(first)
    await first.fullyBootstrapped()
    bootstrap = [{ host: HOST, port: first.address().port }]
    log(`bootstrapper on ${HOST}:${first.address().port}`)
  }

  while (nodes.length < size) {
    if (closing) return
    const node = new HyperDHT({ ephemeral: false, firewalled: false, bootstrap, host: HOST })
    nodes.push(node)
    await node.fullyBootstrapped()
    log(`node ${nodes.length - 1} on ${HOST}:${node.address().port} id=${hex(node.id)}`)
  }
  clearTimeout(readyTimer)
  if (closing) return

  emit({
    event: 'ready',
    bootstrap: bootstrap.map((b) => `${b.host}:${b.port}`),
    nodes: nodes.map((n) => ({ host: HOST, port: n.address().port, id: hex(n.id) }))
  })
})
