'use strict'
// The package alone: Rust swarms on a Rust testnet, through the JS API.
const test = require('node:test')
const assert = require('node:assert')
const crypto = require('crypto')
const { pipeline } = require('stream/promises')
const { Readable, Writable } = require('stream')
const Hyperswarm = require('..')
const { createTestnet } = Hyperswarm
const { once, topic, connections, readBytes } = require('./helpers')

test('two swarms on a Rust testnet connect and exchange data both ways', { timeout: 60000 }, async (t) => {
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  const a = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const b = new Hyperswarm({ bootstrap: testnet.bootstrap })
  t.after(() => Promise.all([a.destroy(), b.destroy()]))

  const key = topic()
  const gotA = connections(a)
  const gotB = connections(b)
  await a.join(key, { server: true, client: false }).flushed()
  b.join(key, { server: false, client: true })
  await b.flush()
  const [[sa, infoA]] = await gotA
  const [[sb, infoB]] = await gotB

  assert.deepStrictEqual(sa.remotePublicKey, b.keyPair.publicKey)
  assert.deepStrictEqual(sb.remotePublicKey, a.keyPair.publicKey)
  assert.deepStrictEqual(sa.handshakeHash, sb.handshakeHash)
  assert.strictEqual(sa.handshakeHash.length, 64)
  assert.strictEqual(sa.isInitiator, false)
  assert.strictEqual(sb.isInitiator, true)
  assert.deepStrictEqual(infoA.publicKey, b.keyPair.publicKey)
  assert.deepStrictEqual(infoB.publicKey, a.keyPair.publicKey)
  assert.ok(infoB.topics.some((x) => x.equals(key)), 'the client found the server under the topic')
  assert.strictEqual(a.connections.size, 1)
  assert.strictEqual(b.connections.size, 1)
  assert.ok(a.peers.has(b.keyPair.publicKey.toString('hex')))

  sb.write('hello from b')
  assert.strictEqual((await readBytes(sa, 12)).toString(), 'hello from b')
  sa.write('hello from a')
  assert.strictEqual((await readBytes(sb, 12)).toString(), 'hello from a')

  // Half-open as in JS: the end reaches the other side, which ends in turn; then both close.
  const closed = Promise.all([once(sa, 'close'), once(sb, 'close')])
  sa.once('end', () => sa.end())
  sb.end()
  await closed
  assert.strictEqual(a.connections.size, 0)
})

test('a large transfer is piped through with backpressure, byte for byte', { timeout: 120000 }, async (t) => {
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  const a = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const b = new Hyperswarm({ bootstrap: testnet.bootstrap })
  t.after(() => Promise.all([a.destroy(), b.destroy()]))
  const key = topic()
  const gotA = connections(a)
  const gotB = connections(b)
  await a.join(key, { server: true, client: false }).flushed()
  b.join(key, { server: false, client: true })
  const [[sa]] = await gotA
  const [[sb]] = await gotB

  const data = crypto.randomBytes(8 * 1024 * 1024)
  const hash = crypto.createHash('sha256')
  let received = 0
  let slowWrites = 0
  // A slow sink: the reader stops pulling from Rust while it is busy.
  const sink = new Writable({
    highWaterMark: 16 * 1024,
    write (chunk, enc, cb) {
      hash.update(chunk)
      received += chunk.length
      if (++slowWrites % 32 === 0) setImmediate(cb)
      else cb()
    }
  })
  const done = pipeline(sa, sink)
  let sawBackpressure = false
  const src = Readable.from((function * () {
    for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536)
  })())
  await pipeline(src, new Writable({
    write (chunk, enc, cb) {
      if (!sb.write(chunk)) {
        sawBackpressure = true
        sb.once('drain', cb)
      } else cb()
    },
    final (cb) {
      sb.end()
      cb()
    }
  }))
  await done
  assert.strictEqual(received, data.length)
  assert.strictEqual(hash.digest('hex'), crypto.createHash('sha256').update(data).digest('hex'))
  assert.ok(sawBackpressure, 'the writer was told to wait at least once')
})

test('joinPeer connects to a server by public key alone', { timeout: 60000 }, async (t) => {
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  const a = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const b = new Hyperswarm({ bootstrap: testnet.bootstrap })
  t.after(() => Promise.all([a.destroy(), b.destroy()]))
  await a.listen()
  const gotA = connections(a)
  const gotB = connections(b)
  b.joinPeer(a.keyPair.publicKey)
  const [[, info]] = await gotB
  await gotA
  assert.strictEqual(info.explicit, true)
  assert.ok(b.explicitPeers.has(info))
  b.leavePeer(a.keyPair.publicKey)
  assert.strictEqual(info.explicit, false)
})

test('firewall refuses a peer; the key pair and seed options set the identity', { timeout: 60000 }, async (t) => {
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  const seed = crypto.randomBytes(32)
  const kp = Hyperswarm.keyPair(seed)
  assert.deepStrictEqual(Hyperswarm.keyPair(seed), kp)
  const bkp = Hyperswarm.keyPair()
  let askedAboutB
  const asked = new Promise((resolve) => { askedAboutB = resolve })
  const a = new Hyperswarm({
    bootstrap: testnet.bootstrap,
    seed,
    firewall (remotePublicKey) {
      if (remotePublicKey.equals(bkp.publicKey)) askedAboutB()
      return true
    }
  })
  const b = new Hyperswarm({ bootstrap: testnet.bootstrap, keyPair: bkp })
  t.after(() => Promise.all([a.destroy(), b.destroy()]))
  assert.deepStrictEqual(a.keyPair.publicKey, kp.publicKey)
  assert.deepStrictEqual(b.keyPair, bkp)
  let connected = false
  a.on('connection', () => { connected = true })
  b.on('connection', () => { connected = true })
  const key = topic()
  await a.join(key, { server: true, client: false }).flushed()
  b.join(key, { server: false, client: true })
  await asked
  // flush() resolves once every found peer has been tried: the refused dial is over.
  await b.flush()
  assert.strictEqual(connected, false)
  assert.strictEqual(a.stats.connects.server.opened, 0)
})

test('suspend closes connections, resume lets them come back', { timeout: 90000 }, async (t) => {
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  const a = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const b = new Hyperswarm({ bootstrap: testnet.bootstrap })
  t.after(() => Promise.all([a.destroy(), b.destroy()]))
  const key = topic()
  const first = connections(b)
  await a.join(key, { server: true, client: false }).flushed()
  b.join(key, { server: false, client: true })
  const [[sb]] = await first
  const closed = once(sb, 'close')
  await b.suspend()
  await closed
  assert.strictEqual(b.suspended, true)
  const again = connections(b)
  await b.resume()
  const [[sb2]] = await again
  assert.deepStrictEqual(sb2.remotePublicKey, a.keyPair.publicKey)
})

test('leave unannounces, clear leaves every topic, refresh switches modes', { timeout: 60000 }, async (t) => {
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  const a = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const b = new Hyperswarm({ bootstrap: testnet.bootstrap })
  t.after(() => Promise.all([a.destroy(), b.destroy()]))
  const key = topic()
  const d = a.join(key, { server: true, client: false })
  assert.strictEqual(await d.flushed(), true)
  assert.strictEqual(a.status(key), d)
  await a.leave(key)
  assert.strictEqual(a.status(key), null)
  assert.strictEqual(d.destroyed, true)
  // The announcement is gone: a client finds nobody to dial.
  b.join(key, { server: false, client: true })
  await b.flush()
  assert.strictEqual(b.stats.connects.client.attempted, 0)
  assert.strictEqual(b.connections.size, 0)

  const d1 = a.join(topic(), { server: false, client: true })
  const d2 = a.join(topic(), { server: true, client: false })
  assert.strictEqual(await d2.refresh({ client: true }), true)
  assert.strictEqual(d2.isClient, true)
  assert.strictEqual(d2.isServer, true)
  assert.strictEqual([...a.topics()].length, 2)
  await a.clear()
  assert.strictEqual([...a.topics()].length, 0)
  assert.strictEqual(d1.destroyed && d2.destroyed, true)
})
