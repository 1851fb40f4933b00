"""A real OpenTelemetry client against `auditlog serve`.

The official Python SDK (opentelemetry-sdk) and its OTLP/HTTP exporter
(opentelemetry-exporter-otlp-proto-http, protobuf bodies) send GenAI spans
(invoke_agent, chat, execute_tool) and log records to the server; the test
then reads them back through the server's query endpoints and checks the
mapping of docs/otlp.md.

Usage: otel_genai.py HTTP_ADDR   (e.g. 127.0.0.1:4318)
Prints one JSON line with the agent run's id; exits non-zero on a failure.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

CHECKS = {"passed": 0, "failed": 0}


def check(what: str, got: Any, want: Any) -> None:
    if got == want:
        CHECKS["passed"] += 1
    else:
        CHECKS["failed"] += 1
        print(f"FAIL {what}: got {got!r}, want {want!r}", file=sys.stderr)


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.loads(r.read())


def send(addr: str) -> None:
    base = f"http://{addr}"
    resource = Resource.create({"service.name": "travel-gateway", "deployment.environment": "test"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs"))
    )
    log = logging.getLogger("travel-gateway")
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    tracer = tracer_provider.get_tracer("travel-agent", "0.3.1")

    agent_attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": "agent-123",
        "gen_ai.agent.name": "travel-planner",
        "gen_ai.conversation.id": "conv-abc",
        "gen_ai.usage.input_tokens": 321,
        "gen_ai.usage.output_tokens": 54,
        "enduser.id": "user-7",
        "gateway.route": "/plan",
    }
    with tracer.start_as_current_span("invoke_agent travel-planner", attributes=agent_attrs):
        log.info("agent started planning a trip to Lisbon", extra={"gateway.step": 1})
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 200,
                "gen_ai.usage.output_tokens": 40,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool search_flights",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search_flights",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": '{"from":"SFO","to":"LIS"}',
            },
        ):
            time.sleep(0.002)
        with tracer.start_as_current_span(
            "execute_tool book_hotel",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "book_hotel",
                "gen_ai.tool.call.id": "call_2",
            },
        ) as span:
            span.set_attribute("error.type", "http_502")
            span.set_status(Status(StatusCode.ERROR, "hotel API returned 502"))
            log.warning("book_hotel failed; telling the user")
    if not tracer_provider.force_flush(30_000) or not logger_provider.force_flush(30_000):
        raise SystemExit("the exporters did not flush")
    tracer_provider.shutdown()
    logger_provider.shutdown()


def verify(addr: str) -> str:
    base = f"http://{addr}"
    runs = get(base, "/v1/runs?skill=travel-planner")
    check("one agent run", len(runs), 1)
    run = runs[0]
    check("caller_id from enduser.id", run["caller_id"], "user-7")
    check("channel_id from gen_ai.conversation.id", run["channel_id"], "conv-abc")
    check("status", run["status"], "ok")
    check("tool_calls", run["tool_calls"], 2)
    check("input_tokens", run["input_tokens"], 321)
    check("output_tokens", run["output_tokens"], 54)
    check("agent id kept", run["inputs"]["attributes"]["gen_ai.agent.id"], "agent-123")
    check("other attributes kept", run["inputs"]["attributes"]["gateway.route"], "/plan")
    check("resource kept", run["inputs"]["resource"]["service.name"], "travel-gateway")
    check("scope kept", run["inputs"]["scope"]["name"], "travel-agent")

    full = get(base, "/v1/runs/" + urllib.parse.quote(run["id"]))
    logs = full["logs"]
    calls = [entry for entry in logs if entry["event_type"] == "tool_call"]
    check("two tool calls in the agent's run", sorted(c["payload"]["tool"] for c in calls), ["book_hotel", "search_flights"])
    failed = next(c for c in calls if c["payload"]["tool"] == "book_hotel")["payload"]
    check("failed call status", failed["status"], "error")
    check("failed call error_type", failed["error_type"], "http_502")
    check("failed call message", failed["error"], "hotel API returned 502")
    check("failed call id", failed["tool_call_id"], "call_2")
    ok = next(c for c in calls if c["payload"]["tool"] == "search_flights")["payload"]
    check("ok call status", ok["status"], "ok")
    check("args summary", ok["args_summary"], '{"from":"SFO","to":"LIS"}')
    check("duration is a number", isinstance(ok["duration_ms"], (int, float)) and ok["duration_ms"] > 0, True)
    spans = [entry for entry in logs if entry["event_type"] == "span"]
    check("the chat span kept", [s["payload"]["operation"] for s in spans], ["chat"])
    check("the chat span's tokens", spans[0]["payload"]["input_tokens"], 200)

    # Log records carry the span they were emitted in: the agent's log is in
    # its run; the tool's warning is filed under the tool span's id.
    records = [entry for entry in logs if entry["event_type"] == "log"]
    check("the agent's log record", [r["payload"]["body"] for r in records], ["agent started planning a trip to Lisbon"])
    check("its attributes kept", records[0]["payload"]["attributes"].get("gateway.step"), 1)
    warn = get(base, "/v1/replay?limit=1000")["events"]
    bodies = [e["payload"]["body"] for e in warn if e["kind"] == "run_log" and e["event_type"] == "log"]
    check("both log records stored", sorted(bodies), ["agent started planning a trip to Lisbon", "book_hotel failed; telling the user"])

    errors = get(base, "/v1/errors")
    check("the failing call in the error groups",
          [(g["channel_id"], g["tool"], g["error_type"], g["count"]) for g in errors],
          [("conv-abc", "book_hotel", "http_502", 1)])
    hits = get(base, "/v1/search?timeout_ms=180000&q=" + urllib.parse.quote('"hotel API returned 502"'))
    check("search finds the run", [h["id"] for h in hits], [run["id"]])
    return run["id"]


def main() -> int:
    addr = sys.argv[1]
    send(addr)
    run_id = verify(addr)
    print(json.dumps({"agent_run": run_id, **CHECKS}))
    print(f"{CHECKS['passed']} passed, {CHECKS['failed']} failed", file=sys.stderr)
    return 1 if CHECKS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
