use auditlog::event::json::*;
#[test]
fn show() {
    let lines: &[&[u8]] = &[
        br#"{"kind":"run_log","run_id":"r","ts":1"#,
        br#"[1]"#,
        br#"{"kind":"run_log","ts":1}"#,
        br#"{"kind":"run_log","run_id":"","ts":1}"#,
        br#"{"kind":"run_log","run_id":"r","ts":true}"#,
        br#"{"kind":"run_log","run_id":"r","ts":-5}"#,
        br#"{"kind":"run_log","run_id":"r","ts":"2026-11-23 08:00"}"#,
        br#"{"kind":"run_log","run_id":"r","ts":"2026-13-23T08:00:00Z"}"#,
        br#"{"kind":"run_nope","run_id":"r","ts":1}"#,
        br#"{"run_id":"r","ts":1}"#,
        br#"{"kind":"run_log","run_id":"r","ts":1,"seq":-1}"#,
        br#"{"kind":"run_log","run_id":"r","ts":1,"seq":1.5}"#,
        br#"{"kind":"run_log","run_id":"r","ts":1,"seq":1e30}"#,
        br#"{"kind":"run_log","run_id":"r","ts":1,"seq":"3"}"#,
        br#"{"kind":"run_log","run_id":"r","ts":1,"seq":1e400}"#,
        br#"{"kind":"run_finished","run_id":"r","ts":1,"runtime_seconds":"1"}"#,
        br#"{"kind":"run_finished","run_id":"r","ts":1,"runtime_seconds":1e400}"#,
        br#"{"kind":"run_finished","run_id":"r","ts":1,"status":"running"}"#,
        br#"{"kind":"run_started","run_id":"r","ts":1,"dry_run":"no"}"#,
        br#"{"kind":"run_started","run_id":"r","ts":1,"x":1,"x":1}"#,
        br#"{"kind":"run_started","run_id":"r","ts":1,"inputs":{"a":}}"#,
        b"{\"kind\":\"run_started\",\"run_id\":\"r\x01\",\"ts\":1}",
        b"{\"kind\":\"run_started\",\"run_id\":\"r\xff\",\"ts\":1}",
    ];
    for l in lines {
        println!(
            "{:<70} => {}",
            String::from_utf8_lossy(l),
            parse_event(l).unwrap_err()
        );
    }
}
#[test]
fn speed() {
    let lines = [
        r#"{"kind":"run_started","run_id":"r-1763884800-000001","ts":1763884800000000,"skill_id":"web.search","caller_id":"u-42","channel_id":"sess-7","parent_run_id":"","inputs":{"q":"latest audit log engine benchmarks","max_results":10,"lang":"en"},"dry_run":false}"#,
        r#"{"kind":"run_log","run_id":"r-1763884800-000001","ts":1763884800000100,"seq":0,"event_type":"tool_call","payload":{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000,"args_summary":"GET example.org","result_bytes":0}}"#,
        r#"{"kind":"run_finished","run_id":"r-1763884800-000001","ts":1763884801500000,"status":"error","output":"","error":"upstream timeout","tool_calls":1,"runtime_seconds":1.5,"input_tokens":120,"output_tokens":0,"thinking_tokens":0}"#,
        r#"{"kind":"run_log","run_id":"r-1763884800-000001","ts":"2026-11-23T08:00:00.123456Z","seq":1,"event_type":"tool_call","payload":{"tool":"http.get","status":"ok","duration_ms":120,"args_summary":"GET example.org/a","result_bytes":5123}}"#,
    ];
    for l in lines {
        let n = 1_000_000;
        let t = std::time::Instant::now();
        let mut acc = 0usize;
        for _ in 0..n {
            acc += parse_event(std::hint::black_box(l.as_bytes()))
                .unwrap()
                .run_id
                .len();
        }
        let parse = t.elapsed();
        let ev = parse_event(l.as_bytes()).unwrap();
        let mut s = String::new();
        let t = std::time::Instant::now();
        for _ in 0..n {
            s.clear();
            write_event(std::hint::black_box(&ev), Some(7), &mut s);
            acc += s.len();
        }
        let write = t.elapsed();
        println!(
            "{} bytes: parse {:.0} ns/line ({:.2} M/s), write {:.0} ns ({acc})",
            l.len(),
            parse.as_nanos() as f64 / n as f64,
            n as f64 / parse.as_secs_f64() / 1e6,
            write.as_nanos() as f64 / n as f64
        );
    }
}
