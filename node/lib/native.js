'use strict'
// Loads the addon: HYPERSWARM_RS_NATIVE, else the copy `npm run build` puts next to
// package.json. A missing addon is a clear error, not a crash.
const path = require('path')

const file = process.env.HYPERSWARM_RS_NATIVE || path.join(__dirname, '..', 'hyperswarm-rs.node')
try {
  module.exports = require(file)
} catch (err) {
  const e = new Error(`hyperswarm-rs: cannot load the native addon ${file} (run \`npm run build\` in the package): ${err.message}`)
  e.code = 'ERR_NATIVE_ADDON'
  throw e
}
