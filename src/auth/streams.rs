//! Open event streams per caller, for the per-user stream quota: a slot is taken when a
//! stream opens and given back when its response is dropped (closed by either side).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts open streams per caller `sub` in this process.
#[derive(Clone, Default)]
pub struct StreamCounter(Arc<Mutex<HashMap<String, u64>>>);

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    counter: StreamCounter,
    sub: String,
}

impl StreamCounter {
    /// Takes a slot for `sub` unless it already holds `max`.
    pub fn acquire(&self, sub: &str, max: u64) -> Option<StreamSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(sub.to_owned()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            counter: self.clone(),
            sub: sub.to_owned(),
        })
    }

    /// Streams `sub` holds open now.
    pub fn open(&self, sub: &str) -> u64 {
        let open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        open.get(sub).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.counter.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.sub) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.sub);
            }
        }
    }
}
