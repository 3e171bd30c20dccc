//! The receive side: reassembly of out-of-order packets, the advertised window, and the
//! ACKs (with SACK blocks) we owe the peer.

use super::*;

/// An out-of-order packet waiting for the gap below it.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) flags: u8,
    pub(super) payload: Vec<u8>,
}

impl Stream {
    pub(super) fn window(&self) -> u32 {
        self.config
            .recv_buffer
            .saturating_sub(self.recv_buf.len())
            .min(u32::MAX as usize) as u32
    }

    pub(super) fn receive(&mut self, seq: u64, flags: u8, payload: &[u8]) {
        if self.ooo.contains_key(&seq) {
            self.stats.duplicates += 1;
            return;
        }
        if seq - self.ack >= MAX_OOO_DISTANCE
            || self.remote_end.is_some_and(|e| seq > e)
            || (flags & END != 0 && self.remote_end.is_some())
        {
            self.stats.dropped += 1;
            return;
        }
        if seq == self.ack {
            if self.recv_buf.len() + payload.len() > self.config.recv_buffer {
                // The peer overran the window we advertised; it will retransmit.
                self.stats.dropped += 1;
                return;
            }
            self.deliver(flags, payload);
        } else {
            if self.ooo.len() >= MAX_OOO_PACKETS
                || self.ooo_bytes + payload.len() > self.config.recv_buffer
            {
                self.stats.dropped += 1;
                return;
            }
            self.ooo_bytes += payload.len();
            self.ooo.insert(
                seq,
                Pending {
                    flags,
                    payload: payload.to_vec(),
                },
            );
            if flags & END != 0 {
                self.remote_end = Some(seq);
            }
        }
    }

    pub(super) fn deliver(&mut self, flags: u8, payload: &[u8]) {
        if flags & DATA != 0 && !payload.is_empty() {
            if self.recv_buf.is_empty() {
                self.push_event(Event::Readable);
            }
            self.recv_buf.extend(payload);
        }
        if flags & END != 0 {
            self.remote_end = Some(self.ack);
        }
        self.ack += 1;
    }

    pub(super) fn drain_in_order(&mut self) {
        while let Some(p) = self.ooo.remove(&self.ack) {
            self.ooo_bytes -= p.payload.len();
            self.deliver(p.flags, &p.payload);
        }
        if !self.remote_ended && self.remote_end.is_some_and(|e| e < self.ack) {
            self.remote_ended = true;
            self.push_event(Event::RemoteEnded);
        }
    }

    pub(super) fn owe_ack(&mut self) {
        self.ack_owed = true;
    }

    pub(super) fn sack_blocks(&self) -> Vec<SackBlock> {
        let mut blocks: Vec<SackBlock> = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        for &seq in self.ooo.keys() {
            match run {
                Some((s, e)) if e == seq => run = Some((s, e + 1)),
                Some((s, e)) => {
                    blocks.push(SackBlock {
                        start: s as u32,
                        end: e as u32,
                    });
                    if blocks.len() == MAX_SACKS {
                        return blocks;
                    }
                    run = Some((seq, seq + 1));
                }
                None => run = Some((seq, seq + 1)),
            }
        }
        if let Some((s, e)) = run {
            blocks.push(SackBlock {
                start: s as u32,
                end: e as u32,
            });
        }
        blocks
    }
}
