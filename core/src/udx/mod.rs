//! UDX: the reliable, congestion-controlled stream transport over UDP that Hyperswarm
//! connections run on (libudx / udx-native on the JS side).
//!
//! [`packet`] is the wire codec. [`Stream`] is one stream's sans-IO state machine: feed it
//! datagrams with [`Stream::handle_datagram`] and time with [`Stream::handle_timeout`], send
//! what [`Stream::poll_transmit`] returns, wake it at [`Stream::poll_timeout`] and read
//! [`Stream::poll_event`]. A socket driver multiplexes many streams on one UDP socket by
//! routing each datagram with [`packet::is_udx`] and [`packet::stream_id`]; [`socket`] is that
//! driver for tokio.

mod batch;
mod bbr;
mod pacer;
pub mod packet;
mod rack;
mod rate;
mod rtt;
pub mod socket;
mod stream;

pub use packet::{is_udx, stream_id, Header, Packet, PacketError, SackBlock};
pub use socket::{Datagram, StreamWatch, Udx, UdxSocket, UdxStream};
pub use stream::{
    CloseReason, Config, Event, MessageError, Stats, Stream, Transmit, DEFAULT_MAX_PAYLOAD,
    MAX_RTO_TIMEOUTS,
};
