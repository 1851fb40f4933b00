// Producers allocate event buffers that the writer thread frees; mimalloc
// handles that cross-thread pattern without glibc's arena lock contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(auditlog::cli::main());
}
