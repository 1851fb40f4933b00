// Package auditlog is the Go binding of the auditlog engine: an embedded,
// append-only, integrity-chained audit log with run indexes. It calls the
// engine through its C ABI (bindings/c) with cgo; see README.md for how it
// links and what `go build` needs.
//
// Open opens a log in this process; Connect reaches one that `auditlog
// serve` holds for many processes. Both return a *Log with the same
// methods and answers, so a gateway switches modes in one line.
//
// A *Log is safe for use by many goroutines at once. Every call takes a
// context.Context: it is checked before the call, and waits for
// durability (or, served, for the server) give up when it is done (the
// events may still become durable). Errors are *Error values that match
// the Code sentinels with errors.Is.
package auditlog

/*
#include <stdlib.h>
#include "al_wrap.h"
*/
import "C"

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// Options of Open. The zero value is the default: durable appends
// (fdatasync before a receipt completes), a blocking queue.
type Options struct {
	// "every_batch" (default), "never", or "interval:MS".
	Durability string `json:"durability,omitempty"`
	// Appends that may wait in the ingest queue (0: the default).
	QueueCapacity int `json:"queue_capacity,omitempty"`
	// "block" (default), "fail_fast" or "drop".
	OnFull string `json:"on_full,omitempty"`
	// Segment size cap in bytes (0: the default, 256 MiB).
	SegmentMaxBytes int64 `json:"segment_max_bytes,omitempty"`
	// Do not create the folder or log if it is missing.
	NoCreate bool `json:"-"`
}

// Log is an open audit log, or a connection to `auditlog serve`
// (Connect). Close it when done.
type Log struct {
	// mu is held shared by every call and exclusively by Close, so Close
	// waits for calls in flight and no call uses a closed handle. Calls
	// never exclude each other here.
	mu     sync.RWMutex
	handle *C.AuditlogStore
	waiter *waiter
	// served: made by Connect. Appends are durable on return, and a call
	// that waits on the server gives up when its context ends (see call).
	served bool
}

// Served reports whether the log is reached through `auditlog serve`
// (Connect) rather than opened in this process (Open).
func (l *Log) Served() bool { return l.served }

// ConnectOptions of Connect. The zero value is the default.
type ConnectOptions struct {
	// How long one call keeps retrying, with the same idempotency key,
	// while the server is busy, restarting or unreachable; then the call
	// fails with ErrIO (unreachable) or ErrQueueFull (busy). 0: 30 s; at
	// most one hour. A context that ends sooner ends the wait sooner.
	RetryFor time.Duration
	// Connections kept open for reuse (0: 8).
	MaxIdleConnections int
}

// maxRetryFor is the C ABI's limit on retry_for_ms.
const maxRetryFor = time.Hour

// Connect reaches the log that `auditlog serve --dir DIR` holds, through
// its Unix socket path (DIR/auditlog.sock unless the server was given
// --socket). The *Log has Open's methods and answers; many processes may
// connect to one server at once:
//
//	log, err := auditlog.Open(dir, nil)                         // one process
//	log, err := auditlog.Connect(ctx, dir+"/auditlog.sock", nil) // many
//
// A write returns once the server has made it durable, and is stored
// exactly once however often it was retried (the server restarting, say).
// When ctx ends first, Connect returns ctx.Err(); so does every later
// call whose context ends while it waits on the server (a write may still
// be stored, once). Close lets go of the connections; the server keeps
// running.
func Connect(ctx context.Context, path string, opts *ConnectOptions) (*Log, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var o ConnectOptions
	if opts != nil {
		o = *opts
	}
	if o.RetryFor < 0 || o.RetryFor > maxRetryFor || o.MaxIdleConnections < 0 {
		return nil, &Error{Op: "connect", Code: ErrInvalidArgument,
			Message: fmt.Sprintf("connect options: RetryFor %v must be within 0..%v, MaxIdleConnections %d at least 0", o.RetryFor, maxRetryFor, o.MaxIdleConnections)}
	}
	m := map[string]int64{}
	if o.RetryFor > 0 {
		m["retry_for_ms"] = max(o.RetryFor.Milliseconds(), 1)
	}
	if o.MaxIdleConnections > 0 {
		m["max_idle_connections"] = int64(o.MaxIdleConnections)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	type connected struct {
		h   *C.AuditlogStore
		err error
	}
	done := make(chan connected, 1)
	// The first call may wait RetryFor for a server to answer: on a
	// goroutine of its own, so that ctx can end the wait here.
	go func() {
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		copts := C.CString(string(raw))
		defer C.free(unsafe.Pointer(copts))
		var h *C.AuditlogStore
		var msg *C.char
		st := C.al_connect(cpath, copts, &h, &msg)
		done <- connected{h, cStatus("connect", st, msg)}
	}()
	select {
	case c := <-done:
		if c.err != nil {
			return nil, c.err
		}
		return &Log{handle: c.h, waiter: newWaiter(), served: true}, nil
	case <-ctx.Done():
		go func() {
			if c := <-done; c.err == nil {
				C.auditlog_close(c.h)
			}
		}()
		return nil, ctx.Err()
	}
}

// Open opens (or creates) the log in folder dir. opts may be nil.
func Open(dir string, opts *Options) (*Log, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	if o.NoCreate {
		raw = append(raw[:len(raw)-1], []byte(`,"create":false}`)...)
		if string(raw[:2]) == "{," {
			raw = append([]byte{'{'}, raw[2:]...)
		}
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	copts := C.CString(string(raw))
	defer C.free(unsafe.Pointer(copts))
	var h *C.AuditlogStore
	var msg *C.char
	st := C.al_open(cdir, copts, &h, &msg)
	if err := cStatus("open", st, msg); err != nil {
		return nil, err
	}
	return &Log{handle: h, waiter: newWaiter()}, nil
}

// Close flushes and closes the log (served: closes the connections; the
// server keeps running). Calls in flight finish first, including served
// calls whose callers gave up on them; later calls fail with ErrClosed.
// Closing twice is a no-op.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.handle == nil {
		return nil
	}
	var msg *C.char
	st := C.al_close(l.handle, &msg)
	l.handle = nil
	// Closing completed every receipt: the waiter drains and ends.
	l.waiter.stop()
	return cStatus("close", st, msg)
}

// enter checks ctx and the handle, and holds the shared lock until leave.
func (l *Log) enter(ctx context.Context, op string) (*C.AuditlogStore, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	if l.handle == nil {
		l.mu.RUnlock()
		return nil, &Error{Op: op, Code: ErrClosed, Message: "the log is closed"}
	}
	return l.handle, nil
}

func (l *Log) leave() { l.mu.RUnlock() }

// call runs f (one C call on the handle) holding the shared lock. On a
// served log whose ctx can end, f runs on a goroutine of its own and the
// caller gets ctx.Err() when ctx ends first: f finishes in the background
// (the client retries a write with its key, so it is stored once or not
// at all) and Close waits for it. f must own its inputs (see own) and
// release whatever C hands it.
func (l *Log) call(ctx context.Context, op string, f func(h *C.AuditlogStore) error) error {
	h, err := l.enter(ctx, op)
	if err != nil {
		return err
	}
	if !l.served || ctx.Done() == nil {
		defer l.leave()
		return f(h)
	}
	done := make(chan error, 1)
	go func() {
		defer l.leave()
		done <- f(h)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// own copies b when call may hand it to a goroutine that outlives the
// caller (who may reuse the buffer).
func (l *Log) own(ctx context.Context, b []byte) []byte {
	if l.served && ctx.Done() != nil {
		return bytes.Clone(b)
	}
	return b
}

// AppendFlags changes what Append checks.
type AppendFlags uint32

// RequireRun: a run_log or run_finished of a run never started fails with
// ErrNotFound, and nothing of the call is written.
const RequireRun AppendFlags = C.AUDITLOG_APPEND_REQUIRE_RUN

// LSNRange is the log sequence numbers an append was given.
type LSNRange struct{ First, Last uint64 }

// Receipt is the promise of one Append. Wait on it, then Release it.
type Receipt struct {
	log *Log
	r   *C.AuditlogReceipt
	// durable: the server's answer (served logs): already complete.
	durable *LSNRange
}

// Append queues events (JSONL: one contract event per line, all or
// nothing, consecutive LSNs) and returns a receipt without waiting. On a
// served log it returns once the server has made them durable (the
// receipt is complete already).
func (l *Log) Append(ctx context.Context, jsonl []byte, flags AppendFlags) (*Receipt, error) {
	if l.served {
		lsns, err := l.AppendDurable(ctx, jsonl, flags)
		if err != nil {
			return nil, err
		}
		return &Receipt{log: l, durable: &lsns}, nil
	}
	h, err := l.enter(ctx, "append")
	if err != nil {
		return nil, err
	}
	defer l.leave()
	p, n := bytesPtr(jsonl)
	var r *C.AuditlogReceipt
	var msg *C.char
	st := C.al_append(h, p, n, C.uint32_t(flags), &r, &msg)
	if err := cStatus("append", st, msg); err != nil {
		return nil, err
	}
	return &Receipt{log: l, r: r}, nil
}

// AppendDurable appends and waits until the events are durable (per the
// log's durability policy), or ctx is done (then ctx.Err(); the events may
// still become durable). Many goroutines calling it at once share group
// commits.
func (l *Log) AppendDurable(ctx context.Context, jsonl []byte, flags AppendFlags) (LSNRange, error) {
	if l.served {
		jsonl = l.own(ctx, jsonl)
		var lsns LSNRange
		err := l.call(ctx, "append", func(h *C.AuditlogStore) error {
			p, n := bytesPtr(jsonl)
			var first, last C.uint64_t
			var msg *C.char
			st := C.al_append_wait(h, p, n, C.uint32_t(flags), &first, &last, &msg)
			lsns = LSNRange{uint64(first), uint64(last)}
			return cStatus("append", st, msg)
		})
		if err != nil {
			return LSNRange{}, err
		}
		return lsns, nil
	}
	r, err := l.Append(ctx, jsonl, flags)
	if err != nil {
		return LSNRange{}, err
	}
	done := l.waiter.add(r.r)
	r.r = nil // the waiter releases it
	select {
	case res := <-done:
		return res.lsns, res.err
	case <-ctx.Done():
		return LSNRange{}, ctx.Err()
	}
}

// waitSlice bounds one C wait, so a cancelled context is seen quickly.
const waitSlice = 50 * time.Millisecond

// Wait blocks until the receipt's events are durable, or ctx is done
// (then ctx.Err(); the events may still become durable).
func (r *Receipt) Wait(ctx context.Context) (LSNRange, error) {
	if r.durable != nil {
		return *r.durable, nil
	}
	if r.r == nil {
		return LSNRange{}, &Error{Op: "wait", Code: ErrInvalidArgument, Message: "receipt released"}
	}
	ms := C.int64_t(-1)
	if ctx.Done() != nil {
		ms = C.int64_t(waitSlice.Milliseconds())
	}
	for {
		if err := ctx.Err(); err != nil {
			return LSNRange{}, err
		}
		var first, last C.uint64_t
		var msg *C.char
		st := C.al_wait(r.r, ms, &first, &last, &msg)
		err := cStatus("wait", st, msg)
		if err == nil {
			return LSNRange{uint64(first), uint64(last)}, nil
		}
		if e, ok := err.(*Error); !ok || e.Code != ErrTimeout {
			return LSNRange{}, err
		}
	}
}

// Release frees the receipt (it does not wait). Safe to call twice.
func (r *Receipt) Release() {
	if r.r != nil {
		C.auditlog_receipt_free(r.r)
		r.r = nil
	}
}

// Flush makes everything appended so far durable and visible to
// queries; it returns the next LSN.
func (l *Log) Flush(ctx context.Context) (uint64, error) {
	var next uint64
	err := l.call(ctx, "flush", func(h *C.AuditlogStore) error {
		var n C.uint64_t
		var msg *C.char
		st := C.al_flush(h, &n, &msg)
		next = uint64(n)
		return cStatus("flush", st, msg)
	})
	return next, err
}

// QueryRaw sends one JSON request (see the header's auditlog_query) and
// returns the JSON answer.
func (l *Log) QueryRaw(ctx context.Context, request []byte) ([]byte, error) {
	request = l.own(ctx, request)
	var answer []byte
	err := l.call(ctx, "query", func(h *C.AuditlogStore) error {
		p, n := bytesPtr(request)
		var out *C.char
		var outLen C.size_t
		var msg *C.char
		st := C.al_query(h, p, n, &out, &outLen, &msg)
		if err := cStatus("query", st, msg); err != nil {
			return err
		}
		answer = takeString(out, outLen)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return answer, nil
}

// PurgeReport is what PurgeOlderThan dropped.
type PurgeReport struct {
	PurgedRuns      int64  `json:"purged_runs"`
	DroppedSegments int    `json:"dropped_segments"`
	DroppedEvents   int64  `json:"dropped_events"`
	DroppedBytes    int64  `json:"dropped_bytes"`
	FirstKeptLSN    uint64 `json:"first_kept_lsn"`
}

// PurgeOlderThan drops whole sealed segments whose newest event is older
// than cutoff (the active segment is always kept).
func (l *Log) PurgeOlderThan(ctx context.Context, cutoff time.Time) (PurgeReport, error) {
	var answer []byte
	err := l.call(ctx, "purge", func(h *C.AuditlogStore) error {
		var out *C.char
		var outLen C.size_t
		var msg *C.char
		st := C.al_purge(h, C.int64_t(cutoff.UnixMicro()), &out, &outLen, &msg)
		if err := cStatus("purge", st, msg); err != nil {
			return err
		}
		answer = takeString(out, outLen)
		return nil
	})
	if err != nil {
		return PurgeReport{}, err
	}
	var rep PurgeReport
	err = json.Unmarshal(answer, &rep)
	return rep, err
}
