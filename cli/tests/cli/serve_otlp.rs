//! OTLP/HTTP with JSON bodies written from the specification (the Python
//! SDK's protobuf exporter is driven by server/test.sh): GenAI spans
//! become runs and tool calls, log records become logs, everything else
//! is kept as it arrived, and a retried export is stored once.

use crate::serve_support::*;
use crate::support::*;

const NS: u64 = 1_795_392_000_000_000_000; // DAY0 in ns

fn traces_body() -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"gateway"}}}}]}},
  "scopeSpans":[{{"scope":{{"name":"agent-sdk","version":"1.2"}},"spans":[
   {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"execute_tool web_search",
     "startTimeUnixNano":"{t1}","endTimeUnixNano":"{t2}","status":{{"code":2,"message":"tool timed out"}},
     "parentSpanId":"aaa19b7ec3c1b174",
     "attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"execute_tool"}}}},
       {{"key":"gen_ai.tool.name","value":{{"stringValue":"web_search"}}}},
       {{"key":"gen_ai.tool.call.id","value":{{"stringValue":"call_42"}}}},
       {{"key":"error.type","value":{{"stringValue":"timeout"}}}},
       {{"key":"vendor.custom","value":{{"intValue":"7"}}}}]}},
   {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174","name":"invoke_agent planner",
     "startTimeUnixNano":"{t0}","endTimeUnixNano":"{t3}","kind":1,
     "attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"invoke_agent"}}}},
       {{"key":"gen_ai.agent.id","value":{{"stringValue":"agent-7"}}}},
       {{"key":"gen_ai.agent.name","value":{{"stringValue":"planner"}}}},
       {{"key":"gen_ai.conversation.id","value":{{"stringValue":"conv-9"}}}},
       {{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"120"}}}},
       {{"key":"gen_ai.usage.output_tokens","value":{{"intValue":"30"}}}},
       {{"key":"enduser.id","value":{{"stringValue":"u-42"}}}}]}}
  ]}}]}}]}}"#,
        t0 = NS,
        t1 = NS + 1_000_000,
        t2 = NS + 6_000_000,
        t3 = NS + 9_000_000
    )
}

fn logs_body() -> String {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"gateway"}}}}]}},
  "scopeLogs":[{{"scope":{{"name":"agent-sdk"}},"logRecords":[
   {{"timeUnixNano":"{t}","severityNumber":9,"severityText":"INFO","body":{{"stringValue":"planner picked web_search"}},
     "traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174",
     "attributes":[{{"key":"event.name","value":{{"stringValue":"gen_ai.choice"}}}}]}}]}}]}}]}}"#,
        t = NS + 2_000_000
    )
}

#[test]
fn genai_spans_and_logs_become_runs_tool_calls_and_logs() {
    let (_t, dir) = scratch();
    let server = Server::start(&dir, &["--http", "127.0.0.1:0"]);
    let a = server.addr();
    let json = [("content-type", "application/json")];
    let r = http(a, "POST", "/v1/traces", &json, traces_body().as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({}),
        "no partial success: all stored"
    );
    let r = http(a, "POST", "/v1/logs", &json, logs_body().as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The exporter's retry of the same export stores nothing new.
    let again = http(a, "POST", "/v1/traces", &json, traces_body().as_bytes()).unwrap();
    assert_eq!(again.status, 200);

    let runs = get(a, "/v1/runs").json();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let run = &runs[0];
    assert_eq!(run["id"], "aaa19b7ec3c1b174");
    assert_eq!(run["skill_id"], "planner");
    assert_eq!(run["caller_id"], "u-42");
    assert_eq!(run["channel_id"], "conv-9");
    assert_eq!(run["status"], "ok");
    assert_eq!(
        (
            run["input_tokens"].as_u64(),
            run["output_tokens"].as_u64(),
            run["tool_calls"].as_u64()
        ),
        (Some(120), Some(30), Some(1))
    );
    assert_eq!(run["runtime_seconds"].as_f64(), Some(0.009));
    assert_eq!(run["inputs"]["attributes"]["gen_ai.agent.id"], "agent-7");
    assert_eq!(run["inputs"]["resource"]["service.name"], "gateway");
    assert_eq!(run["inputs"]["scope"]["version"], "1.2");

    let full = get(a, "/v1/runs/aaa19b7ec3c1b174").json();
    let logs = full["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "{full}");
    // In seq order: the start time in ns (the tool call began first).
    let (call, log) = (&logs[0], &logs[1]);
    assert_eq!(log["event_type"], "gen_ai.choice");
    assert_eq!(log["payload"]["body"], "planner picked web_search");
    assert_eq!(call["event_type"], "tool_call");
    let p = &call["payload"];
    assert_eq!(
        (
            p["tool"].as_str(),
            p["status"].as_str(),
            p["error_type"].as_str()
        ),
        (Some("web_search"), Some("error"), Some("timeout"))
    );
    assert_eq!(p["tool_call_id"], "call_42");
    assert_eq!(p["duration_ms"].as_f64(), Some(5.0));
    assert_eq!(p["error"], "tool timed out");
    assert_eq!(
        p["attributes"]["vendor.custom"], 7,
        "unknown attributes kept as they arrived"
    );

    let errors = get(a, "/v1/errors").json();
    assert_eq!(errors[0]["tool"], "web_search");
    assert_eq!(errors[0]["channel_id"], "conv-9");
    let hits = get(a, "/v1/search?timeout_ms=180000&q=%22tool%20timed%20out%22").json();
    assert_eq!(hits[0]["id"], "aaa19b7ec3c1b174", "{hits}");
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        replay_all(&dir).len(),
        4,
        "run_started, run_finished, tool_call, log"
    );
}

#[test]
fn a_span_the_log_cannot_hold_is_refused_alone() {
    let (_t, dir) = scratch();
    let server = Server::start(&dir, &["--http", "127.0.0.1:0", "--no-search"]);
    // A span id of 1 byte, and an attribute over the 1 MiB event limit.
    let big = "x".repeat(1_100_000);
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[
         {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"01","name":"chat m","startTimeUnixNano":"{NS}","endTimeUnixNano":"{NS}"}},
         {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0000000000000001","name":"chat m","startTimeUnixNano":"{NS}","endTimeUnixNano":"{NS}","attributes":[{{"key":"big","value":{{"stringValue":"{big}"}}}}]}},
         {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0000000000000002","name":"chat m","startTimeUnixNano":"{NS}","endTimeUnixNano":"{NS}"}}]}}]}}]}}"#
    );
    let r = http(
        server.addr(),
        "POST",
        "/v1/traces",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let ps = &r.json()["partialSuccess"];
    assert_eq!(ps["rejectedSpans"].as_u64(), Some(2), "{ps}");
    assert!(
        ps["errorMessage"]
            .as_str()
            .unwrap()
            .contains("span_id must be 8 bytes"),
        "{ps}"
    );
    drop(server);
    assert_eq!(run_ids(&dir), ["0000000000000002"]);
}
