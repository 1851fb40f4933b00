//! Per-client rate (a token bucket of events per second) and the cap on
//! open connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Clients remembered by the rate limiter before idle ones are forgotten.
const MAX_CLIENTS: usize = 10_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Events per second per client; a client is a peer process on the
/// socket (its pid, from SO_PEERCRED) or a peer address over HTTP.
pub struct RateLimiter {
    rate: Option<f64>,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: Option<f64>, burst: f64) -> RateLimiter {
        let burst = match rate {
            Some(r) if burst <= 0.0 => r,
            _ => burst,
        };
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take `n` events for `client`; Err(ms to wait) when over its rate. A
    /// request larger than the burst passes when the bucket is full (and
    /// leaves it in debt), so no request size is refused for ever.
    pub fn take(&self, client: &str, n: u64) -> Result<(), u64> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(client) {
            let full = self.burst;
            map.retain(|_, b| b.tokens + rate * now.duration_since(b.last).as_secs_f64() < full);
        }
        let b = map.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens = (b.tokens + rate * now.duration_since(b.last).as_secs_f64()).min(self.burst);
        b.last = now;
        let need = (n as f64).min(self.burst);
        if b.tokens >= need {
            b.tokens -= n as f64;
            return Ok(());
        }
        let ms = ((need - b.tokens) / rate * 1000.0).ceil() as u64;
        Err(ms.max(1))
    }
}

/// Counts open connections against a cap.
#[derive(Clone)]
pub struct ConnGate {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// Held while a connection is open.
pub struct ConnSlot {
    open: Arc<AtomicUsize>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnGate {
    pub fn new(max: usize) -> ConnGate {
        ConnGate {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A slot, or None when `max` connections are open.
    pub fn enter(&self) -> Option<ConnSlot> {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnSlot {
            open: self.open.clone(),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_over_rate_and_says_how_long() {
        let r = RateLimiter::new(Some(100.0), 0.0);
        assert!(r.take("a", 100).is_ok());
        let wait = r.take("a", 50).unwrap_err();
        assert!((1..=600).contains(&wait), "{wait}");
        // Another client has its own bucket.
        assert!(r.take("b", 10).is_ok());
        // A request over the burst passes on a full bucket.
        assert!(r.take("c", 1000).is_ok());
        assert!(RateLimiter::new(None, 0.0).take("a", u64::MAX).is_ok());
    }

    #[test]
    fn gate_caps_connections() {
        let g = ConnGate::new(2);
        let a = g.enter().unwrap();
        let _b = g.enter().unwrap();
        assert!(g.enter().is_none());
        drop(a);
        assert!(g.enter().is_some());
    }
}
