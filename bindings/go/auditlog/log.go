// Package auditlog is the Go binding of the auditlog engine: an embedded,
// append-only, integrity-chained audit log with run indexes. It calls the
// engine through its C ABI (bindings/c) with cgo; see README.md for how it
// links and what `go build` needs.
//
// A *Log is safe for use by many goroutines at once. Every call takes a
// context.Context: it is checked before the call, and waits for
// durability give up when it is done (the events may still become
// durable). Errors are *Error values that match the Code sentinels with
// errors.Is.
package auditlog

/*
#include <stdlib.h>
#include "al_wrap.h"
*/
import "C"

import (
	"context"
	"encoding/json"
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

// Log is an open audit log. Close it when done.
type Log struct {
	// mu is held shared by every call and exclusively by Close, so Close
	// waits for calls in flight and no call uses a closed handle. Calls
	// never exclude each other here.
	mu     sync.RWMutex
	handle *C.AuditlogStore
	waiter *waiter
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

// Close flushes and closes the log. Calls in flight finish first; later
// calls fail with ErrClosed. Closing twice is a no-op.
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
}

// Append queues events (JSONL: one contract event per line, all or
// nothing, consecutive LSNs) and returns a receipt without waiting.
func (l *Log) Append(ctx context.Context, jsonl []byte, flags AppendFlags) (*Receipt, error) {
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
	h, err := l.enter(ctx, "flush")
	if err != nil {
		return 0, err
	}
	defer l.leave()
	var next C.uint64_t
	var msg *C.char
	st := C.al_flush(h, &next, &msg)
	return uint64(next), cStatus("flush", st, msg)
}

// QueryRaw sends one JSON request (see the header's auditlog_query) and
// returns the JSON answer.
func (l *Log) QueryRaw(ctx context.Context, request []byte) ([]byte, error) {
	h, err := l.enter(ctx, "query")
	if err != nil {
		return nil, err
	}
	defer l.leave()
	p, n := bytesPtr(request)
	var out *C.char
	var outLen C.size_t
	var msg *C.char
	st := C.al_query(h, p, n, &out, &outLen, &msg)
	if err := cStatus("query", st, msg); err != nil {
		return nil, err
	}
	return takeString(out, outLen), nil
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
	h, err := l.enter(ctx, "purge")
	if err != nil {
		return PurgeReport{}, err
	}
	defer l.leave()
	var out *C.char
	var outLen C.size_t
	var msg *C.char
	st := C.al_purge(h, C.int64_t(cutoff.UnixMicro()), &out, &outLen, &msg)
	if err := cStatus("purge", st, msg); err != nil {
		return PurgeReport{}, err
	}
	var rep PurgeReport
	err = json.Unmarshal(takeString(out, outLen), &rep)
	return rep, err
}
