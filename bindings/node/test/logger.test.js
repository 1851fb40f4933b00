// @ts-check
'use strict';
// The drop-in tool-call logger: the better-sqlite3 logger's own test list,
// ported (insert shape, ids, fallbacks, the content sentinel, round trips,
// fail-fast construction and close, duplicate ids), plus the three queries.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const {
  AuditLogger,
  ClosedError,
  InvalidEventError,
  InvalidArgumentError,
  NoLogError,
  TOOL_CALL_COLUMNS,
  open,
} = require('..');
const { filesContaining, filesUnder, logDir, tempDir } = require('./helpers');

/** A logger on a fresh folder. */
function freshLogger() {
  return new AuditLogger(logDir(), { create: true });
}

const COLUMNS = [...TOOL_CALL_COLUMNS].sort();

test('insert shape for several kinds of tool row', async () => {
  const logger = freshLogger();
  const at = new Date('2026-11-23T08:00:00.123Z');
  /** @type {[import('..').ToolCallRow, Partial<import('..').ToolCall>][]} */
  const kinds = [
    // An HTTP tool that succeeded.
    [
      { id: 'http-1', session_id: 's-1', engine: 'openai', tool_name: 'http.get', args_summary: 'GET example.org/a', duration_ms: 41, http_status: 200, result_truncated: false, result_bytes: 5120, created_at: at },
      { id: 'http-1', session_id: 's-1', engine: 'openai', tool_name: 'http.get', args_summary: 'GET example.org/a', duration_ms: 41, exit_code: null, http_status: 200, error: null, result_truncated: false, result_bytes: 5120, created_at: at },
    ],
    // A shell tool that failed, with SQLite-style 1 for a truncated result.
    [
      { id: 'shell-1', session_id: 's-1', engine: 'ollama', tool_name: 'shell.exec', args_summary: 'ls -la /tmp', duration_ms: 1.25, exit_code: 2, error: 'exit status 2', result_truncated: 1, result_bytes: 65536, created_at: at },
      { id: 'shell-1', session_id: 's-1', engine: 'ollama', tool_name: 'shell.exec', args_summary: 'ls -la /tmp', duration_ms: 1.25, exit_code: 2, http_status: null, error: 'exit status 2', result_truncated: true, result_bytes: 65536, created_at: at },
    ],
    // An upstream error: HTTP status and error text, no duration.
    [
      { id: 'http-2', session_id: 's-2', engine: 'anthropic', tool_name: 'web.fetch', http_status: 502, error: 'bad gateway', created_at: at.getTime() },
      { id: 'http-2', session_id: 's-2', engine: 'anthropic', tool_name: 'web.fetch', args_summary: null, duration_ms: null, exit_code: null, http_status: 502, error: 'bad gateway', result_truncated: null, result_bytes: null, created_at: at },
    ],
    // The least a gateway may send: a tool name.
    [
      { id: 'min-1', tool_name: 'noop', created_at: '2026-11-23T09:00:00.123456+01:00' },
      { id: 'min-1', session_id: 'unknown', engine: 'unknown', tool_name: 'noop', args_summary: null, duration_ms: null, exit_code: null, http_status: null, error: null, result_truncated: null, result_bytes: null, created_at: at },
    ],
  ];
  for (const [row] of kinds) logger.record(row);
  for (const [row, want] of kinds) {
    const got = logger.get(/** @type {string} */ (row.id));
    assert.ok(got, `row ${row.id} is stored`);
    assert.deepEqual(Object.keys(got).sort(), COLUMNS, 'exactly the table columns');
    for (const [k, v] of Object.entries(want)) assert.deepEqual(got[/** @type {keyof typeof got} */ (k)], v, `${row.id}.${k}`);
    assert.ok(got.created_at instanceof Date);
  }
  logger.close();
});

test('ids are generated when absent, distinct, and returned', () => {
  const logger = freshLogger();
  const ids = new Set();
  for (let i = 0; i < 2000; i++) ids.add(logger.record({ tool_name: 't', session_id: 's' }));
  assert.equal(ids.size, 2000);
  for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(logger.sessionCalls('s').length, 2000);
  assert.equal(logger.record({ id: 'given', tool_name: 't' }), 'given');
  logger.close();
});

test('session_id and engine fall back to "unknown"; created_at is set when absent', () => {
  const logger = freshLogger();
  const before = Date.now();
  const a = logger.record({ tool_name: 't' });
  const b = logger.record({ tool_name: 't', session_id: null, engine: null, created_at: null });
  const after = Date.now();
  for (const id of [a, b]) {
    const row = logger.get(id);
    assert.ok(row);
    assert.equal(row.session_id, 'unknown');
    assert.equal(row.engine, 'unknown');
    assert.ok(row.created_at.getTime() >= before && row.created_at.getTime() <= after, 'created now');
  }
  assert.equal(logger.sessionCalls('unknown').length, 2);
  assert.equal(logger.toolCalls('unknown', 't').length, 2);
  logger.close();
});

test('no content, stdout, stderr or body ever reaches a file of the log folder', async () => {
  const dir = logDir();
  const SENTINEL = 'SENTINEL-8f14e45f-do-not-store';
  // What a file-reading tool returned: the body carries the sentinel.
  const fileBody = `line 1\nsecret: ${SENTINEL}\n`;
  // Small segments: several seal, so sealed-segment index files exist too.
  const logger = new AuditLogger(dir, { create: true, segmentMaxBytes: 64 * 1024 });
  const contentKeys = ['content', 'stdout', 'stderr', 'body', 'response_body', 'request_body', 'result', 'output', 'headers', 'args'];
  for (let i = 0; i < 500; i++) {
    /** @type {Record<string, unknown>} */
    const row = {
      session_id: `s-${i % 5}`,
      engine: 'ollama',
      tool_name: 'fs.read_file',
      args_summary: `path=/srv/notes/${i}.txt POSITIVE-CONTROL`,
      duration_ms: i,
      error: i % 7 === 0 ? 'EACCES' : null,
    };
    for (const k of contentKeys) row[k] = k === 'headers' ? { authorization: SENTINEL } : fileBody;
    row.nested = { deep: [{ body: SENTINEL }] };
    logger.record(/** @type {any} */ (row));
  }
  // A key that throws when read proves that record() never looks at it.
  const trap = { tool_name: 'trap' };
  Object.defineProperty(trap, 'stdout', {
    enumerable: true,
    get() {
      throw new Error('record() read a content field');
    },
  });
  logger.record(trap);
  await logger.flush();
  // Queries write the index files too: they are part of the folder scanned.
  assert.equal(logger.sessionCalls('s-0').length, 100);
  assert.equal(logger.errorCalls().length, 72);
  for (const row of logger.sessionCalls('s-1')) {
    assert.ok(!JSON.stringify(row).includes(SENTINEL));
    assert.deepEqual(Object.keys(row).sort(), COLUMNS);
  }
  logger.close();
  const files = filesUnder(dir);
  assert.ok(files.some((f) => f.endsWith('.seg')), 'a segment was written');
  assert.ok(files.filter((f) => f.endsWith('.seg')).length > 1, 'segments were sealed');
  assert.ok(files.some((f) => f.endsWith('.idx')), 'an index was written');
  assert.deepEqual(filesContaining(dir, 'POSITIVE-CONTROL').length > 0, true, 'the scan sees stored text');
  assert.deepEqual(filesContaining(dir, SENTINEL), [], 'the sentinel is in no file');
  assert.deepEqual(filesContaining(dir, 'secret:'), []);
});

test('a redacted args summary survives the round trip exactly', () => {
  const logger = freshLogger();
  const summaries = [
    "curl -H 'Authorization: Bearer [REDACTED]' https://api.example.org/v1?q=\"x\"",
    'multi\nline\ttabs \\ backslash',
    'unicode: héllo 日本 🎉 \u0000 nul',
    '',
    'x'.repeat(100_000),
  ];
  const ids = summaries.map((args_summary) => logger.record({ tool_name: 'http', args_summary }));
  ids.forEach((id, i) => assert.equal(logger.get(id)?.args_summary, summaries[i]));
  logger.close();
});

test('the constructor throws on a folder that was not set up', () => {
  const missing = path.join(tempDir(), 'missing');
  assert.throws(() => new AuditLogger(missing), (e) => e instanceof NoLogError && e.code === 'AUDITLOG_NO_LOG');
  assert.ok(!fs.existsSync(missing), 'nothing was created');

  const empty = tempDir();
  assert.throws(() => new AuditLogger(empty), NoLogError);
  assert.deepEqual(fs.readdirSync(empty), [], 'nothing was written');

  const foreign = tempDir();
  fs.writeFileSync(path.join(foreign, 'audit.db'), 'not ours');
  assert.throws(() => new AuditLogger(foreign, { create: true }), (e) => e instanceof NoLogError && e.code === 'AUDITLOG_NOT_A_LOG');
  assert.deepEqual(fs.readdirSync(foreign), ['audit.db'], 'a foreign folder is left alone');

  // Once set up, the same folder opens without `create`.
  const dir = logDir();
  new AuditLogger(dir, { create: true }).close();
  new AuditLogger(dir).close();
});

test('record() throws after close, whoever closed', () => {
  const logger = freshLogger();
  logger.record({ tool_name: 't' });
  logger.close();
  assert.throws(() => logger.record({ tool_name: 't' }), (e) => e instanceof ClosedError && e.code === 'AUDITLOG_CLOSED');
  assert.throws(() => logger.sessionCalls('s'), ClosedError);
  logger.close(); // idempotent

  const store = open(logDir(), { create: true });
  const shared = new AuditLogger(store);
  store.close();
  assert.throws(() => shared.record({ tool_name: 't' }), ClosedError);
  assert.throws(() => new AuditLogger(store), ClosedError);
});

test('the store stays intact after a duplicate id', async () => {
  const dir = logDir();
  const logger = new AuditLogger(dir, { create: true });
  const at = new Date('2026-11-23T08:00:00Z');
  logger.record({ id: 'a', session_id: 's', tool_name: 'first', created_at: at });
  logger.record({ id: 'dup', session_id: 's', tool_name: 'first', args_summary: 'kept', created_at: new Date(at.getTime() + 1) });
  // The same id again: kept in the log as evidence, ignored by the views.
  assert.equal(logger.record({ id: 'dup', session_id: 's', tool_name: 'second', args_summary: 'ignored', error: 'x', created_at: new Date(at.getTime() + 2) }), 'dup');
  logger.record({ id: 'b', session_id: 's', tool_name: 'after', created_at: new Date(at.getTime() + 3) });
  await logger.flush();
  const check = (/** @type {AuditLogger} */ l) => {
    assert.deepEqual(l.sessionCalls('s').map((r) => r.id), ['a', 'dup', 'b']);
    assert.equal(l.get('dup')?.args_summary, 'kept');
    assert.equal(l.get('dup')?.error, null);
    assert.deepEqual(l.errorCalls(), []);
  };
  check(logger);
  const stats = await logger.store.stats();
  assert.equal(stats.anomalies?.duplicateRunStarted, 1);
  assert.equal(stats.events, 8);
  assert.equal((await logger.store.verify()).events, 8);
  logger.close();
  const again = new AuditLogger(dir);
  check(again);
  again.close();
});

test('bad fields are refused with the field named, and nothing is written', async () => {
  const logger = freshLogger();
  /** @type {[any, string, any][]} */
  const cases = [
    [{}, 'tool_name', InvalidEventError],
    [{ tool_name: 't', duration_ms: -1 }, 'duration_ms', InvalidEventError],
    [{ tool_name: 't', http_status: 2000 }, 'http_status', InvalidEventError],
    [{ tool_name: 't', exit_code: 0.5 }, 'exit_code', InvalidEventError],
    [{ tool_name: 't', id: '' }, 'id', InvalidEventError],
    [{ tool_name: 't', session_id: 42 }, 'session_id', InvalidArgumentError],
    [{ tool_name: 't', duration_ms: '12' }, 'duration_ms', InvalidArgumentError],
    [{ tool_name: 't', result_truncated: 'yes' }, 'result_truncated', InvalidArgumentError],
    [{ tool_name: 't', created_at: 'yesterday' }, 'created_at', InvalidArgumentError],
    [null, 'row', InvalidArgumentError],
  ];
  for (const [row, field, Class] of cases) {
    assert.throws(() => logger.record(row), (/** @type {any} */ e) => e instanceof Class && e.message.includes(field), `${field} named`);
  }
  await logger.flush();
  assert.equal(logger.store.counters().appended, 0);
  logger.close();
});

test('the three queries: a session in time order, an engine and tool in a range, calls with an error', () => {
  const logger = freshLogger();
  const t0 = Date.parse('2026-11-23T08:00:00Z');
  const minute = 60_000;
  // Recorded out of time order on purpose.
  const rows = [
    { id: 'c3', session_id: 's-a', engine: 'ollama', tool_name: 'web_search', created_at: t0 + 3 * minute },
    { id: 'c1', session_id: 's-a', engine: 'ollama', tool_name: 'web_search', created_at: t0 + 1 * minute, error: 'timeout' },
    { id: 'c2', session_id: 's-b', engine: 'openai', tool_name: 'web_search', created_at: t0 + 2 * minute },
    { id: 'c4', session_id: 's-a', engine: 'ollama', tool_name: 'shell', created_at: t0 + 4 * minute, error: '' },
    { id: 'c5', session_id: 's-b', engine: 'ollama', tool_name: 'web_search', created_at: t0 + 5 * minute },
    // "ollama/web" + "search" could read as "ollama" + "web/search": it does not.
    { id: 'c6', session_id: 's-c', engine: 'ollama/web', tool_name: 'search', created_at: t0 },
    { id: 'c7', session_id: 's-c', engine: 'ollama', tool_name: 'web/search', created_at: t0 },
  ];
  for (const r of rows) logger.record(r);
  // Runs that are not tool-call rows never show up as rows.
  logger.store.append({ kind: 'run_started', run_id: 'other', ts: new Date(t0), channel_id: 's-a', skill_id: 'ollama/web_search', caller_id: 'ollama' });
  logger.store.append({ kind: 'run_finished', run_id: 'other', ts: new Date(t0), status: 'error' });

  const ids = (/** @type {import('..').ToolCall[]} */ rs) => rs.map((r) => r.id);
  assert.deepEqual(ids(logger.sessionCalls('s-a')), ['c1', 'c3', 'c4']);
  assert.deepEqual(ids(logger.sessionCalls('s-a', { order: 'desc' })), ['c4', 'c3', 'c1']);
  assert.deepEqual(ids(logger.sessionCalls('s-a', { limit: 2 })), ['c1', 'c3']);
  assert.deepEqual(ids(logger.sessionCalls('s-a', { limit: 2, order: 'desc' })), ['c4', 'c3']);
  assert.deepEqual(ids(logger.sessionCalls('s-a', { since: t0 + 2 * minute })), ['c3', 'c4']);
  assert.deepEqual(ids(logger.sessionCalls('nobody')), []);

  assert.deepEqual(ids(logger.toolCalls('ollama', 'web_search')), ['c1', 'c3', 'c5']);
  const range = { since: new Date(t0 + 2 * minute), until: '2026-11-23T08:04:00Z' };
  assert.deepEqual(ids(logger.toolCalls('ollama', 'web_search', range)), ['c3']);
  assert.deepEqual(ids(logger.toolCalls('ollama', 'web/search')), ['c7']);
  assert.deepEqual(ids(logger.toolCalls('ollama/web', 'search')), ['c6']);

  assert.deepEqual(ids(logger.errorCalls()), ['c1', 'c4']);
  assert.deepEqual(logger.errorCalls().map((r) => r.error), ['timeout', '']);
  assert.deepEqual(ids(logger.errorCalls({ order: 'desc', limit: 1 })), ['c4']);
  assert.deepEqual(ids(logger.errorCalls({ until: t0 + 2 * minute })), ['c1']);
  assert.throws(() => logger.sessionCalls('s-a', { order: /** @type {any} */ ('up') }), InvalidArgumentError);
  logger.close();
});

test('an oldest-first page skips runs that are not rows', () => {
  const logger = freshLogger();
  const t0 = Date.parse('2026-11-23T08:00:00Z');
  // The oldest matches of the session are foreign runs.
  for (let i = 0; i < 5; i++) {
    logger.store.append({ kind: 'run_started', run_id: `foreign-${i}`, ts: new Date(t0 + i), channel_id: 's' });
  }
  for (let i = 0; i < 5; i++) logger.record({ id: `row-${i}`, session_id: 's', tool_name: 't', created_at: t0 + 10 + i });
  assert.deepEqual(logger.sessionCalls('s', { limit: 3 }).map((r) => r.id), ['row-0', 'row-1', 'row-2']);
  assert.deepEqual(logger.sessionCalls('s', { limit: 3, order: 'desc' }).map((r) => r.id), ['row-4', 'row-3', 'row-2']);
  logger.close();
});
