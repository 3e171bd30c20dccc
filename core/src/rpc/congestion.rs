//! dht-rpc's request congestion window: a ring of four 750 ms slots.

/// Requests allowed in the current slot.
pub const DEFAULT_MAX_WINDOW: u32 = 80;

/// Counts requests sent per 750 ms slot; full at `max` in the current slot or `2 * max`
/// across the ring.
#[derive(Debug, Clone)]
pub struct CongestionWindow {
    slots: [u32; 4],
    current: usize,
    total: u32,
    max: u32,
}

impl CongestionWindow {
    /// A window allowing `max` sends per slot.
    pub fn new(max: u32) -> Self {
        CongestionWindow {
            slots: [0; 4],
            current: 0,
            total: 0,
            max,
        }
    }

    /// Whether new (unforced) requests must wait.
    pub fn is_full(&self) -> bool {
        self.total >= 2 * self.max || self.slots[self.current] >= self.max
    }

    /// A request went out.
    pub fn on_send(&mut self) {
        self.total += 1;
        self.slots[self.current] += 1;
    }

    /// A request finished (answered, timed out or cancelled).
    pub fn on_done(&mut self) {
        if self.slots[self.current] > 0 {
            self.slots[self.current] -= 1;
            self.total -= 1;
        }
    }

    /// Advances the ring; called every 750 ms.
    pub fn on_drain_tick(&mut self) {
        self.current = (self.current + 1) & 3;
        self.total -= self.slots[self.current];
        self.slots[self.current] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_per_slot_and_drains() {
        let mut w = CongestionWindow::new(2);
        w.on_send();
        assert!(!w.is_full());
        w.on_send();
        assert!(w.is_full());
        w.on_drain_tick();
        assert!(!w.is_full());
        w.on_send();
        w.on_send();
        assert!(w.is_full(), "total reached 2*max");
        for _ in 0..3 {
            w.on_drain_tick();
        }
        assert!(!w.is_full());
    }
}
