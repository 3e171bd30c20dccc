'use strict'
// RFC 4787 classification of the NAT in front of a lab peer (used by `natlab.sh probe`).
//
//   node probe.js responder   in hsr-inet: UDP sockets on 198.18.0.1:7001, .2:7001, .3:7001
//                             and .1:7002; prints `ready`, answers each datagram with the
//                             source address it saw, for 10 s
//   node probe.js tester      in hsr-a or hsr-b: one socket talks to the responder and
//                             prints what the NAT did
//
// The tester's first datagram asks for two unsolicited answers besides the normal one:
// from another port of the same IP and from another IP. Which arrive is the filtering;
// whether .1, .2 and .3 all saw the same source port is the mapping.

const dgram = require('dgram')

const ENDPOINTS = [['198.18.0.1', 7001], ['198.18.0.2', 7001], ['198.18.0.3', 7001], ['198.18.0.1', 7002]]
const ANSWER_WAIT_MS = 400

function responder () {
  const socks = ENDPOINTS.map(([host, port]) => {
    const s = dgram.createSocket('udp4')
    s.bind(port, host)
    return s
  })
  let bound = 0
  socks.forEach((s, i) => {
    s.on('listening', () => { if (++bound === socks.length) console.log('ready') })
    s.on('message', (msg, from) => {
      const seen = from.address + ':' + from.port
      const answer = (sock, kind) => sock.send(JSON.stringify({ kind, seen, by: ENDPOINTS[i].join(':') }), from.port, from.address)
      answer(s, 'solicited')
      if (msg.toString() === 'filter-test') {
        answer(socks[3], 'same-ip-other-port')
        answer(socks[1], 'other-ip')
      }
    })
  })
  setTimeout(() => process.exit(0), 10000)
}

function tester () {
  const s = dgram.createSocket('udp4')
  const got = []
  s.on('message', (m) => got.push(JSON.parse(m)))
  const answersAfter = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
  s.bind(0, async () => {
    s.send('filter-test', 7001, '198.18.0.1')
    await answersAfter(ANSWER_WAIT_MS)
    s.send('map', 7001, '198.18.0.2')
    s.send('map', 7001, '198.18.0.3')
    await answersAfter(ANSWER_WAIT_MS)
    const solicited = got.filter((g) => g.kind === 'solicited')
    console.log(`local port ${s.address().port}; seen as:`)
    for (const g of solicited) console.log(`  by ${g.by}: ${g.seen}`)
    const has = (kind) => got.some((g) => g.kind === kind)
    const ports = new Set(solicited.map((g) => g.seen))
    const mapping = solicited.length < 3
      ? 'unknown (answers missing)'
      : ports.size === 1 ? 'endpoint-independent (consistent)' : 'address/port-dependent (random)'
    const filtering = has('other-ip')
      ? 'endpoint-independent (open)'
      : has('same-ip-other-port') ? 'address-dependent' : 'address+port-dependent'
    console.log(`=> mapping: ${mapping}; filtering: ${filtering}`)
    s.close()
  })
}

const role = process.argv[2]
if (role === 'responder') responder()
else if (role === 'tester') tester()
else {
  console.error('usage: probe.js responder|tester')
  process.exit(2)
}
