/**
 * Errors: every failure of the store is an `AuditLogError` (an `Error`)
 * with a `code`; a subclass per kind, so callers may test either
 * `err instanceof ClosedError` or `err.code === 'AUDITLOG_CLOSED'`.
 *
 * The native addon cannot give async rejections a code of its own, so
 * its messages start with the code (`AUDITLOG_CLOSED: the store is
 * closed`); `translate` turns such an error into its subclass.
 */

/** Every code an `AuditLogError` may carry. */
export type ErrorCode =
  | 'AUDITLOG_IO'
  | 'AUDITLOG_NO_LOG'
  | 'AUDITLOG_NOT_A_LOG'
  | 'AUDITLOG_LOCKED'
  | 'AUDITLOG_CORRUPT'
  | 'AUDITLOG_UNSUPPORTED_VERSION'
  | 'AUDITLOG_INVALID_EVENT'
  | 'AUDITLOG_INVALID_ARGUMENT'
  | 'AUDITLOG_QUEUE_FULL'
  | 'AUDITLOG_CLOSED'
  | 'AUDITLOG_WRITE_ROLLED_BACK'
  | 'AUDITLOG_WRITER_FAILED'
  | 'AUDITLOG_NOT_FOUND'
  | 'AUDITLOG_SEARCH'
  | 'AUDITLOG_INTERNAL';

/** Codes of failures worth retrying: nothing was stored, nothing harmed. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['AUDITLOG_QUEUE_FULL', 'AUDITLOG_WRITE_ROLLED_BACK']);

/** The base class of every error the store raises. */
export class AuditLogError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  /** True when the same call may succeed later (a full queue, a write that was cut back cleanly). */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

/** A file operation failed (disk full, permissions, ...). */
export class IoError extends AuditLogError {}
/** The folder is not an auditlog folder (`AUDITLOG_NO_LOG`: nothing there and creation not asked for; `AUDITLOG_NOT_A_LOG`: other files). */
export class NoLogError extends AuditLogError {}
/** Another process (or store) writes this folder. */
export class LockedError extends AuditLogError {}
/** Stored data fails its checks; the message names the segment and offset. */
export class CorruptError extends AuditLogError {}
/**
 * A stored file has a format version this build does not read (written by
 * another version of auditlog). Not damage: nothing of it is cut or
 * changed. A `CorruptError` too, for callers that test only for that.
 */
export class UnsupportedVersionError extends CorruptError {}
/** An event or row breaks a rule; the message names the field. */
export class InvalidEventError extends AuditLogError {}
/** A bad option or argument; the message names it. */
export class InvalidArgumentError extends AuditLogError {}
/** The ingest queue is full (`onFull: 'fail'`) or dropped the events. */
export class QueueFullError extends AuditLogError {}
/** The store (or logger) is closed. */
export class ClosedError extends AuditLogError {}
/** A block write failed and was cut back: those events are not stored, the log carries on; append them again. */
export class WriteRolledBackError extends AuditLogError {}
/** The writer stopped after an I/O failure: reopen the store. */
export class WriterFailedError extends AuditLogError {}
/** A named run does not exist. */
export class NotFoundError extends AuditLogError {}
/** A full-text query does not parse, or search is not available. */
export class SearchError extends AuditLogError {}
/** An unexpected failure inside the addon (a bug). */
export class InternalError extends AuditLogError {}

type ErrorClass = new (code: ErrorCode, message: string, options?: { cause?: unknown }) => AuditLogError;

const CLASSES: Record<ErrorCode, ErrorClass> = {
  AUDITLOG_IO: IoError,
  AUDITLOG_NO_LOG: NoLogError,
  AUDITLOG_NOT_A_LOG: NoLogError,
  AUDITLOG_LOCKED: LockedError,
  AUDITLOG_CORRUPT: CorruptError,
  AUDITLOG_UNSUPPORTED_VERSION: UnsupportedVersionError,
  AUDITLOG_INVALID_EVENT: InvalidEventError,
  AUDITLOG_INVALID_ARGUMENT: InvalidArgumentError,
  AUDITLOG_QUEUE_FULL: QueueFullError,
  AUDITLOG_CLOSED: ClosedError,
  AUDITLOG_WRITE_ROLLED_BACK: WriteRolledBackError,
  AUDITLOG_WRITER_FAILED: WriterFailedError,
  AUDITLOG_NOT_FOUND: NotFoundError,
  AUDITLOG_SEARCH: SearchError,
  AUDITLOG_INTERNAL: InternalError,
};

const CODED = /^(AUDITLOG_[A-Z_]+): ([\s\S]*)$/;

/** Make an error of `code`. */
export function makeError(code: ErrorCode, message: string, cause?: unknown): AuditLogError {
  const Class = CLASSES[code];
  return new Class(code, message, cause === undefined ? undefined : { cause });
}

/** The addon's error as its subclass; anything else unchanged. */
export function translate(e: unknown): unknown {
  if (!(e instanceof Error) || e instanceof AuditLogError) return e;
  const m = CODED.exec(e.message);
  if (m === null) return e;
  const code = m[1] as ErrorCode;
  if (!(code in CLASSES)) return e;
  return makeError(code, m[2] ?? '', e);
}

/** Run `f`, translating what it throws. */
export function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw translate(e);
  }
}

/** Await `p`, translating its rejection. */
export async function settle<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw translate(e);
  }
}

/** An `AUDITLOG_INVALID_ARGUMENT` error. */
export function invalidArgument(message: string): InvalidArgumentError {
  return new InvalidArgumentError('AUDITLOG_INVALID_ARGUMENT', message);
}
