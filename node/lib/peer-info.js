'use strict'
// JS Hyperswarm's PeerInfo: what the swarm knows about a peer.

class PeerInfo {
  constructor (swarm, publicKey) {
    this._swarm = swarm
    this.publicKey = publicKey
    this.relayAddresses = []
    this.topics = []
    this.priority = 2
    this.prioritized = true
    this.banned = false
    this.explicit = false
    this.client = false
    this.attempts = 0
  }

  get server () {
    return !this.client
  }

  _update (p) {
    this.relayAddresses = p.relayAddresses.map(parseAddress)
    this.topics = p.topics.map((t) => Buffer.from(t, 'hex'))
    this.priority = p.priority
    this.prioritized = p.prioritized
    this.banned = p.banned
    this.explicit = p.explicit
    this.client = p.client
    this.attempts = p.attempts
    return this
  }

  // Bans (or unbans) the peer: the swarm never dials or accepts it again.
  ban (val = true) {
    this.banned = !!val
    if (!this._swarm.destroyed) this._swarm._native.ban(this.publicKey, this.banned)
  }
}

function parseAddress (s) {
  const i = s.lastIndexOf(':')
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
}

module.exports = PeerInfo
