'use strict'
// hyperswarm-rs: the `hyperswarm` npm package's API, backed by the Rust implementation.

const { EventEmitter } = require('events')
const native = require('./lib/native')
const errors = require('./lib/errors')
const HyperswarmSocket = require('./lib/socket')
const PeerInfo = require('./lib/peer-info')

const MAX_U32 = 0xffffffff

function limit (value, name) {
  if (value === undefined || value === Infinity) return undefined
  if (!Number.isInteger(value) || value < 0) {
    throw errors.make('ERR_INVALID_ARGUMENT', `${name} must be a non-negative integer`)
  }
  return Math.min(value, MAX_U32)
}

function bootstrapList (bootstrap) {
  if (bootstrap === undefined || bootstrap === null) return undefined
  if (!Array.isArray(bootstrap)) throw errors.make('ERR_INVALID_ARGUMENT', 'bootstrap must be an array')
  return bootstrap.map((b) => {
    if (typeof b === 'string') return b
    if (b && typeof b.host === 'string' && Number.isInteger(b.port)) return `${b.host}:${b.port}`
    throw errors.make('ERR_INVALID_ARGUMENT', 'bootstrap entries are "host:port" or { host, port }')
  })
}

function topicBuffer (topic) {
  return errors.bytes(topic, 32, 'topic', 'ERR_INVALID_TOPIC')
}

function keyBuffer (key) {
  return errors.bytes(key, 32, 'public key', 'ERR_INVALID_KEY')
}

/** A joined topic: JS Hyperswarm's PeerDiscovery session. */
class PeerDiscovery {
  constructor (swarm, topic, { server, client, limit: max }) {
    this.swarm = swarm
    this.topic = topic
    this.isServer = server
    this.isClient = client
    this.destroyed = false
    this._native = errors.wait(swarm._native.join(topic, server, client, max))
    // Failures surface through flushed()/refresh()/destroy(); never as an unhandled
    // rejection.
    this._native.catch(() => {})
  }

  async flushed () {
    const d = await this._native
    return d.flushed()
  }

  async refresh ({ server = this.isServer, client = this.isClient } = {}) {
    if (this.destroyed) throw errors.make('ERR_SESSION_DESTROYED', 'discovery session has been destroyed')
    const d = await this._native
    this.isServer = !!server
    this.isClient = !!client
    return errors.wait(d.refresh(this.isServer, this.isClient))
  }

  async destroy () {
    if (this.destroyed) return
    this.destroyed = true
    this.swarm._forget(this)
    let d
    try {
      d = await this._native
    } catch {
      return // never joined, nothing to leave
    }
    await errors.wait(d.destroy())
  }
}

/** The hyperswarm API on the Rust swarm. */
class Hyperswarm extends EventEmitter {
  constructor (opts = {}) {
    super()
    const { keyPair, seed, firewall } = opts
    if (opts.dht) throw errors.make('ERR_INVALID_ARGUMENT', 'opts.dht (a JS HyperDHT) cannot drive the Rust swarm; pass bootstrap instead')
    let secretKey
    if (keyPair) {
      if (!keyPair || typeof keyPair !== 'object') throw errors.make('ERR_INVALID_KEY', 'keyPair must be { publicKey, secretKey }')
      const pk = errors.bytes(keyPair.publicKey, 32, 'keyPair.publicKey', 'ERR_INVALID_KEY')
      secretKey = errors.bytes(keyPair.secretKey, 64, 'keyPair.secretKey', 'ERR_INVALID_KEY')
      if (!pk.equals(secretKey.subarray(32))) throw errors.make('ERR_INVALID_KEY', 'keyPair.publicKey does not belong to keyPair.secretKey')
    } else if (seed !== undefined) {
      secretKey = Hyperswarm.keyPair(seed).secretKey
    }
    if (firewall !== undefined && typeof firewall !== 'function') throw errors.make('ERR_INVALID_ARGUMENT', 'firewall must be a function')
    const options = {
      secretKey,
      bootstrap: bootstrapList(opts.bootstrap),
      host: opts.host,
      port: opts.port,
      maxPeers: limit(opts.maxPeers, 'maxPeers'),
      maxClientConnections: limit(opts.maxClientConnections, 'maxClientConnections'),
      maxServerConnections: limit(opts.maxServerConnections, 'maxServerConnections'),
      maxParallel: limit(opts.maxParallel, 'maxParallel')
    }
    // The addon asks with the key as hex (strings cross threads cheaply); a firewall that
    // throws refuses.
    const fw = firewall ? (hex) => !!firewall(Buffer.from(hex, 'hex'), null) : undefined
    this._native = errors.call(() => new native.NativeSwarm(options, fw))
    this.keyPair = { publicKey: this._native.publicKey, secretKey: this._native.secretKey }
    this.destroyed = false
    this.suspended = false
    this.connections = new Set()
    this.peers = new Map()
    this.explicitPeers = new Set()
    this.maxPeers = options.maxPeers === undefined ? 64 : options.maxPeers
    this._discovery = new Map()
    this._stats = null
    this._destroying = null
    this._pumping = this._pump()
  }

  /** A key pair from a 32-byte seed (or a random one), as `DHT.keyPair(seed)`. */
  static keyPair (seed) {
    if (seed !== undefined && seed !== null) seed = errors.bytes(seed, 32, 'seed', 'ERR_INVALID_KEY')
    return errors.call(() => native.keyPair(seed || undefined))
  }

  get connecting () {
    return this._counters().connecting
  }

  get stats () {
    const s = this._counters()
    return {
      updates: s.updates,
      connects: {
        client: { opened: s.clientOpened, closed: s.clientClosed, attempted: s.clientAttempted },
        server: { opened: s.serverOpened, closed: s.serverClosed }
      },
      bannedPeers: s.bannedPeers
    }
  }

  _counters () {
    if (!this.destroyed) {
      try {
        this._stats = this._native.stats()
      } catch {}
    }
    return this._stats || {
      updates: 0, connections: 0, clientConnections: 0, serverConnections: 0, connecting: 0, queued: 0, peers: 0, bannedPeers: 0, clientOpened: 0, clientClosed: 0, clientAttempted: 0, serverOpened: 0, serverClosed: 0
    }
  }

  async _pump () {
    // The pending nextEvent() keeps the process alive while the swarm runs; it resolves
    // null once the swarm is destroyed, and then nothing of ours holds the loop.
    for (;;) {
      let ev
      try {
        ev = await this._native.nextEvent()
      } catch {
        return
      }
      if (ev === null) return
      if (ev.kind === 'connection') this._onconnection(ev.connection(), ev.peer())
      else {
        this._stats = ev.stats()
        this.emit('update')
      }
    }
  }

  _onconnection (conn, p) {
    const socket = new HyperswarmSocket(conn, this.keyPair.publicKey)
    if (this.destroyed) {
      socket.destroy()
      return
    }
    let info = this.peers.get(p.publicKey)
    if (!info) {
      info = new PeerInfo(this, Buffer.from(p.publicKey, 'hex'))
      this.peers.set(p.publicKey, info)
    }
    info._update(p)
    this.connections.add(socket)
    socket.on('error', noop) // an unobserved socket error must not crash the process
    socket.once('close', () => {
      this.connections.delete(socket)
      this.emit('update')
    })
    this.emit('connection', socket, info)
    // Our noop listener only guards the unobserved case: once the app listens, it
    // sees errors as usual.
    if (socket.listenerCount('error') > 1) socket.removeListener('error', noop)
  }

  _forget (discovery) {
    const key = discovery.topic.toString('hex')
    const list = this._discovery.get(key)
    if (!list) return
    const i = list.indexOf(discovery)
    if (i !== -1) list.splice(i, 1)
    if (!list.length) this._discovery.delete(key)
  }

  _check () {
    if (this.destroyed) throw errors.destroyed()
  }

  /** Joins a 32-byte topic; returns its PeerDiscovery. */
  join (topic, opts = {}) {
    topic = topicBuffer(topic)
    this._check()
    const server = opts.server !== false
    const client = opts.client !== false
    if (!server && !client) throw errors.make('ERR_NO_MODE', 'join needs server or client mode')
    const d = new PeerDiscovery(this, topic, { server, client, limit: limit(opts.limit, 'limit') })
    const key = topic.toString('hex')
    if (!this._discovery.has(key)) this._discovery.set(key, [])
    this._discovery.get(key).push(d)
    return d
  }

  /** Leaves a topic (connections stay). */
  async leave (topic) {
    topic = topicBuffer(topic)
    this._check()
    const list = this._discovery.get(topic.toString('hex')) || []
    for (const d of list) d.destroyed = true
    this._discovery.delete(topic.toString('hex'))
    await errors.wait(this._native.leave(topic))
  }

  /** The discovery of a topic, or null. */
  status (topic) {
    const list = this._discovery.get(topicBuffer(topic).toString('hex'))
    return (list && list[0]) || null
  }

  * topics () {
    for (const list of this._discovery.values()) yield * list
  }

  /** Leaves every topic (connections stay). */
  async clear () {
    const all = [...this.topics()]
    this._discovery.clear()
    return Promise.allSettled(all.map((d) => d.destroy()))
  }

  /** Waits until every topic has been announced / looked up and every peer found tried. */
  async flush () {
    this._check()
    return errors.wait(this._native.flush())
  }

  /** Starts answering connections now. */
  async listen () {
    this._check()
    return errors.wait(this._native.listen())
  }

  /** Keeps a connection to a peer whatever the topics. */
  joinPeer (publicKey) {
    publicKey = keyBuffer(publicKey)
    this._check()
    errors.call(() => this._native.joinPeer(publicKey))
    const hex = publicKey.toString('hex')
    let info = this.peers.get(hex)
    if (!info) {
      info = new PeerInfo(this, publicKey)
      this.peers.set(hex, info)
    }
    info.explicit = true
    this.explicitPeers.add(info)
  }

  /** Stops insisting on a peer (an open connection stays). */
  leavePeer (publicKey) {
    publicKey = keyBuffer(publicKey)
    this._check()
    errors.call(() => this._native.leavePeer(publicKey))
    const info = this.peers.get(publicKey.toString('hex'))
    if (info) {
      info.explicit = false
      this.explicitPeers.delete(info)
    }
  }

  async suspend () {
    this._check()
    await errors.wait(this._native.suspend())
    this.suspended = true
  }

  async resume () {
    this._check()
    await errors.wait(this._native.resume())
    this.suspended = false
  }

  /** Leaves every topic, closes every connection and the DHT node. */
  destroy () {
    if (this._destroying) return this._destroying
    this.destroyed = true
    for (const list of this._discovery.values()) for (const d of list) d.destroyed = true
    this._discovery.clear()
    for (const socket of this.connections) socket.destroy()
    this._destroying = errors.wait(this._native.destroy()).then(() => this._pumping)
    return this._destroying
  }
}

function noop () {}

/**
 * A HyperDHT testnet in this process (Rust nodes), for tests: `{ bootstrap, destroy() }`
 * where bootstrap is `[{ host, port }]` as hyperdht/testnet gives.
 */
async function createTestnet (size = 3, opts = {}) {
  if (!Number.isInteger(size) || size < 1) throw errors.make('ERR_INVALID_ARGUMENT', 'size must be a positive integer')
  const t = await errors.wait(native.createTestnet(size, opts.host))
  const bootstrap = t.bootstrap.map((s) => {
    const i = s.lastIndexOf(':')
    return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
  })
  return {
    bootstrap,
    async destroy () {
      t.destroy()
    }
  }
}

module.exports = Hyperswarm
module.exports.Hyperswarm = Hyperswarm
module.exports.PeerDiscovery = PeerDiscovery
module.exports.PeerInfo = PeerInfo
module.exports.HyperswarmSocket = HyperswarmSocket
module.exports.createTestnet = createTestnet
module.exports.keyPair = Hyperswarm.keyPair
