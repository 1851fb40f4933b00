package auditlog

// Connect: the same API over `auditlog serve`, started by the test (see
// internal/servetest), with the same answers as Open; goroutines; a
// server killed under a client; Close.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditlog/auditlog/bindings/go/internal/servetest"
)

func connect(t *testing.T, srv *servetest.Server, opts *ConnectOptions) *Log {
	t.Helper()
	l, err := Connect(ctx, srv.Socket, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func served(t *testing.T) (*Log, *servetest.Server) {
	t.Helper()
	srv := servetest.Start(t, filepath.Join(t.TempDir(), "served"))
	return connect(t, srv, &ConnectOptions{RetryFor: 5 * time.Second}), srv
}

// workload appends the same events to l and returns the outcome of each
// call, refused ones included (errors as their codes).
func workload(l *Log) []string {
	day := int64(86_400_000_000)
	calls := []struct {
		jsonl string
		flags AppendFlags
	}{
		{string(ev("run_started", "p-1", day, `,"skill_id":"web.search","caller_id":"u-1","channel_id":"s-1","inputs":{"q":"needle"}`)), 0},
		{string(ev("run_started", "c-1", day+10, `,"skill_id":"web.fetch","caller_id":"u-1","parent_run_id":"p-1"`)) +
			string(ev("run_log", "c-1", day+20, `,"seq":0,"event_type":"tool_call","payload":{"tool":"http.get","status":"error","error_type":"timeout","duration_ms":5000}`)), RequireRun},
		{string(ev("run_finished", "c-1", day+30, `,"status":"error","error":"upstream timeout","input_tokens":7`)), RequireRun},
		{string(ev("run_started", "d-1", day+40, `,"skill_id":"web.search","dry_run":true`)), 0},
		{string(ev("run_finished", "ghost", day, `,"status":"ok"`)), RequireRun},
		{string(ev("run_log", "p-1", day, `,"seq":1,"event_type":"x"`)) + `{"kind":"run_started","run_id":"","ts":1}`, 0},
	}
	var out []string
	for _, c := range calls {
		lsns, err := l.AppendDurable(ctx, []byte(c.jsonl), c.flags)
		var e *Error
		switch {
		case err == nil:
			out = append(out, fmt.Sprint(lsns))
		case errors.As(err, &e):
			out = append(out, e.Code.Error())
		default:
			out = append(out, err.Error())
		}
	}
	return out
}

// every asks every query and returns the answers as one value.
func every(t *testing.T, l *Log) map[string]any {
	t.Helper()
	day := time.UnixMicro(86_400_000_000)
	out := map[string]any{}
	keep := func(name string, v any, err error) {
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				out[name] = e.Code.Error()
				return
			}
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = v
	}
	r, err := l.GetRun(ctx, "c-1")
	keep("get", r, err)
	_, err = l.GetRun(ctx, "nope")
	keep("get-nope", nil, err)
	logs, err := l.Logs(ctx, "c-1")
	keep("logs", logs, err)
	all, err := l.List(ctx, Filter{IncludeDryRun: true}, 0, 0)
	keep("list", all, err)
	page, err := l.List(ctx, Filter{Caller: "u-1"}, 1, 1)
	keep("page", page, err)
	n, err := l.Count(ctx, Filter{Skill: "web.search", IncludeDryRun: true})
	keep("count", n, err)
	kids, err := l.Children(ctx, "p-1", false)
	keep("children", kids, err)
	chain, err := l.Chain(ctx, "c-1")
	keep("chain", chain, err)
	_, err = l.Chain(ctx, "nope")
	keep("chain-nope", nil, err)
	last, err := l.LastRun(ctx, []string{"web.search", "web.fetch", "none"}, true)
	keep("last", last, err)
	fin, err := l.FinishedBefore(ctx, day.Add(time.Hour), 1)
	keep("finished", fin, err)
	groups, err := l.Errors(ctx, time.Time{}, time.Time{})
	keep("errors", groups, err)
	_, err = l.QueryRaw(ctx, []byte(`{"op":"nonsense"}`))
	keep("nonsense", nil, err)
	return out
}

func TestServedAnswersLikeOpen(t *testing.T) {
	embedded, _ := open(t)
	s, _ := served(t)
	if !s.Served() || embedded.Served() {
		t.Fatal("Served()")
	}
	wa, wb := workload(embedded), workload(s)
	if !reflect.DeepEqual(wa, wb) {
		t.Fatalf("appends:\n open    %v\n connect %v", wa, wb)
	}
	if wb[4] != ErrNotFound.Error() || wb[5] != ErrInvalidArgument.Error() {
		t.Fatalf("refusals: %v", wb)
	}
	qa, qb := every(t, embedded), every(t, s)
	for k := range qa {
		if !reflect.DeepEqual(qa[k], qb[k]) {
			t.Fatalf("%s:\n open    %+v\n connect %+v", k, qa[k], qb[k])
		}
	}
	// A receipt of a served append is complete at once.
	r, err := s.Append(ctx, ev("run_started", "late", 1, ""), 0)
	if err != nil {
		t.Fatal(err)
	}
	if lsns, err := r.Wait(ctx); err != nil || lsns.First != 5 {
		t.Fatalf("receipt: %+v %v", lsns, err)
	}
	r.Release()
	if next, err := s.Flush(ctx); err != nil || next != 6 {
		t.Fatalf("flush: %d %v", next, err)
	}
	rep, err := s.PurgeOlderThan(ctx, time.UnixMicro(1))
	if err != nil || rep.DroppedSegments != 0 {
		t.Fatalf("purge: %+v %v", rep, err)
	}
	// The error names the line, as Open's does.
	_, err = s.AppendDurable(ctx, []byte("{}\n"), 0)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad line: %v", err)
	}
}

// Many goroutines on one connection: every append stored once.
func TestServedGoroutines(t *testing.T) {
	l, _ := served(t)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := l.AppendDurable(ctx, ev("run_started", id, int64(i), `,"skill_id":"k"`), 0); err != nil {
					t.Error(err)
					return
				}
				if _, err := l.AppendDurable(ctx, ev("run_finished", id, int64(i+1), `,"status":"ok"`), RequireRun); err != nil {
					t.Error(err)
					return
				}
				if _, err := l.Count(ctx, Filter{Skill: "k"}); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	n, err := l.Count(ctx, Filter{Skill: "k", Status: "ok"})
	if err != nil || n != 16*25 {
		t.Fatalf("count %d %v", n, err)
	}
	if next, _ := l.Flush(ctx); next != 2*16*25 {
		t.Fatalf("%d events stored, want %d", next, 2*16*25)
	}
}

// The server killed under a client: a clear error, no hang; a context
// ends the wait sooner; after a restart the same *Log and a new Connect
// both work, and everything acknowledged before the kill is there.
func TestServedDroppedConnection(t *testing.T) {
	srv := servetest.Start(t, filepath.Join(t.TempDir(), "served"))
	l := connect(t, srv, &ConnectOptions{RetryFor: time.Second})
	slow := connect(t, srv, nil) // 30 s of retries
	if _, err := l.AppendDurable(ctx, ev("run_started", "before", 1, `,"skill_id":"k"`), 0); err != nil {
		t.Fatal(err)
	}
	srv.Kill()

	t0 := time.Now()
	_, err := l.AppendDurable(ctx, ev("run_started", "during", 2, ""), 0)
	if !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), srv.Socket) {
		t.Fatalf("append to a dead server: %v", err)
	}
	if _, err := l.Count(ctx, Filter{}); !errors.Is(err, ErrIO) {
		t.Fatalf("query of a dead server: %v", err)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Fatalf("gave up after %v (RetryFor is 1 s)", d)
	}
	// A context shorter than RetryFor ends the wait first.
	c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	t0 = time.Now()
	if _, err := slow.GetRun(c, "before"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("the context did not end the wait: %v", d)
	}
	// Connect to a server that is not there: ErrIO after RetryFor.
	if _, err := Connect(ctx, srv.Socket, &ConnectOptions{RetryFor: 100 * time.Millisecond}); !errors.Is(err, ErrIO) {
		t.Fatalf("connect to a dead server: %v", err)
	}

	srv.Restart(t)
	if _, err := l.AppendDurable(ctx, ev("run_started", "after", 3, `,"skill_id":"k"`), 0); err != nil {
		t.Fatalf("the same Log after the restart: %v", err)
	}
	fresh := connect(t, srv, nil)
	n, err := fresh.Count(ctx, Filter{Skill: "k"})
	if err != nil || n != 2 {
		t.Fatalf("after the restart: %d runs, %v", n, err)
	}
	if r, err := fresh.GetRun(ctx, "before"); err != nil || r.ID != "before" {
		t.Fatalf("acknowledged before the kill: %+v %v", r, err)
	}
	// slow is still blocked in the background on its abandoned call
	// until the server answers again; Close waits for it.
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestServedCloseAndOptions(t *testing.T) {
	l, srv := served(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := l.GetRun(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	// The server keeps running for others.
	other := connect(t, srv, nil)
	if _, err := other.Count(ctx, Filter{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ctx, srv.Socket, &ConnectOptions{RetryFor: -time.Second}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad option: %v", err)
	}
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Connect(c, srv.Socket, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// No server at the path: Connect fails with ErrIO naming the socket once
// RetryFor is spent (and at once when the context ends sooner).
func TestConnectWithoutServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auditlog.sock")
	t0 := time.Now()
	_, err := Connect(ctx, path, &ConnectOptions{RetryFor: 100 * time.Millisecond})
	if !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), path) {
		t.Fatalf("connect to no server: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := Connect(c, path, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("connect with a deadline: %v", err)
	}
}
