// @ts-check
'use strict';
// connect(): the same AuditStore over `auditlog serve` (a real server,
// started here), answering as an open store does; a server that is not
// running and one killed mid-use fail with IoError, without hanging.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');

const { AuditLogger, ClosedError, InvalidEventError, IoError, InvalidArgumentError, NotFoundError, connect, open } = require('..');
const { logDir, tempDir } = require('./helpers');

/** The auditlog binary: $AUDITLOG_BIN (test.sh sets it) or the workspace's dev build. */
function binary() {
  const bin = process.env.AUDITLOG_BIN ?? path.join(__dirname, '../../../target/debug/auditlog');
  return fs.existsSync(bin) ? bin : null;
}

const BIN = binary();
const skip = BIN === null ? 'no auditlog binary: run bindings/node/test.sh, or set AUDITLOG_BIN' : false;

/**
 * `auditlog --dir DIR serve --no-http --no-search`, once it accepts
 * connections (its ready line names the socket).
 * @param {string} dir
 */
async function startServer(dir) {
  const child = spawn(/** @type {string} */ (BIN), ['--dir', dir, 'serve', '--no-http', '--no-search'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const lines = readline.createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) });
  const first = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`auditlog serve on ${dir} exited (${code}) before it was ready`)));
  });
  lines.close();
  const { socket } = JSON.parse(/** @type {string} */ (first));
  return {
    dir,
    /** @type {string} */ socket,
    /** SIGKILL, and wait for the process to be gone. */
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** @type {Array<() => Promise<void>>} */
const cleanups = [];
test.after(async () => {
  for (const c of cleanups) await c();
});

/** A server on a fresh folder, killed when the tests end. */
async function server() {
  const srv = await startServer(path.join(tempDir(), 'served'));
  cleanups.push(() => srv.kill());
  return srv;
}

const T0 = Date.parse('2026-11-23T08:00:00Z');
const us = (/** @type {number} */ ms) => ms * 1000;

/** The same events for both stores. @type {import('..').AuditEvent[]} */
const EVENTS = [
  { kind: 'run_started', run_id: 'parent', ts: us(T0), skill_id: 'plan', caller_id: 'u-1', channel_id: 'c-1', inputs: { q: 'x', nested: { keep: [1, 2] } }, extra_field: 'kept' },
  { kind: 'run_started', run_id: 'child', ts: '2026-11-23T08:00:01.000250Z', skill_id: 'web.search', caller_id: 'u-1', channel_id: 'c-1', parent_run_id: 'parent' },
  { kind: 'run_log', run_id: 'child', ts: new Date(T0 + 1500), seq: 1, event_type: 'tool_call', payload: { tool: 'http.get', status: 'error', error_type: 'timeout', duration_ms: 5000 } },
  { kind: 'run_log', run_id: 'child', ts: new Date(T0 + 1400), seq: 0, event_type: 'note', payload: 'first' },
  { kind: 'run_finished', run_id: 'child', ts: new Date(T0 + 2000), status: 'error', error: 'upstream timeout', tool_calls: 1, runtime_seconds: 1.5 },
  { kind: 'run_started', run_id: 'dry', ts: new Date(T0 + 3000), skill_id: 'web.search', dry_run: true },
];

/** @param {import('..').AuditStore} store */
async function answers(store) {
  /** @param {() => unknown} f */
  const outcome = (f) => {
    try {
      return f();
    } catch (e) {
      return /** @type {any} */ (e).code;
    }
  };
  /** @type {unknown[]} */
  const replayed = [];
  for await (const e of store.replay()) {
    // The server keeps each request's idempotency key on its first event
    // (`_ingest`, docs/protocol.md): replay shows it like any extra field.
    const { _ingest, ...rest } = /** @type {Record<string, unknown>} */ (e);
    if (store.served) assert.ok(e.lsn !== 0 || _ingest !== undefined, 'the first event of a request carries its key');
    replayed.push(rest);
  }
  /** @type {unknown[]} */
  const since = [];
  for await (const e of store.replay({ since: T0 + 1450, fromLsn: 1 })) since.push(e.lsn);
  /** @type {unknown[]} */
  const tail = [];
  for await (const e of store.tail({ last: 2 })) tail.push(e.lsn);
  const stats = await store.stats();
  const verify = await store.verify();
  return {
    run: store.run('child'),
    none: store.run('nope'),
    logs: store.logs('child'),
    runs: store.runs({ includeDryRun: true }),
    page: store.runs({ caller: 'u-1' }, { limit: 1, offset: 1 }),
    filtered: store.runs({ topLevel: true, since: new Date(T0), until: '2026-11-23T08:00:00Z' }),
    count: store.count({ skill: 'web.search', includeDryRun: true }),
    children: store.children('parent', { includeDryRun: true }),
    chain: store.chain('child'),
    chainNope: outcome(() => store.chain('nope')),
    lastRun: store.lastRun(['web.search', 'plan', 'none'], { includeFailed: true }),
    errors: store.errors(),
    finishedBefore: store.finishedBefore(new Date(T0 + 5000)),
    badFilter: outcome(() => store.runs(/** @type {any} */ ({ skil: 'x' }))),
    replayed,
    since,
    tail,
    // Bytes and digests differ by the stored idempotency keys.
    stats: { ...stats, counters: undefined, bytes: stats.bytes > 0, headDigest: /^[0-9a-f]{64}$/.test(stats.headDigest) },
    verify: { ...verify, uncommittedTailBytes: undefined, bytes: verify.bytes > 0, headDigest: verify.headDigest === stats.headDigest },
    flush: await store.flush(),
  };
}

test('connect() answers as open() does, through the same AuditStore class', { skip }, async () => {
  const srv = await server();
  const embedded = open(logDir(), { create: true });
  const served = connect(srv.socket, { retryForMs: 5000 });
  assert.equal(served.constructor, embedded.constructor);
  assert.equal(served.served, true);
  assert.equal(embedded.served, false);
  assert.equal(served.dir, srv.socket);
  for (const store of [embedded, served]) {
    assert.equal(store.appendBatch(EVENTS.slice(0, 3)), 3);
    for (const e of EVENTS.slice(3)) store.append(e);
    await store.flush();
  }
  const [a, b] = [await answers(embedded), await answers(served)];
  for (const k of Object.keys(a)) assert.deepEqual(b[/** @type {keyof typeof b} */ (k)], a[/** @type {keyof typeof a} */ (k)], k);
  assert.equal(b.chainNope, 'AUDITLOG_NOT_FOUND');
  assert.equal(b.badFilter, 'AUDITLOG_INVALID_ARGUMENT');
  assert.equal(b.flush, 6);

  // Bad events are refused with the field named; a bad batch stores nothing.
  for (const store of [embedded, served]) {
    assert.throws(() => store.append(/** @type {any} */ ({ kind: 'run_begun', run_id: 'r' })), (e) => e instanceof InvalidEventError && /kind/.test(e.message));
    assert.throws(() => store.appendBatch([{ kind: 'run_started', run_id: 'ok' }, { kind: 'run_started', run_id: '' }]), (e) => e instanceof InvalidEventError && /event 1/.test(e.message));
    assert.equal(store.run('ok'), null);
  }
  // The counters are the server's: every append it stored.
  assert.equal(served.counters().durableLsn, 6);
  // Retention and the tool-call logger work on it too.
  const [ra, rb] = [await embedded.retain({ before: T0 }), await served.retain({ before: T0 })];
  assert.deepEqual(rb, ra);
  for (const store of [embedded, served]) {
    const logger = new AuditLogger(store);
    const id = logger.record({ session_id: 's-1', engine: 'mcp', tool_name: 'fetch', duration_ms: 12, http_status: 200 });
    assert.equal(logger.get(id)?.tool_name, 'fetch');
    assert.deepEqual(logger.sessionCalls('s-1').map((r) => r.id), [id]);
  }
  embedded.close();
  served.close();
});

test('a served append is durable when it returns; many clients append at once', { skip }, async () => {
  const srv = await server();
  const clients = Array.from({ length: 4 }, () => connect(srv.socket));
  clients.forEach((c, i) => {
    for (let n = 0; n < 50; n++) c.append({ kind: 'run_started', run_id: `c${i}-${n}`, skill_id: 'k' });
  });
  // Killed at once: everything acknowledged is stored (read back after a restart).
  await srv.kill();
  const again = await startServer(srv.dir);
  cleanups.push(() => again.kill());
  const reader = connect(again.socket);
  assert.equal(reader.count({ skill: 'k' }), 200);
  for (const c of clients) c.close();
  reader.close();
});

test('connect() with no server fails with IoError naming the socket, without hanging', { skip }, () => {
  const socket = path.join(tempDir(), 'auditlog.sock');
  const t0 = Date.now();
  assert.throws(() => connect(socket, { retryForMs: 100 }), (e) => e instanceof IoError && e.code === 'AUDITLOG_IO' && e.message.includes(socket));
  assert.ok(Date.now() - t0 < 10_000, 'gave up within its retry time');
  assert.throws(() => connect(socket, { retryForMs: -1 }), InvalidArgumentError);
  assert.throws(() => connect(socket, /** @type {any} */ ({ retry: 1 })), (e) => e instanceof InvalidArgumentError && /retry/.test(e.message));
  assert.throws(() => connect(''), InvalidArgumentError);
});

test('a server killed mid-use: calls fail with IoError, and work again after a restart', { skip }, async () => {
  const srv = await server();
  const store = connect(srv.socket, { retryForMs: 300 });
  store.append({ kind: 'run_started', run_id: 'before', skill_id: 'k' });
  await srv.kill();

  const t0 = Date.now();
  assert.throws(() => store.append({ kind: 'run_started', run_id: 'during' }), (e) => e instanceof IoError && e.message.includes(srv.socket));
  assert.throws(() => store.run('before'), IoError);
  await assert.rejects(store.flush(), IoError);
  await assert.rejects(store.stats(), IoError);
  await assert.rejects(async () => {
    for await (const _ of store.replay());
  }, IoError);
  assert.ok(Date.now() - t0 < 30_000, 'every call gave up within its retry time');

  const again = await startServer(srv.dir);
  cleanups.push(() => again.kill());
  store.append({ kind: 'run_started', run_id: 'after', skill_id: 'k' });
  assert.deepEqual(store.runs({ skill: 'k' }).map((r) => r.id).sort(), ['after', 'before']);
  assert.equal(store.run('during'), null, 'the refused append is not stored');
  store.close();
});

test('close lets go of the connections; the server keeps serving others', { skip }, async () => {
  const srv = await server();
  const a = connect(srv.socket);
  const b = connect(srv.socket);
  a.append({ kind: 'run_started', run_id: 'r' });
  a.close();
  a.close();
  assert.equal(a.closed, true);
  assert.throws(() => a.run('r'), ClosedError);
  await assert.rejects(a.flush(), ClosedError);
  assert.ok(b.run('r'));
  assert.throws(() => b.chain('nope'), NotFoundError);

  // A follower sees new events as the server stores them, and ends at close.
  /** @type {string[]} */
  const seen = [];
  const follower = (async () => {
    for await (const e of b.tail({ last: 1, follow: true, pollMs: 5 })) seen.push(e.run_id);
  })();
  b.append({ kind: 'run_started', run_id: 'new-1' });
  while (seen.length < 2) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(seen, ['r', 'new-1']);
  b.close();
  await follower;
});
