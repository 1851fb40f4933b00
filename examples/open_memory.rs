//! What opening a log's query engine costs: wall time and memory, with the
//! resident memory split into anonymous (heap: what the engine itself
//! holds) and file-backed (mapped index and segment pages, shared with the
//! page cache and evictable). Peak RSS alone mixes the two.
//!
//! `cargo run --release --example open_memory -- LOG_DIR`

use std::time::Instant;

use auditlog::query::{Engine, Filter, Page};

fn status() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    format!(
        "peak RSS {:.1} MiB (now: anonymous {:.1} MiB, file-backed {:.1} MiB)",
        kb("VmHWM:") as f64 / 1024.0,
        kb("RssAnon:") as f64 / 1024.0,
        kb("RssFile:") as f64 / 1024.0
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: open_memory LOG_DIR")?;
    println!("before open: {}", status());
    let t = Instant::now();
    let mut e = Engine::open(std::path::Path::new(&dir))?;
    e.refresh()?;
    let segments = e.reader().segments();
    let events: u64 = segments.iter().map(|s| s.count).sum();
    println!(
        "open ({} segments, {events} events, {} index images loaded, {} built): {:.1} ms, {}",
        segments.len(),
        e.stats.loaded,
        e.stats.rebuilt + e.stats.chunks_built,
        t.elapsed().as_secs_f64() * 1e3,
        status()
    );
    let t = Instant::now();
    let n = e.count(&Filter {
        status: Some("error".into()),
        ..Filter::default()
    })?;
    let page = e.list(&Filter::default(), Page::new(50, 0))?;
    println!(
        "count by status ({n}) + newest 50 runs ({}): {:.1} ms, {}",
        page.len(),
        t.elapsed().as_secs_f64() * 1e3,
        status()
    );
    Ok(())
}
