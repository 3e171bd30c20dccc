'use strict'
// hyperswarm-rs against the real hyperswarm 4.17.2 package: in one process and across
// processes, each side as server and as client, on a JS testnet (hyperdht/testnet) and on
// a Rust one. Everything on 127.0.0.1.
const test = require('node:test')
const assert = require('node:assert')
const crypto = require('crypto')
const path = require('path')
const readline = require('readline')
const { spawn } = require('child_process')
const JsHyperswarm = require('hyperswarm')
const createJsTestnet = require('hyperdht/testnet')
const RsHyperswarm = require('..')
const { once, topic, connections, readBytes } = require('./helpers')

const LIBS = { js: JsHyperswarm, rs: RsHyperswarm }

async function testnet (t, kind) {
  const tn = kind === 'js'
    ? await createJsTestnet(3, { host: '127.0.0.1' })
    : await RsHyperswarm.createTestnet(3)
  t.after(() => tn.destroy())
  return tn.bootstrap.map(({ host, port }) => ({ host, port }))
}

// Checks one connection from both ends: same handshake, the right keys, data both ways.
async function exchange (serverSocket, clientSocket, serverKey, clientKey) {
  assert.deepStrictEqual(Buffer.from(clientSocket.remotePublicKey), Buffer.from(serverKey))
  assert.deepStrictEqual(Buffer.from(serverSocket.remotePublicKey), Buffer.from(clientKey))
  assert.deepStrictEqual(Buffer.from(serverSocket.handshakeHash), Buffer.from(clientSocket.handshakeHash))
  assert.strictEqual(clientSocket.isInitiator, true)
  assert.strictEqual(serverSocket.isInitiator, false)
  const up = crypto.randomBytes(100000)
  const down = crypto.randomBytes(100000)
  const gotUp = readBytes(serverSocket, up.length)
  const gotDown = readBytes(clientSocket, down.length)
  clientSocket.write(up)
  serverSocket.write(down)
  assert.ok((await gotUp).equals(up))
  assert.ok((await gotDown).equals(down))
}

for (const net of ['js', 'rs']) {
  for (const [server, client] of [['rs', 'js'], ['js', 'rs']]) {
    test(`one process, ${net} testnet: ${server} server, ${client} client`, { timeout: 60000 }, async (t) => {
      const bootstrap = await testnet(t, net)
      const s = new LIBS[server]({ bootstrap })
      const c = new LIBS[client]({ bootstrap })
      t.after(() => Promise.all([s.destroy(), c.destroy()]))
      const key = topic()
      const gotS = connections(s)
      const gotC = connections(c)
      await s.join(key, { server: true, client: false }).flushed()
      c.join(key, { server: false, client: true })
      const [[ss, sinfo]] = await gotS
      const [[cs, cinfo]] = await gotC
      assert.deepStrictEqual(Buffer.from(sinfo.publicKey), Buffer.from(c.keyPair.publicKey))
      assert.deepStrictEqual(Buffer.from(cinfo.publicKey), Buffer.from(s.keyPair.publicKey))
      await exchange(ss, cs, s.keyPair.publicKey, c.keyPair.publicKey)
      const closed = Promise.all([once(ss, 'close'), once(cs, 'close')])
      ss.once('end', () => ss.end())
      cs.end()
      await closed
    })
  }
}

function child (impl, role, key, bootstrap) {
  const proc = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'peer.js'), JSON.stringify({ impl, role, topic: key.toString('hex'), bootstrap })], { stdio: ['pipe', 'pipe', 'inherit'] })
  const events = []
  const waiters = []
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    const ev = JSON.parse(line)
    events.push(ev)
    for (const w of waiters.splice(0)) w()
  })
  const exited = once(proc, 'exit')
  return {
    proc,
    exited,
    // The first event of this name (waits for it, or for the process to die first).
    async next (name) {
      for (;;) {
        const ev = events.find((e) => e.event === name)
        if (ev) return ev
        const err = events.find((e) => e.event === 'error')
        if (err) throw new Error(`peer failed: ${err.message}`)
        if (proc.exitCode !== null) throw new Error(`peer exited (${proc.exitCode}) before '${name}'`)
        await Promise.race([new Promise((resolve) => waiters.push(resolve)), exited])
      }
    }
  }
}

for (const net of ['js', 'rs']) {
  for (const [here, there] of [['rs', 'js'], ['js', 'rs']]) {
    for (const role of ['server', 'client']) {
      const theirs = role === 'server' ? 'client' : 'server'
      test(`two processes, ${net} testnet: ${here} ${role} here, ${there} ${theirs} in a child`, { timeout: 60000 }, async (t) => {
        const bootstrap = await testnet(t, net)
        const swarm = new LIBS[here]({ bootstrap })
        t.after(() => swarm.destroy())
        const key = topic()
        const got = connections(swarm)
        let peer
        if (role === 'server') {
          await swarm.join(key, { server: true, client: false }).flushed()
          peer = child(there, theirs, key, bootstrap)
        } else {
          peer = child(there, theirs, key, bootstrap)
          await peer.next('ready')
          swarm.join(key, { server: false, client: true })
        }
        t.after(() => { if (peer.proc.exitCode === null) peer.proc.kill() })
        const [[socket]] = await got
        const theirEv = await peer.next('connection')
        assert.strictEqual(theirEv.remotePublicKey, swarm.keyPair.publicKey.toString('hex'))
        assert.strictEqual(theirEv.handshakeHash, Buffer.from(socket.handshakeHash).toString('hex'))
        assert.strictEqual(socket.isInitiator, role === 'client')
        // The child echoes.
        const msg = crypto.randomBytes(50000)
        const echoed = readBytes(socket, msg.length)
        socket.write(msg)
        assert.ok((await echoed).equals(msg))
        // The child destroys its swarm and must then exit by itself.
        peer.proc.stdin.end()
        await peer.next('destroyed')
        const [code] = await peer.exited
        assert.strictEqual(code, 0)
      })
    }
  }
}
