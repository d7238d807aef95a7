//! Retry delays: exponential backoff with full jitter (a uniformly random delay between zero
//! and `min(cap, base · 2^attempt)`), so retries from many failures spread out instead of
//! arriving in waves.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::time::Duration;

/// The upper bound of the delay after `attempt` failures (1 = after the first failure).
pub fn ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    base.saturating_mul(factor).min(cap)
}

/// A random delay in `[0, ceiling(base, cap, attempt)]`.
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = ceiling(base, cap, attempt);
    // Without randomness, the ceiling is a safe (if less spread) delay.
    random_fraction().map_or(ceiling, |fraction| ceiling.mul_f64(fraction))
}

/// A uniformly random number in `[0, 1]` from the system's secure source, if it answers.
pub fn random_fraction() -> Option<f64> {
    let mut bytes = [0u8; 8];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes) as f64 / u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let base = Duration::from_secs(30);
        let cap = Duration::from_secs(1800);
        let ceilings: Vec<u64> = (1..=8).map(|a| ceiling(base, cap, a).as_secs()).collect();
        assert_eq!(ceilings, [30, 60, 120, 240, 480, 960, 1800, 1800]);
        // Eight attempts (seven waits) stay within about an hour and a quarter at worst.
        assert!(ceilings[..7].iter().sum::<u64>() <= 4500);
        for attempt in 1..=8 {
            let delay = full_jitter(base, cap, attempt);
            assert!(delay <= ceiling(base, cap, attempt));
        }
        assert_eq!(ceiling(base, cap, 1000), cap, "no overflow");
    }
}
