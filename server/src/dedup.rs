//! Idempotency keys: a retried request (same key) is stored once.
//!
//! A request with a key gets a marker on its first stored event
//! (`_ingest: {key, n, at}`, prepare.rs), so the keys live in the log
//! itself and are durable exactly when the events are. In memory the
//! server keeps, per key, what it knows:
//!
//! - `Done`: the request's receipt completed: every event is durable; a
//!   retry is answered with the same LSNs and stores nothing.
//! - `Seen`: markers of the key were found in the log (after a restart,
//!   or a write that failed part-way) but how much of the request is
//!   stored is only known by comparing: a retry compares the stored events
//!   after each marker with its own and appends only what is missing.
//! - `InFlight`: an append with this key is running; a retry waits for it.
//!
//! The window: keys whose request ended within the newest `window` events
//! of the log (default 2,000,000), and at most `max_keys` keys; on start
//! the server scans those newest events for markers, so a restart
//! forgets nothing inside the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::watch;

/// What a completed request was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub events: u64,
}

/// Markers of a key found in the log: (LSN of the marked event, index in
/// the request of that event), and the request's event count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub markers: Vec<(u64, u64)>,
    pub n: u64,
    /// Markers may also lie from this LSN on (a failed write): scan first.
    pub scan_from: Option<u64>,
}

enum Entry {
    InFlight(watch::Receiver<()>),
    Done(Done),
    Seen(Seen),
}

/// What a request with a key should do.
pub enum Claim {
    /// Nothing known: append it all. The caller owns the key now.
    New(Owner),
    /// Stored before: answer this, store nothing.
    Done(Done),
    /// Markers were seen: find what is stored, append the rest. The
    /// caller owns the key now.
    Check(Owner, Seen),
    /// Another request with the key is running: wait, then claim again.
    Wait(watch::Receiver<()>),
    /// The key was used for a request with another number of events.
    Mismatch { stored_n: u64 },
}

/// Owning a key while its request runs; dropping it without settling
/// wakes the waiters (they claim again).
pub struct Owner {
    _tx: watch::Sender<()>,
}

struct Inner {
    /// Each key with the LSN it was last queued for eviction under.
    map: HashMap<String, (Entry, u64)>,
    /// Keys by the last LSN of their request, oldest first (eviction).
    order: VecDeque<(u64, String)>,
}

pub struct Dedup {
    inner: Mutex<Inner>,
    window: u64,
    max_keys: usize,
}

impl Dedup {
    pub fn new(window: u64, max_keys: usize) -> Dedup {
        Dedup {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            window,
            max_keys: max_keys.max(1),
        }
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn claim(&self, key: &str, n: u64) -> Claim {
        let mut g = self.lock();
        let own = |g: &mut Inner| {
            let (tx, rx) = watch::channel(());
            let at = g.map.get(key).map_or(0, |e| e.1);
            g.map.insert(key.to_string(), (Entry::InFlight(rx), at));
            Owner { _tx: tx }
        };
        match g.map.get(key).map(|e| &e.0) {
            None => Claim::New(own(&mut g)),
            Some(Entry::InFlight(rx)) => Claim::Wait(rx.clone()),
            Some(Entry::Done(d)) if d.events != n => Claim::Mismatch { stored_n: d.events },
            Some(Entry::Done(d)) => Claim::Done(*d),
            Some(Entry::Seen(s)) if s.n != n && s.scan_from.is_none() => {
                Claim::Mismatch { stored_n: s.n }
            }
            Some(Entry::Seen(s)) => {
                let s = s.clone();
                Claim::Check(own(&mut g), s)
            }
        }
    }

    /// The request is stored whole.
    pub fn complete(&self, key: &str, done: Done, owner: Owner) {
        let mut g = self.lock();
        g.map
            .insert(key.to_string(), (Entry::Done(done), done.last_lsn));
        g.order.push_back((done.last_lsn, key.to_string()));
        drop(g);
        drop(owner);
    }

    /// Nothing was appended (the request was refused): back to what was
    /// known before.
    pub fn release(&self, key: &str, before: Option<Seen>, owner: Owner) {
        let mut g = self.lock();
        match before {
            Some(s) => {
                let at = g.map.get(key).map_or(0, |e| e.1);
                g.map.insert(key.to_string(), (Entry::Seen(s), at));
            }
            None => {
                g.map.remove(key);
            }
        }
        drop(g);
        drop(owner);
    }

    /// The append failed after it was handed to the log: part of it may
    /// be stored, from `from_lsn` on.
    pub fn failed(&self, key: &str, mut before: Seen, n: u64, from_lsn: u64, owner: Owner) {
        before.n = n;
        before.scan_from = Some(before.scan_from.map_or(from_lsn, |f| f.min(from_lsn)));
        let mut g = self.lock();
        g.map
            .insert(key.to_string(), (Entry::Seen(before), from_lsn));
        g.order.push_back((from_lsn, key.to_string()));
        drop(g);
        drop(owner);
    }

    /// A marker found by the start-up scan.
    pub fn seen(&self, key: &str, lsn: u64, at: u64, n: u64) {
        let mut g = self.lock();
        let e = g
            .map
            .entry(key.to_string())
            .or_insert_with(|| (Entry::Seen(Seen::default()), lsn));
        e.1 = lsn;
        if let Entry::Seen(s) = &mut e.0 {
            s.n = n;
            s.markers.push((lsn, at));
        }
        g.order.push_back((lsn, key.to_string()));
    }

    /// Forget keys that left the window (or over the count).
    pub fn evict(&self, head_lsn: u64) {
        let floor = head_lsn.saturating_sub(self.window);
        let mut g = self.lock();
        while let Some((lsn, _)) = g.order.front() {
            if *lsn >= floor && g.order.len() <= self.max_keys {
                break;
            }
            let Some((lsn, key)) = g.order.pop_front() else {
                break;
            };
            // Only if this is the key's newest record (a key is queued
            // again when it fails, then completes) and no request runs.
            let current = matches!(g.map.get(&key), Some((e, at)) if *at == lsn && !matches!(e, Entry::InFlight(_)));
            if current {
                g.map.remove(&key);
            }
        }
    }
}
