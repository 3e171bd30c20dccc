'use strict'
// Shared helpers of the NAT lab's JS peers.
//
// The packages come from tests/interop (its lockfile pins the reference versions), so the
// lab needs no second install. Addresses are restricted to the lab's internet
// (198.18.0.0/15): a mistake can never reach the public DHT.

const path = require('path')
const { createRequire } = require('module')

const interop = createRequire(path.join(__dirname, '..', 'interop', 'package.json'))

function log (...args) {
  console.error(`[${path.basename(process.argv[1])}]`, ...args)
}

function fail (msg) {
  log('error:', msg)
  process.exit(1)
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

/** `--key value` / `--flag` arguments into an object; `spec` holds the defaults. */
function parseArgs (argv, spec) {
  const out = { ...spec }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--') || !(a.slice(2) in spec)) fail(`unknown argument: ${a}`)
    const key = a.slice(2)
    if (typeof spec[key] === 'boolean') out[key] = true
    else if (i + 1 < argv.length) out[key] = argv[++i]
    else fail(`missing value for ${a}`)
  }
  return out
}

/** `host:port,...` into [{host, port}], lab addresses only. */
function parseLabAddrs (list) {
  return String(list || '').split(',').filter(Boolean).map((s) => {
    const i = s.lastIndexOf(':')
    const host = s.slice(0, i)
    const port = Number(s.slice(i + 1))
    if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) fail(`bad address: ${s}`)
    if (!/^198\.(18|19)\.\d+\.\d+$/.test(host)) fail(`refusing an address outside the lab (198.18.0.0/15): ${s}`)
    return { host, port }
  })
}

function hex32 (s, what) {
  if (!/^[0-9a-fA-F]{64}$/.test(s || '')) fail(`--${what} must be 64 hex characters`)
  return Buffer.from(s, 'hex')
}

module.exports = { dht: interop('hyperdht'), interop, log, fail, emit, parseArgs, parseLabAddrs, hex32 }
