//! Building the index images of many sealed segments at once.
//!
//! An image's build has two halves (`index::scan_image`, then
//! `index::Scanned::finish`): the scan reads, checks and indexes one
//! segment's events and needs nothing else; the finish looks runs up in
//! the older images, so the finishes go one at a time, in log order. Here
//! the scans run on worker threads, up to one per core, ahead of the
//! caller's thread, which takes their results in order and finishes them.
//! Workers start only as the window moves, so at most `threads` scanned
//! segments wait in memory at once.

use std::collections::VecDeque;
use std::thread::ScopedJoinHandle;

use crate::error::{Error, Result};

/// Scan threads to use: one per core the process may run on.
pub(crate) fn scan_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Call `finish(i, scan(&items[i]))` for every item in order, with the
/// scans of up to `threads` items running on worker threads meanwhile.
/// Stops at the first error `finish` returns (the scans under way are
/// waited for and dropped). A scan that panics reaches `finish` as an
/// error; so does one that could not get a thread (it is then run here).
/// With `threads` ≤ 1 or a single item, everything runs on this thread.
pub(crate) fn scan_ahead<T, R>(
    items: &[T],
    threads: usize,
    scan: impl Fn(&T) -> Result<R> + Sync,
    mut finish: impl FnMut(usize, Result<R>) -> Result<()>,
) -> Result<()>
where
    T: Sync,
    R: Send,
{
    if threads <= 1 || items.len() <= 1 {
        for (i, item) in items.iter().enumerate() {
            finish(i, scan(item))?;
        }
        return Ok(());
    }
    std::thread::scope(|s| {
        let scan = &scan;
        let mut window: VecDeque<(usize, Started<'_, R>)> = VecDeque::new();
        let mut next = 0;
        let fill = |window: &mut VecDeque<_>, next: &mut usize| {
            while window.len() < threads && *next < items.len() {
                let item = &items[*next];
                let started = std::thread::Builder::new()
                    .name("auditlog-index-scan".into())
                    .spawn_scoped(s, move || scan(item))
                    .map_or(Started::Here, Started::Thread);
                window.push_back((*next, started));
                *next += 1;
            }
        };
        fill(&mut window, &mut next);
        while let Some((i, started)) = window.pop_front() {
            let r = match started {
                Started::Thread(h) => h.join().unwrap_or_else(|_| Err(panicked())),
                Started::Here => scan(&items[i]),
            };
            // Keep `threads` scans going while this one is finished.
            fill(&mut window, &mut next);
            if let Err(e) = finish(i, r) {
                for (_, started) in window.drain(..) {
                    if let Started::Thread(h) = started {
                        let _ = h.join();
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    })
}

/// A scan in the window: on its own thread, or to be run on the caller's
/// (the thread could not be started).
enum Started<'scope, R> {
    Thread(ScopedJoinHandle<'scope, Result<R>>),
    Here,
}

fn panicked() -> Error {
    Error::io(
        "building an index",
        std::io::Error::other("the scan thread panicked"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn run(items: &[u32], threads: usize) -> (Result<()>, Vec<(usize, u64)>) {
        let mut got = Vec::new();
        let r = scan_ahead(
            items,
            threads,
            |&x| {
                if x == 13 {
                    return Err(Error::InvalidArgument(format!("item {x} is bad")));
                }
                if x == 99 {
                    panic!("scan of {x} panicked");
                }
                Ok(u64::from(x) * 2)
            },
            |i, r| {
                got.push((i, r?));
                Ok(())
            },
        );
        (r, got)
    }

    #[test]
    fn results_come_in_order_whatever_the_threads() {
        let items: Vec<u32> = (100..120).collect();
        for threads in [1, 2, 3, 8, 64] {
            let (r, got) = run(&items, threads);
            assert!(r.is_ok());
            let want: Vec<(usize, u64)> = (0..20).map(|i| (i, (100 + i as u64) * 2)).collect();
            assert_eq!(got, want, "threads {threads}");
        }
    }

    #[test]
    fn a_failed_scan_is_reported_and_stops_the_rest() {
        let items = [1, 2, 13, 4, 5];
        for threads in [1, 2, 4] {
            let (r, got) = run(&items, threads);
            let err = r.expect_err("the bad item fails").to_string();
            assert!(err.contains("item 13 is bad"), "{err}");
            assert_eq!(got, [(0, 2), (1, 4)], "threads {threads}");
        }
    }

    #[test]
    fn a_panicking_scan_is_an_error_not_a_panic() {
        let items = [1, 99, 3];
        let (r, got) = run(&items, 2);
        let err = r.expect_err("the panic is reported").to_string();
        assert!(err.contains("panicked"), "{err}");
        assert_eq!(got, [(0, 2)]);
    }

    #[test]
    fn at_most_threads_scans_wait_at_once() {
        let items: Vec<u32> = (0..32).collect();
        let done = AtomicUsize::new(0);
        let mut finished = 0usize;
        let r = scan_ahead(
            &items,
            3,
            |_| Ok(done.fetch_add(1, Ordering::SeqCst)),
            |_, r| {
                r?;
                finished += 1;
                // Scans started never run more than the window ahead.
                assert!(done.load(Ordering::SeqCst) <= finished + 3);
                Ok(())
            },
        );
        assert!(r.is_ok());
        assert_eq!(finished, 32);
    }
}
