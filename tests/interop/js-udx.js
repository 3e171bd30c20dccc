'use strict'
// udx-native peers for the UDX interop scenarios.
//
//   node js-udx.js echo --port P --id A --remote-id B --remote-port Q
//       binds 127.0.0.1:P, opens stream A towards (B, 127.0.0.1:Q), echoes every byte back
//       and ends when the peer ends; prints `ready`, then `done` {bytes}.
//   node js-udx.js send --port P --id A --remote-id B --remote-port Q --bytes N
//       sends N pseudo-random bytes, reads the echo, ends; prints `done` {bytes, sha256_sent,
//       sha256_received, seconds}.

const UDX = require('udx-native')
const crypto = require('crypto')
const { parseArgs, emit, log, fail, watchdog, run } = require('./common')

const [op, ...rest] = process.argv.slice(2)
const args = parseArgs(rest, { port: null, id: null, 'remote-id': null, 'remote-port': null, bytes: '0', timeout: '120' })
watchdog(Number(args.timeout))

function num (name) {
  const n = Number(args[name])
  if (!Number.isInteger(n) || n < 0) fail(`--${name} must be a non-negative integer`)
  return n
}

run(async () => {
  const udx = new UDX()
  const socket = udx.createSocket()
  socket.bind(num('port'), '127.0.0.1')
  const stream = udx.createStream(num('id'))
  stream.connect(socket, num('remote-id'), num('remote-port'), '127.0.0.1')
  stream.on('error', (err) => fail(`stream error: ${err.message}`))

  if (op === 'echo') {
    let bytes = 0
    stream.on('data', (d) => {
      bytes += d.byteLength
      stream.write(d)
    })
    stream.on('end', () => stream.end())
    emit({ event: 'ready', port: socket.address().port })
    await new Promise((resolve) => stream.on('close', resolve))
    emit({ event: 'done', bytes })
    await socket.close()
    return
  }

  if (op === 'send') {
    const total = num('bytes')
    const sent = crypto.createHash('sha256')
    const received = crypto.createHash('sha256')
    const chunk = crypto.randomBytes(65536)
    const started = process.hrtime.bigint()
    let got = 0
    stream.on('data', (d) => {
      received.update(d)
      got += d.byteLength
      if (got >= total) stream.end()
    })
    let left = total
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.byteLength)
        const part = chunk.subarray(0, n)
        sent.update(part)
        left -= n
        if (!stream.write(part)) return stream.once('drain', pump)
      }
    }
    pump()
    await new Promise((resolve) => stream.on('close', resolve))
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    emit({ event: 'done', bytes: got, sha256_sent: sent.digest('hex'), sha256_received: received.digest('hex'), seconds })
    await socket.close()
    return
  }

  fail(`unknown op ${op} (echo | send)`)
})
