/**
 * The shapes the store takes and returns. Stored data (runs, logs,
 * events, error groups, tool-call rows) keeps the contract's snake_case
 * keys; options and reports are camelCase, as JavaScript APIs are.
 */
import type { Instant } from './instant';

/** How `open()` opens a log folder. */
export interface OpenOptions {
  /** Create the folder and an empty log when it has none (default `false`: a missing or foreign folder is an error). */
  create?: boolean;
  /**
   * When appended events become durable: `'batch'` (default: fdatasync per
   * group commit, before `flush()` resolves), `'never'` (the OS writes
   * back when it likes), or `{ intervalMs }` (at most that often).
   */
  durability?: 'batch' | 'never' | { intervalMs: number };
  /** Appends that may wait in the ingest queue (default 16384). */
  queueCapacity?: number;
  /** When the queue is full: `'block'` (default: `append` waits), `'fail'` (throws `QueueFullError`), `'drop'` (counts and drops). */
  onFull?: 'block' | 'fail' | 'drop';
  /** A segment file is rolled past this size (default 256 MiB). */
  segmentMaxBytes?: number;
  /** Group-commit block size (default 1 MiB). */
  maxBatchBytes?: number;
  /** A redaction policy, as rules text or JSON (see the engine's docs/reliability.md). */
  redaction?: string;
  /** Record only runs of these skills (their logs and finishes too). */
  allowSkills?: string[];
  /** Keep a full-text index (needs a build with the `search` feature). */
  search?: boolean;
}

/** How `connect()` reaches `auditlog serve`. */
export interface ConnectOptions {
  /**
   * How long one call keeps retrying, with the same idempotency key, while
   * the server is busy, restarting or unreachable; then it fails
   * (`IoError`, or `QueueFullError` when the server stayed busy). Default
   * 5000 ms, at most one hour. A synchronous call holds the JavaScript
   * thread while it retries: keep it short.
   */
  retryForMs?: number;
  /** Connections kept open for reuse (default 8). */
  maxIdleConnections?: number;
}

/** A run (the contract's run view). */
export interface Run {
  id: string;
  skill_id: string;
  caller_id: string;
  channel_id: string;
  parent_run_id: string;
  inputs: unknown;
  dry_run: boolean;
  started_at: Date;
  finished_at: Date | null;
  status: string;
  output: string;
  error: string;
  tool_calls: number;
  runtime_seconds: number;
  input_tokens: number;
  output_tokens: number;
  thinking_tokens: number;
}

/** One log line of a run. */
export interface RunLogEntry {
  seq: number;
  ts: Date;
  event_type: string;
  payload: unknown;
}

/** Fields common to the three kinds of event given to `append`. */
interface EventBase {
  run_id: string;
  /**
   * The event's instant: a `Date`, an RFC 3339 string, or (as in the
   * contract's JSON) an integer of **microseconds** since the epoch.
   * Absent: now.
   */
  ts?: Date | string | number;
  /** Unknown fields are kept and come back on replay. */
  [field: string]: unknown;
}

export interface RunStartedEvent extends EventBase {
  kind: 'run_started';
  skill_id?: string;
  caller_id?: string;
  channel_id?: string;
  parent_run_id?: string;
  inputs?: unknown;
  dry_run?: boolean;
}

export interface RunLogEvent extends EventBase {
  kind: 'run_log';
  seq?: number;
  event_type?: string;
  payload?: unknown;
}

export interface RunFinishedEvent extends EventBase {
  kind: 'run_finished';
  status?: string;
  output?: string;
  error?: string;
  tool_calls?: number;
  runtime_seconds?: number;
  input_tokens?: number;
  output_tokens?: number;
  thinking_tokens?: number;
}

/**
 * A tool call as a record of its own (docs/tool-calls.md): `run_id` `""`
 * for a call outside any run. Query them with `calls()`.
 */
export interface ToolCallEvent extends EventBase {
  kind: 'tool_call';
  call_id?: string;
  /** The session or channel. */
  channel_id?: string;
  /** The caller or agent. */
  caller_id?: string;
  workspace_id?: string;
  request_id?: string;
  tool?: string;
  engine?: string;
  /** `'ok'`, `'error'`, or the gateway's own word; absent: `'error'` if `error` or `error_type` is set, else `'ok'`. */
  status?: string;
  error_type?: string;
  error?: string;
  duration_ms?: number | null;
  input_bytes?: number | null;
  result_bytes?: number | null;
  exit_code?: number | null;
  http_status?: number | null;
  input_hash?: string;
  args_summary?: string;
  payload?: unknown;
}

/** An event for `append` (the contract's JSON, as an object). */
export type AuditEvent = RunStartedEvent | RunLogEvent | RunFinishedEvent | ToolCallEvent;

/** An event read back by `replay` or `tail`: as ingested, plus its LSN. */
export interface StoredEvent {
  /** Its position in the log. */
  lsn: number;
  kind: 'run_started' | 'run_log' | 'run_finished';
  run_id: string;
  ts: Date;
  /** `ts` exactly, in µs since the epoch. */
  ts_us: number;
  [field: string]: unknown;
}

/** Filters of `runs` and `count`, combined with AND (exact matches). */
export interface RunFilter {
  skill?: string;
  caller?: string;
  channel?: string;
  /** `'running'` finds unfinished runs. */
  status?: string;
  parent?: string;
  /** Only runs without a parent. */
  topLevel?: boolean;
  /** `started_at >= since`. */
  since?: Instant;
  /** `started_at <= until`. */
  until?: Instant;
  includeDryRun?: boolean;
}

export interface Page {
  limit?: number;
  offset?: number;
}

/**
 * Filters of `calls`, `countCalls` and `countCallsBy`, combined with AND
 * (exact matches). A call's channel and caller are its own, else its run's.
 */
export interface CallFilter {
  tool?: string;
  engine?: string;
  /** The session or channel (`channel` is the same; give one of them). */
  session?: string;
  channel?: string;
  /** The caller or agent (`caller` is the same; give one of them). */
  agent?: string;
  caller?: string;
  workspace?: string;
  /** `'ok'`, `'error'`, or a gateway's own word. */
  status?: string;
  errorType?: string;
  /** Calls of this run. */
  runId?: string;
  /** `ts >= since`. */
  since?: Instant;
  /** `ts <= until`. */
  until?: Instant;
  /** Calls of dry runs too. */
  includeDryRun?: boolean;
}

/** `calls()` options: the filter and one page. */
export interface CallsOptions extends CallFilter {
  /** Oldest first (the default is newest first). */
  oldestFirst?: boolean;
  /** At most this many calls. */
  limit?: number;
  /** Continue after the previous page (its `cursor`). */
  cursor?: string;
}

/**
 * A tool call as `calls()` answers it: the shape `auditlog calls --json`
 * prints (docs/tool-calls.md). `channel_id` and `caller_id` as resolved
 * (its own, else its run's); for a `run_log` call, its fields are read from
 * its payload and `payload` is the whole payload. Unknown top-level fields
 * of the event follow.
 */
export interface Call {
  lsn: number;
  /** RFC 3339 with microseconds, UTC (a string: a `Date` would lose the µs). */
  ts: string;
  /** `'tool_call'` (an event of its own) or `'run_log'` (a run's log line). */
  source: 'tool_call' | 'run_log';
  /** `''` for a call outside any run. */
  run_id: string;
  call_id: string;
  channel_id: string;
  caller_id: string;
  workspace_id: string;
  request_id: string;
  tool: string;
  engine: string;
  status: string;
  error_type: string;
  error: string;
  duration_ms: number | null;
  input_bytes: number | null;
  result_bytes: number | null;
  exit_code: number | null;
  http_status: number | null;
  input_hash: string;
  args_summary: string;
  payload: unknown;
  [field: string]: unknown;
}

/** One page of `calls()`. */
export interface CallPage {
  calls: Call[];
  /** Set when the page is full (`limit` calls): pass it as `cursor` for the next page; `null`: nothing more. */
  cursor: string | null;
}

/** What `countCallsBy` groups by (`session`/`channel`, `agent`/`caller` are the same keys). */
export type CallKey =
  | 'tool'
  | 'engine'
  | 'session'
  | 'channel'
  | 'agent'
  | 'caller'
  | 'workspace'
  | 'status'
  | 'errorType'
  | 'runId';

/** One value of `countCallsBy`. */
export interface CallCount {
  value: string;
  count: number;
}

/** One group of failing tool calls (`errors()`). */
export interface ErrorGroup {
  channel_id: string;
  tool: string;
  error_type: string;
  count: number;
  first_ts: Date;
  last_ts: Date;
  avg_duration_ms: number | null;
  caller_ids: string[];
  run_ids: string[];
}

/** Ingest counters, cheap to read. */
export interface Counters {
  appended: number;
  dropped: number;
  rejected: number;
  /** One past the last durable event's LSN. */
  durableLsn: number;
  queueDepth: number;
  /** Bytes waiting in the ingest queue. */
  queueBytes: number;
  skipped: number;
  failures: number;
}

/** Events kept in the log but ignored by the run view. */
export interface Anomalies {
  duplicateRunStarted: number;
  duplicateRunFinished: number;
  orphanLogs: number;
  finishesWithoutStart: number;
}

/** What `stats()` reports. */
export interface Stats {
  segments: number;
  sealedSegments: number;
  events: number;
  bytes: number;
  firstLsn: number;
  headLsn: number;
  /** The chain digest at the head (anchor it elsewhere; `verify({ expect })`). */
  headDigest: string;
  oldest: Date | null;
  newest: Date | null;
  droppedSegments: number;
  droppedEvents: number;
  /** Absent when asked for `{ anomalies: false }`. */
  anomalies?: Anomalies;
  counters: Counters;
}

/** What `verify()` found (it throws `CorruptError` naming the first bad place). */
export interface VerifyReport {
  ok: true;
  segments: number;
  events: number;
  bytes: number;
  firstLsn: number;
  headLsn: number;
  headDigest: string;
  /** Where the `expect`ed digest was found (LSN one past its block). */
  expectFoundAt: number | null;
  /** Bytes after the last committed block (a write in progress). */
  uncommittedTailBytes: number;
}

export interface DroppedSegment {
  name: string;
  firstLsn: number;
  count: number;
  oldest: Date;
  newest: Date;
  bytes: number;
}

/** What `retain()` dropped. */
export interface RetentionReport {
  cutoff: Date;
  dropped: DroppedSegment[];
  events: number;
  bytes: number;
  firstKeptLsn: number;
}

/** A search hit: the run, its score and a snippet with `**matches**`. */
export interface SearchHit extends Run {
  score: number;
  snippet: string;
}

export interface SearchOptions {
  /** At most this many hits (default 20, at most 10000). */
  limit?: number;
  skill?: string;
  caller?: string;
  channel?: string;
  status?: string;
  since?: Instant;
  until?: Instant;
  /** Wait (up to 10 s) until everything appended so far is searchable (default `true`). */
  fresh?: boolean;
}

export interface ReplayOptions {
  /** Only events with `ts >= since`. */
  since?: Instant;
  /** Only events with `ts <= until`. */
  until?: Instant;
  /** Start at this LSN. */
  fromLsn?: number;
}

export interface TailOptions {
  /** Start with the newest `last` events (default 10). */
  last?: number;
  /** Keep yielding new events until the store closes, the loop breaks, or `signal` aborts (default `false`). */
  follow?: boolean;
  /** How long to wait before looking again when caught up (default 50 ms). */
  pollMs?: number;
  signal?: AbortSignal;
}
