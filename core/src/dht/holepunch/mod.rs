//! Holepunching (PROTOCOL.md §4.6–4.8): both sides learn their NAT class from a fresh
//! socket, exchange it through a relay in encrypted PEER_HOLEPUNCH payloads, then send 1-byte
//! probes until one gets through; the initiator connects its stream where the first probe
//! came from.

mod client;
mod nat;
mod puncher;
mod server;
mod socket;

pub(crate) use client::holepunch;
pub(crate) use server::{HolepunchRelayed, ServerPunch, ServerPunchSetup};
pub(crate) use socket::{user_request, PunchSocket};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// hyperdht's `randomPunchInterval`: the least time between two random punches of a node.
pub const RANDOM_PUNCH_INTERVAL: Duration = Duration::from_secs(20);

/// A node's record of random punches: hyperdht allows one at a time, and not sooner than
/// [`RANDOM_PUNCH_INTERVAL`] after the last one ended, to stay a good citizen of the NATs
/// and networks in between.
#[derive(Debug, Default)]
pub(crate) struct RandomPunches {
    state: Mutex<(u32, Option<Instant>)>,
}

impl RandomPunches {
    /// Takes the one slot if it is free; the guard gives it back.
    pub(crate) fn try_start(self: &Arc<Self>) -> Option<RandomPunchGuard> {
        let mut s = self.state.lock().expect("punch state poisoned");
        let recent = s.1.is_some_and(|t| t.elapsed() < RANDOM_PUNCH_INTERVAL);
        if s.0 >= 1 || recent {
            return None;
        }
        s.0 += 1;
        Some(RandomPunchGuard {
            owner: self.clone(),
        })
    }
}

/// One running random punch.
#[derive(Debug)]
pub(crate) struct RandomPunchGuard {
    owner: Arc<RandomPunches>,
}

impl Drop for RandomPunchGuard {
    fn drop(&mut self) {
        let mut s = self.owner.state.lock().expect("punch state poisoned");
        s.0 = s.0.saturating_sub(1);
        s.1 = Some(Instant::now());
    }
}

/// The announce relays a server offers for holepunching, as the client picks them: the one
/// that carried the handshake, else the first.
pub(crate) fn pick_relay(
    relays: &[crate::dht::connect_messages::RelayInfo],
    handshake_relay: SocketAddr,
) -> Option<crate::dht::connect_messages::RelayInfo> {
    relays
        .iter()
        .find(|r| r.relay_address == handshake_relay)
        .or(relays.first())
        .cloned()
}
