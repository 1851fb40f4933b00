/**
 * `AuditLogger`: a drop-in for the gateways' better-sqlite3
 * `tool_call_log` logger. `record(row)` keeps exactly the table's columns
 * and nothing else, so content fields (`content`, `stdout`, `stderr`,
 * `body`, `response_body`, any key not in the table) can never be stored.
 */
import type * as native from '../native';
import { ClosedError, call, invalidArgument } from './errors';
import { fromMicros, optionalMicros, toMicros, type Instant } from './instant';
import { AuditStore, handleOf, open, type NativeHandle } from './store';
import type { OpenOptions } from './types';

/**
 * The columns of `tool_call_log`, the only keys `record()` reads. Until
 * the engine's keep-only redaction (issue 15) enforces this on disk, this
 * list is the guarantee: `record()` reads these names from the row and
 * never walks the row's own keys.
 */
export const TOOL_CALL_COLUMNS = [
  'id',
  'session_id',
  'engine',
  'tool_name',
  'args_summary',
  'duration_ms',
  'exit_code',
  'http_status',
  'error',
  'result_truncated',
  'result_bytes',
  'created_at',
] as const;

/** A row as a gateway records it. Other keys are ignored (never stored). */
export interface ToolCallRow {
  /** Generated (a UUIDv7) when absent. */
  id?: string | null;
  /** `"unknown"` when absent. */
  session_id?: string | null;
  /** `"unknown"` when absent. */
  engine?: string | null;
  tool_name: string;
  args_summary?: string | null;
  duration_ms?: number | null;
  exit_code?: number | null;
  http_status?: number | null;
  /** Present (even `""`): the call failed. */
  error?: string | null;
  /** `true`/`false`, or SQLite-style `1`/`0`. */
  result_truncated?: boolean | number | null;
  result_bytes?: number | null;
  /** Now when absent. A number is milliseconds since the epoch. */
  created_at?: Instant | null;
}

/** A row read back. */
export interface ToolCall {
  id: string;
  session_id: string;
  engine: string;
  tool_name: string;
  args_summary: string | null;
  duration_ms: number | null;
  exit_code: number | null;
  http_status: number | null;
  error: string | null;
  result_truncated: boolean | null;
  result_bytes: number | null;
  created_at: Date;
}

/** The gateways' logger interface. */
export interface ToolCallLogger {
  record(row: ToolCallRow): void;
}

/** Which calls, in which order. */
export interface CallQueryOptions {
  /** `created_at >= since`. */
  since?: Instant;
  /** `created_at <= until`. */
  until?: Instant;
  /** At most this many rows (the oldest ones with `order: 'asc'`, the newest with `'desc'`). */
  limit?: number;
  /** `'asc'` (default: time order) or `'desc'` (newest first). */
  order?: 'asc' | 'desc';
}

export interface AuditLoggerOptions extends OpenOptions {
  /** When given a folder: create the log if it has none (default `false`: the constructor throws `NoLogError`). */
  create?: boolean;
}

function text(row: ToolCallRow, field: (typeof TOOL_CALL_COLUMNS)[number]): string | null {
  const v = (row as unknown as Record<string, unknown>)[field];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw invalidArgument(`tool_call_log row: field \`${field}\`: expected a string, got ${typeof v}`);
  return v;
}

function num(row: ToolCallRow, field: (typeof TOOL_CALL_COLUMNS)[number]): number | null {
  const v = (row as unknown as Record<string, unknown>)[field];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number') throw invalidArgument(`tool_call_log row: field \`${field}\`: expected a number, got ${typeof v}`);
  return v;
}

function flag(row: ToolCallRow): boolean | null {
  const v: unknown = row.result_truncated;
  if (v === undefined || v === null) return null;
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  throw invalidArgument('tool_call_log row: field `result_truncated`: expected a boolean, 0 or 1');
}

/** Rows from the addon's JSON (`created_at` in µs), made `Date`s in place. */
function reviveCalls(json: string): ToolCall[] {
  const rows = JSON.parse(json) as { created_at: number | Date }[];
  for (const r of rows) r.created_at = fromMicros(r.created_at as number);
  return rows as ToolCall[];
}

/**
 * Records tool calls into an auditlog folder and answers the questions
 * the table's indexes served. Each row is one run of the log (README.md,
 * "How a row is stored").
 */
export class AuditLogger implements ToolCallLogger {
  readonly #store: AuditStore;
  readonly #handle: NativeHandle;
  readonly #owned: boolean;
  #closed = false;

  /**
   * `store`: an open `AuditStore`, or a log folder to open. A folder that
   * is not an auditlog folder throws `NoLogError` unless `{ create: true }`.
   */
  constructor(store: AuditStore | string, options: AuditLoggerOptions = {}) {
    if (typeof store === 'string') {
      this.#store = open(store, { ...options, create: options.create === true });
      this.#owned = true;
    } else if (store instanceof AuditStore) {
      if (store.closed) throw new ClosedError('AUDITLOG_CLOSED', 'the store is closed');
      this.#store = store;
      this.#owned = false;
    } else {
      throw invalidArgument('AuditLogger: expected an AuditStore or a folder path');
    }
    this.#handle = handleOf(this.#store);
  }

  /** The store rows go to. */
  get store(): AuditStore {
    return this.#store;
  }

  /**
   * Record one tool call; returns its id. Returns once the row is queued
   * (durable at the next `flush()`); throws at once when the logger or
   * its store is closed, or a field breaks a rule (the message names it).
   */
  record(row: ToolCallRow): string {
    if (this.#closed) throw new ClosedError('AUDITLOG_CLOSED', 'the audit logger is closed');
    if (row === null || typeof row !== 'object') throw invalidArgument('tool_call_log row: expected an object');
    const created = row.created_at;
    const createdUs = created === undefined || created === null ? null : toMicros('tool_call_log row: field `created_at`', created);
    const id = text(row, 'id');
    const session = text(row, 'session_id');
    const engine = text(row, 'engine');
    const tool = text(row, 'tool_name');
    const args = text(row, 'args_summary');
    const duration = num(row, 'duration_ms');
    const exitCode = num(row, 'exit_code');
    const httpStatus = num(row, 'http_status');
    const error = text(row, 'error');
    const truncated = flag(row);
    const bytes = num(row, 'result_bytes');
    return call(() =>
      this.#handle.recordToolCall(
        id,
        session,
        engine,
        tool,
        args,
        duration,
        exitCode,
        httpStatus,
        error,
        truncated,
        bytes,
        createdUs,
      ),
    );
  }

  /** Make every recorded row durable. */
  flush(): Promise<number> {
    if (this.#closed) return Promise.reject(new ClosedError('AUDITLOG_CLOSED', 'the audit logger is closed'));
    return this.#store.flush();
  }

  #query(shape: string, a: string | null, b: string | null, options: CallQueryOptions): ToolCall[] {
    if (this.#closed) throw new ClosedError('AUDITLOG_CLOSED', 'the audit logger is closed');
    const { since, until, limit, order = 'asc' } = options;
    if (order !== 'asc' && order !== 'desc') throw invalidArgument(`order: ${String(order)} is not 'asc' or 'desc'`);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0 || limit > 0xffffffff)) {
      throw invalidArgument(`limit: ${String(limit)} is not a whole number`);
    }
    const s = optionalMicros('since', since);
    const u = optionalMicros('until', until);
    return reviveCalls(call(() => this.#handle.toolCalls(shape, a, b, s, u, limit, order === 'asc')));
  }

  /** The row with this id, or `null` (with duplicate ids, the first recorded). */
  get(id: string): ToolCall | null {
    return this.#query('id', id, null, {})[0] ?? null;
  }

  /** Calls of a session, in time order (the session index). */
  sessionCalls(sessionId: string, options: CallQueryOptions = {}): ToolCall[] {
    return this.#query('session', sessionId, null, options);
  }

  /** Calls of one engine and tool, e.g. in a time range (the engine/tool index). */
  toolCalls(engine: string, toolName: string, options: CallQueryOptions = {}): ToolCall[] {
    return this.#query('tool', engine, toolName, options);
  }

  /** Calls with an error (the status index). */
  errorCalls(options: CallQueryOptions = {}): ToolCall[] {
    return this.#query('errors', null, null, options);
  }

  /** Stop recording; closes the store too when the logger opened it. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#owned) this.#store.close();
  }
}
