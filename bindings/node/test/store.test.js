// @ts-check
'use strict';
// The store API: open, append, flush, the run queries with Dates, replay
// and tail as async iterators, stats, verify, retain, search, close, and
// an error with a code for each way to fail.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const {
  AuditLogError,
  ClosedError,
  CorruptError,
  InvalidArgumentError,
  InvalidEventError,
  LockedError,
  NoLogError,
  NotFoundError,
  QueueFullError,
  SearchError,
  UnsupportedVersionError,
  hasSearch,
  open,
} = require('..');
const { logDir } = require('./helpers');

const T0 = Date.parse('2026-11-23T08:00:00Z');
const us = (/** @type {number} */ ms) => ms * 1000;

/** A store holding a small family of runs. */
function seeded() {
  const store = open(logDir(), { create: true });
  store.appendBatch([
    { kind: 'run_started', run_id: 'parent', ts: us(T0), skill_id: 'plan', caller_id: 'u-1', channel_id: 'c-1', inputs: { q: 'x', nested: { keep: [1, 2] } }, extra_field: 'kept' },
    { kind: 'run_started', run_id: 'child', ts: '2026-11-23T08:00:01.000250Z', skill_id: 'web.search', caller_id: 'u-1', channel_id: 'c-1', parent_run_id: 'parent' },
    { kind: 'run_log', run_id: 'child', ts: new Date(T0 + 1500), seq: 1, event_type: 'tool_call', payload: { tool: 'http.get', status: 'error', error_type: 'timeout', duration_ms: 5000 } },
    { kind: 'run_log', run_id: 'child', ts: new Date(T0 + 1400), seq: 0, event_type: 'note', payload: 'first' },
    { kind: 'run_finished', run_id: 'child', ts: new Date(T0 + 2000), status: 'error', error: 'upstream timeout', tool_calls: 1, runtime_seconds: 1.5 },
    { kind: 'run_started', run_id: 'dry', ts: new Date(T0 + 3000), skill_id: 'web.search', dry_run: true },
  ]);
  return store;
}

test('open refuses what is not a log, a second writer and bad options', () => {
  const dir = logDir();
  assert.throws(() => open(dir), (e) => e instanceof NoLogError && e instanceof AuditLogError && e instanceof Error && e.code === 'AUDITLOG_NO_LOG');
  const store = open(dir, { create: true });
  assert.throws(() => open(dir), (e) => e instanceof LockedError && e.code === 'AUDITLOG_LOCKED');
  store.close();
  assert.throws(() => open(dir, /** @type {any} */ ({ creat: true })), (e) => e instanceof InvalidArgumentError && /creat/.test(e.message));
  assert.throws(() => open(dir, { durability: /** @type {any} */ ('sometimes') }), InvalidArgumentError);
  assert.throws(() => open(dir, { queueCapacity: 0 }), (e) => e instanceof InvalidArgumentError && /queue_capacity/.test(e.message));
  assert.throws(() => open(dir, { redaction: 'inputs.x explode' }), InvalidArgumentError);
  for (const durability of /** @type {const} */ (['batch', 'never', { intervalMs: 5 }])) open(dir, { durability }).close();
});

test('queries return plain objects with Dates, as the run view defines them', async () => {
  const store = seeded();
  const child = store.run('child');
  assert.ok(child);
  assert.deepEqual(child, {
    id: 'child', skill_id: 'web.search', caller_id: 'u-1', channel_id: 'c-1', parent_run_id: 'parent', inputs: {}, dry_run: false,
    started_at: new Date(T0 + 1000), finished_at: new Date(T0 + 2000), status: 'error', output: '', error: 'upstream timeout',
    tool_calls: 1, runtime_seconds: 1.5, input_tokens: 0, output_tokens: 0, thinking_tokens: 0,
  });
  assert.equal(store.run('nope'), null);
  assert.deepEqual(store.run('parent')?.inputs, { q: 'x', nested: { keep: [1, 2] } });
  assert.equal(store.run('parent')?.finished_at, null);
  assert.equal(store.run('parent')?.status, 'running');
  assert.deepEqual(store.logs('child').map((l) => [l.seq, l.event_type, l.ts.getTime()]), [[0, 'note', T0 + 1400], [1, 'tool_call', T0 + 1500]]);
  assert.deepEqual(store.runs().map((r) => r.id), ['child', 'parent']);
  assert.deepEqual(store.runs({ includeDryRun: true }, { limit: 2 }).map((r) => r.id), ['dry', 'child']);
  assert.deepEqual(store.runs({ skill: 'web.search', status: 'error' }).map((r) => r.id), ['child']);
  assert.deepEqual(store.runs({ topLevel: true, since: new Date(T0), until: '2026-11-23T08:00:00Z' }).map((r) => r.id), ['parent']);
  assert.equal(store.count({ caller: 'u-1' }), 2);
  assert.equal(store.count({ status: 'running' }), 1);
  assert.deepEqual(store.children('parent').map((r) => r.id), ['child']);
  assert.deepEqual(store.chain('child').map((r) => r.id), ['child', 'parent']);
  assert.throws(() => store.chain('nope'), (e) => e instanceof NotFoundError && e.code === 'AUDITLOG_NOT_FOUND');
  assert.deepEqual(store.lastRun(['web.search', 'plan', 'none']), { 'web.search': null, plan: new Date(T0), none: null });
  assert.deepEqual(store.lastRun(['web.search'], { includeFailed: true }), { 'web.search': new Date(T0 + 1000) });
  const [group, ...rest] = store.errors();
  assert.deepEqual(rest, []);
  assert.deepEqual(group, {
    channel_id: 'c-1', tool: 'http.get', error_type: 'timeout', count: 1, first_ts: new Date(T0 + 1500), last_ts: new Date(T0 + 1500),
    avg_duration_ms: 5000, caller_ids: ['u-1'], run_ids: ['child'],
  });
  assert.deepEqual(store.errors({ since: T0 + 1600 }), []);
  assert.deepEqual(store.finishedBefore(new Date(T0 + 5000)).map((r) => r.id), ['child']);
  assert.throws(() => store.runs(/** @type {any} */ ({ skil: 'x' })), (e) => e instanceof InvalidArgumentError && /skil/.test(e.message));
  assert.throws(() => store.runs({ since: 'tomorrow' }), (e) => e instanceof InvalidArgumentError && /since/.test(e.message));
  store.close();
});

test('append returns at once, reads its own writes, and flush makes them durable', async () => {
  const store = open(logDir(), { create: true });
  store.append({ kind: 'run_started', run_id: 'r' });
  assert.ok(store.run('r'), 'a query sees what was appended before it');
  const head = await store.flush();
  assert.equal(head, 1);
  assert.equal(store.counters().durableLsn, 1);
  const started = store.run('r')?.started_at.getTime() ?? 0;
  assert.ok(Math.abs(started - Date.now()) < 60_000, 'an event without ts is stamped now');
  store.close();
});

test('a bad event is refused with the field named; a bad batch stores nothing', async () => {
  const store = open(logDir(), { create: true });
  assert.throws(() => store.append(/** @type {any} */ ({ kind: 'run_begun', run_id: 'r' })), (e) => e instanceof InvalidEventError && e.code === 'AUDITLOG_INVALID_EVENT' && /kind/.test(e.message));
  assert.throws(() => store.append({ kind: 'run_started', run_id: '' }), (e) => e instanceof InvalidEventError && /run_id/.test(e.message));
  assert.throws(() => store.append({ kind: 'run_started', run_id: 'r', ts: -5 }), (e) => e instanceof InvalidEventError && /ts/.test(e.message));
  assert.throws(
    () => store.appendBatch([{ kind: 'run_started', run_id: 'ok' }, { kind: 'run_finished', run_id: 'x', status: 'running' }]),
    (e) => e instanceof InvalidEventError && /event 1/.test(e.message) && /status/.test(e.message),
  );
  assert.throws(() => store.append(/** @type {any} */ (null)), InvalidArgumentError);
  await store.flush();
  assert.equal(store.counters().appended, 0);
  assert.equal(store.run('ok'), null);
  store.close();
});

test('a full queue fails fast (retryable) or drops and counts, as asked', async () => {
  const event = (/** @type {number} */ i) => ({ kind: /** @type {const} */ ('run_log'), run_id: 'r', seq: i, payload: 'x'.repeat(512) });
  const failing = open(logDir(), { create: true, queueCapacity: 1, onFull: 'fail' });
  let refused = null;
  for (let i = 0; i < 200_000 && refused === null; i++) {
    try {
      failing.append(event(i));
    } catch (e) {
      refused = e;
    }
  }
  assert.ok(refused instanceof QueueFullError, 'the queue filled up');
  assert.equal(refused.code, 'AUDITLOG_QUEUE_FULL');
  assert.equal(refused.retryable, true);
  await failing.flush();
  assert.ok(failing.counters().rejected >= 1);
  failing.close();

  const dropping = open(logDir(), { create: true, queueCapacity: 1, onFull: 'drop' });
  for (let i = 0; i < 200_000 && dropping.counters().dropped === 0; i++) dropping.append(event(i));
  await dropping.flush();
  const c = dropping.counters();
  assert.ok(c.dropped >= 1, 'drops are counted');
  assert.equal((await dropping.stats({ anomalies: false })).events, c.appended, 'every event not dropped is stored');
  dropping.close();
});

test('replay is an async iterator over the log, with ranges and exact instants', async () => {
  const store = seeded();
  const all = [];
  for await (const e of store.replay()) all.push(e);
  assert.deepEqual(all.map((e) => e.lsn), [0, 1, 2, 3, 4, 5]);
  assert.equal(all[0]?.kind, 'run_started');
  assert.equal(all[0]?.extra_field, 'kept', 'unknown fields come back');
  assert.equal(all[1]?.ts_us, us(T0 + 1000) + 250, 'µs kept in ts_us');
  assert.deepEqual(all[1]?.ts, new Date(T0 + 1000));
  const ranged = [];
  for await (const e of store.replay({ since: new Date(T0 + 1400), until: T0 + 1500 })) ranged.push(e.lsn);
  assert.deepEqual(ranged, [2, 3]);
  const from = [];
  for await (const e of store.replay({ fromLsn: 4 })) from.push(e.lsn);
  assert.deepEqual(from, [4, 5]);
  // Many batches: more events than one trip reads.
  store.appendBatch(Array.from({ length: 5000 }, (_, i) => ({ kind: /** @type {const} */ ('run_log'), run_id: 'bulk', ts: us(T0) + i, seq: i })));
  let n = 0;
  for await (const e of store.replay({ fromLsn: 6 })) {
    assert.equal(e.lsn, 6 + n);
    n++;
  }
  assert.equal(n, 5000);
  // A replay cut short by close() is an error, not a silent end.
  const it = store.replay();
  await it.next();
  store.close();
  await assert.rejects(async () => {
    for await (const _ of it);
  }, ClosedError);
});

test('tail yields the newest events, follows new ones, and ends with close or abort', async () => {
  const store = seeded();
  const last = [];
  for await (const e of store.tail({ last: 2 })) last.push(e.lsn);
  assert.deepEqual(last, [4, 5]);

  /** @type {string[]} */
  const seen = [];
  const follower = (async () => {
    for await (const e of store.tail({ last: 0, follow: true, pollMs: 5 })) seen.push(e.run_id);
  })();
  await new Promise((r) => setTimeout(r, 30));
  store.append({ kind: 'run_started', run_id: 'new-1' });
  store.append({ kind: 'run_started', run_id: 'new-2' });
  while (seen.length < 2) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(seen, ['new-1', 'new-2']);

  const ac = new AbortController();
  const aborted = (async () => {
    let n = 0;
    for await (const _ of store.tail({ last: 0, follow: true, pollMs: 5, signal: ac.signal })) n++;
    return n;
  })();
  ac.abort();
  assert.equal(await aborted, 0);

  store.close();
  await follower; // ends on its own once the store is closed
  assert.deepEqual(seen, ['new-1', 'new-2']);
});

test('stats, verify and a corrupted segment', async () => {
  const dir = logDir();
  const store = open(dir, { create: true, segmentMaxBytes: 64 * 1024 });
  store.appendBatch(Array.from({ length: 2000 }, (_, i) => ({ kind: /** @type {const} */ ('run_started'), run_id: `r-${i}`, ts: us(T0) + i, inputs: { pad: 'x'.repeat(40) } })));
  store.append({ kind: 'run_started', run_id: 'r-0', ts: us(T0 + 5000) });
  await store.flush();
  const stats = await store.stats();
  assert.equal(stats.events, 2001);
  assert.ok(stats.segments > 1 && stats.sealedSegments === stats.segments - 1);
  assert.deepEqual(stats.oldest, new Date(T0));
  assert.deepEqual(stats.newest, new Date(T0 + 5000));
  assert.equal(stats.anomalies?.duplicateRunStarted, 1);
  assert.equal(stats.counters.appended, 2001);
  assert.equal((await store.stats({ anomalies: false })).anomalies, undefined);
  const report = await store.verify();
  assert.deepEqual([report.ok, report.events, report.headLsn, report.headDigest], [true, 2001, 2001, stats.headDigest]);
  assert.equal((await store.verify({ expect: stats.headDigest })).expectFoundAt, 2001);
  await assert.rejects(store.verify({ expect: 'zz' }), InvalidArgumentError);

  const first = fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0] ?? '';
  // Flip one byte in place (never truncate a file the store has mapped).
  const fd = fs.openSync(path.join(dir, first), 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, 5000);
  byte[0] = (byte[0] ?? 0) ^ 0xff;
  fs.writeSync(fd, byte, 0, 1, 5000);
  fs.closeSync(fd);
  await assert.rejects(store.verify(), (e) => e instanceof CorruptError && e.code === 'AUDITLOG_CORRUPT' && e.message.includes(first) && /offset/.test(e.message));
  store.close();
});

test('retain drops whole old segments and reports them', async () => {
  const store = open(logDir(), { create: true, segmentMaxBytes: 64 * 1024 });
  const day = 86_400_000;
  const old = T0 - 30 * day;
  store.appendBatch(Array.from({ length: 1500 }, (_, i) => ({ kind: /** @type {const} */ ('run_started'), run_id: `old-${i}`, ts: us(old) + i, inputs: { pad: 'x'.repeat(40) } })));
  // Every run but old-1 finishes: retention never drops the start of a run
  // that is still running (it is carried forward), so old-1 must survive.
  store.appendBatch(Array.from({ length: 1500 }, (_, i) => i).filter((i) => i !== 1).map((i) => ({ kind: /** @type {const} */ ('run_finished'), run_id: `old-${i}`, ts: us(old) + 2000 + i })));
  store.append({ kind: 'run_started', run_id: 'recent', ts: new Date() });
  await store.flush();
  await assert.rejects(store.retain({}), InvalidArgumentError);
  const report = await store.retain({ olderThanMs: 7 * day });
  assert.ok(report.dropped.length >= 1);
  assert.ok(report.events > 0 && report.events <= 3000);
  assert.ok(report.dropped.every((d) => d.newest < report.cutoff && d.name.endsWith('.seg')));
  assert.ok(store.run('recent'));
  assert.equal(store.run('old-0'), null);
  const carried = store.run('old-1');
  assert.ok(carried, 'a running run is carried forward, never dropped');
  assert.equal(carried.status, 'running');
  assert.equal(carried.started_at.getTime(), old); // its original start time (Dates hold ms)
  const stats = await store.stats({ anomalies: false });
  assert.equal(stats.droppedEvents, report.events);
  assert.equal(stats.firstLsn, report.firstKeptLsn);
  assert.equal((await store.verify()).firstLsn, report.firstKeptLsn);
  const none = await store.retain({ before: new Date(old) });
  assert.deepEqual(none.dropped, []);
  store.close();
});

test('search, or a clear error in a build without it', async () => {
  if (!hasSearch()) {
    assert.throws(() => open(logDir(), { create: true, search: true }), (e) => e instanceof SearchError && e.code === 'AUDITLOG_SEARCH');
    const store = open(logDir(), { create: true });
    await assert.rejects(store.search('x'), SearchError);
    store.close();
    return;
  }
  const store = open(logDir(), { create: true, search: true });
  store.append({ kind: 'run_started', run_id: 'a', skill_id: 'web.search', inputs: { q: 'quarterly revenue' } });
  store.append({ kind: 'run_finished', run_id: 'a', status: 'error', error: 'upstream timeout' });
  store.append({ kind: 'run_started', run_id: 'b', skill_id: 'shell', inputs: { cmd: 'ls' } });
  const hits = await store.search('timeout');
  assert.deepEqual(hits.map((h) => h.id), ['a']);
  assert.ok(hits[0] && hits[0].started_at instanceof Date && hits[0].score > 0 && hits[0].snippet.includes('**timeout**'));
  assert.deepEqual((await store.search('revenue', { skill: 'shell' })).map((h) => h.id), []);
  await assert.rejects(store.search('status:(unclosed'), (e) => e instanceof SearchError && /syntax/.test(e.message));
  store.close();
});

test('after close every call throws ClosedError; close is idempotent', async () => {
  const store = seeded();
  store.close();
  store.close();
  assert.equal(store.closed, true);
  /** @type {[string, () => unknown][]} */
  const calls = [
    ['append', () => store.append({ kind: 'run_started', run_id: 'x' })],
    ['appendBatch', () => store.appendBatch([{ kind: 'run_started', run_id: 'x' }])],
    ['run', () => store.run('child')],
    ['logs', () => store.logs('child')],
    ['runs', () => store.runs()],
    ['count', () => store.count()],
    ['children', () => store.children('parent')],
    ['chain', () => store.chain('child')],
    ['lastRun', () => store.lastRun(['plan'])],
    ['errors', () => store.errors()],
    ['finishedBefore', () => store.finishedBefore(new Date())],
    ['counters', () => store.counters()],
  ];
  for (const [name, f] of calls) assert.throws(f, ClosedError, name);
  /** @type {(() => Promise<unknown>)[]} */
  const later = [() => store.flush(), () => store.stats(), () => store.verify(), () => store.retain({ olderThanMs: 1 }), () => store.replay().next(), () => store.tail().next()];
  for (const f of later) await assert.rejects(f(), ClosedError);
});

/** CRC-32 (IEEE), as segment headers carry it. */
function crc32(/** @type {Buffer} */ b) {
  let c = ~0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

test('a segment of another format version is UnsupportedVersionError, and is left as it was', async () => {
  const dir = logDir();
  const store = open(dir, { create: true });
  store.append({ kind: 'run_started', run_id: 'r-1', ts: us(T0) });
  await store.flush();
  store.close();
  const seg = fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0] ?? '';
  const file = path.join(dir, seg);
  const bytes = fs.readFileSync(file);
  // Header: format version (u16 LE) at byte 8, CRC-32 of bytes 0..64 at 64.
  bytes.writeUInt16LE(bytes.readUInt16LE(8) + 1, 8);
  bytes.writeUInt32LE(crc32(bytes.subarray(0, 64)), 64);
  fs.writeFileSync(file, bytes);
  assert.throws(
    () => open(dir),
    (e) => e instanceof UnsupportedVersionError && e instanceof CorruptError && e.code === 'AUDITLOG_UNSUPPORTED_VERSION' && e.message.includes(seg),
  );
  assert.deepEqual(fs.readFileSync(file), bytes);
});
