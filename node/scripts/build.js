'use strict'
// Builds the addon with cargo and copies it to hyperswarm-rs.node (the napi CLI is not
// needed: the JS layer and index.d.ts are hand-written). `--release` for an optimised build.
const { execFileSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const release = process.argv.includes('--release')
const root = path.join(__dirname, '..', '..')
const cargo = process.env.CARGO || 'cargo'
execFileSync(cargo, ['build', '-p', 'hyperswarm-node', ...(release ? ['--release'] : [])], { cwd: root, stdio: 'inherit' })
const target = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, 'target')
const lib = process.platform === 'darwin' ? 'libhyperswarm_node.dylib' : process.platform === 'win32' ? 'hyperswarm_node.dll' : 'libhyperswarm_node.so'
const from = path.join(target, release ? 'release' : 'debug', lib)
const to = path.join(__dirname, '..', 'hyperswarm-rs.node')
// Copy to a new inode: overwriting a loaded .so in place can crash running processes.
fs.rmSync(to, { force: true })
fs.copyFileSync(from, to)
console.log(`hyperswarm-rs: ${from} -> ${to}`)
