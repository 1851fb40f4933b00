//! The full-text load measurement, small and quick here; the real figures
//! come from the ignored test in release (docs/search.md):
//! `FT_RUNS=1000000 cargo test --release --test fulltext_bench -- --ignored --nocapture`

use auditlog_loadrun::search_bench::{measure, BenchSpec};

#[test]
fn measure_runs_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = BenchSpec {
        runs: 2000,
        queries: 60,
        ..BenchSpec::default()
    };
    let r = measure(dir.path(), &spec).expect("measure");
    assert_eq!(r.events, 2000 * 5);
    assert!(r.ingest_on_eps > 0.0 && r.ingest_ratio.is_some());
    assert!(r.rebuild_eps.is_some_and(|e| e > 0.0));
    assert_eq!(r.searches, 60);
    assert!(r.avg_hits > 0.0, "{}", r.to_json());
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
    assert_eq!(v["runs"], 2000);
}

#[test]
#[ignore = "load measurement: run in release with --ignored"]
fn measure_load() {
    let runs = std::env::var("FT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var("FT_DIR").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = base.unwrap_or_else(|_| tmp.path().to_path_buf());
    let spec = BenchSpec {
        runs,
        rebuild: std::env::var("FT_REBUILD").map_or(true, |v| v != "0"),
        compare_off: std::env::var("FT_OFF").map_or(true, |v| v != "0"),
        ..BenchSpec::default()
    };
    let r = measure(&dir, &spec).expect("measure");
    println!("{}", r.to_json());
}
