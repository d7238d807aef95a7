//! Per-caller rate limit on writes: a generic cell rate algorithm (GCRA) per caller `sub`,
//! `rate` writes per second sustained with bursts of `burst`, kept in memory per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Callers remembered before idle ones are forgotten.
const CLEANUP_THRESHOLD: usize = 10_000;

/// The write limiter of one process.
pub struct WriteLimiter {
    /// Time one write "costs"; `None` = no limit.
    interval: Option<Duration>,
    /// How far ahead of now a caller's budget may be spent (burst × interval).
    tolerance: Duration,
    /// Per caller: the theoretical arrival time of its next write.
    next: Mutex<HashMap<String, Instant>>,
}

impl WriteLimiter {
    /// `rate` writes per second (0 = unlimited) with bursts of up to `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        let interval = (rate > 0).then(|| Duration::from_secs(1) / rate);
        Self {
            interval,
            tolerance: interval.unwrap_or_default() * burst.max(1),
            next: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one write by `caller`, or says how long until one would be admitted.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the map is still
        // usable, and refusing every write for it would be worse.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if next.len() >= CLEANUP_THRESHOLD {
            next.retain(|_, at| *at > now);
        }
        let at = next.get(caller).copied().unwrap_or(now).max(now);
        let after = at + interval;
        let ahead = after - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        next.insert(caller.to_owned(), after);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_refused_with_a_wait() {
        let limiter = WriteLimiter::new(20, 100);
        for _ in 0..100 {
            assert!(limiter.check("alice").is_ok());
        }
        let wait = limiter.check("alice").err();
        assert!(
            wait.is_some_and(|w| w <= Duration::from_millis(50)),
            "{wait:?}"
        );
        assert!(limiter.check("bob").is_ok(), "callers are limited apart");
        let unlimited = WriteLimiter::new(0, 1);
        for _ in 0..1000 {
            assert!(unlimited.check("alice").is_ok());
        }
    }
}
