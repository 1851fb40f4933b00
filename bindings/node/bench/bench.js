// @ts-check
'use strict';
// @auditlog/node beside better-sqlite3 (v12) for the gateways' tool-call
// log: the same rows, the same table and indexes, in the same run.
//
//   cd bindings/node && npm run build          (release addon)
//   cd bench && npm install && node bench.js [--rows 1000000] [--insert-rows 200000]
//                                            [--sqlite-seconds 10] [--queries 200] [--dir DIR]
//
// 1. Insert rate, one row per call. auditlog: `record(row)` per row, then
//    one `await flush()` (group commit: every row is durable when it
//    resolves); the rate counts until then. better-sqlite3: one INSERT per
//    row (autocommit), in WAL mode with synchronous=FULL (each commit
//    durable) and synchronous=NORMAL (WAL's usual setting: a commit is not
//    synced, so a power loss can take it), and the default rollback
//    journal (DELETE, FULL). SQLite runs are time-boxed.
// 2. Queries at `--rows` rows (loaded into auditlog by `record()`, into
//    SQLite in batched transactions): calls of a session in time order;
//    calls of one engine and tool in one hour; the newest 100 calls with
//    an error; calls with an error in one hour. Each answered `--queries`
//    times with the same random parameters on both sides; both return
//    plain objects with `created_at` as a Date. Median and p95 latency.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const Database = require('better-sqlite3');
const { AuditLogger } = require('..');
const { buildProfile } = require('../native');

if (buildProfile() !== 'release' && !process.argv.includes('--allow-debug')) {
  console.error('the addon is a debug build: run `npm run build` in bindings/node first (or pass --allow-debug)');
  process.exit(2);
}

// ---------------------------------------------------------------- options

/** @param {string} name @param {number} dflt */
function numArg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}
/** @param {string} name */
function strArg(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const ROWS = numArg('rows', 1_000_000);
const INSERT_ROWS = numArg('insert-rows', 200_000);
const SQLITE_SECONDS = numArg('sqlite-seconds', 10);
const QUERIES = numArg('queries', 200);
const ROOT = fs.mkdtempSync(path.join(strArg('dir') ?? os.tmpdir(), 'auditlog-node-bench-'));

// ---------------------------------------------------------------- workload

/** A small deterministic PRNG (mulberry32), so both sides get the same rows. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ENGINES = ['ollama', 'openai', 'anthropic'];
const TOOLS = ['web_search', 'http.get', 'http.post', 'fs.read_file', 'fs.write_file', 'shell.exec', 'sql.query', 'git.diff', 'browser.open', 'calendar.list', 'mail.send', 'code.run'];
const ERRORS = ['timeout', 'HTTP 502', 'EACCES', 'exit status 1'];
const CALLS_PER_SESSION = 100;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** Rows span ten days ending an hour ago. */
const END_MS = Date.now() - HOUR_MS;
const START_MS = END_MS - 10 * DAY_MS;

/**
 * Row `i` of the workload: sessions of 100 calls each, spread in time
 * order over ten days; 3 engines, 12 tools, ~5% errors.
 * @param {number} i
 * @param {() => number} r
 */
function makeRow(i, r) {
  const session = Math.floor(i / CALLS_PER_SESSION);
  const failed = r() < 0.05;
  const tool = /** @type {string} */ (TOOLS[Math.floor(r() * TOOLS.length)]);
  return {
    id: `call-${String(i).padStart(8, '0')}`,
    session_id: `sess-${String(session).padStart(6, '0')}`,
    engine: /** @type {string} */ (ENGINES[session % ENGINES.length]),
    tool_name: tool,
    args_summary: `${tool} target=${Math.floor(r() * 1e6).toString(36)} [redacted]`,
    duration_ms: Math.floor(r() * 2000),
    exit_code: tool === 'shell.exec' ? (failed ? 1 : 0) : null,
    http_status: tool.startsWith('http') ? (failed ? 502 : 200) : null,
    error: failed ? /** @type {string} */ (ERRORS[Math.floor(r() * ERRORS.length)]) : null,
    result_truncated: r() < 0.1,
    result_bytes: Math.floor(r() * 100_000),
    created_at: START_MS + Math.floor((i / ROWS) * (END_MS - START_MS)),
  };
}

/** A row as the gateway would insert it into SQLite (TEXT instants, 0/1 flags). */
function sqlParams(/** @type {ReturnType<typeof makeRow>} */ row) {
  return {
    ...row,
    result_truncated: row.result_truncated ? 1 : 0,
    created_at: new Date(row.created_at).toISOString(),
  };
}

// ---------------------------------------------------------------- SQLite

const SCHEMA = `
CREATE TABLE tool_call_log (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  engine TEXT NOT NULL,
  tool_name TEXT NOT NULL,
  args_summary TEXT,
  duration_ms INTEGER,
  exit_code INTEGER,
  http_status INTEGER,
  error TEXT,
  result_truncated INTEGER,
  result_bytes INTEGER,
  created_at TEXT NOT NULL
);
CREATE INDEX idx_tcl_session ON tool_call_log(session_id, created_at);
CREATE INDEX idx_tcl_engine_tool ON tool_call_log(engine, tool_name, created_at);
CREATE INDEX idx_tcl_error ON tool_call_log(error) WHERE error IS NOT NULL;
`;
const INSERT = `INSERT INTO tool_call_log (id, session_id, engine, tool_name, args_summary, duration_ms, exit_code, http_status, error, result_truncated, result_bytes, created_at)
  VALUES (@id, @session_id, @engine, @tool_name, @args_summary, @duration_ms, @exit_code, @http_status, @error, @result_truncated, @result_bytes, @created_at)`;

/** @param {string} file @param {string} journal @param {string} sync */
function sqliteDb(file, journal, sync) {
  const db = new Database(file);
  db.pragma(`journal_mode = ${journal}`);
  db.pragma(`synchronous = ${sync}`);
  db.exec(SCHEMA);
  return db;
}

// ---------------------------------------------------------------- timing

/** @param {number[]} xs @param {number} q */
function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

/** @param {number} n */
const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toPrecision(3));

// ---------------------------------------------------------------- 1. inserts

async function insertRates() {
  const results = [];
  {
    const logger = new AuditLogger(path.join(ROOT, 'insert-auditlog'), { create: true });
    const r = rng(1);
    const rows = Array.from({ length: INSERT_ROWS }, (_, i) => {
      const { created_at: _c, id: _id, ...row } = makeRow(i, r);
      return row; // as a gateway records it: id and created_at generated
    });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (const row of rows) logger.record(row);
    const queued = performance.now();
    await logger.flush();
    const durable = performance.now();
    const used = process.cpuUsage(c0);
    logger.close();
    results.push({
      system: 'auditlog: record() per row, one await flush() (fdatasync per group commit)',
      rows: INSERT_ROWS,
      seconds: (durable - t0) / 1000,
      rate: INSERT_ROWS / ((durable - t0) / 1000),
      note: `record() calls alone: ${fmt(INSERT_ROWS / ((queued - t0) / 1000))} rows/s`,
      cpuUs: (used.user + used.system) / INSERT_ROWS,
      durable: true,
    });
  }
  for (const [journal, sync, durable] of /** @type {const} */ ([
    ['WAL', 'FULL', true],
    ['WAL', 'NORMAL', false],
    ['DELETE', 'FULL', true],
  ])) {
    const db = sqliteDb(path.join(ROOT, `insert-${journal}-${sync}.db`), journal, sync);
    const insert = db.prepare(INSERT);
    const r = rng(1);
    const deadline = performance.now() + SQLITE_SECONDS * 1000;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let n = 0;
    while (n < INSERT_ROWS && (n % 64 !== 0 || performance.now() < deadline)) {
      const row = makeRow(n, r);
      insert.run(sqlParams({ ...row, created_at: Date.now() }));
      n++;
    }
    const s = (performance.now() - t0) / 1000;
    const used = process.cpuUsage(c0);
    db.close();
    results.push({
      system: `better-sqlite3: INSERT per row, journal_mode=${journal}, synchronous=${sync}`,
      rows: n,
      seconds: s,
      rate: n / s,
      note: durable ? 'each commit synced' : 'commits not synced (WAL NORMAL)',
      cpuUs: (used.user + used.system) / n,
      durable,
    });
  }
  return results;
}

// ---------------------------------------------------------------- 2. queries

async function loadBoth() {
  const logger = new AuditLogger(path.join(ROOT, 'query-auditlog'), { create: true });
  const db = sqliteDb(path.join(ROOT, 'query.db'), 'WAL', 'NORMAL');
  const insert = db.prepare(INSERT);
  const loadMany = db.transaction((/** @type {ReturnType<typeof makeRow>[]} */ rows) => {
    for (const row of rows) insert.run(sqlParams(row));
  });
  const r = rng(2);
  let auditMs = 0;
  let sqlMs = 0;
  const CHUNK = 10_000;
  for (let i = 0; i < ROWS; i += CHUNK) {
    const rows = [];
    for (let j = i; j < Math.min(ROWS, i + CHUNK); j++) rows.push(makeRow(j, r));
    let t = performance.now();
    for (const row of rows) logger.record(row);
    auditMs += performance.now() - t;
    t = performance.now();
    loadMany(rows);
    sqlMs += performance.now() - t;
  }
  let t = performance.now();
  await logger.flush();
  auditMs += performance.now() - t;
  t = performance.now();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.exec('ANALYZE');
  sqlMs += performance.now() - t;
  return { logger, db, auditMs, sqlMs };
}

/** @param {AuditLogger} logger @param {import('better-sqlite3').Database} db */
function queryShapes(logger, db) {
  const columns = 'id, session_id, engine, tool_name, args_summary, duration_ms, exit_code, http_status, error, result_truncated, result_bytes, created_at';
  const sql = {
    session: db.prepare(`SELECT ${columns} FROM tool_call_log WHERE session_id = ? ORDER BY created_at`),
    tool: db.prepare(`SELECT ${columns} FROM tool_call_log WHERE engine = ? AND tool_name = ? AND created_at BETWEEN ? AND ? ORDER BY created_at`),
    newestErrors: db.prepare(`SELECT ${columns} FROM tool_call_log WHERE error IS NOT NULL ORDER BY created_at DESC LIMIT 100`),
    errorsInHour: db.prepare(`SELECT ${columns} FROM tool_call_log WHERE error IS NOT NULL AND created_at BETWEEN ? AND ? ORDER BY created_at`),
  };
  /** better-sqlite3 rows as the gateway reads them: Dates and booleans. */
  const revive = (/** @type {any[]} */ rows) => {
    for (const row of rows) {
      row.created_at = new Date(row.created_at);
      row.result_truncated = row.result_truncated === null ? null : row.result_truncated === 1;
    }
    return rows;
  };
  const iso = (/** @type {number} */ ms) => new Date(ms).toISOString();
  const sessions = Math.ceil(ROWS / CALLS_PER_SESSION);
  const r = rng(3);
  const params = Array.from({ length: QUERIES }, () => {
    const session = Math.floor(r() * sessions);
    const hour = START_MS + Math.floor(r() * (END_MS - START_MS - HOUR_MS));
    return {
      session: `sess-${String(session).padStart(6, '0')}`,
      engine: /** @type {string} */ (ENGINES[Math.floor(r() * ENGINES.length)]),
      tool: /** @type {string} */ (TOOLS[Math.floor(r() * TOOLS.length)]),
      since: hour,
      until: hour + HOUR_MS,
    };
  });
  /** @type {Record<string, {auditlog: (p: typeof params[number]) => unknown[], sqlite: (p: typeof params[number]) => unknown[], what: string}>} */
  const shapes = {
    session: {
      what: 'calls of a session, in time order (~100 rows)',
      auditlog: (p) => logger.sessionCalls(p.session),
      sqlite: (p) => revive(sql.session.all(p.session)),
    },
    tool: {
      what: 'calls of one engine and tool in one hour',
      auditlog: (p) => logger.toolCalls(p.engine, p.tool, { since: p.since, until: p.until }),
      sqlite: (p) => revive(sql.tool.all(p.engine, p.tool, iso(p.since), iso(p.until))),
    },
    newestErrors: {
      what: 'the newest 100 calls with an error',
      auditlog: () => logger.errorCalls({ order: 'desc', limit: 100 }),
      sqlite: () => revive(sql.newestErrors.all()),
    },
    errorsInHour: {
      what: 'calls with an error in one hour, in time order',
      auditlog: (p) => logger.errorCalls({ since: p.since, until: p.until }),
      sqlite: (p) => revive(sql.errorsInHour.all(iso(p.since), iso(p.until))),
    },
  };
  const plans = Object.fromEntries(
    Object.entries(sql).map(([k, st]) => [
      k,
      db
        .prepare(`EXPLAIN QUERY PLAN ${st.source}`)
        .all(...(k === 'session' ? ['x'] : k === 'tool' ? ['e', 't', 'a', 'b'] : k === 'errorsInHour' ? ['a', 'b'] : []))
        .map((/** @type {any} */ row) => row.detail)
        .join('; '),
    ]),
  );
  const out = [];
  for (const [name, shape] of Object.entries(shapes)) {
    // Same answers first (ids in order), then timings.
    for (const p of params.slice(0, 5)) {
      const a = shape.auditlog(p).map((/** @type {any} */ x) => x.id).join();
      const b = shape.sqlite(p).map((/** @type {any} */ x) => x.id).join();
      if (a !== b) throw new Error(`${name}: auditlog and SQLite disagree for ${JSON.stringify(p)}`);
    }
    /** @type {Record<string, number[]>} */
    const times = { auditlog: [], sqlite: [] };
    /** CPU time (user + system, all threads of the process), ms. @type {Record<string, number>} */
    const cpu = { auditlog: 0, sqlite: 0 };
    let rows = 0;
    params.forEach((p, i) => {
      // Alternate which side goes first so neither always gets a warm cache.
      for (const side of i % 2 === 0 ? ['auditlog', 'sqlite'] : ['sqlite', 'auditlog']) {
        const c = process.cpuUsage();
        const t = performance.now();
        const got = shape[/** @type {'auditlog' | 'sqlite'} */ (side)](p);
        times[side]?.push(performance.now() - t);
        const used = process.cpuUsage(c);
        cpu[side] = (cpu[side] ?? 0) + (used.user + used.system) / 1000;
        if (side === 'auditlog') rows += got.length;
      }
    });
    out.push({
      shape: name,
      what: shape.what,
      avgRows: rows / params.length,
      auditlog: { median: quantile(times.auditlog ?? [], 0.5), p95: quantile(times.auditlog ?? [], 0.95), cpu: (cpu.auditlog ?? 0) / params.length },
      sqlite: { median: quantile(times.sqlite ?? [], 0.5), p95: quantile(times.sqlite ?? [], 0.95), cpu: (cpu.sqlite ?? 0) / params.length },
      plan: plans[name],
    });
  }
  return out;
}

/** The two error shapes on SQLite alone (after adding an index). @param {import('better-sqlite3').Database} db */
function errorShapesWithTimeIndex(db) {
  const columns = 'id, session_id, engine, tool_name, args_summary, duration_ms, exit_code, http_status, error, result_truncated, result_bytes, created_at';
  const newest = db.prepare(`SELECT ${columns} FROM tool_call_log WHERE error IS NOT NULL ORDER BY created_at DESC LIMIT 100`);
  const inHour = db.prepare(`SELECT ${columns} FROM tool_call_log WHERE error IS NOT NULL AND created_at BETWEEN ? AND ? ORDER BY created_at`);
  const r = rng(3);
  const hours = Array.from({ length: QUERIES }, () => START_MS + Math.floor(r() * (END_MS - START_MS - HOUR_MS)));
  const iso = (/** @type {number} */ ms) => new Date(ms).toISOString();
  /** @param {string} what @param {import('better-sqlite3').Statement} st @param {(h: number) => unknown[]} args */
  const time = (what, st, args) => {
    const times = hours.map((h) => {
      const t = performance.now();
      for (const row of /** @type {any[]} */ (st.all(...args(h)))) row.created_at = new Date(row.created_at);
      return performance.now() - t;
    });
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${st.source}`).all(...args(0).map(() => 'x')).map((/** @type {any} */ x) => x.detail).join('; ');
    return { what, median: quantile(times, 0.5), p95: quantile(times, 0.95), plan };
  };
  return [
    time('the newest 100 calls with an error', newest, () => []),
    time('calls with an error in one hour, in time order', inHour, (h) => [iso(h), iso(h + HOUR_MS)]),
  ];
}

// ---------------------------------------------------------------- main

async function main() {
  console.error(`rows ${ROWS}, insert rows ${INSERT_ROWS}, folder ${ROOT}`);
  console.log(`node ${process.version}, better-sqlite3 ${require('better-sqlite3/package.json').version} (SQLite ${new Database(':memory:').prepare('select sqlite_version() v').pluck().get()}), load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const inserts = await insertRates();
  const durableSql = inserts.find((x) => x.system.includes('WAL, synchronous=FULL'));
  console.log(`\n## Insert rate, one row per call (${INSERT_ROWS} rows; SQLite at most ${SQLITE_SECONDS} s)\n`);
  console.log('| system | rows | seconds | rows/s | CPU µs/row | durable | note |');
  console.log('|---|---:|---:|---:|---:|---|---|');
  for (const x of inserts) {
    console.log(`| ${x.system} | ${fmt(x.rows)} | ${x.seconds.toFixed(2)} | ${fmt(x.rate)} | ${x.cpuUs.toFixed(1)} | ${x.durable ? 'yes' : 'no'} | ${x.note} |`);
  }
  const audit = inserts[0];
  if (audit && durableSql) console.log(`\nDurable rows/s, auditlog / better-sqlite3 (WAL, FULL): ${(audit.rate / durableSql.rate).toFixed(1)}x`);
  const walNormal = inserts.find((x) => x.system.includes('WAL, synchronous=NORMAL'));
  if (audit && walNormal) console.log(`Rows/s, auditlog (durable) / better-sqlite3 (WAL, NORMAL, not synced): ${(audit.rate / walNormal.rate).toFixed(1)}x`);

  const { logger, db, auditMs, sqlMs } = await loadBoth();
  console.log(`\n## Queries at ${fmt(ROWS)} rows (${QUERIES} each, same parameters)\n`);
  console.log(`Load: auditlog record() per row + flush ${(auditMs / 1000).toFixed(1)} s (${fmt(ROWS / (auditMs / 1000))} rows/s); SQLite batched transactions (WAL, NORMAL) + ANALYZE ${(sqlMs / 1000).toFixed(1)} s.\n`);
  console.log('| query | rows | auditlog median ms | p95 | CPU ms/query | better-sqlite3 median ms | p95 | CPU ms/query | median ratio (SQLite / auditlog) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  const shapes = queryShapes(logger, db);
  for (const q of shapes) {
    const a = q.auditlog;
    const b = q.sqlite;
    console.log(`| ${q.what} | ${q.avgRows.toFixed(0)} | ${a.median.toFixed(3)} | ${a.p95.toFixed(3)} | ${a.cpu.toFixed(3)} | ${b.median.toFixed(3)} | ${b.p95.toFixed(3)} | ${b.cpu.toFixed(3)} | ${(b.median / a.median).toFixed(2)}x |`);
  }
  console.log('\nSQLite plans:');
  for (const q of shapes) console.log(`- ${q.what}: ${q.plan}`);
  // Not the gateway's schema: what an index on created_at for the rows
  // with an error would give SQLite on the two error shapes.
  db.exec('CREATE INDEX idx_tcl_error_time ON tool_call_log(created_at) WHERE error IS NOT NULL; ANALYZE');
  const better = errorShapesWithTimeIndex(db);
  console.log('\nbetter-sqlite3 again with one more index, `(created_at) WHERE error IS NOT NULL` (not in the gateway schema):\n');
  console.log('| query | median ms | p95 | plan |');
  console.log('|---|---:|---:|---|');
  for (const b of better) console.log(`| ${b.what} | ${b.median.toFixed(3)} | ${b.p95.toFixed(3)} | ${b.plan} |`);
  const stats = await logger.store.stats({ anomalies: false });
  console.log(`\nauditlog folder: ${stats.segments} segments, ${fmt(stats.bytes / 1e6)} MB; SQLite file: ${fmt(fs.statSync(path.join(ROOT, 'query.db')).size / 1e6)} MB`);
  logger.close();
  db.close();
  if (!process.argv.includes('--keep')) fs.rmSync(ROOT, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
