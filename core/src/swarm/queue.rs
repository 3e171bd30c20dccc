//! The dial queue: highest priority first, random order among equals (JS's
//! shuffled-priority-queue), so every peer of a topic gets its turn.

use rand::Rng;

use super::peer::Priority;

#[derive(Debug, Default)]
pub(crate) struct ShuffledQueue {
    levels: [Vec<[u8; 32]>; 5],
}

impl ShuffledQueue {
    pub fn add(&mut self, key: [u8; 32], priority: Priority) {
        self.levels[priority as usize].push(key);
    }

    pub fn shift(&mut self, rng: &mut impl Rng) -> Option<[u8; 32]> {
        let level = self.levels.iter_mut().rev().find(|l| !l.is_empty())?;
        let i = rng.gen_range(0..level.len());
        Some(level.swap_remove(i))
    }

    pub fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the queue, returning what was in it.
    pub fn drain(&mut self) -> Vec<[u8; 32]> {
        self.levels.iter_mut().flat_map(std::mem::take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn highest_priority_first_then_all_of_a_level() {
        let mut q = ShuffledQueue::default();
        let mut rng = StdRng::seed_from_u64(7);
        q.add([1; 32], Priority::Normal);
        q.add([2; 32], Priority::VeryHigh);
        q.add([3; 32], Priority::Normal);
        q.add([4; 32], Priority::VeryLow);
        assert_eq!(q.len(), 4);
        assert_eq!(q.shift(&mut rng), Some([2; 32]));
        let mut mid = [q.shift(&mut rng).unwrap(), q.shift(&mut rng).unwrap()];
        mid.sort();
        assert_eq!(mid, [[1; 32], [3; 32]]);
        assert_eq!(q.shift(&mut rng), Some([4; 32]));
        assert_eq!(q.shift(&mut rng), None);
    }

    #[test]
    fn equals_come_out_in_varying_order() {
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..32 {
            let mut q = ShuffledQueue::default();
            let mut rng = StdRng::seed_from_u64(seed);
            for k in 0..4u8 {
                q.add([k; 32], Priority::Normal);
            }
            firsts.insert(q.shift(&mut rng).unwrap()[0]);
        }
        assert!(firsts.len() > 1, "shuffle never varied: {firsts:?}");
    }
}
