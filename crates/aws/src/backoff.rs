//! Exponential backoff with jitter, the one implementation behind every retry loop: the agent's
//! shipper backing off from an unreachable or throttling SQS, and the functions retrying version
//! conflicts and throttling inside one invocation.
//!
//! The ceiling before retry `n` (counting from 0) is `base * 2^n`, capped at `max`; the jitter
//! then picks the delay below it, so that callers that collided do not collide again in step.

use std::time::Duration;

/// How a delay is drawn below the ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, ceiling)`: spreads callers the most (the shipper, which has nothing
    /// else to do meanwhile).
    Full,
    /// Uniform in `[ceiling / 2, ceiling)`: half fixed, half random, never zero, so a retry
    /// always yields to the other writer.
    Equal,
}

/// A backoff curve: `base` doubling per retry up to `max`, with `jitter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: Jitter,
}

/// More doublings than any sane `max / base` ratio needs; keeps the shift in range.
const MAX_DOUBLINGS: u32 = 31;

impl Backoff {
    /// The delay before retry `retry` (0 for the first retry) has no jitter above this.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << retry.min(MAX_DOUBLINGS))
            .min(self.max)
    }

    /// The (jittered) delay before retry `retry`, counting from 0.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        match self.jitter {
            Jitter::Full => ceiling.mul_f64(fastrand::f64()),
            Jitter::Equal => {
                let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
                if nanos == 0 {
                    return Duration::ZERO;
                }
                let half = nanos / 2;
                Duration::from_nanos(half + fastrand::u64(..(nanos - half).max(1)))
            }
        }
    }
}

/// A retry loop's position on a [`Backoff`] curve: each failure moves it one step up, a
/// success resets it.
#[derive(Clone, Debug)]
pub struct Retries {
    curve: Backoff,
    retry: u32,
}

impl Retries {
    pub fn new(curve: Backoff) -> Self {
        Retries { curve, retry: 0 }
    }

    /// The delay before the next attempt; the one after will be longer (up to the cap).
    #[allow(clippy::should_implement_trait)] // an endless curve, not a sequence to collect
    pub fn next(&mut self) -> Duration {
        let d = self.curve.delay(self.retry);
        self.retry = self.retry.saturating_add(1);
        d
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.retry = 0;
    }
}

/// Bounded retries inside one invocation (version conflicts, throttling), with equal jitter.
/// Whatever still fails after the last attempt fails the message, and SQS redelivers it later.
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
    /// The delay before attempt `attempt + 1` (`attempt` counts from 1): in
    /// `[ceiling / 2, ceiling)` with ceiling `base * 2^(attempt-1)`, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        Backoff {
            base: self.base_delay,
            max: self.max_delay,
            jitter: Jitter::Equal,
        }
        .delay(attempt.saturating_sub(1))
    }
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

    #[test]
    fn full_jitter_stays_below_the_ceiling_and_resets() {
        let curve = Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
            jitter: Jitter::Full,
        };
        assert_eq!(curve.ceiling(0), Duration::from_millis(200));
        assert_eq!(curve.ceiling(3), Duration::from_millis(1_600));
        assert_eq!(curve.ceiling(40), Duration::from_secs(30));
        let mut r = Retries::new(curve);
        for retry in 0..12 {
            assert!(r.next() <= curve.ceiling(retry));
        }
        r.reset();
        assert!(r.next() <= Duration::from_millis(200));
    }
}
