'use strict'
// Bad arguments throw typed errors with codes; a destroyed swarm rejects; nothing aborts.
const test = require('node:test')
const assert = require('node:assert')
const Hyperswarm = require('..')
const { createTestnet } = Hyperswarm
const { topic } = require('./helpers')

test('bad arguments throw TypeError / RangeError with a code', { timeout: 30000 }, async (t) => {
  const testnet = await createTestnet(1)
  t.after(() => testnet.destroy())
  const swarm = new Hyperswarm({ bootstrap: testnet.bootstrap })
  t.after(() => swarm.destroy())

  assert.throws(() => swarm.join(Buffer.alloc(31)), { name: 'RangeError', code: 'ERR_INVALID_TOPIC' })
  assert.throws(() => swarm.join('not a buffer'), { name: 'TypeError', code: 'ERR_INVALID_TOPIC' })
  assert.throws(() => swarm.join(), { name: 'TypeError', code: 'ERR_INVALID_TOPIC' })
  assert.throws(() => swarm.join(topic(), { server: false, client: false }), { code: 'ERR_NO_MODE' })
  await assert.rejects(swarm.leave(Buffer.alloc(33)), { name: 'RangeError', code: 'ERR_INVALID_TOPIC' })
  assert.throws(() => swarm.joinPeer(Buffer.alloc(5)), { name: 'RangeError', code: 'ERR_INVALID_KEY' })
  assert.throws(() => swarm.leavePeer(42), { name: 'TypeError', code: 'ERR_INVALID_KEY' })
  assert.throws(() => Hyperswarm.keyPair(Buffer.alloc(16)), { name: 'RangeError', code: 'ERR_INVALID_KEY' })

  const kp = Hyperswarm.keyPair()
  const other = Hyperswarm.keyPair()
  assert.throws(() => new Hyperswarm({ keyPair: { publicKey: other.publicKey, secretKey: kp.secretKey } }), { code: 'ERR_INVALID_KEY' })
  assert.throws(() => new Hyperswarm({ keyPair: { publicKey: kp.publicKey, secretKey: Buffer.alloc(10) } }), { name: 'RangeError', code: 'ERR_INVALID_KEY' })
  assert.throws(() => new Hyperswarm({ bootstrap: 'x' }), { name: 'RangeError', code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => new Hyperswarm({ maxPeers: -1 }), { name: 'RangeError', code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => new Hyperswarm({ host: 'not-an-ip', bootstrap: [] }), { name: 'RangeError', code: 'ERR_INVALID_ARGUMENT' })
  // A secret key whose second half is not its public key is caught in Rust too.
  const bad = Buffer.from(kp.secretKey)
  bad[40] ^= 1
  assert.throws(() => new Hyperswarm({ keyPair: { publicKey: bad.subarray(32), secretKey: bad } }), { name: 'TypeError', code: 'ERR_INVALID_KEY' })
  await assert.rejects(createTestnet(0), { code: 'ERR_INVALID_ARGUMENT' })
})

test('calls on a destroyed swarm reject or throw ERR_DESTROYED', { timeout: 30000 }, async (t) => {
  const testnet = await createTestnet(1)
  t.after(() => testnet.destroy())
  const swarm = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const d = swarm.join(topic(), { server: false, client: true })
  await swarm.destroy()
  await swarm.destroy() // idempotent
  assert.strictEqual(swarm.destroyed, true)
  assert.throws(() => swarm.join(topic()), { code: 'ERR_DESTROYED' })
  await assert.rejects(swarm.flush(), { code: 'ERR_DESTROYED' })
  await assert.rejects(swarm.listen(), { code: 'ERR_DESTROYED' })
  await assert.rejects(swarm.suspend(), { code: 'ERR_DESTROYED' })
  await assert.rejects(swarm.leave(topic()), { code: 'ERR_DESTROYED' })
  assert.throws(() => swarm.joinPeer(Buffer.alloc(32)), { code: 'ERR_DESTROYED' })
  // The native layer checks on its own too, for callers that skip the JS checks.
  await assert.rejects(swarm._native.flush(), /^Error: ERR_DESTROYED/)
  await assert.rejects(d.refresh(), { code: 'ERR_SESSION_DESTROYED' })
  await d.destroy()
})

test('misusing sockets and the native layer throws or rejects, never aborts', { timeout: 60000 }, async (t) => {
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  const a = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const b = new Hyperswarm({ bootstrap: testnet.bootstrap })
  t.after(() => Promise.all([a.destroy(), b.destroy()]))
  const key = topic()
  const got = new Promise((resolve) => b.once('connection', resolve))
  await a.join(key, { server: true, client: false }).flushed()
  b.join(key, { server: false, client: true })
  const socket = await got
  const native = socket._native

  // Wrong types straight into the addon: JS exceptions, not crashes.
  assert.throws(() => a._native.joinPeer('nope'))
  assert.throws(() => native.read())
  await assert.rejects(a._native.join(Buffer.alloc(3), true, true), /^Error: ERR_INVALID_TOPIC/)

  // Two reads at once: the second waits its turn instead of racing the first.
  const r1 = native.read(10)
  const r2 = native.read(10)
  socket.destroy()
  await assert.rejects(r1, /ERR_CONNECTION_CLOSED/)
  await assert.rejects(r2, /ERR_CONNECTION_CLOSED/)
  await assert.rejects(native.write(Buffer.from('x')), /ERR_CONNECTION_CLOSED/)
  await assert.rejects(native.end(), /ERR_CONNECTION_CLOSED/)
  native.destroy() // again: harmless
  const writeErr = await new Promise((resolve) => socket.write('after destroy', resolve))
  assert.strictEqual(writeErr.code, 'ERR_STREAM_DESTROYED')
  assert.strictEqual(socket.destroyed, true)
})
