//! Process-wide memory settings of the commands that move a lot of data.

/// Turn transparent huge pages off for this process, before a command
/// allocates its buffers.
///
/// Why: mimalloc asks for huge pages, and a command that frees and
/// reallocates many MB across threads keeps touching fresh 2 MiB pages,
/// each zeroed whole by the kernel on first touch. Measured in ABBA rounds
/// (docs/benchmarks.md): the export spent 14% of its CPU zeroing and used
/// about 11% less CPU without huge pages ("export26"); `auditlog ingest`
/// about 14% less ("Round five: transparent huge pages off") and the
/// server 9% less per event ("Huge pages off in `auditlog serve`").
/// The command line only: the library leaves an embedding process's
/// memory settings alone. Best effort: on failure (an old kernel) the
/// command runs as before.
#[cfg(target_os = "linux")]
pub fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and three unused
    // zero arguments; it reads no memory of ours and only sets a flag of
    // this process's address space.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    debug_assert!(r == 0 || r == -1);
}

#[cfg(not(target_os = "linux"))]
pub fn no_huge_pages() {}

/// mimalloc's `mi_option_purge_delay` (the same number, 15, in mimalloc 2
/// and 3: `mi_option_e` in mimalloc.h, where it is also `reset_delay`).
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;

extern "C" {
    /// mimalloc's `void mi_option_set(mi_option_t option, long value)`,
    /// linked in with the allocator (libmimalloc-sys builds all of it).
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// Keep the memory this process frees instead of giving it back to the
/// kernel (mimalloc's purge delay -1), for a command that frees and
/// allocates buffers of megabytes over and over and then exits.
///
/// Why: `auditlog export` builds each segment's Arrow columns, Parquet
/// pages and zstd output in fresh buffers on several threads; mimalloc
/// returned freed pages to the kernel within a second, and the kernel
/// zeroed them again on the next touch. Measured ("export27" in
/// docs/benchmarks.md): half the page faults and about 10% less CPU, for
/// a peak resident size about 20% higher (765 against 633 MB exporting 30
/// segments of 10 MB with `--threads 2`): pages freed by one thread stay
/// mapped until another reuses them. `auditlog ingest` too ("Ingest,
/// cli39 round": its encoded batches, images and builders' tables; page
/// faults -18%). Call it before the command starts
/// its threads (the option is a plain variable of the allocator). The
/// command line only, like [`no_huge_pages`]: the library leaves an
/// embedding process's allocator alone.
pub fn keep_freed_pages() {
    // SAFETY: mi_option_set only stores `value` in mimalloc's option table
    // (an index within it: 15 < _mi_option_last in mimalloc 2 and 3); it
    // is called before this command starts any thread of its own.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// glibc's `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` for this process's C
/// heap: 32 MiB (glibc's largest mmap threshold on 64-bit) and 1 GiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const C_HEAP_MMAP_THRESHOLD: libc::c_int = 32 << 20;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const C_HEAP_TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Keep the C heap's freed memory too (glibc's malloc, which C code
/// linked in uses instead of mimalloc): no block of its own mapped and
/// unmapped per allocation, no top of the heap handed back to the kernel.
///
/// Why: the export's Parquet writer makes a zstd compressor and
/// decompressor for every column of every file (some 5,000 per export of
/// 30 segments), and zstd allocates them, and its tables, with glibc's
/// malloc: above glibc's thresholds (128 KiB, adjusted as blocks come
/// and go) each was a fresh `mmap`, zeroed by the kernel on first touch,
/// or a heap top trimmed on free and faulted in again. Measured ("Export,
/// exp39 round" in docs/benchmarks.md): a fifth fewer page faults and
/// 3% less CPU per export (24 rounds), for a peak resident size 2%
/// higher. The command line only, like [`keep_freed_pages`]; call it
/// before the command starts its threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_c_heap() {
    // SAFETY: mallopt only sets glibc malloc's parameters (two integers of
    // its own state, under its lock); it reads no memory of ours. Called
    // before this command starts any thread of its own. Its 0 (refused) is
    // ignored: the command then runs with glibc's defaults, as before.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, C_HEAP_MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, C_HEAP_TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_c_heap() {}
