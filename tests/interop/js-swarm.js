'use strict'
// A Hyperswarm peer, JS side, printing the same JSON events as `hyperswarm join|chat --json`.
//
//   node js-swarm.js chat TOPIC --bootstrap B [--seed HEX] [--greet]
//       joins TOPIC as server and client; every stdin line goes to every peer.
//   node js-swarm.js join TOPIC --bootstrap B [--server|--client] [--seed HEX] [--greet]
//       joins TOPIC in that mode; data from peers is reported as `data` events.
//   --peer KEY,KEY...  also joinPeer these public keys (listening first).
//   --deny KEY,...     firewall: refuse these public keys (both ways).
//   --allow KEY,...    firewall: refuse every public key but these (combines with --deny).
//   chat takes --server / --client as join does. Its stdin lines starting with `/` are
//   commands, as in the Rust CLI: `/peer KEY[,KEY...]` joinPeers those keys; `/leave`
//   leaves the topic; `/refresh` refreshes the topic's discovery, then flushes;
//   `/ban KEY[,KEY...]` bans known peers (PeerInfo.ban(true)); `/info KEY` reports a peer.
//
// Events: ready {public_key}, joined {topic}, flushed {ok}, connection {id,
// remote_public_key, initiator, topics}, hello {id, remote_public_key} (the peer's
// `hello <its public key>` line), message {id, remote_public_key, text}, data {text},
// closed {id, remote_public_key}, firewalled {remote_public_key}, left {topic},
// refreshed {ok}, banned {remote_public_key, banned}, peer_info {remote_public_key,
// known, banned, explicit, attempts, topics}, error {message}. Runs until stdin closes or
// SIGTERM.

const Hyperswarm = require('hyperswarm')
const HyperDHT = require('hyperdht')
const b4a = require('b4a')
const crypto = require('crypto')
const { parseArgs, parseAddrs, emit, log, hex, fail, run } = require('./common')

const [op, topicArg, ...rest] = process.argv.slice(2)
const args = parseArgs(rest, { bootstrap: null, seed: null, greet: false, server: false, client: false, peer: null, deny: null, allow: null })
if (op !== 'chat' && op !== 'join') fail('usage: js-swarm.js chat|join TOPIC --bootstrap B ...')
if (!topicArg) fail('missing TOPIC')

// The Rust CLI's rule: 64 hex characters are the topic, anything else is hashed.
function parseTopic (s) {
  if (/^[0-9a-fA-F]{64}$/.test(s)) return b4a.from(s, 'hex')
  return HyperDHT.hash(b4a.from(s))
}

run(async () => {
  const bootstrap = parseAddrs(args.bootstrap)
  if (bootstrap.length === 0) fail('--bootstrap is required (never the public DHT)')
  const seed = args.seed ? b4a.from(args.seed, 'hex') : crypto.randomBytes(32)
  const keyPair = HyperDHT.keyPair(seed)
  const dht = new HyperDHT({ bootstrap, host: '127.0.0.1' })
  await dht.fullyBootstrapped()
  const keys = (list) => (list || '').split(/[, ]/).filter(Boolean).map((k) => {
    if (!/^[0-9a-fA-F]{64}$/.test(k)) throw new Error('a peer must be 64 hex characters, got ' + JSON.stringify(k))
    return k.toLowerCase()
  })
  const deny = new Set(keys(args.deny))
  const allow = new Set(keys(args.allow))
  const opts = { dht, keyPair }
  if (deny.size || allow.size) {
    // Hyperswarm bans whatever its firewall refuses, so each key is reported once.
    opts.firewall = (remotePublicKey) => {
      const key = hex(remotePublicKey)
      const refused = deny.has(key) || (allow.size > 0 && !allow.has(key))
      if (refused) emit({ event: 'firewalled', remote_public_key: key })
      return refused
    }
  }
  const swarm = new Hyperswarm(opts)
  const me = hex(keyPair.publicKey)
  const explicit = args.peer ? args.peer.split(',').filter(Boolean) : []
  if (explicit.length) await swarm.listen()
  for (const k of explicit) swarm.joinPeer(b4a.from(k, 'hex'))
  emit({ event: 'ready', public_key: me })

  const topic = parseTopic(topicArg)
  const conns = new Map()
  let nextId = 0

  swarm.on('connection', (conn, info) => {
    const id = ++nextId
    const key = hex(conn.remotePublicKey)
    conns.set(id, conn)
    emit({
      event: 'connection',
      id,
      remote_public_key: key,
      initiator: conn.isInitiator,
      topics: info.topics.map(hex)
    })
    conn.on('error', (err) => log('connection', id, 'error:', err.message))
    conn.on('close', () => {
      conns.delete(id)
      emit({ event: 'closed', id, remote_public_key: key })
    })
    if (args.greet) conn.write('hello ' + me + '\n')
    let pending = ''
    conn.on('data', (d) => {
      if (op === 'join') {
        emit({ event: 'data', text: b4a.toString(d) })
        return
      }
      pending += b4a.toString(d)
      let i
      while ((i = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, i)
        pending = pending.slice(i + 1)
        if (line === 'hello ' + key) emit({ event: 'hello', id, remote_public_key: key })
        else emit({ event: 'message', id, remote_public_key: key, text: line })
      }
    })
  })

  const mode = { server: !args.client, client: !args.server }
  const discovery = swarm.join(topic, mode)
  emit({ event: 'joined', topic: hex(topic) })
  discovery.flushed().then(async () => {
    await swarm.flush()
    emit({ event: 'flushed', ok: true })
  }, (err) => {
    log('flush failed:', err.message)
    emit({ event: 'flushed', ok: false })
  })

  async function command (line) {
    const i = line.indexOf(' ')
    const name = i === -1 ? line : line.slice(0, i)
    const arg = i === -1 ? '' : line.slice(i + 1)
    switch (name) {
      case '/peer':
        for (const k of keys(arg)) swarm.joinPeer(b4a.from(k, 'hex'))
        return
      case '/leave':
        await swarm.leave(topic)
        emit({ event: 'left', topic: hex(topic) })
        return
      case '/refresh':
        await discovery.refresh()
        await swarm.flush()
        emit({ event: 'refreshed', ok: true })
        return
      case '/ban':
        for (const k of keys(arg)) {
          const info = swarm.peers.get(k)
          // Hyperswarm bans only through a known peer's PeerInfo.
          if (!info) throw new Error('unknown peer ' + k)
          info.ban(true)
          emit({ event: 'banned', remote_public_key: k, banned: info.banned })
        }
        return
      case '/info':
        for (const k of keys(arg)) {
          const info = swarm.peers.get(k)
          if (!info) {
            emit({ event: 'peer_info', remote_public_key: k, known: false })
            continue
          }
          emit({
            event: 'peer_info',
            remote_public_key: k,
            known: true,
            banned: info.banned,
            explicit: info.explicit,
            attempts: info.attempts,
            topics: info.topics.map(hex)
          })
        }
        return
      default:
        throw new Error('unknown command ' + name)
    }
  }

  let commands = Promise.resolve()
  let buffered = ''
  process.stdin.on('data', (d) => {
    if (op === 'join') {
      for (const c of conns.values()) { c.write(d); break }
      return
    }
    buffered += b4a.toString(d)
    let i
    while ((i = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, i + 1)
      buffered = buffered.slice(i + 1)
      if (line.startsWith('/')) {
        // One at a time, in order, as the Rust CLI runs them.
        commands = commands.then(() => command(line.trim())).catch((err) => emit({ event: 'error', message: err.message }))
        continue
      }
      for (const c of conns.values()) c.write(line)
    }
  })

  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await swarm.destroy()
    process.exit(0)
  }
  process.stdin.on('end', stop)
  process.stdin.resume()
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
})
