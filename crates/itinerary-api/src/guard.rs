//! Failed attempts by client address: a wrong or expired bearer token, a feed URL that opens
//! nothing. Tokens have 256 bits, so guessing cannot succeed, but unlimited guessing (~900/s
//! before this) costs a database lookup each and fills logs; a client that fails more than a
//! burst gets 429 with Retry-After, before any lookup, until its allowance refills. Clients that
//! do not fail are never counted, so calendar apps polling their feed are not slowed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The allowance of failures per client address, and who has spent it.
#[derive(Debug)]
pub struct FailedAttempts {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    failures: AtomicU64,
}

impl FailedAttempts {
    /// `burst` failures at once, then one per `refill`.
    pub fn new(burst: u32, refill: Duration) -> FailedAttempts {
        let quota = Quota::with_period(refill.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        FailedAttempts { limiter: RateLimiter::dashmap(quota), blocked: Mutex::default(), failures: AtomicU64::new(0) }
    }

    /// How long the client must wait, if it spent its allowance.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().ok()?;
        let until = *blocked.get(&client)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            blocked.remove(&client);
            return None;
        }
        Some(left)
    }

    /// Counts a failure of the client; past the allowance, blocks it until one more is allowed.
    pub fn failed(&self, client: IpAddr) {
        if let Err(not_until) = self.limiter.check_key(&client) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if let Ok(mut blocked) = self.blocked.lock() {
                blocked.insert(client, Instant::now() + wait);
            }
            tracing::warn!(%client, wait_ms = wait.as_millis() as u64, "too many failed attempts from one client; refused until then");
        }
        // Forget clients that have not failed lately, so the maps stay small.
        if self.failures.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.limiter.retain_recent();
            if let Ok(mut blocked) = self.blocked.lock() {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
            }
        }
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }

    #[test]
    fn a_client_is_blocked_after_its_burst_and_others_are_not() {
        let f = FailedAttempts::new(3, Duration::from_secs(60));
        let (guesser, other): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        for _ in 0..3 {
            assert_eq!(f.blocked(guesser), None);
            f.failed(guesser);
        }
        assert_eq!(f.blocked(guesser), None, "three failures are the burst");
        f.failed(guesser);
        let wait = f.blocked(guesser).unwrap_or_default();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60), "{wait:?}");
        assert_eq!(f.blocked(other), None);
    }
}
