package auditlog

/*
#include "al_wrap.h"
*/
import "C"

import "sync"

// waiter completes durable appends for every goroutine of a Log: one
// goroutine waits in C on the oldest receipt while the callers park on Go
// channels. Without it each waiting goroutine would hold an OS thread
// blocked in C, and every group commit would wake each of those threads
// through the kernel; with it a commit wakes one thread, which then finds
// the other receipts of the block already done.
type waiter struct {
	mu      sync.Mutex
	queue   []pendingReceipt
	wake    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

type pendingReceipt struct {
	r    *C.AuditlogReceipt
	done chan waitResult // buffered: the waiter never blocks on a caller
}

type waitResult struct {
	lsns LSNRange
	err  error
}

func newWaiter() *waiter {
	return &waiter{wake: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// add hands the receipt to the waiter (which releases it) and returns the
// channel its outcome comes on.
func (w *waiter) add(r *C.AuditlogReceipt) <-chan waitResult {
	w.once.Do(func() { go w.run() })
	p := pendingReceipt{r: r, done: make(chan waitResult, 1)}
	w.mu.Lock()
	w.queue = append(w.queue, p)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return p.done
}

// run waits on the receipts in the order they came (about LSN order, the
// order they complete in), releasing each.
func (w *waiter) run() {
	var batch []pendingReceipt
	for {
		w.mu.Lock()
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-w.wake:
				continue
			case <-w.stopped:
				return
			}
		}
		for i := range batch {
			p := &batch[i]
			var first, last C.uint64_t
			var msg *C.char
			st := C.al_wait(p.r, -1, &first, &last, &msg)
			C.auditlog_receipt_free(p.r)
			p.done <- waitResult{LSNRange{uint64(first), uint64(last)}, cStatus("wait", st, msg)}
			*p = pendingReceipt{}
		}
	}
}

// stop ends the waiter once every receipt handed to it is done (the
// caller makes sure no more come).
func (w *waiter) stop() {
	close(w.stopped)
}
