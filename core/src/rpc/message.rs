//! The dht-rpc datagram codec: requests (`0x03`) and responses (`0x13`).

use std::net::SocketAddr;

use super::id::NodeId;
use crate::encoding::{flag, read_if, DecodeError, EncodeError, Reader, Writer};

/// First byte of a request datagram: type 0 in the high nibble, version 3 in the low one.
pub const REQUEST_BYTE: u8 = 0x03;
/// First byte of a response datagram.
pub const RESPONSE_BYTE: u8 = 0x13;

/// A dht-rpc request as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Transaction id the response must echo.
    pub tid: u16,
    /// The address the sender sent to, as the sender sees it.
    pub to: SocketAddr,
    /// Sender's node id (persistent nodes on their server socket only).
    pub id: Option<NodeId>,
    /// Round-trip token previously handed out by the receiver.
    pub token: Option<[u8; 32]>,
    /// Whether `command` is a dht-rpc command or one of the layer above.
    pub internal: bool,
    /// Command number.
    pub command: u64,
    /// Key being looked up or stored.
    pub target: Option<NodeId>,
    /// Command payload.
    pub value: Option<Vec<u8>>,
}

/// A dht-rpc response as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Transaction id of the request this answers.
    pub tid: u16,
    /// The requester's address as the responder observed it.
    pub to: Option<SocketAddr>,
    /// Responder's node id.
    pub id: Option<NodeId>,
    /// Fresh round-trip token for the requester.
    pub token: Option<[u8; 32]>,
    /// Nodes from the responder's table closest to the request's target.
    pub closer_nodes: Vec<SocketAddr>,
    /// Error code; 0 is success.
    pub error: u64,
    /// Result payload.
    pub value: Option<Vec<u8>>,
}

/// Either kind of datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

const FLAG_ID: u64 = 1;
const FLAG_TOKEN: u64 = 2;
const FLAG_INTERNAL: u64 = 4;
const FLAG_CLOSER: u64 = 4;
const FLAG_TARGET: u64 = 8;
const FLAG_ERROR: u64 = 8;
const FLAG_VALUE: u64 = 16;

impl Request {
    /// The datagram bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w =
            Writer::with_capacity(10 + 32 * 3 + self.value.as_ref().map_or(0, |v| v.len() + 5));
        let flags = flag(self.id.is_some(), FLAG_ID)
            | flag(self.token.is_some(), FLAG_TOKEN)
            | flag(self.internal, FLAG_INTERNAL)
            | flag(self.target.is_some(), FLAG_TARGET)
            | flag(self.value.is_some(), FLAG_VALUE);
        w.u8(REQUEST_BYTE).uint(flags).u16(self.tid);
        w.ipv4_address(&self.to)?;
        if let Some(id) = &self.id {
            w.raw(&id.0);
        }
        if let Some(t) = &self.token {
            w.raw(t);
        }
        w.uint(self.command);
        if let Some(t) = &self.target {
            w.raw(&t.0);
        }
        if let Some(v) = &self.value {
            w.buffer(v);
        }
        Ok(w.into_bytes())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let tid = r.u16()?;
        let to = r.ipv4_address()?;
        let id = read_if(flags & FLAG_ID != 0, || r.array().map(NodeId))?;
        let token = read_if(flags & FLAG_TOKEN != 0, || r.array())?;
        let internal = flags & FLAG_INTERNAL != 0;
        let command = r.uint()?;
        let target = read_if(flags & FLAG_TARGET != 0, || r.array().map(NodeId))?;
        let value = read_if(flags & FLAG_VALUE != 0, || r.buffer().map(<[u8]>::to_vec))?;
        Ok(Request {
            tid,
            to,
            id,
            token,
            internal,
            command,
            target,
            value,
        })
    }
}

impl Response {
    /// The datagram bytes. `to` must be set (replies always tell the requester its address).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(
            10 + 64 + 6 * self.closer_nodes.len() + self.value.as_ref().map_or(0, |v| v.len() + 5),
        );
        let flags = flag(self.id.is_some(), FLAG_ID)
            | flag(self.token.is_some(), FLAG_TOKEN)
            | flag(!self.closer_nodes.is_empty(), FLAG_CLOSER)
            | flag(self.error > 0, FLAG_ERROR)
            | flag(self.value.is_some(), FLAG_VALUE);
        w.u8(RESPONSE_BYTE).uint(flags).u16(self.tid);
        w.ipv4_address(&self.to.ok_or(EncodeError::NotIpv4)?)?;
        if let Some(id) = &self.id {
            w.raw(&id.0);
        }
        if let Some(t) = &self.token {
            w.raw(t);
        }
        if !self.closer_nodes.is_empty() {
            w.ipv4_array(&self.closer_nodes);
        }
        if self.error > 0 {
            w.uint(self.error);
        }
        if let Some(v) = &self.value {
            w.buffer(v);
        }
        Ok(w.into_bytes())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let tid = r.u16()?;
        let to = Some(r.ipv4_address()?);
        let id = read_if(flags & FLAG_ID != 0, || r.array().map(NodeId))?;
        let token = read_if(flags & FLAG_TOKEN != 0, || r.array())?;
        let closer_nodes =
            read_if(flags & FLAG_CLOSER != 0, || r.ipv4_array())?.unwrap_or_default();
        let error = read_if(flags & FLAG_ERROR != 0, || r.uint())?.unwrap_or(0);
        let value = read_if(flags & FLAG_VALUE != 0, || r.buffer().map(<[u8]>::to_vec))?;
        Ok(Response {
            tid,
            to,
            id,
            token,
            closer_nodes,
            error,
            value,
        })
    }
}

impl Message {
    /// Decodes one datagram. Trailing bytes are ignored, as in JS.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        match r.u8()? {
            REQUEST_BYTE => Request::decode_body(&mut r).map(Message::Request),
            RESPONSE_BYTE => Response::decode_body(&mut r).map(Message::Response),
            _ => Err(DecodeError::Invalid),
        }
    }
}
