//! Bounded retries with jittered exponential backoff, for version conflicts and throttling
//! inside one invocation. Whatever is still failing after the last attempt fails the message,
//! and SQS redelivers it later (safe: chunks already written are skipped by their dedupe
//! markers).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (`attempt` counts from 1): "full jitter",
    /// uniformly random up to `base * 2^(attempt-1)`, capped, so that concurrent invocations
    /// that collided do not collide again in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Half fixed, half random: never zero, so a retry always yields to the other writer.
        let half = nanos / 2;
        Duration::from_nanos(half + random_u64() % (nanos - half).max(1))
    }

    pub async fn sleep(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

/// A random number from the standard library's per-process random hasher keys (no extra
/// dependency for a jitter that needs no quality).
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let d = p.delay(attempt);
            let ceiling = (p.base_delay * (1 << (attempt - 1))).min(p.max_delay);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
        let samples: std::collections::HashSet<Duration> = (0..20).map(|_| p.delay(5)).collect();
        assert!(samples.len() > 1, "no jitter: {samples:?}");
    }
}
