'use strict'
// Shared by the tests: waiting for events (never sleeping), with the test's timeout as
// the failure.
const { once } = require('events')
const crypto = require('crypto')

function topic () {
  return crypto.randomBytes(32)
}

// Resolves with the first `n` ('connection') events' [socket, info] pairs.
function connections (swarm, n = 1) {
  return new Promise((resolve) => {
    const got = []
    const on = (socket, info) => {
      // Resets when a peer goes away at the end of a test are expected.
      socket.on('error', () => {})
      got.push([socket, info])
      if (got.length === n) {
        swarm.removeListener('connection', on)
        resolve(got)
      }
    }
    swarm.on('connection', on)
  })
}

// Reads until `len` bytes arrived.
function readBytes (socket, len) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let got = 0
    const ondata = (c) => {
      chunks.push(c)
      got += c.length
      if (got >= len) {
        socket.removeListener('data', ondata)
        socket.removeListener('error', reject)
        resolve(Buffer.concat(chunks))
      }
    }
    socket.on('data', ondata)
    socket.once('error', reject)
  })
}

module.exports = { once, topic, connections, readBytes }
