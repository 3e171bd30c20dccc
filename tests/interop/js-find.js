'use strict'
// FIND_NODE lookups from one ephemeral JS node.
//
//   node js-find.js --bootstrap host:port,... --targets HEX,HEX,... [--timeout S]
//
// Prints `bootstrapped`, then per target `closest` with the final k closest
// replies of the iterative query (the set a JS peer would announce to), then
// `done`. The node is explicitly ephemeral so it never joins other tables.

const HyperDHT = require('hyperdht')
const { parseArgs, parseAddrs, parseTarget, emit, log, hex, fail, watchdog, run } = require('./common')

run(async function main () {
  const args = parseArgs(process.argv.slice(2), { bootstrap: null, targets: null, timeout: '90' })
  watchdog(Number(args.timeout))
  const bootstrap = parseAddrs(args.bootstrap)
  if (bootstrap.length === 0) fail('--bootstrap is required (never fall back to public nodes)')
  const targets = (args.targets || '').split(',').filter(Boolean).map(parseTarget)
  if (targets.length === 0) fail('--targets is required')

  const node = new HyperDHT({ ephemeral: true, bootstrap, host: '127.0.0.1' })
  await node.fullyBootstrapped()
  emit({ event: 'bootstrapped', table_size: node.table.toArray().length })

  for (const target of targets) {
    const q = node.findNode(target)
    await q.finished()
    const nodes = q.closestReplies.map((r) => ({ host: r.from.host, port: r.from.port, id: hex(r.from.id) }))
    log(`target ${hex(target).slice(0, 8)}…: ${nodes.length} closest, ${q.successes} ok / ${q.errors} errors`)
    emit({ event: 'closest', target: hex(target), nodes })
  }

  emit({ event: 'done' })
  await node.destroy()
  process.exit(0)
})
