//! Request buffers used again. A socket request's body is read into a
//! buffer from here; once the writer has copied its frames into the log's
//! block it hands the buffer back (`EncodedBatch::recycle_frames_to`).
//! Without this every request allocated a fresh body-sized buffer on a
//! connection thread and freed it on the writer thread, and the kernel
//! faulted in and zeroed new pages for most of them (a fifth of the
//! connection threads' CPU in the profile, docs/benchmarks.md).
//!
//! Bounded: at most `MAX_BUFFERS` buffers and `max_bytes` of capacity are
//! kept; anything over is freed as before. A buffer taken out is emptied
//! (`len` 0): reads fill it from the start and only `len` bytes are ever
//! looked at, so nothing of an earlier request can be read again.

use std::sync::{Arc, Mutex};

use auditlog::FrameRecycler;

/// Buffers kept at most (a few per connection in flight is plenty).
const MAX_BUFFERS: usize = 64;

pub struct BufferPool {
    kept: Mutex<Kept>,
    max_bytes: usize,
}

#[derive(Default)]
struct Kept {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_bytes` of buffer capacity.
    pub fn new(max_bytes: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            kept: Mutex::new(Kept::default()),
            max_bytes,
        })
    }

    /// An empty buffer with room for at least `capacity` bytes: a kept one
    /// that is large enough, else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let found = self.with_kept(|k| {
            let i = k.bufs.iter().position(|b| b.capacity() >= capacity)?;
            let b = k.bufs.swap_remove(i);
            k.bytes -= b.capacity();
            Some(b)
        });
        match found {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Keep `buf` for a later request, or free it if the pool is full.
    pub fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 {
            return;
        }
        let spare = self.with_kept(|k| {
            if k.bufs.len() < MAX_BUFFERS && k.bytes + cap <= self.max_bytes {
                k.bytes += cap;
                k.bufs.push(buf);
                return None;
            }
            // Full: keep the larger buffers (they serve any smaller
            // request), so this one may replace the smallest kept.
            let smallest = (0..k.bufs.len()).min_by_key(|&i| k.bufs[i].capacity())?;
            let small_cap = k.bufs[smallest].capacity();
            if small_cap >= cap || k.bytes - small_cap + cap > self.max_bytes {
                return Some(buf);
            }
            k.bytes = k.bytes - small_cap + cap;
            Some(std::mem::replace(&mut k.bufs[smallest], buf))
        });
        // Freed outside the lock.
        drop(spare);
    }

    /// The hook the writer calls with a batch's spent frame buffer.
    pub fn recycler(self: &Arc<Self>) -> FrameRecycler {
        let pool = self.clone();
        Arc::new(move |buf| pool.give(buf))
    }

    /// Buffers and bytes kept now (tests, metrics).
    pub fn kept(&self) -> (usize, usize) {
        self.with_kept(|k| (k.bufs.len(), k.bytes))
    }

    fn with_kept<R>(&self, f: impl FnOnce(&mut Kept) -> R) -> R {
        // A panic while holding the lock cannot leave `Kept` half-changed
        // in a way that matters (at worst a wrong byte count): go on.
        let mut k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_comes_back_empty_with_its_room() {
        let pool = BufferPool::new(1 << 20);
        let mut b = pool.take(1000);
        b.extend_from_slice(&[7u8; 1000]);
        let cap = b.capacity();
        pool.give(b);
        assert_eq!(pool.kept(), (1, cap));
        let again = pool.take(500);
        assert!(
            again.is_empty(),
            "no byte of the earlier request is visible"
        );
        assert_eq!(again.capacity(), cap);
        assert_eq!(pool.kept(), (0, 0));
    }

    #[test]
    fn too_small_buffers_are_not_handed_out() {
        let pool = BufferPool::new(1 << 20);
        pool.give(Vec::with_capacity(100));
        let b = pool.take(4096);
        assert!(b.capacity() >= 4096);
        assert_eq!(pool.kept().0, 1, "the small one stays");
    }

    #[test]
    fn the_pool_keeps_within_its_byte_and_count_bounds() {
        let pool = BufferPool::new(10_000);
        for _ in 0..5 {
            pool.give(Vec::with_capacity(4000));
        }
        let (n, bytes) = pool.kept();
        assert!(bytes <= 10_000, "{bytes} bytes kept");
        assert_eq!(n, bytes / 4000);
        // A larger buffer replaces a smaller one rather than going over.
        pool.give(Vec::with_capacity(6000));
        let (_, bytes) = pool.kept();
        assert!(bytes <= 10_000, "{bytes} bytes kept");
        assert!(pool.take(6000).capacity() >= 6000);

        let pool = BufferPool::new(usize::MAX);
        for _ in 0..MAX_BUFFERS + 10 {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.kept().0, MAX_BUFFERS);
    }
}
