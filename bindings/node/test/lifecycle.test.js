// @ts-check
'use strict';
// The process around a store: nothing keeps Node alive after close(), and
// a store left open does not crash Node at exit (its queued events are
// written by the environment's cleanup hook). Each case runs in a child.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const { open } = require('..');
const { logDir } = require('./helpers');

const PACKAGE = path.resolve(__dirname, '..');

/** Run `code` in a new Node process with `DIR` defined; its outcome. @param {string} dir @param {string} code */
function child(dir, code) {
  const script = `const { open, AuditLogger } = require(${JSON.stringify(PACKAGE)}); const DIR = ${JSON.stringify(dir)};\n${code}`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** How many runs the log in `dir` holds. @param {string} dir */
function eventsIn(dir) {
  const store = open(dir);
  try {
    return store.count();
  } finally {
    store.close();
  }
}

test('a store left open is closed at exit: no crash, nothing queued is lost', () => {
  const dir = logDir();
  const r = child(dir, `const s = open(DIR, { create: true });
    for (let i = 0; i < 1000; i++) s.append({ kind: 'run_started', run_id: 'r' + i });`);
  assert.deepEqual([r.status, r.signal, r.stderr], [0, null, '']);
  assert.equal(eventsIn(dir), 1000);
});

test('process.exit() and an uncaught exception with a store open', () => {
  const dir = logDir();
  let r = child(dir, `const s = open(DIR, { create: true });
    for (let i = 0; i < 500; i++) s.append({ kind: 'run_started', run_id: 'a' + i });
    process.exit(3);`);
  assert.deepEqual([r.status, r.signal], [3, null]);
  r = child(dir, `const s = open(DIR);
    for (let i = 0; i < 500; i++) s.append({ kind: 'run_started', run_id: 'b' + i });
    throw new Error('gateway crashed');`);
  assert.deepEqual([r.status, r.signal], [1, null]);
  assert.match(r.stderr, /gateway crashed/);
  assert.equal(eventsIn(dir), 1000);
});

test('nothing keeps the process alive after close(), even a follower or a replay in flight', () => {
  const dir = logDir();
  const r = child(dir, `(async () => {
    const s = open(DIR, { create: true });
    const logger = new AuditLogger(s);
    const following = (async () => { let n = 0; for await (const _ of s.tail({ follow: true })) n++; return n; })();
    for (let i = 0; i < 100; i++) logger.record({ tool_name: 't', session_id: 's' });
    await logger.flush();
    const replay = s.replay();
    await replay.next();
    await new Promise((r) => setTimeout(r, 100));
    s.close();
    console.log('followed', await following);
  })();`);
  assert.equal(r.signal, null, 'exited by itself, not killed at the timeout');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /followed 200/);
});

test('a worker thread that ends with its store open', () => {
  const dir = logDir();
  const r = child(dir, `const { Worker } = require('node:worker_threads');
    open(DIR, { create: true }).close();
    const w = new Worker(\`const { open } = require(\${JSON.stringify(${JSON.stringify(PACKAGE)})});
      const { parentPort, workerData } = require('node:worker_threads');
      const s = open(workerData);
      for (let i = 0; i < 100; i++) s.append({ kind: 'run_started', run_id: 'w' + i });
      parentPort.postMessage('appended');
      setInterval(() => {}, 1000);\`, { eval: true, workerData: DIR });
    w.on('message', async () => { await w.terminate(); console.log('terminated'); });`);
  assert.deepEqual([r.status, r.signal], [0, null], r.stderr);
  assert.match(r.stdout, /terminated/);
  assert.equal(eventsIn(dir), 100);
});

test('the runnable example runs', () => {
  const dir = logDir();
  const r = spawnSync(process.execPath, [path.join(PACKAGE, 'examples', 'gateway.js'), dir], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /calls with an error:\n {2}\S+ http.get: HTTP 502/);
  assert.match(r.stderr, /audit failed: the audit logger is closed/);
});
