//! Retry policies: capped exponential backoff with jitter, as a pure function.
//!
//! The same function serves the in-process executor and (later) the durable queue's `run_at`.

use std::time::Duration;

use serde::Serialize;

/// How a failed attempt is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The delay before the first retry, before jitter.
    #[serde(rename = "initial_delay_ms", serialize_with = "millis")]
    pub initial_delay: Duration,
    /// The cap on any one delay.
    #[serde(rename = "max_delay_ms", serialize_with = "millis")]
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// No retries: a failing asset fails its step at once unless it asks for more.
    fn default() -> Self {
        RetryPolicy { max_attempts: 1, initial_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// Up to `max_attempts` attempts, the delay doubling from `initial_delay` up to 60 s.
    pub fn exponential(max_attempts: u32, initial_delay: Duration) -> RetryPolicy {
        RetryPolicy { max_attempts: max_attempts.max(1), initial_delay, ..RetryPolicy::default() }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` (1-based) failed.
    ///
    /// `unit` is a random number in `[0, 1)`: "equal jitter" spreads the delay over
    /// `[ceiling / 2, ceiling)` where `ceiling = min(max_delay, initial_delay * 2^(attempt-1))`,
    /// so retries from many workers do not arrive together but never retry at once.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self.initial_delay.saturating_mul(1u32 << exp).min(self.max_delay);
        let unit = unit.clamp(0.0, 1.0);
        ceiling.div_f64(2.0) + ceiling.div_f64(2.0).mul_f64(unit)
    }

    /// [`RetryPolicy::backoff`] with `unit` drawn from fastrand's thread-local generator, which
    /// is seeded at random in every thread of every process: two workers retrying the same
    /// outage wait different delays instead of arriving in lockstep.
    pub fn jittered_backoff(&self, attempt: u32) -> Duration {
        self.backoff(attempt, fastrand::f64())
    }

    /// Whether attempt `attempt` (1-based) may be followed by another.
    pub fn should_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

/// A duration as whole milliseconds, the unit in every JSON field named `*_ms`.
fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn backoff_grows_within_bounds(attempt in 1u32..40, unit in 0.0f64..1.0) {
            let policy = RetryPolicy::exponential(50, Duration::from_millis(100));
            let d = policy.backoff(attempt, unit);
            let ceiling = Duration::from_millis(100).saturating_mul(1 << (attempt - 1).min(30)).min(policy.max_delay);
            prop_assert!(d >= ceiling / 2 && d <= ceiling);
        }
    }

    /// Issue 14 §2: two independent workers (threads here, each seeded as a process is) draw
    /// different delays for the same attempts.
    #[test]
    fn two_workers_retry_delays_differ() {
        let delays = || {
            std::thread::spawn(|| (1..=8).map(|a| RetryPolicy::default().jittered_backoff(a)).collect::<Vec<_>>())
                .join()
                .unwrap()
        };
        let (a, b) = (delays(), delays());
        assert_ne!(a, b, "two workers retried in lockstep: {a:?}");
    }

    #[test]
    fn attempts_stop_at_the_limit() {
        let policy = RetryPolicy::exponential(3, Duration::from_millis(10));
        assert!(policy.should_retry(1) && policy.should_retry(2) && !policy.should_retry(3));
        assert!(!RetryPolicy::default().should_retry(1));
    }
}
