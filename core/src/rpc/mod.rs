//! dht-rpc: the UDP request/response layer and Kademlia routing under HyperDHT.
//!
//! [`RpcNode`] is the sans-IO protocol core: it is fed datagrams and time and emits datagrams,
//! a next timeout and events. [`Node`] drives it with two tokio UDP sockets.

mod congestion;
mod driver;
mod handler;
mod id;
mod message;
mod nat;
mod node;
mod query;
mod table;
mod token;

use std::net::SocketAddr;
use std::time::Duration;

pub use congestion::{CongestionWindow, DEFAULT_MAX_WINDOW};
pub use driver::{resolve_bootstrap, Node, NodeConfig, NodeState, QueryStream};
pub use handler::{CommandHandler, IncomingRequest, ReplyOptions, Responder};
pub use id::NodeId;
pub use message::{Message, Request, Response, REQUEST_BYTE, RESPONSE_BYTE};
pub use nat::NatSampler;
pub use node::{Config, Event, RequestId, RpcNode, Stats, UserRequest};
pub use query::{QueryId, QueryOptions};
pub use table::{Added, RoutingTable, TableNode, K};
pub use token::TokenSecrets;

/// dht-rpc's own command numbers (sent with the internal flag).
pub mod commands {
    /// Liveness check.
    pub const PING: u64 = 0;
    /// "Answer me on this other port": tests whether the server socket is reachable.
    pub const PING_NAT: u64 = 1;
    /// Closest nodes to a target.
    pub const FIND_NODE: u64 = 2;
    /// "This node you told me about seems down."
    pub const DOWN_HINT: u64 = 3;
    /// A ping answered after a requested delay.
    pub const DELAYED_PING: u64 = 4;
}

/// Error codes carried in responses.
pub mod errors {
    /// The receiver does not handle the command.
    pub const UNKNOWN_COMMAND: u64 = 1;
    /// The round-trip token was missing or stale; the reply carries a fresh one.
    pub const INVALID_TOKEN: u64 = 2;
}

/// Which of a node's two UDP sockets a datagram uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketKind {
    /// The random-port socket requests leave from while the node is firewalled.
    Client,
    /// The listening socket; its public address is the node's identity once persistent.
    Server,
}

/// A datagram the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Socket to send from.
    pub socket: SocketKind,
    /// Destination.
    pub dest: SocketAddr,
    /// Bytes.
    pub payload: Vec<u8>,
}

/// A decoded response, with what the node verified about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Address the response came from.
    pub from: SocketAddr,
    /// The responder's id, kept only if it equals hash(`from`).
    pub from_id: Option<NodeId>,
    /// Our address as the responder saw it.
    pub to: Option<SocketAddr>,
    /// Token to present on a follow-up request to this responder.
    pub token: Option<[u8; 32]>,
    /// Nodes near the target from the responder's table.
    pub closer_nodes: Vec<SocketAddr>,
    /// Error code; 0 is success.
    pub error: u64,
    /// Result payload.
    pub value: Option<Vec<u8>>,
    /// Time from the last transmission to the answer.
    pub rtt: Duration,
}

/// Why a request produced no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Every transmission went unanswered.
    #[error("request timed out")]
    Timeout,
    /// The node shut down or the request was cancelled.
    #[error("request destroyed")]
    Destroyed,
    /// Too many requests are queued behind the congestion window.
    #[error("too many requests queued")]
    Overloaded,
    /// The destination cannot be reached by dht-rpc (it is IPv4 only).
    #[error("address {0} is not IPv4")]
    UnsupportedAddress(SocketAddr),
}
