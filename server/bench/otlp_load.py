#!/usr/bin/env python3
# OTLP/HTTP JSON traces load against `auditlog serve`: 4 threads, each
# posting REQS requests of SPANS execute_tool spans on its own keep-alive
# connection. Prints server CPU (from /proc), wall, spans/s, and the
# server's thread count at the end (docs/benchmarks.md, "serve27").
#   python3 server/bench/otlp_load.py BINARY REQS SPANS   (e.g. 250 200)
import http.client, json, os, subprocess, sys, threading, time, tempfile, shutil
binary, reqs, spans = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
work = tempfile.mkdtemp()
srv = subprocess.Popen([binary, "--dir", work + "/log", "serve", "--http", "127.0.0.1:0", "--no-search", "--log-format", "text"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
ready = json.loads(srv.stdout.readline())
host, port = ready["http"].replace("http://", "").split(":")
def body(t, r):
    base = 1_764_547_200_000_000_000 + (t * reqs + r) * 1_000_000
    sp = []
    for i in range(spans):
        sid = f"{t:02x}{r:06x}{i:08x}"[:16].rjust(16, "0")
        sp.append({"traceId": f"{t:08x}{r:08x}{'0'*16}", "spanId": sid, "name": "execute_tool grep", "kind": 1,
                   "startTimeUnixNano": str(base + i * 1000), "endTimeUnixNano": str(base + i * 1000 + 500),
                   "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                                  {"key": "gen_ai.tool.name", "value": {"stringValue": "grep"}},
                                  {"key": "gen_ai.tool.call.id", "value": {"stringValue": f"call-{t}-{r}-{i}"}},
                                  {"key": "gen_ai.agent.name", "value": {"stringValue": "bench"}}],
                   "status": {}})
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "b"}}]},
                                          "scopeSpans": [{"scope": {"name": "s"}, "spans": sp}]}]}).encode()
bodies = [[body(t, r) for r in range(reqs)] for t in range(4)]
def cpu():
    f = open(f"/proc/{srv.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def worker(t):
    c = http.client.HTTPConnection(host, int(port))
    for b in bodies[t]:
        c.request("POST", "/v1/traces", b, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
c0, t0 = cpu(), time.time()
ths = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
[x.start() for x in ths]; [x.join() for x in ths]
wall, c1 = time.time() - t0, cpu()
threads = [l for l in open(f"/proc/{srv.pid}/status") if l.startswith("Threads")][0].split()[1]
n = 4 * reqs * spans
print(json.dumps({"spans": n, "wall_s": round(wall, 2), "spans_per_s": round(n / wall), "server_cpu_us_per_span": round((c1 - c0) * 1e6 / n, 2), "server_threads": int(threads)}))
srv.terminate(); srv.wait(); shutil.rmtree(work)
