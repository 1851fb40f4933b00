//! A synthetic gateway workload: runs of skills that call tools (some
//! failing), start sub-runs, sometimes dry, sometimes never finished, spread
//! over simulated days. Deterministic for a seed, so the load run, the
//! baselines and tests see the same events.

use auditlog::{Event, Json, Micros, RunFinished, RunLog, RunStarted};

/// Shape of the workload.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub seed: u64,
    /// Simulated time span, starting at `start_ts`.
    pub days: u32,
    pub start_ts: Micros,
    /// Top-level runs to generate (sub-runs come on top).
    pub runs: u64,
    /// Mean tool calls per run.
    pub tool_calls: u32,
    /// Probability that a tool call fails.
    pub fail_rate: f64,
    /// Probability that a run starts a sub-run (which may start its own).
    pub sub_run_rate: f64,
    pub dry_run_rate: f64,
    /// Probability that a run never finishes.
    pub unfinished_rate: f64,
    pub skills: u32,
    pub callers: u32,
    pub channels: u32,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            seed: 42,
            days: 30,
            // 2026-10-24T00:00:00Z: 30 days ending on 2026-11-23.
            start_ts: 1_792_828_800_000_000,
            runs: 100_000,
            tool_calls: 3,
            fail_rate: 0.05,
            sub_run_rate: 0.2,
            dry_run_rate: 0.02,
            unfinished_rate: 0.01,
            skills: 40,
            callers: 2_000,
            channels: 500,
        }
    }
}

const SKILLS: &[&str] = &[
    "web.search",
    "web.fetch",
    "code.exec",
    "code.review",
    "mail.send",
    "mail.read",
    "calendar.book",
    "docs.summarize",
    "docs.translate",
    "db.query",
    "crm.lookup",
    "shell.run",
];
const TOOLS: &[&str] = &[
    "http.get",
    "http.post",
    "sql.query",
    "fs.read",
    "fs.write",
    "python.exec",
    "smtp.send",
    "vector.search",
    "browser.open",
    "kv.get",
];
const ERRORS: &[&str] = &[
    "timeout",
    "http_5xx",
    "rate_limited",
    "auth",
    "not_found",
    "certificate",
];

impl WorkloadSpec {
    /// Average µs between top-level run starts.
    fn spacing(&self) -> Micros {
        let span = self.days.max(1) as i64 * 86_400_000_000;
        (span / self.runs.max(1) as i64).max(1)
    }

    /// The events of top-level runs `from..to` (and their sub-runs), in the
    /// order a gateway would emit them. Disjoint ranges give disjoint runs,
    /// so producers can split the work.
    pub fn events(&self, from: u64, to: u64) -> WorkloadIter<'_> {
        WorkloadIter {
            spec: self,
            next_run: from,
            end: to,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn name(&self, base: &[&str], n: u32, i: u64) -> String {
        let b = base[(i % base.len() as u64) as usize];
        if n as usize <= base.len() {
            b.to_string()
        } else {
            format!("{b}.{}", i % (n as u64 / base.len() as u64).max(1))
        }
    }

    /// All events of top-level run `i` and its sub-runs.
    fn run_events(&self, i: u64, out: &mut Vec<Event>) {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let start = self.start_ts + i as i64 * self.spacing() + rng.i64(0..self.spacing().max(2));
        let caller = format!("u-{}", rng.u32(0..self.callers.max(1)));
        let channel = format!("sess-{}", rng.u32(0..self.channels.max(1)));
        self.one_run(
            &mut rng,
            format!("r-{i}"),
            String::new(),
            start,
            &caller,
            &channel,
            0,
            out,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn one_run(
        &self,
        rng: &mut fastrand::Rng,
        id: String,
        parent: String,
        start: Micros,
        caller: &str,
        channel: &str,
        depth: u32,
        out: &mut Vec<Event>,
    ) {
        let skill_ix = rng.u64(0..self.skills.max(1) as u64);
        let skill = self.name(SKILLS, self.skills, skill_ix);
        let dry = rng.f64() < self.dry_run_rate;
        let inputs = format!(
            "{{\"query\":\"find {} for {}\",\"max_results\":{},\"locale\":\"en-US\"}}",
            TOOLS[rng.usize(0..TOOLS.len())],
            caller,
            rng.u32(1..50)
        );
        out.push(Event::run_started(
            id.clone(),
            start,
            RunStarted {
                skill_id: skill,
                caller_id: caller.to_string(),
                channel_id: channel.to_string(),
                parent_run_id: parent,
                inputs: Json::parse(inputs).expect("generated JSON is valid"),
                dry_run: dry,
            },
        ));
        let mut ts = start;
        let calls = rng.u32(0..=self.tool_calls.saturating_mul(2));
        let mut failed = false;
        let mut seq = 0u64;
        for _ in 0..calls {
            ts += rng.i64(1_000..400_000);
            let tool = TOOLS[rng.usize(0..TOOLS.len())];
            let fails = rng.f64() < self.fail_rate;
            failed |= fails;
            let payload = if fails {
                format!(
                    "{{\"tool\":\"{tool}\",\"status\":\"error\",\"error_type\":\"{}\",\"duration_ms\":{},\"args_summary\":\"GET https://api.example.org/v1/items?id={}\",\"result_bytes\":0}}",
                    ERRORS[rng.usize(0..ERRORS.len())],
                    rng.u32(5..30_000),
                    rng.u32(..)
                )
            } else {
                format!(
                    "{{\"tool\":\"{tool}\",\"status\":\"ok\",\"duration_ms\":{},\"args_summary\":\"GET https://api.example.org/v1/items?id={}\",\"result_bytes\":{}}}",
                    rng.u32(1..2_000),
                    rng.u32(..),
                    rng.u32(0..100_000)
                )
            };
            out.push(Event::run_log(
                id.clone(),
                ts,
                RunLog {
                    seq,
                    event_type: "tool_call".to_string(),
                    payload: Json::parse(payload).expect("generated JSON is valid"),
                },
            ));
            seq += 1;
            if depth < 3 && rng.f64() < self.sub_run_rate / calls.max(1) as f64 {
                let child = format!("{id}.{seq}");
                self.one_run(
                    rng,
                    child,
                    id.clone(),
                    ts + 10,
                    caller,
                    channel,
                    depth + 1,
                    out,
                );
            }
        }
        if rng.f64() < self.unfinished_rate {
            return;
        }
        ts += rng.i64(1_000..2_000_000);
        let status = if failed && rng.bool() {
            "error"
        } else if rng.f64() < 0.01 {
            "timeout"
        } else {
            "ok"
        };
        out.push(Event::run_finished(
            id,
            ts,
            RunFinished {
                status: status.to_string(),
                output: if status == "ok" {
                    format!("found {} results", rng.u32(0..50))
                } else {
                    String::new()
                },
                error: if status == "ok" {
                    String::new()
                } else {
                    "upstream tool failed".to_string()
                },
                tool_calls: calls as u64,
                runtime_seconds: (ts - start) as f64 / 1e6,
                input_tokens: rng.u64(10..4_000),
                output_tokens: rng.u64(0..2_000),
                thinking_tokens: rng.u64(0..1_000),
            },
        ));
    }
}

/// Events of a range of runs, run by run.
pub struct WorkloadIter<'a> {
    spec: &'a WorkloadSpec,
    next_run: u64,
    end: u64,
    buf: Vec<Event>,
    pos: usize,
}

impl Iterator for WorkloadIter<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        while self.pos >= self.buf.len() {
            if self.next_run >= self.end {
                return None;
            }
            self.buf.clear();
            self.pos = 0;
            self.spec.run_events(self.next_run, &mut self.buf);
            self.next_run += 1;
        }
        let ev = std::mem::replace(
            &mut self.buf[self.pos],
            Event::run_log("", 0, RunLog::default()),
        );
        self.pos += 1;
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog::event::json::validate_event;

    #[test]
    fn deterministic_valid_and_disjoint() {
        let spec = WorkloadSpec {
            runs: 200,
            ..WorkloadSpec::default()
        };
        let a: Vec<Event> = spec.events(0, 200).collect();
        let b: Vec<Event> = spec.events(0, 200).collect();
        assert_eq!(a, b);
        assert!(a.len() > 400);
        for ev in &a {
            validate_event(ev).expect("workload events are valid");
        }
        let left: Vec<Event> = spec.events(0, 100).collect();
        let right: Vec<Event> = spec.events(100, 200).collect();
        assert_eq!(left.len() + right.len(), a.len());
        let span =
            a.iter().map(|e| e.ts).max().unwrap_or(0) - a.iter().map(|e| e.ts).min().unwrap_or(0);
        assert!(span > 25 * 86_400_000_000, "spread over the simulated days");
    }
}
