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
