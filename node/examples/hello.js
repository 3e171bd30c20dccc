'use strict'
// Two peers find each other under a topic and say hello, on a DHT testnet inside this
// process (no internet needed). Run: node examples/hello.js
// For the public network, drop `bootstrap` (and the testnet).
const Hyperswarm = require('..')
const crypto = require('crypto')

async function main () {
  const testnet = await Hyperswarm.createTestnet(3)
  const alice = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const bob = new Hyperswarm({ bootstrap: testnet.bootstrap })
  const topic = crypto.createHash('sha256').update('hyperswarm-rs hello').digest()

  alice.on('connection', (socket, peerInfo) => {
    console.log('alice: connected to', peerInfo.publicKey.toString('hex').slice(0, 16))
    socket.end('hello from alice')
  })

  const greeted = new Promise((resolve) => {
    bob.on('connection', (socket) => {
      socket.on('data', (data) => {
        console.log('bob got:', data.toString())
        resolve()
      })
    })
  })

  await alice.join(topic, { server: true, client: false }).flushed() // announced
  bob.join(topic, { server: false, client: true })
  await greeted

  await alice.destroy()
  await bob.destroy()
  await testnet.destroy()
  // Nothing else to do: the process exits by itself.
}

main()
