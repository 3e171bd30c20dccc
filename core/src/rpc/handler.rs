//! The seam between dht-rpc and the layer above it: user commands (internal flag clear) are
//! handed to a [`CommandHandler`], which answers through a [`Responder`].

use std::net::SocketAddr;

use super::id::NodeId;
use super::node::RpcNode;
use super::SocketKind;

/// A request for a user command, after token and id checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// Transaction id.
    pub tid: u16,
    /// Source address.
    pub from: SocketAddr,
    /// Sender's id, if it carried one that matches `from`.
    pub from_id: Option<NodeId>,
    /// Our address as the sender sees it.
    pub to: SocketAddr,
    /// A token the sender presented; already verified, `None` if it sent none.
    pub token: Option<[u8; 32]>,
    /// Command number.
    pub command: u64,
    /// Key.
    pub target: Option<NodeId>,
    /// Payload.
    pub value: Option<Vec<u8>>,
    /// Socket the request arrived on; replies leave from it.
    pub socket: SocketKind,
}

/// How a reply is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyOptions {
    /// Attach a fresh round-trip token.
    pub token: bool,
    /// Attach the closest nodes to the request's target.
    pub closer_nodes: bool,
    /// Send somewhere other than the requester.
    pub to: Option<SocketAddr>,
}

impl Default for ReplyOptions {
    fn default() -> Self {
        ReplyOptions {
            token: true,
            closer_nodes: true,
            to: None,
        }
    }
}

/// Answers user commands. Called synchronously from inside the node, so it must not block.
pub trait CommandHandler: Send {
    /// Handles `req`, answering through `out`. Returns `false` if the command is unknown,
    /// in which case the node replies `UNKNOWN_COMMAND`.
    fn on_request(&mut self, req: &IncomingRequest, out: &mut Responder<'_>) -> bool;
}

/// What a [`CommandHandler`] may do while handling a request.
pub struct Responder<'a> {
    pub(crate) node: &'a mut RpcNode,
}

impl Responder<'_> {
    /// Replies with a value.
    pub fn reply(&mut self, req: &IncomingRequest, value: Option<&[u8]>, opts: ReplyOptions) {
        self.node.reply(req, value, opts);
    }

    /// Replies with an error code.
    pub fn error(&mut self, req: &IncomingRequest, code: u64, opts: ReplyOptions) {
        self.node.reply_error(req, code, opts);
    }

    /// Forwards the request with a new value to `to`, keeping its tid, so `to` answers the
    /// original requester directly (hyperdht's handshake and holepunch relaying).
    pub fn relay(&mut self, req: &IncomingRequest, value: Option<&[u8]>, to: SocketAddr) {
        self.node.relay(req, value, to);
    }

    /// The node, for anything else (its id, table, or starting requests).
    pub fn node(&mut self) -> &mut RpcNode {
        self.node
    }
}
