//! `auditlog bench --queries-only --dir D`: the load run's query phase
//! alone, over a log and a SQLite database kept in `D`, so that a query
//! change can be timed at 10M events without redoing the whole load run
//! each time. The first call builds both from the workload the arguments
//! describe (the same generator, producers, segment size and SQLite schema
//! as the load run); later calls with the same arguments only time.
//!
//! What is timed is what the load run times after ingest: each kind with
//! the same parameters (drawn from the same workload), auditlog through
//! `Engine::query` (refresh, then answer) on an open log with its
//! background indexer, SQLite on a connection opened with the baseline's
//! settings. Beside each p50 and p99 goes the CPU time of the timing
//! thread per query (`/proc/thread-self/schedstat`), since the machine is
//! shared and wall time is noisy.

use std::path::Path;
use std::time::Duration;

use auditlog::{Config, Durability};
use auditlog_terminal::{CliError, CliResult};

use crate::baselines::{self, SqliteSync};
use crate::cmd::{bar, parse_durability, pregenerate, workload_spec, BenchArgs, Indexed};
use crate::ingest::{run_phase, Phase};
use crate::queries::{
    answers_match, auditlog_query, sqlite_query, time_kind, KindTiming, QuerySet, KINDS,
};
use crate::threads::ThreadTimes;

/// Written into `D` once the log and the database are complete, with the
/// arguments that built them.
const BUILT: &str = "queries-only.built";

pub fn queries_only(dir: Option<&Path>, a: &BenchArgs) -> CliResult {
    let dir = dir.ok_or_else(|| CliError::usage("--queries-only needs --dir"))?;
    let spec = workload_spec(a);
    let stamp = format!(
        "events={} days={} producers={}\n",
        a.events, a.days, a.producers
    );
    let log_dir = dir.join("auditlog");
    let db_dir = dir.join("sqlite");
    let mut shares = pregenerate(&spec, a.producers);
    let qs = QuerySet::from_events(&shares, 256);
    let segment_bytes = a.segment_mb.unwrap_or(256) << 20;
    match std::fs::read_to_string(dir.join(BUILT)) {
        Ok(s) if s == stamp => {}
        Ok(s) => {
            return Err(CliError::usage(format!(
                "{}: built for {}, not for {}",
                dir.display(),
                s.trim(),
                stamp.trim()
            )))
        }
        Err(_) => {
            if std::fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some()) {
                return Err(CliError::usage(format!(
                    "{}: not built by --queries-only; name an empty or missing folder",
                    dir.display()
                )));
            }
            build(
                &log_dir,
                &db_dir,
                &mut shares,
                a,
                segment_bytes,
                parse_durability(&a.durability)?,
            )?;
            std::fs::write(dir.join(BUILT), &stamp)
                .map_err(|e| CliError::failed(format!("{}: {e}", dir.display())))?;
        }
    }
    // The workload (gigabytes at 10M events, made by the generator's
    // threads) is freed on a thread of its own, not on the timing thread:
    // its frees and what the allocator does with them afterwards are no
    // part of a query.
    std::thread::scope(|s| {
        s.spawn(move || drop(shares));
    });

    let budget = Duration::from_millis(a.query_ms);
    let mut cfg = Config::new(&log_dir);
    cfg.segment_max_bytes = segment_bytes;
    let ix = Indexed::open(cfg)?;
    let ours: Vec<(KindTiming, u64)> = {
        let mut eng = ix.engine.lock().unwrap_or_else(|p| p.into_inner());
        // One untimed pass over every kind first: the first queries after
        // the open (fresh process memory, the allocator settling after
        // the workload was freed) are not what a query costs. SQLite gets
        // the same pass below.
        for k in 0..KINDS.len() {
            time_kind(budget / 4, 3, 200, |i| auditlog_query(&mut eng, &qs, k, i))?;
        }
        (0..KINDS.len())
            .map(|k| {
                with_cpu(|| time_kind(budget, 3, 2000, |i| auditlog_query(&mut eng, &qs, k, i)))
            })
            .collect::<Result<_, _>>()?
    };
    ix.close()?;
    let conn = baselines::sqlite_open(&db_dir.join("audit.db"), SqliteSync::Full)
        .map_err(|e| CliError::failed(format!("sqlite open: {e}")))?;
    for k in 0..KINDS.len() {
        time_kind(budget / 4, 3, 200, |i| sqlite_query(&conn, &qs, k, i))
            .map_err(|e| CliError::failed(format!("sqlite query: {e}")))?;
    }
    let theirs: Vec<(KindTiming, u64)> = (0..KINDS.len())
        .map(|k| with_cpu(|| time_kind(budget, 3, 2000, |i| sqlite_query(&conn, &qs, k, i))))
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::failed(format!("sqlite query: {e}")))?;
    print_table(&ours, &theirs);
    Ok(())
}

/// The log (ingested as the load run's peak phase does, indexes built as
/// segments seal, then caught up) and the SQLite database (WAL,
/// synchronous=FULL, the baseline's transactions).
fn build(
    log_dir: &Path,
    db_dir: &Path,
    shares: &mut [Vec<auditlog::Event>],
    a: &BenchArgs,
    segment_bytes: u64,
    policy: Durability,
) -> Result<(), CliError> {
    let total: u64 = shares.iter().map(|s| s.len() as u64).sum();
    let mut cfg = Config::new(log_dir);
    cfg.durability = policy;
    cfg.segment_max_bytes = segment_bytes;
    let ix = Indexed::open(cfg)?;
    let mut ph = Phase::new(a.batch);
    ph.progress = bar(total, "auditlog ingest");
    run_phase(&ix.log, shares, &ph)?;
    ph.progress.finish_and_clear();
    ix.engine
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .refresh()?;
    ix.close()?;
    let pb = bar(total, "sqlite WAL FULL ingest");
    baselines::sqlite_ingest(db_dir, shares, SqliteSync::Full, a.txn, &pb)
        .map_err(|e| CliError::failed(format!("sqlite: {e}")))?;
    pb.finish_and_clear();
    Ok(())
}

/// Run `f`, and the CPU nanoseconds this thread spent in it.
fn with_cpu<E>(f: impl FnOnce() -> Result<KindTiming, E>) -> Result<(KindTiming, u64), E> {
    let before = ThreadTimes::current().unwrap_or_default();
    let t = f()?;
    let cpu = ThreadTimes::current()
        .unwrap_or_default()
        .minus(&before)
        .cpu_ns;
    Ok((t, cpu))
}

fn print_table(ours: &[(KindTiming, u64)], theirs: &[(KindTiming, u64)]) {
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} answers",
        "kind",
        "ours p50",
        "ours p99",
        "ours cpu",
        "sqlite p50",
        "sqlite p99",
        "sqlite cpu",
        "x p50"
    );
    for (k, ((a, acpu), (s, scpu))) in ours.iter().zip(theirs).enumerate() {
        let (Some(al), Some(sl)) = (a.lat(), s.lat()) else {
            continue;
        };
        let per = |cpu: &u64, n: usize| *cpu as f64 / 1e6 / n.max(1) as f64;
        println!(
            "{:<16} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>8.2} {}",
            KINDS[k].0,
            al.p50,
            al.p99,
            per(acpu, a.sizes.len()),
            sl.p50,
            sl.p99,
            per(scpu, s.sizes.len()),
            sl.p50 / al.p50.max(1e-9),
            if answers_match(&a.sizes, &s.sizes) {
                "match"
            } else {
                "DIFFER"
            }
        );
    }
}
