/**
 * `AuditStore`: an open log folder (`open`), or a log that `auditlog
 * serve` holds for many processes (`connect`), in the style of better-sqlite3.
 * Appends and queries are synchronous and return at once; durability is
 * awaited with `flush()`; long reads (`replay`, `tail`) are async
 * iterators; maintenance (`verify`, `retain`, `stats`) returns promises.
 */
import * as native from '../native';
import { call, invalidArgument, settle } from './errors';
import { fromMicros, nowMicros, optionalMicros, toMicros, type Instant } from './instant';
import type {
  AuditEvent,
  CallCount,
  CallFilter,
  CallKey,
  CallPage,
  CallsOptions,
  ConnectOptions,
  Counters,
  ErrorGroup,
  OpenOptions,
  Page,
  RetentionReport,
  Run,
  RunFilter,
  RunLogEntry,
  ReplayOptions,
  SearchHit,
  SearchOptions,
  Stats,
  StoredEvent,
  TailOptions,
  VerifyReport,
} from './types';

/** Events per replay or tail batch (one trip to the thread pool). */
const BATCH_EVENTS = 1024;

type RawRun = Omit<Run, 'started_at' | 'finished_at'> & { started_at: string; finished_at: string | null };

/** A run from the addon's JSON, its instants as `Date`s (other keys kept). */
function reviveRun<T extends RawRun>(r: T): Omit<T, 'started_at' | 'finished_at'> & Run {
  return {
    ...r,
    started_at: new Date(r.started_at),
    finished_at: r.finished_at === null ? null : new Date(r.finished_at),
  };
}

function reviveRuns(json: string): Run[] {
  return (JSON.parse(json) as RawRun[]).map(reviveRun);
}

function reviveEvents(json: string): StoredEvent[] {
  const events = JSON.parse(json) as StoredEvent[];
  for (const e of events) e.ts = fromMicros(e.ts_us);
  return events;
}

/** An event's contract JSON, its `ts` in µs (now when absent). */
function eventJson(event: AuditEvent): string {
  if (event === null || typeof event !== 'object') {
    throw invalidArgument(`event: expected an object, got ${event === null ? 'null' : typeof event}`);
  }
  const ts = event.ts;
  if (ts === undefined || ts === null) return JSON.stringify({ ...event, ts: nowMicros() });
  if (ts instanceof Date) return JSON.stringify({ ...event, ts: toMicros('event.ts', ts) });
  return JSON.stringify(event);
}

/** A filter's JSON for the addon: instants in µs, other keys as given. */
function filterJson(filter: RunFilter | undefined, what: string): string {
  if (filter === undefined) return '{}';
  if (filter === null || typeof filter !== 'object') throw invalidArgument(`${what}: expected an object`);
  return JSON.stringify({
    ...filter,
    since: optionalMicros(`${what}.since`, filter.since),
    until: optionalMicros(`${what}.until`, filter.until),
  });
}

/** A `calls` filter's JSON for the addon: instants in µs, other keys as given. */
function callFilterJson(filter: CallsOptions | undefined, what: string): string {
  if (filter === undefined) return '{}';
  if (filter === null || typeof filter !== 'object') throw invalidArgument(`${what}: expected an object`);
  return JSON.stringify({
    ...filter,
    since: optionalMicros(`${what}.since`, filter.since),
    until: optionalMicros(`${what}.until`, filter.until),
  });
}

function count(what: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw invalidArgument(`${what}: ${String(v)} is not a whole number within 0..4294967295`);
  }
  return v;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * @internal The addon's object behind a store: a log opened in this
 * process, or a connection to `auditlog serve`. Both have the same
 * methods, arguments and JSON answers (src/served.rs).
 */
export type NativeHandle = native.NativeStore | native.NativeServed;

/** The addon's handle of each store, for `AuditLogger` (not exported from the package). */
const handles = new WeakMap<AuditStore, NativeHandle>();

/** @internal The addon's handle of `store`. */
export function handleOf(store: AuditStore): NativeHandle {
  const h = handles.get(store);
  if (h === undefined) throw invalidArgument('expected a store returned by open()');
  return h;
}

/**
 * Stores still open, closed when the process is about to end: on
 * `process.exit()` and on an uncaught exception Node skips the environment
 * cleanup that closes them (the addon's hook) at a normal end, and events
 * still queued would be lost. Weak: a store the program dropped may still
 * be collected.
 */
const openStores = new Set<WeakRef<NativeHandle>>();
const forget = new FinalizationRegistry<WeakRef<NativeHandle>>((ref) => openStores.delete(ref));
let monitoring = false;

function closeAll(): void {
  for (const ref of openStores) {
    try {
      ref.deref()?.close();
    } catch {
      // Exiting anyway; the log's recovery handles an unfinished tail.
    }
  }
  openStores.clear();
}

function closeAllBeforeCrash(): void {
  // Another handler keeps the process alive: leave its stores alone.
  if (process.listenerCount('uncaughtException') === 0) closeAll();
}

function track(handle: NativeHandle): WeakRef<NativeHandle> {
  if (!monitoring) {
    process.on('exit', closeAll);
    process.on('uncaughtExceptionMonitor', closeAllBeforeCrash);
    monitoring = true;
  }
  const ref = new WeakRef(handle);
  openStores.add(ref);
  forget.register(handle, ref, ref);
  return ref;
}

function untrack(ref: WeakRef<NativeHandle>): void {
  openStores.delete(ref);
  forget.unregister(ref);
}

/**
 * An open log folder (`open(dir, options)`), or a log served by `auditlog
 * serve` (`connect(socket, options)`): the same methods, answers and
 * errors either way.
 */
export class AuditStore {
  readonly #native: NativeHandle;
  readonly #tracked: WeakRef<NativeHandle>;

  /** @internal Use `open()` or `connect()`. */
  constructor(handle: NativeHandle) {
    this.#native = handle;
    this.#tracked = track(handle);
    handles.set(this, handle);
  }

  /** The log's folder (`open`), or the server's socket (`connect`). */
  get dir(): string {
    return this.#native.dir;
  }

  /** True for a store from `connect()` (served by `auditlog serve`). */
  get served(): boolean {
    return this.#native instanceof native.NativeServed;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /**
   * Append one event. Returns once it is queued (microseconds); it is
   * durable once a later `flush()` resolves. Served (`connect`): returns
   * once the server made it durable. Throws `InvalidEventError`
   * naming the field at fault; nothing is written then.
   */
  append(event: AuditEvent): void {
    const json = eventJson(event);
    call(() => this.#native.append(json));
  }

  /** Append events as one unit (cheaper per event): all are queued, or none and the error names the event's index. */
  appendBatch(events: readonly AuditEvent[]): number {
    if (!Array.isArray(events)) throw invalidArgument('appendBatch: expected an array of events');
    const jsonl = events.map(eventJson).join('\n');
    return call(() => this.#native.appendBatch(jsonl));
  }

  /** Make everything appended so far durable; resolves to the head LSN (events ever appended). */
  flush(): Promise<number> {
    return settle(call(() => this.#native.flush()) as Promise<number>);
  }

  /** The run, or `null`. */
  run(id: string): Run | null {
    const r = JSON.parse(call(() => this.#native.getRun(id))) as RawRun | null;
    return r === null ? null : reviveRun(r);
  }

  /** The run's logs in seq order (empty for an unknown run). */
  logs(id: string): RunLogEntry[] {
    const logs = JSON.parse(call(() => this.#native.logs(id))) as (Omit<RunLogEntry, 'ts'> & { ts: string })[];
    return logs.map((l) => ({ ...l, ts: new Date(l.ts) }));
  }

  /** Runs matching `filter`, newest first (`started_at` desc, then id desc). */
  runs(filter?: RunFilter, page: Page = {}): Run[] {
    const json = filterJson(filter, 'filter');
    const limit = count('limit', page.limit);
    const offset = count('offset', page.offset);
    return reviveRuns(call(() => this.#native.listRuns(json, limit, offset)));
  }

  /** How many runs match `filter`. */
  count(filter?: RunFilter): number {
    const json = filterJson(filter, 'filter');
    return call(() => this.#native.countRuns(json));
  }

  /** Runs whose parent is `id`. */
  children(id: string, options: { includeDryRun?: boolean } = {}): Run[] {
    return reviveRuns(call(() => this.#native.children(id, options.includeDryRun === true)));
  }

  /** The run, its parent, its parent's parent... (cycle-safe). Throws `NotFoundError` for an unknown run. */
  chain(id: string): Run[] {
    return reviveRuns(call(() => this.#native.chain(id)));
  }

  /** The latest `started_at` per skill, in the order given (`null`: none). Runs that failed (error, timeout) count only with `includeFailed`. */
  lastRun(skills: readonly string[], options: { includeFailed?: boolean } = {}): Record<string, Date | null> {
    const pairs = JSON.parse(
      call(() => this.#native.lastRun([...skills], options.includeFailed === true)),
    ) as [string, number | null][];
    const out: Record<string, Date | null> = {};
    for (const [skill, us] of pairs) out[skill] = us === null ? null : fromMicros(us);
    return out;
  }

  /** Failing tool calls (status error: `tool_call` events and `run_log` tool calls) grouped by (channel, tool, error type), most first. */
  errors(range: { since?: Instant; until?: Instant } = {}): ErrorGroup[] {
    const since = optionalMicros('since', range.since);
    const until = optionalMicros('until', range.until);
    const groups = JSON.parse(call(() => this.#native.toolErrors(since, until))) as (Omit<
      ErrorGroup,
      'first_ts' | 'last_ts'
    > & { first_ts: string; last_ts: string })[];
    return groups.map((g) => ({ ...g, first_ts: new Date(g.first_ts), last_ts: new Date(g.last_ts) }));
  }

  /**
   * Tool calls, with or without a run (docs/tool-calls.md): standalone
   * `tool_call` events and `run_log`s whose `event_type` is `tool_call`,
   * newest first (by `ts`, then LSN) unless `oldestFirst`. One page of at
   * most `limit` calls; when it is full, `cursor` continues after it.
   * Calls of dry runs only with `includeDryRun`.
   */
  calls(options: CallsOptions = {}): CallPage {
    const json = callFilterJson(options, 'calls');
    return JSON.parse(call(() => this.#native.calls(json))) as CallPage;
  }

  /** How many tool calls match `filter`. */
  countCalls(filter: CallFilter = {}): number {
    const json = callFilterJson(filter, 'countCalls');
    return call(() => this.#native.countCalls(json));
  }

  /** How many tool calls match `filter`, per value of `by`, most first (then by value). */
  countCallsBy(by: CallKey, filter: CallFilter = {}): CallCount[] {
    if (typeof by !== 'string') throw invalidArgument('countCallsBy: by must be a string');
    const json = callFilterJson(filter, 'countCallsBy');
    return JSON.parse(call(() => this.#native.countCallsBy(by, json))) as CallCount[];
  }

  /** Finished runs with `finished_at` before `before`, newest first. */
  finishedBefore(before: Instant): Run[] {
    const us = toMicros('before', before);
    return reviveRuns(call(() => this.#native.finishedBefore(us)));
  }

  /** Ingest counters (served: the server's, every client's appends). */
  counters(): Counters {
    return JSON.parse(call(() => this.#native.counters())) as Counters;
  }

  /** Segments, events, bytes, time span, counters and (unless `{ anomalies: false }`, which skips a replay of the log) anomalies. */
  async stats(options: { anomalies?: boolean } = {}): Promise<Stats> {
    const counters = this.counters();
    const json = (await settle(call(() => this.#native.stats(options.anomalies !== false)))) as string;
    const raw = JSON.parse(json) as Omit<Stats, 'oldest' | 'newest' | 'counters'> & {
      oldestUs: number | null;
      newestUs: number | null;
    };
    const { oldestUs, newestUs, ...rest } = raw;
    return {
      ...rest,
      oldest: oldestUs === null ? null : fromMicros(oldestUs),
      newest: newestUs === null ? null : fromMicros(newestUs),
      counters,
    };
  }

  /**
   * Read every byte of the log: every frame's CRC, every block of the
   * integrity chain. Rejects with `CorruptError` naming the first bad place.
   * Checks what is on disk: `await flush()` first to include recent appends.
   */
  async verify(options: { expect?: string } = {}): Promise<VerifyReport> {
    const json = (await settle(call(() => this.#native.verify(options.expect)))) as string;
    return JSON.parse(json) as VerifyReport;
  }

  /** Drop whole sealed segments whose newest event is older than the cutoff (`before`, or now minus `olderThanMs`). */
  async retain(options: { before?: Instant; olderThanMs?: number }): Promise<RetentionReport> {
    const { before, olderThanMs } = options;
    if ((before === undefined) === (olderThanMs === undefined)) {
      throw invalidArgument('retain: give exactly one of `before` and `olderThanMs`');
    }
    let cutoff: number;
    if (olderThanMs !== undefined) {
      if (!Number.isFinite(olderThanMs) || olderThanMs < 0) {
        throw invalidArgument(`retain: olderThanMs ${olderThanMs} is not a duration`);
      }
      cutoff = nowMicros() - Math.trunc(olderThanMs * 1000);
    } else {
      cutoff = toMicros('retain.before', before as Instant);
    }
    const json = (await settle(call(() => this.#native.retain(cutoff)))) as string;
    const raw = JSON.parse(json) as {
      cutoffUs: number;
      dropped: { name: string; firstLsn: number; count: number; oldestUs: number; newestUs: number; bytes: number }[];
      events: number;
      bytes: number;
      firstKeptLsn: number;
    };
    return {
      cutoff: fromMicros(raw.cutoffUs),
      dropped: raw.dropped.map((d) => ({
        name: d.name,
        firstLsn: d.firstLsn,
        count: d.count,
        oldest: fromMicros(d.oldestUs),
        newest: fromMicros(d.newestUs),
        bytes: d.bytes,
      })),
      events: raw.events,
      bytes: raw.bytes,
      firstKeptLsn: raw.firstKeptLsn,
    };
  }

  /**
   * Every stored event in log order, as ingested plus `lsn` and `ts_us`.
   * Reads batches on the thread pool; rejects with `ClosedError` if the
   * store closes before the replay ends.
   */
  async *replay(options: ReplayOptions = {}): AsyncGenerator<StoredEvent, void, undefined> {
    const since = optionalMicros('since', options.since);
    const until = optionalMicros('until', options.until);
    const from = count('fromLsn', options.fromLsn);
    const cursor = call(() => this.#native.replay(since, until, from));
    for (;;) {
      const json = (await settle(cursor.nextBatch(BATCH_EVENTS))) as string | null;
      if (json === null) return;
      yield* reviveEvents(json);
    }
  }

  /**
   * The newest `last` events, then (with `follow`) every new one as it is
   * committed, until the store closes, the loop breaks or `signal` aborts.
   * While caught up it waits on a timer (`pollMs`), holding no thread.
   */
  async *tail(options: TailOptions = {}): AsyncGenerator<StoredEvent, void, undefined> {
    const last = count('last', options.last ?? 10) ?? 10;
    const pollMs = options.pollMs ?? 50;
    if (!Number.isFinite(pollMs) || pollMs < 1) throw invalidArgument(`tail: pollMs ${pollMs} must be at least 1`);
    const cursor = call(() => this.#native.tail(last, options.follow === true));
    const signal = options.signal;
    while (signal?.aborted !== true) {
      const json = (await settle(cursor.nextBatch(BATCH_EVENTS))) as string | null;
      if (json === null) return;
      if (json === '[]') {
        await sleep(pollMs);
        continue;
      }
      yield* reviveEvents(json);
    }
  }

  /**
   * Full-text search over run inputs, output, error and log payloads,
   * best first (open with `{ search: true }`, in a build with search).
   */
  async search(query: string, options: SearchOptions = {}): Promise<SearchHit[]> {
    const { limit = 20, fresh = true, since, until, ...exact } = options;
    const filter = JSON.stringify({
      ...exact,
      since: optionalMicros('since', since),
      until: optionalMicros('until', until),
    });
    const n = count('limit', limit) ?? 20;
    const json = (await settle(call(() => this.#native.search(query, filter, n, fresh)))) as string;
    return (JSON.parse(json) as (RawRun & { score: number; snippet: string })[]).map(reviveRun);
  }

  /**
   * Write and sync what is queued, stop the store's threads and release
   * the folder. Every later call throws `ClosedError`. Idempotent.
   */
  close(): void {
    untrack(this.#tracked);
    call(() => this.#native.close());
  }
}

/** Whether this build of the addon has full-text search. */
export function hasSearch(): boolean {
  return native.hasSearch();
}

/**
 * Open the log in `dir`. Throws `NoLogError` when the folder holds no log
 * (unless `{ create: true }`) or holds other files, and `LockedError` when
 * another store writes it.
 */
export function open(dir: string, options: OpenOptions = {}): AuditStore {
  if (typeof dir !== 'string' || dir === '') throw invalidArgument('open: dir must be a non-empty string');
  if (options === null || typeof options !== 'object') throw invalidArgument('open: options must be an object');
  const { durability, ...rest } = options;
  const nativeOptions: Record<string, unknown> = { ...rest };
  if (durability !== undefined) {
    if (typeof durability === 'object' && durability !== null) {
      nativeOptions.durability = 'interval';
      nativeOptions.syncIntervalMs = durability.intervalMs;
    } else {
      nativeOptions.durability = durability;
    }
  }
  const json = JSON.stringify(nativeOptions);
  return new AuditStore(call(() => native.open(dir, json)));
}

/**
 * Connect to the log that `auditlog serve --dir DIR` holds, through its
 * Unix socket (`DIR/auditlog.sock` unless the server was given
 * `--socket`). The store has `open()`'s methods, answers and errors, so a
 * gateway switches modes in one line:
 *
 * ```ts
 * const store = open('/var/lib/gateway/audit');                    // one process
 * const store = connect('/var/lib/gateway/audit/auditlog.sock');   // many (Node cluster)
 * ```
 *
 * Every write returns once the server has made it durable, and is stored
 * exactly once however often it was retried. A server that is not
 * running, or stops answering for `retryForMs` (default 5000), is an
 * `IoError` naming the socket. Appends and queries wait for the server on
 * the JavaScript thread (batch appends with `appendBatch`); `flush`,
 * `stats`, `verify`, `retain`, `search`, `replay` and `tail` run on the
 * thread pool. `close()` lets go of the connections; the server keeps
 * running.
 */
export function connect(socket: string, options: ConnectOptions = {}): AuditStore {
  if (typeof socket !== 'string' || socket === '') throw invalidArgument('connect: socket must be a non-empty string');
  if (options === null || typeof options !== 'object') throw invalidArgument('connect: options must be an object');
  const json = JSON.stringify(options);
  return new AuditStore(call(() => native.connect(socket, json)));
}
