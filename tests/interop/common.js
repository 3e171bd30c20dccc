'use strict'
// Shared helpers for the interop peers driven by `cargo xtask interop`.
//
// Protocol: every script prints exactly one JSON object per line on stdout
// (machine-readable events) and writes human logs to stderr. Addresses are
// restricted to loopback so a mistake can never reach the public DHT.

const b4a = require('b4a')

/** Parse `--key value` / `--flag` arguments into an object. */
function parseArgs (argv, spec) {
  const out = { ...spec }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) fail(`unexpected argument: ${a}`)
    const key = a.slice(2)
    if (!(key in spec)) fail(`unknown option: ${a}`)
    if (typeof spec[key] === 'boolean') {
      out[key] = true
    } else {
      if (i + 1 >= argv.length) fail(`missing value for ${a}`)
      out[key] = argv[++i]
    }
  }
  return out
}

/** Parse `host:port,host:port` into [{host, port}], loopback only. */
function parseAddrs (list) {
  if (!list) return []
  return list.split(',').filter(Boolean).map(parseAddr)
}

function parseAddr (s) {
  const i = s.lastIndexOf(':')
  if (i <= 0) fail(`bad address (want host:port): ${s}`)
  const host = s.slice(0, i)
  const port = Number(s.slice(i + 1))
  if (!Number.isInteger(port) || port <= 0 || port > 65535) fail(`bad port in ${s}`)
  // Safety net: these scripts run in throwaway network namespaces and must
  // never talk to anything but loopback (and never the public bootstrap nodes).
  if (!/^127\.\d+\.\d+\.\d+$/.test(host)) fail(`refusing non-loopback address: ${s}`)
  return { host, port }
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function log (...args) {
  console.error(`[${require('path').basename(process.argv[1])}]`, ...args)
}

function hex (buf) {
  return buf ? b4a.toString(buf, 'hex') : null
}

function parseTarget (s) {
  if (!/^[0-9a-fA-F]{64}$/.test(s)) fail(`target must be 64 hex chars: ${s}`)
  return b4a.from(s, 'hex')
}

function fail (msg) {
  log('error:', msg)
  process.exit(1)
}

/** Hard deadline for the whole script: exit 1 if it has not finished by then.
 *  Returns the timer so a long-running script can clear it once its work is done. */
/** Called with no arguments when the watchdog fires, to log what was stuck. */
const onTimeout = []

function watchdog (seconds) {
  const t = setTimeout(() => {
    log(`timed out after ${seconds}s`)
    for (const f of onTimeout) f()
    process.exit(1)
  }, seconds * 1000)
  t.unref()
  return t
}

/** Run `main`, mapping any rejection to exit code 1 with the error on stderr. */
function run (main) {
  main().catch((err) => {
    log('fatal:', err && err.stack ? err.stack : err)
    process.exit(1)
  })
}

module.exports = { parseArgs, parseAddrs, parseAddr, emit, log, hex, parseTarget, fail, watchdog, onTimeout, run }
