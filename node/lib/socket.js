'use strict'
// A connection as a Node `stream.Duplex`: reads are pulled from Rust only when the
// readable side wants more (so a paused or piped-into-a-slow-sink socket stops reading
// and the peer is flow-controlled), writes resolve when the Rust stream took the bytes.

const { Duplex } = require('stream')
const errors = require('./errors')

const READ_SIZE = 64 * 1024

class HyperswarmSocket extends Duplex {
  constructor (native, publicKey) {
    // Half-open like JS Hyperswarm's sockets: the peer's end does not end our side; the
    // socket closes once both sides ended (or on destroy).
    super({ allowHalfOpen: true })
    this._native = native
    this._reading = false
    this.publicKey = publicKey
    this.remotePublicKey = native.remotePublicKey
    this.handshakeHash = native.handshakeHash
    this.isInitiator = native.isInitiator
    this._draining = false
    // Learn of a close underneath (the swarm closed a duplicate, suspend, a reset) even
    // while nobody reads.
    native.closed().then(() => this._onclosed())
  }

  _onclosed () {
    if (this.destroyed) return
    // Take what is still buffered, then the read reports the end or the close.
    this._draining = true
    this._read()
  }

  _read () {
    if (this._reading) return
    this._reading = true
    this._native.read(READ_SIZE).then((buf) => {
      this._reading = false
      if (this.destroyed) return
      if (buf === null) this.push(null)
      else if (this.push(buf) || this._draining) this._read()
    }, (err) => {
      this._reading = false
      this._fail(err)
    })
  }

  _write (chunk, encoding, cb) {
    this._native.write(chunk).then(() => cb(), (err) => cb(this._error(err)))
  }

  _writev (chunks, cb) {
    const data = chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk))
    this._native.write(data).then(() => cb(), (err) => cb(this._error(err)))
  }

  _final (cb) {
    this._native.end().then(() => cb(), (err) => {
      const e = errors.fromNative(err)
      // Closed underneath while ending: nothing left to end.
      cb(e.code === 'ERR_CONNECTION_CLOSED' ? null : e)
    })
  }

  _destroy (err, cb) {
    // Both sides ended cleanly: let the stream finish its close (an abrupt drop would
    // reset the peer). Otherwise close at once.
    if (!err && this.readableEnded && this.writableFinished) this._native.release()
    else this._native.destroy()
    cb(err)
  }

  _error (err) {
    return errors.fromNative(err)
  }

  _fail (err) {
    if (this.destroyed) return
    const e = errors.fromNative(err)
    // Closed by the swarm (duplicate, suspend, destroy) or reset by the peer: a close,
    // as JS Hyperswarm's sockets report it, not an error to crash on.
    if (e.code === 'ERR_CONNECTION_CLOSED') this.destroy()
    else this.destroy(e)
  }
}

module.exports = HyperswarmSocket
