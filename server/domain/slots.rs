//! [`Slots`]: a bound on how many of something run at once, per key (a tenant) and in all. A
//! caller takes a [`Slot`] or is refused at once (never queued), and the slot is freed when
//! dropped. Used for usage exports and for audio decodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Concurrent holders, counted per key and in all.
#[derive(Debug, Default)]
pub struct Slots {
    per_key: usize,
    total: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// Which bound refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotsFull {
    /// The key holds `per_key` slots already.
    Key,
    /// `total` slots are held in all.
    Total,
}

impl Slots {
    pub fn new(per_key: usize, total: usize) -> Slots {
        Slots { per_key, total, held: Mutex::default() }
    }

    /// A slot for `key`, if both bounds leave room. The key's bound is checked first.
    pub fn try_take(self: &Arc<Self>, key: &str) -> Result<Slot, SlotsFull> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mine = held.get(key).copied().unwrap_or(0);
        if mine >= self.per_key {
            return Err(SlotsFull::Key);
        }
        if held.values().sum::<usize>() >= self.total {
            return Err(SlotsFull::Total);
        }
        held.insert(key.to_owned(), mine + 1);
        Ok(Slot { slots: self.clone(), key: key.to_owned() })
    }

    /// Slots held now by `key`.
    pub fn held_by(&self, key: &str) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).get(key).copied().unwrap_or(0)
    }

    /// The bound per key.
    pub fn per_key(&self) -> usize {
        self.per_key
    }

    fn release(&self, key: &str) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                held.remove(key);
            }
        }
    }
}

/// A held slot; it can move into the task doing the work, and is freed when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_key_and_in_all_and_freed_on_drop() {
        let slots = Arc::new(Slots::new(2, 3));
        let a1 = slots.try_take("a").unwrap();
        let a2 = slots.try_take("a").unwrap();
        assert_eq!(slots.try_take("a").unwrap_err(), SlotsFull::Key);
        let b1 = slots.try_take("b").unwrap();
        assert_eq!(slots.try_take("c").unwrap_err(), SlotsFull::Total);
        assert_eq!(slots.held_by("a"), 2);
        drop(a1);
        assert_eq!(slots.held_by("a"), 1);
        let c1 = slots.try_take("c").unwrap();
        drop((a2, b1, c1));
        assert_eq!(slots.held_by("a") + slots.held_by("b") + slots.held_by("c"), 0);
        assert!(slots.held.lock().unwrap().is_empty(), "no key is kept once its slots are freed");
    }
}
