/**
 * Instants. The engine keeps microseconds since the Unix epoch (UTC);
 * JavaScript gets `Date`s (milliseconds). Options that take an instant
 * accept a `Date`, an RFC 3339 string (any offset, up to µs), or a number
 * of **milliseconds** since the epoch, like `new Date(n)`.
 */
import * as native from '../native';
import { AuditLogError, invalidArgument, translate } from './errors';

/** Anything an option accepts as an instant. */
export type Instant = Date | string | number;

/** `v` in µs since the epoch; `what` names the option in errors. */
export function toMicros(what: string, v: Instant): number {
  if (v instanceof Date) {
    const t = v.getTime();
    if (Number.isNaN(t)) throw invalidArgument(`${what}: the Date is invalid`);
    return t * 1000;
  }
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw invalidArgument(`${what}: ${v} is not a number of milliseconds`);
    return Math.trunc(v * 1000);
  }
  if (typeof v === 'string') {
    try {
      return native.parseInstant(v);
    } catch (e) {
      const err = translate(e);
      throw invalidArgument(`${what}: ${err instanceof AuditLogError ? err.message : String(err)}`);
    }
  }
  throw invalidArgument(`${what}: expected a Date, an RFC 3339 string or milliseconds since the epoch, got ${typeof v}`);
}

/** Like `toMicros`, `undefined` and `null` staying `undefined`. */
export function optionalMicros(what: string, v: Instant | null | undefined): number | undefined {
  return v === undefined || v === null ? undefined : toMicros(what, v);
}

/** A `Date` from µs (the sub-millisecond part is dropped). */
export function fromMicros(us: number): Date {
  return new Date(Math.floor(us / 1000));
}

/** Now, in µs (wall clock, millisecond precision). */
export function nowMicros(): number {
  return Date.now() * 1000;
}
