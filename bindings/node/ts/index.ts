/**
 * @auditlog/node: the auditlog engine for Node.js gateways.
 *
 * ```ts
 * import { open, connect, AuditLogger } from '@auditlog/node';
 * const store = open('/var/lib/gateway/audit', { create: true });
 * store.append({ kind: 'run_started', run_id: 'r-1', skill_id: 'web.search' });
 * await store.flush();
 * // Several processes (Node cluster) on one log: `auditlog serve --dir DIR`,
 * // then the same store through its socket:
 * const served = connect('/var/lib/gateway/audit/auditlog.sock');
 * ```
 */
export { AuditStore, open, connect, hasSearch } from './store';
export { AuditLogger, TOOL_CALL_COLUMNS } from './logger';
export type { ToolCall, ToolCallRow, ToolCallLogger, CallQueryOptions, AuditLoggerOptions } from './logger';
export type { Instant } from './instant';
export {
  AuditLogError,
  ClosedError,
  CorruptError,
  InternalError,
  InvalidArgumentError,
  InvalidEventError,
  IoError,
  LockedError,
  NoLogError,
  NotFoundError,
  QueueFullError,
  SearchError,
  WriteRolledBackError,
  WriterFailedError,
} from './errors';
export type { ErrorCode } from './errors';
export type * from './types';
