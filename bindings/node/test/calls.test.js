// @ts-check
'use strict';
// calls(), countCalls() and countCallsBy(): tool calls as records of their
// own (standalone `tool_call` events) and within runs (`run_log` with
// `event_type` `tool_call`), filtered, paged by cursor and counted; an open
// store and `auditlog serve` on the same log give the same answers.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');

const { InvalidArgumentError, InvalidEventError, connect, open } = require('..');
const { logDir } = require('./helpers');

const BIN = process.env.AUDITLOG_BIN ?? path.join(__dirname, '../../../target/debug/auditlog');
const noServer = fs.existsSync(BIN) ? false : 'no auditlog binary: run bindings/node/test.sh, or set AUDITLOG_BIN';

/** µs since the epoch (event `ts` numbers are µs, as in the contract; filter instants as numbers are ms). */
const T0 = 1_795_420_800_000_000;

/** @type {import('..').AuditEvent[]} */
const EVENTS = [];
// Six standalone calls: their scope is their own.
for (let i = 0; i < 6; i++) {
  EVENTS.push({
    kind: 'tool_call',
    run_id: '',
    ts: T0 + i,
    call_id: `c-${i}`,
    tool: i % 2 ? 'fs.read' : 'http.get',
    engine: 'openai',
    status: i % 3 === 0 ? 'error' : 'ok',
    ...(i % 3 === 0 ? { error_type: 'denied' } : {}),
    duration_ms: i,
    channel_id: `sess-${i % 2}`,
    caller_id: 'agent-1',
    workspace_id: 'ws-1',
    request_id: `req-${i}`,
    input_bytes: 10 * i,
    payload: { retry: i },
    extra_field: `x-${i}`,
  });
}
// A run with two tool calls as log lines (their channel and caller are the
// run's), and a note that is no call.
EVENTS.push(
  { kind: 'run_started', run_id: 'r-1', ts: T0 + 10, skill_id: 'web.search', caller_id: 'agent-2', channel_id: 'sess-9' },
  { kind: 'run_log', run_id: 'r-1', ts: T0 + 11, seq: 0, event_type: 'tool_call', payload: { tool: 'http.get', status: 'error', error_type: 'timeout', duration_ms: 5000 } },
  { kind: 'run_log', run_id: 'r-1', ts: T0 + 12, seq: 1, event_type: 'note', payload: 'not a call' },
  { kind: 'run_log', run_id: 'r-1', ts: T0 + 13, seq: 2, event_type: 'tool_call', payload: { tool: 'fs.read', status: 'ok', engine: 'anthropic' } },
  // A standalone-kind call inside the run, without its own channel: the run's.
  { kind: 'tool_call', run_id: 'r-1', ts: T0 + 14, tool: 'shell', status: 'ok', caller_id: 'agent-3' },
  { kind: 'run_finished', run_id: 'r-1', ts: T0 + 20, status: 'ok', tool_calls: 3 },
  // A dry run's call: left out unless asked for.
  { kind: 'run_started', run_id: 'dry', ts: T0 + 30, skill_id: 'web.search', dry_run: true },
  { kind: 'run_log', run_id: 'dry', ts: T0 + 31, seq: 0, event_type: 'tool_call', payload: { tool: 'http.get', status: 'ok' } },
);

/** @param {import('..').Call[]} calls */
const ids = (calls) => calls.map((c) => c.request_id || `${c.run_id}:${c.tool}`);

/**
 * Every answer the tests look at, and their checks.
 * @param {import('..').AuditStore} store
 */
function answers(store) {
  const all = store.calls();
  assert.equal(all.cursor, null, 'no limit: no cursor');
  assert.deepEqual(ids(all.calls), ['r-1:shell', 'r-1:fs.read', 'r-1:http.get', 'req-5', 'req-4', 'req-3', 'req-2', 'req-1', 'req-0']);

  const first = all.calls[all.calls.length - 1];
  assert.equal(first.source, 'tool_call');
  assert.equal(first.run_id, '');
  assert.equal(first.lsn, 0);
  assert.equal(first.ts, '2026-11-23T08:00:00.000000Z');
  assert.equal(first.tool, 'http.get');
  assert.equal(first.status, 'error');
  assert.equal(first.error_type, 'denied');
  assert.equal(first.duration_ms, 0);
  assert.deepEqual(first.payload, { retry: 0 });
  assert.equal(first.extra_field, 'x-0', 'unknown fields come back');
  const logged = all.calls[1];
  assert.equal(logged.source, 'run_log');
  assert.equal(logged.run_id, 'r-1');
  assert.equal(logged.engine, 'anthropic');
  assert.equal(logged.channel_id, 'sess-9', "a run_log call's scope is its run's");
  assert.equal(logged.caller_id, 'agent-2');
  const shell = all.calls[0];
  assert.equal(shell.channel_id, 'sess-9', 'its own where set, else its run');
  assert.equal(shell.caller_id, 'agent-3');

  const bySession = store.calls({ session: 'sess-1', oldestFirst: true });
  assert.deepEqual(ids(bySession.calls), ['req-1', 'req-3', 'req-5']);
  assert.deepEqual(store.calls({ channel: 'sess-1', oldestFirst: true }), bySession, 'channel is session');
  assert.deepEqual(ids(store.calls({ agent: 'agent-2' }).calls), ['r-1:fs.read', 'r-1:http.get']);
  assert.deepEqual(ids(store.calls({ runId: 'r-1', tool: 'http.get' }).calls), ['r-1:http.get']);
  assert.deepEqual(ids(store.calls({ errorType: 'denied' }).calls), ['req-3', 'req-0']);
  assert.deepEqual(ids(store.calls({ engine: 'openai', status: 'ok', workspace: 'ws-1' }).calls), ['req-5', 'req-4', 'req-2', 'req-1']);
  assert.deepEqual(ids(store.calls({ since: '2026-11-23T08:00:00.000002Z', until: '2026-11-23T08:00:00.000004Z', oldestFirst: true }).calls), ['req-2', 'req-3', 'req-4']);
  assert.deepEqual(ids(store.calls({ runId: 'dry' }).calls), [], 'dry runs left out');
  assert.deepEqual(ids(store.calls({ runId: 'dry', includeDryRun: true }).calls), ['dry:http.get']);

  // Paging by cursor, both orders.
  /** @param {import('..').CallsOptions} options */
  const pages = (options) => {
    const out = [];
    /** @type {string | undefined} */
    let cursor;
    for (;;) {
      const page = store.calls({ ...options, limit: 4, cursor });
      out.push(ids(page.calls));
      if (page.cursor === null) return out;
      assert.equal(page.calls.length, 4);
      const last = page.calls[page.calls.length - 1];
      assert.equal(page.cursor, `${Date.parse(last.ts) * 1000 + Number(last.ts.slice(23, 26))},${last.lsn}`);
      cursor = page.cursor;
    }
  };
  const newest = pages({});
  assert.deepEqual(newest, [['r-1:shell', 'r-1:fs.read', 'r-1:http.get', 'req-5'], ['req-4', 'req-3', 'req-2', 'req-1'], ['req-0']]);
  assert.deepEqual(pages({ oldestFirst: true }).flat(), newest.flat().reverse());
  assert.deepEqual(ids(store.calls({ agent: 'agent-1', cursor: `${T0 + 3},3` }).calls), ['req-2', 'req-1', 'req-0']);
  const exact = store.calls({ limit: 9 });
  assert.equal(exact.calls.length, 9);
  assert.notEqual(exact.cursor, null, 'a full page has a cursor...');
  assert.deepEqual(store.calls({ cursor: /** @type {string} */ (exact.cursor) }), { calls: [], cursor: null }, '...that may lead to nothing');

  // Counts.
  assert.equal(store.countCalls(), 9);
  assert.equal(store.countCalls({ status: 'error' }), 3);
  assert.equal(store.countCalls({ includeDryRun: true }), 10);
  assert.equal(store.countCalls({ session: 'sess-9' }), 3);
  assert.deepEqual(store.countCallsBy('tool'), [
    { value: 'fs.read', count: 4 },
    { value: 'http.get', count: 4 },
    { value: 'shell', count: 1 },
  ]);
  assert.deepEqual(store.countCallsBy('status', { workspace: 'ws-1', since: '2026-11-23T08:00:00.000003Z' }), [
    { value: 'ok', count: 2 },
    { value: 'error', count: 1 },
  ]);
  assert.deepEqual(store.countCallsBy('errorType', { status: 'error' }), [
    { value: 'denied', count: 2 },
    { value: 'timeout', count: 1 },
  ]);
  assert.deepEqual(store.countCallsBy('runId'), [
    { value: '', count: 6 },
    { value: 'r-1', count: 3 },
  ]);
  assert.deepEqual(store.countCallsBy('session'), store.countCallsBy('channel'));

  // Bad arguments name what is wrong.
  assert.throws(() => store.calls(/** @type {any} */ ({ colour: 'red' })), (e) => e instanceof InvalidArgumentError && /colour/.test(e.message));
  assert.throws(() => store.calls({ cursor: 'nope' }), InvalidArgumentError);
  assert.throws(() => store.calls({ limit: 1.5 }), InvalidArgumentError);
  assert.throws(() => store.countCalls(/** @type {any} */ ({ limit: 1 })), InvalidArgumentError);
  assert.throws(() => store.countCallsBy(/** @type {any} */ ('colour')), InvalidArgumentError);

  return {
    all,
    pages: newest,
    filtered: [bySession, store.calls({ runId: 'r-1' }), store.calls({ errorType: 'denied', limit: 1 })],
    counts: [store.countCalls(), store.countCalls({ tool: 'fs.read' })],
    by: ['tool', 'engine', 'session', 'agent', 'workspace', 'status', 'errorType', 'runId'].map((k) =>
      store.countCallsBy(/** @type {import('..').CallKey} */ (k)),
    ),
  };
}

/** `auditlog --dir DIR serve --no-http --no-search`, once ready. @param {string} dir */
async function startServer(dir) {
  const child = spawn(BIN, ['--dir', dir, 'serve', '--no-http', '--no-search'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const lines = readline.createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) });
  const first = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`auditlog serve on ${dir} exited (${code}) before it was ready`)));
  });
  lines.close();
  const { socket } = JSON.parse(/** @type {string} */ (first));
  return {
    /** @type {string} */ socket,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

test('calls: standalone and in-run tool calls, filtered, paged and counted, open and served alike', { skip: noServer }, async () => {
  const dir = logDir();
  const store = open(dir, { create: true });
  assert.equal(store.appendBatch(EVENTS), EVENTS.length);
  assert.throws(() => store.append({ kind: 'tool_call', run_id: '', tool: 'x', http_status: 1000 }), (e) => e instanceof InvalidEventError && /http_status/.test(e.message));
  await store.flush();
  assert.equal(store.count({ includeDryRun: true }), 2, 'standalone calls make no run');
  const embedded = answers(store);
  store.close();

  const srv = await startServer(dir);
  try {
    const served = connect(srv.socket);
    try {
      assert.deepEqual(answers(served), embedded);
    } finally {
      served.close();
    }
  } finally {
    await srv.kill();
  }
});

test('calls: written through connect() are found by the open store', { skip: noServer }, async () => {
  const dir = logDir();
  open(dir, { create: true }).close();
  const srv = await startServer(dir);
  let viaServer;
  try {
    const served = connect(srv.socket);
    served.appendBatch(EVENTS);
    viaServer = answers(served);
    served.close();
  } finally {
    await srv.kill();
  }
  const store = open(dir);
  try {
    assert.deepEqual(answers(store), viaServer);
  } finally {
    store.close();
  }
});
