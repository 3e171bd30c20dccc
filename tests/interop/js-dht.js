'use strict'
// HyperDHT record operations (announce/lookup, mutable and immutable storage)
// from one ephemeral JS node, for comparing with the Rust CLI.
//
//   node js-dht.js keypair       --seed HEX                      (no network)
//   node js-dht.js announce      --bootstrap B --topic HEX --seed HEX [--once]
//   node js-dht.js unannounce    --bootstrap B --topic HEX --seed HEX
//   node js-dht.js lookup        --bootstrap B --topic HEX
//   node js-dht.js mutable-put   --bootstrap B --seed HEX --value UTF8 [--seq N]
//   node js-dht.js mutable-get   --bootstrap B --key HEX [--seq N]
//   node js-dht.js immutable-put --bootstrap B --value UTF8
//   node js-dht.js immutable-get --bootstrap B --target HEX
//
// Every op waits for `fullyBootstrapped`, prints its result event(s) and
// exits 0. `announce` prints `announced` and then stays alive (without
// unannouncing) until stdin closes or SIGTERM/SIGINT, so the harness controls
// how long the announcer exists; with --once it exits right away. `keypair`
// prints the public key `HyperDHT.keyPair(seed)` derives, without a network. Seeds, topics, keys and targets are 64 hex
// chars (32 raw bytes); values are UTF-8 strings.

const HyperDHT = require('hyperdht')
const b4a = require('b4a')
const { parseArgs, parseAddrs, emit, log, hex, fail, watchdog, run } = require('./common')

// Options every op takes, and the extra options per op.
const COMMON = { bootstrap: null, timeout: '60' }
const OPS = {
  keypair: { seed: null },
  announce: { topic: null, seed: null, once: false },
  unannounce: { topic: null, seed: null },
  lookup: { topic: null },
  'mutable-put': { seed: null, value: null, seq: null },
  'mutable-get': { key: null, seq: null },
  'immutable-put': { value: null },
  'immutable-get': { target: null }
}

/** 64 hex chars -> 32-byte buffer; `what` names the option in errors. */
function bytes32 (s, what) {
  if (s === null) fail(`--${what} is required`)
  if (!/^[0-9a-fA-F]{64}$/.test(s)) fail(`--${what} must be 64 hex chars: ${s}`)
  return b4a.from(s, 'hex')
}

function required (s, what) {
  if (s === null) fail(`--${what} is required`)
  return s
}

function optionalSeq (s) {
  if (s === null) return 0
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) fail(`--seq must be a non-negative integer: ${s}`)
  return Number(s)
}

function addrs (list) {
  return (list || []).map((a) => ({ host: a.host, port: a.port }))
}

function utf8 (buf) {
  return b4a.toString(buf, 'utf-8')
}

run(async function main () {
  const op = process.argv[2]
  if (!op || !(op in OPS)) fail(`usage: js-dht.js <${Object.keys(OPS).join('|')}> --bootstrap host:port,... [options]`)
  const args = parseArgs(process.argv.slice(3), { ...COMMON, ...OPS[op] })
  const timer = watchdog(Number(args.timeout))

  if (op === 'keypair') {
    const keyPair = HyperDHT.keyPair(bytes32(args.seed, 'seed'))
    emit({ event: 'keypair', seed: args.seed.toLowerCase(), public_key: hex(keyPair.publicKey) })
    process.exit(0)
  }

  const bootstrap = parseAddrs(args.bootstrap)
  if (bootstrap.length === 0) fail('--bootstrap is required (never fall back to public nodes)')

  const dht = new HyperDHT({ ephemeral: true, bootstrap, host: '127.0.0.1' })
  await dht.fullyBootstrapped()
  log(`${op}: bootstrapped on 127.0.0.1:${dht.address().port}, table ${dht.table.toArray().length}`)

  switch (op) {
    case 'announce': {
      const topic = bytes32(args.topic, 'topic')
      const keyPair = HyperDHT.keyPair(bytes32(args.seed, 'seed'))
      const q = dht.announce(topic, keyPair)
      await q.finished()
      log(`announced to ${q.closestReplies.length} nodes`)
      emit({ event: 'announced', topic: hex(topic), public_key: hex(keyPair.publicKey), nodes: q.closestReplies.length })
      clearTimeout(timer)
      if (!args.once) await untilStopped()
      // Deliberately no unannounce: records must outlive the announcer.
      await destroy(dht)
      process.exit(0)
      return
    }
    case 'unannounce': {
      const topic = bytes32(args.topic, 'topic')
      const keyPair = HyperDHT.keyPair(bytes32(args.seed, 'seed'))
      await dht.unannounce(topic, keyPair)
      emit({ event: 'unannounced', topic: hex(topic), public_key: hex(keyPair.publicKey) })
      break
    }
    case 'lookup': {
      const topic = bytes32(args.topic, 'topic')
      const peers = new Map() // public key hex -> Map of "host:port" -> {host, port}
      let replies = 0
      const q = dht.lookup(topic)
      for await (const reply of q) {
        replies++
        for (const peer of reply.peers) {
          const key = hex(peer.publicKey)
          if (!peers.has(key)) peers.set(key, new Map())
          for (const a of addrs(peer.relayAddresses)) peers.get(key).set(`${a.host}:${a.port}`, a)
        }
      }
      // Replies without records are not yielded; `nodes` counts every closest node that answered.
      log(`lookup: ${replies} replies with records, ${q.closestReplies.length} closest nodes answered, ${peers.size} distinct peers`)
      for (const [key, relays] of peers) {
        emit({ event: 'peer', public_key: key, relay_addresses: [...relays.values()] })
      }
      emit({ event: 'done', topic: hex(topic), peers: [...peers.keys()], nodes: q.closestReplies.length })
      break
    }
    case 'mutable-put': {
      const keyPair = HyperDHT.keyPair(bytes32(args.seed, 'seed'))
      const value = b4a.from(required(args.value, 'value'), 'utf-8')
      const seq = optionalSeq(args.seq)
      const res = await dht.mutablePut(keyPair, value, { seq })
      emit({
        event: 'put',
        kind: 'mutable',
        public_key: hex(res.publicKey),
        seq: res.seq,
        target: hex(HyperDHT.hash(keyPair.publicKey)),
        signature: hex(res.signature),
        nodes: res.closestNodes.length
      })
      break
    }
    case 'mutable-get': {
      const publicKey = bytes32(args.key, 'key')
      const seq = optionalSeq(args.seq)
      const target = hex(HyperDHT.hash(publicKey))
      const res = await dht.mutableGet(publicKey, { seq, latest: true })
      if (res) {
        emit({ event: 'value', kind: 'mutable', public_key: hex(publicKey), target, seq: res.seq, value: utf8(res.value), from: { host: res.from.host, port: res.from.port } })
      } else {
        emit({ event: 'value', kind: 'mutable', public_key: hex(publicKey), target, value: null })
      }
      break
    }
    case 'immutable-put': {
      const value = b4a.from(required(args.value, 'value'), 'utf-8')
      const res = await dht.immutablePut(value)
      emit({ event: 'put', kind: 'immutable', target: hex(res.hash), nodes: res.closestNodes.length })
      break
    }
    case 'immutable-get': {
      const target = bytes32(args.target, 'target')
      const res = await dht.immutableGet(target)
      if (res) {
        emit({ event: 'value', kind: 'immutable', target: hex(target), value: utf8(res.value), from: { host: res.from.host, port: res.from.port } })
      } else {
        emit({ event: 'value', kind: 'immutable', target: hex(target), value: null })
      }
      break
    }
  }

  await destroy(dht)
  process.exit(0)
})

/** Resolves when stdin closes or on SIGTERM/SIGINT. */
function untilStopped () {
  return new Promise((resolve) => {
    const done = (why) => {
      log(`stopping (${why})`)
      resolve()
    }
    process.once('SIGTERM', () => done('SIGTERM'))
    process.once('SIGINT', () => done('SIGINT'))
    process.stdin.on('end', () => done('stdin closed'))
    process.stdin.on('error', () => done('stdin error'))
    process.stdin.resume()
  })
}

/** Destroy the node, but never hang on it. */
async function destroy (dht) {
  const killer = setTimeout(() => fail('destroy took too long'), 10000)
  killer.unref()
  await dht.destroy()
  clearTimeout(killer)
}
