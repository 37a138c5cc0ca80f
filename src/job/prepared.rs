//! Cards prepared ahead of the printer: each kept until it is produced or cancelled,
//! never prepared twice, and at most [`PREPARED_PER_LINE`] per line in memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::production::PreparedJob;

/// Prepared cards held in memory per printer/encoder pair. Orders beyond this wait,
/// unprepared and still `Received`, until a produced or cancelled card frees room:
/// a prepared card holds decrypted data, key pairs and printed panels (megabytes).
pub const PREPARED_PER_LINE: usize = 8;

#[derive(Default)]
struct Shelf {
    ready: HashMap<String, Arc<PreparedJob>>,
    /// Taken by the preparer and not yet back: no second preparation may start.
    in_hand: HashSet<String>,
}

/// The prepared-card shelf and its preparation count.
#[derive(Default)]
pub struct PreparedCards {
    shelf: Mutex<Shelf>,
    preparations: AtomicU64,
}

impl PreparedCards {
    fn shelf(&self) -> std::sync::MutexGuard<'_, Shelf> {
        self.shelf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the preparation of `op` if it is neither prepared nor being prepared
    /// and the shelf (counting cards in preparation) holds fewer than `capacity`.
    pub fn reserve(&self, op: &str, capacity: usize) -> bool {
        let mut s = self.shelf();
        if s.ready.contains_key(op) || s.in_hand.contains(op) {
            return false;
        }
        if s.ready.len() + s.in_hand.len() >= capacity {
            return false;
        }
        s.in_hand.insert(op.to_string());
        self.preparations.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Puts the prepared card of a reservation on the shelf.
    pub fn put(&self, op: &str, card: PreparedJob) {
        let mut s = self.shelf();
        s.in_hand.remove(op);
        s.ready.insert(op.to_string(), Arc::new(card));
    }

    /// Gives a reservation up (the order was refused).
    pub fn abandon(&self, op: &str) {
        self.shelf().in_hand.remove(op);
    }

    /// Whether the card of `op` is prepared.
    pub fn has(&self, op: &str) -> bool {
        self.shelf().ready.contains_key(op)
    }

    /// The prepared card of `op`, left on the shelf (it goes when produced or cancelled).
    pub fn get(&self, op: &str) -> Option<Arc<PreparedJob>> {
        self.shelf().ready.get(op).cloned()
    }

    /// Drops the prepared card of `op` (produced, cancelled or failed).
    pub fn discard(&self, op: &str) {
        self.shelf().ready.remove(op);
    }

    /// Drops every prepared card whose job is not in `waiting` (cancelled or ended
    /// while it was being prepared), so the shelf never leaks room.
    pub fn keep_only(&self, waiting: &HashSet<&str>) {
        self.shelf()
            .ready
            .retain(|op, _| waiting.contains(op.as_str()));
    }

    /// Whether another card may be prepared within `capacity`.
    pub fn has_room(&self, capacity: usize) -> bool {
        let s = self.shelf();
        s.ready.len() + s.in_hand.len() < capacity
    }

    /// Card preparations started since the agent started (the bench divides it by
    /// cards produced: 1.00 means nothing was prepared twice).
    pub fn preparations(&self) -> u64 {
        self.preparations.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_being_prepared_is_not_reserved_again() {
        let shelf = PreparedCards::default();
        assert!(shelf.reserve("op-1", 4));
        assert!(!shelf.reserve("op-1", 4));
        assert_eq!(shelf.preparations(), 1);
    }

    #[test]
    fn no_preparation_starts_beyond_the_capacity() {
        let shelf = PreparedCards::default();
        assert!(shelf.reserve("op-1", 1));
        assert!(!shelf.reserve("op-2", 1));
        shelf.abandon("op-1");
        assert!(shelf.reserve("op-2", 1));
    }
}
