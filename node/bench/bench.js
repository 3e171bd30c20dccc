'use strict'
// One side of `cargo xtask bench node`: two swarms of one implementation (argv[2]: 'rs'
// for this package, 'js' for hyperswarm 4.17.2) in this process, on a JS testnet on
// 127.0.0.1. Measures join → first connection (median of ROUNDS fresh pairs) and the
// throughput of one connection (BENCH_MIB MiB, client → server). Prints one JSON line.
const crypto = require('crypto')
const { once } = require('events')
const createTestnet = require('hyperdht/testnet')

const impl = process.argv[2]
const Hyperswarm = impl === 'rs' ? require('..') : require('hyperswarm')
const ROUNDS = Number(process.env.BENCH_ROUNDS || 5)
const MIB = Number(process.env.BENCH_MIB || 64)

async function pair (bootstrap) {
  const server = new Hyperswarm({ bootstrap })
  const client = new Hyperswarm({ bootstrap })
  const topic = crypto.randomBytes(32)
  await server.join(topic, { server: true, client: false }).flushed()
  const accepted = once(server, 'connection')
  const connected = once(client, 'connection')
  const t0 = process.hrtime.bigint()
  client.join(topic, { server: false, client: true })
  const [clientSocket] = await connected
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const [serverSocket] = await accepted
  // Resets when a round's swarms are destroyed are expected.
  for (const s of [clientSocket, serverSocket]) s.on('error', () => {})
  return { server, client, serverSocket, clientSocket, ms }
}

async function throughput (p) {
  const total = MIB * 1024 * 1024
  const chunk = crypto.randomBytes(64 * 1024)
  let received = 0
  const done = new Promise((resolve) => {
    p.serverSocket.on('data', (d) => {
      received += d.length
      if (received >= total) resolve()
    })
  })
  const t0 = process.hrtime.bigint()
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!p.clientSocket.write(chunk)) await once(p.clientSocket, 'drain')
  }
  await done
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  return MIB / s
}

async function main () {
  const testnet = await createTestnet(3, { host: '127.0.0.1' })
  const joins = []
  let last
  for (let i = 0; i < ROUNDS; i++) {
    const p = await pair(testnet.bootstrap)
    joins.push(p.ms)
    if (i < ROUNDS - 1) await Promise.all([p.server.destroy(), p.client.destroy()])
    else last = p
  }
  const cpu0 = process.cpuUsage()
  const mibs = await throughput(last)
  const cpu = process.cpuUsage(cpu0)
  joins.sort((a, b) => a - b)
  await Promise.all([last.server.destroy(), last.client.destroy()])
  await testnet.destroy()
  console.log(JSON.stringify({
    impl,
    join_ms_median: Math.round(joins[Math.floor(joins.length / 2)]),
    join_ms_all: joins.map(Math.round),
    mib: MIB,
    mib_per_s: Math.round(mibs * 10) / 10,
    cpu_s: Math.round((cpu.user + cpu.system) / 1e4) / 100,
    rss_mib: Math.round(process.memoryUsage().rss / 1048576)
  }))
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
