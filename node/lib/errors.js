'use strict'
// Turns the addon's `ERR_CODE: message` errors into JS errors with `err.code`, and makes
// argument errors of the kind Node uses for them.

const TYPE_ERRORS = new Set(['ERR_INVALID_TOPIC', 'ERR_INVALID_KEY'])
const RANGE_ERRORS = new Set(['ERR_INVALID_ARGUMENT', 'ERR_NO_MODE'])

function make (code, message) {
  const Ctor = TYPE_ERRORS.has(code) ? TypeError : RANGE_ERRORS.has(code) ? RangeError : Error
  const err = new Ctor(message)
  err.code = code
  return err
}

function fromNative (err) {
  if (!err || typeof err.message !== 'string') return err
  const m = /^(ERR_[A-Z_]+): ([\s\S]*)$/.exec(err.message)
  if (!m) return err
  return make(m[1], m[2])
}

// Calls a native function, rethrowing its error as a JS error with a code.
function call (fn) {
  try {
    return fn()
  } catch (err) {
    throw fromNative(err)
  }
}

// Awaits a native promise, rejecting with a JS error with a code.
async function wait (promise) {
  try {
    return await promise
  } catch (err) {
    throw fromNative(err)
  }
}

function isBytes (b) {
  return b instanceof Uint8Array
}

function toBuffer (b) {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

// A Buffer/Uint8Array of exactly `len` bytes, or a TypeError (wrong type) / RangeError
// (wrong length) carrying `code`.
function bytes (value, len, what, code) {
  if (!isBytes(value)) {
    const err = new TypeError(`${what} must be a Buffer or Uint8Array of ${len} bytes`)
    err.code = code
    throw err
  }
  if (value.byteLength !== len) {
    const err = new RangeError(`${what} must be ${len} bytes, got ${value.byteLength}`)
    err.code = code
    throw err
  }
  return toBuffer(value)
}

function destroyed () {
  return make('ERR_DESTROYED', 'swarm has been destroyed')
}

module.exports = { make, fromNative, call, wait, bytes, destroyed }
