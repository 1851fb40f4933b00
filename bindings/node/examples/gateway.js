// @ts-check
'use strict';
// A runnable sketch of a TypeScript gateway's tool-call auditing with
// @auditlog/node: every tool call an engine makes is recorded through
// `safeAudit()` (a failing audit warns, never breaks the call), then the
// questions the old SQLite indexes answered are asked.
//
//   npm run build && node examples/gateway.js [log-folder]
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { AuditLogger } = require('..');

const dir = process.argv[2] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-audit-'));
// First start: create the folder. Later starts: a missing folder is an error.
const audit = new AuditLogger(dir, { create: !fs.existsSync(path.join(dir, 'MANIFEST')) });

/** @param {import('..').ToolCallRow} row */
function safeAudit(row) {
  try {
    audit.record(row);
  } catch (err) {
    console.warn(`audit failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A pretend tool: fails now and then, like real ones. */
async function runTool(/** @type {string} */ name, /** @type {string} */ args) {
  await new Promise((r) => setTimeout(r, 2));
  if (name === 'http.get' && args.includes('flaky')) return { ok: false, status: 502, body: '<html>upstream down</html>' };
  return { ok: true, status: 200, body: `result of ${name}(${args})` };
}

/** The gateway's tool dispatcher: run the tool, then audit the call. */
async function callTool(/** @type {string} */ session, /** @type {string} */ engine, /** @type {string} */ tool, /** @type {string} */ args) {
  const started = performance.now();
  const result = await runTool(tool, args);
  const row = {
    session_id: session,
    engine,
    tool_name: tool,
    args_summary: args.replace(/token=\w+/g, 'token=[REDACTED]'),
    duration_ms: Math.round(performance.now() - started),
    http_status: result.status,
    error: result.ok ? null : `HTTP ${result.status}`,
    result_bytes: Buffer.byteLength(result.body),
    result_truncated: false,
    // Content never reaches the log, even if a caller passes it along:
    body: result.body,
  };
  safeAudit(row);
  return result;
}

async function main() {
  await callTool('sess-1', 'ollama', 'web.search', 'q=auditlog');
  await callTool('sess-1', 'ollama', 'http.get', 'url=https://example.org/flaky?token=abc123');
  await callTool('sess-2', 'openai', 'http.get', 'url=https://example.org/ok');
  await callTool('sess-1', 'ollama', 'http.get', 'url=https://example.org/ok');
  await audit.flush(); // durable from here on

  console.log('calls of sess-1, in time order:');
  for (const c of audit.sessionCalls('sess-1')) console.log(`  ${c.created_at.toISOString()} ${c.engine} ${c.tool_name} ${c.args_summary}`);
  const lastHour = { since: new Date(Date.now() - 3_600_000) };
  console.log(`ollama http.get calls in the last hour: ${audit.toolCalls('ollama', 'http.get', lastHour).length}`);
  console.log('calls with an error:');
  for (const c of audit.errorCalls()) console.log(`  ${c.id} ${c.tool_name}: ${c.error}`);
  const report = await audit.store.verify();
  console.log(`verified ${report.events} events, head digest ${report.headDigest.slice(0, 16)}...`);
  audit.close();
  safeAudit({ tool_name: 'too.late' }); // warns: the logger is closed
  console.log(`log folder: ${dir}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
