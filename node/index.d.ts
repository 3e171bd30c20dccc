// Hand-written types for hyperswarm-rs: the `hyperswarm` package's API, backed by Rust.

import { EventEmitter } from 'events'
import { Duplex } from 'stream'

declare namespace Hyperswarm {
  interface KeyPair {
    /** 32 bytes. */
    publicKey: Buffer
    /** 64 bytes: seed, then public key. */
    secretKey: Buffer
  }

  /** `{ host, port }` or `"host:port"`. */
  type BootstrapNode = { host: string, port: number } | string

  interface SwarmOptions {
    keyPair?: KeyPair
    /** 32 bytes; the key pair is derived from it when no keyPair is given. */
    seed?: Uint8Array
    /** Default 64. */
    maxPeers?: number
    maxClientConnections?: number
    maxServerConnections?: number
    /** Dials in flight at once. Default 3. */
    maxParallel?: number
    /** Return true to refuse a peer (incoming and outgoing). `payload` is always null. */
    firewall?: (remotePublicKey: Buffer, payload: null) => boolean
    /** DHT bootstrap nodes; default the public HyperDHT nodes. */
    bootstrap?: BootstrapNode[]
    /** IP address to bind the DHT node to (default all interfaces). */
    host?: string
    /** Preferred UDP port. */
    port?: number
  }

  interface JoinOptions {
    /** Announce this peer under the topic. Default true. */
    server?: boolean
    /** Look the topic up and dial its peers. Default true. */
    client?: boolean
    /** Dial at most this many of the topic's peers per lookup. */
    limit?: number
  }

  interface SwarmStats {
    updates: number
    connects: {
      client: { opened: number, closed: number, attempted: number }
      server: { opened: number, closed: number }
    }
    bannedPeers: number
  }

  /** Errors carry a stable code: ERR_INVALID_TOPIC, ERR_INVALID_KEY, ERR_INVALID_ARGUMENT,
   * ERR_NO_MODE, ERR_DESTROYED, ERR_SESSION_DESTROYED, ERR_CONNECTION_CLOSED, ERR_BIND,
   * ERR_NETWORK, ERR_IO, ERR_INTERNAL. */
  interface HyperswarmError extends Error {
    code: string
  }

  class PeerDiscovery {
    readonly swarm: Hyperswarm
    readonly topic: Buffer
    isServer: boolean
    isClient: boolean
    destroyed: boolean
    /** Resolves once the current announce/lookup round is done; true if it succeeded. */
    flushed (): Promise<boolean>
    /** Runs a round now, switching modes first when given. */
    refresh (opts?: { server?: boolean, client?: boolean }): Promise<boolean>
    /** Ends this session; the topic is left when it was the last one. */
    destroy (): Promise<void>
  }

  class PeerInfo {
    readonly publicKey: Buffer
    relayAddresses: Array<{ host: string, port: number }>
    topics: Buffer[]
    priority: number
    prioritized: boolean
    banned: boolean
    explicit: boolean
    /** Whether our latest connection to it was dialled by us. */
    client: boolean
    readonly server: boolean
    attempts: number
    ban (banned?: boolean): void
  }

  class HyperswarmSocket extends Duplex {
    readonly publicKey: Buffer
    readonly remotePublicKey: Buffer
    /** 64 bytes, the same on both ends. */
    readonly handshakeHash: Buffer
    readonly isInitiator: boolean
  }

  interface Testnet {
    bootstrap: Array<{ host: string, port: number }>
    destroy (): Promise<void>
  }

  /** A HyperDHT testnet of Rust nodes inside this process (default 3 nodes on 127.0.0.1). */
  function createTestnet (size?: number, opts?: { host?: string }): Promise<Testnet>
}

declare class Hyperswarm extends EventEmitter {
  constructor (opts?: Hyperswarm.SwarmOptions)
  static keyPair (seed?: Uint8Array): Hyperswarm.KeyPair

  readonly keyPair: Hyperswarm.KeyPair
  readonly connections: Set<Hyperswarm.HyperswarmSocket>
  /** Keyed by hex public key. */
  readonly peers: Map<string, Hyperswarm.PeerInfo>
  readonly explicitPeers: Set<Hyperswarm.PeerInfo>
  readonly connecting: number
  readonly stats: Hyperswarm.SwarmStats
  readonly maxPeers: number
  destroyed: boolean
  suspended: boolean

  /** Throws ERR_INVALID_TOPIC unless topic is 32 bytes; ERR_DESTROYED after destroy(). */
  join (topic: Uint8Array, opts?: Hyperswarm.JoinOptions): Hyperswarm.PeerDiscovery
  leave (topic: Uint8Array): Promise<void>
  status (topic: Uint8Array): Hyperswarm.PeerDiscovery | null
  topics (): IterableIterator<Hyperswarm.PeerDiscovery>
  flush (): Promise<boolean>
  /** Leaves every topic; connections stay. */
  clear (): Promise<Array<PromiseSettledResult<void>>>
  listen (): Promise<void>
  joinPeer (publicKey: Uint8Array): void
  leavePeer (publicKey: Uint8Array): void
  suspend (): Promise<void>
  resume (): Promise<void>
  destroy (): Promise<void>

  on (event: 'connection', listener: (socket: Hyperswarm.HyperswarmSocket, peerInfo: Hyperswarm.PeerInfo) => void): this
  on (event: 'update', listener: () => void): this
  on (event: string | symbol, listener: (...args: any[]) => void): this
  once (event: 'connection', listener: (socket: Hyperswarm.HyperswarmSocket, peerInfo: Hyperswarm.PeerInfo) => void): this
  once (event: 'update', listener: () => void): this
  once (event: string | symbol, listener: (...args: any[]) => void): this
}

export = Hyperswarm
