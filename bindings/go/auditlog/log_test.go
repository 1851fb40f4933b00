package auditlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var ctx = context.Background()

func open(t *testing.T) (*Log, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "log")
	l, err := Open(dir, &Options{Durability: "never"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir
}

func ev(kind, id string, ts int64, more string) []byte {
	return []byte(fmt.Sprintf(`{"kind":%q,"run_id":%q,"ts":%d%s}`+"\n", kind, id, ts, more))
}

func TestAppendQueryAndErrors(t *testing.T) {
	l, dir := open(t)
	batch := append(ev("run_started", "r1", 1000, `,"skill_id":"k","inputs":{"q":1}`),
		ev("run_log", "r1", 1001, `,"seq":0,"event_type":"note","payload":[1,2]`)...)
	lsns, err := l.AppendDurable(ctx, batch, 0)
	if err != nil || lsns.Last != lsns.First+1 {
		t.Fatalf("append: %v %+v", err, lsns)
	}
	// A finish of an unknown run: ErrNotFound, nothing written.
	_, err = l.AppendDurable(ctx, ev("run_finished", "nope", 5, ""), RequireRun)
	var e *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || !strings.Contains(e.Message, "nope") {
		t.Fatalf("unknown run: %v", err)
	}
	// A bad line names the line and field; nothing of the batch is stored.
	bad := append(ev("run_started", "r2", 1, ""), []byte(`{"kind":"run_started","run_id":"","ts":1}`)...)
	_, err = l.AppendDurable(ctx, bad, 0)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := l.GetRun(ctx, "r2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("r2 stored from a rejected batch: %v", err)
	}
	r, err := l.GetRun(ctx, "r1")
	if err != nil || r.SkillID != "k" || string(r.Inputs) != `{"q":1}` || r.Status != "running" || r.FinishedAt != nil {
		t.Fatalf("get: %+v %v", r, err)
	}
	logs, err := l.Logs(ctx, "r1")
	if err != nil || len(logs) != 1 || string(logs[0].Payload) != "[1,2]" {
		t.Fatalf("logs: %+v %v", logs, err)
	}
	if _, err := l.Chain(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("chain: %v", err)
	}
	if _, err := l.QueryRaw(ctx, []byte(`{"op":"nonsense"}`)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad op: %v", err)
	}
	// A second writer on the same folder.
	if _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing"), &Options{NoCreate: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no create: %v", err)
	}
	if _, err := Open(dir+"x", &Options{Durability: "sometimes"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad option: %v", err)
	}
}

// The binary rows answer decodes to the same runs as the JSON one.
func TestRowsMatchJSON(t *testing.T) {
	l, _ := open(t)
	var batch []byte
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("r%02d", i)
		batch = append(batch, ev("run_started", id, int64(1000+i%4), `,"skill_id":"k","caller_id":"u\u00e9\n","inputs":{"n":`+fmt.Sprint(i)+`},"dry_run":`+fmt.Sprint(i%5 == 0))...)
		if i%2 == 0 {
			batch = append(batch, ev("run_finished", id, int64(2000+i), `,"status":"ok","output":"o\u0000x","runtime_seconds":1.25,"input_tokens":7`)...)
		}
	}
	if _, err := l.AppendDurable(ctx, batch, 0); err != nil {
		t.Fatal(err)
	}
	rows, err := l.List(ctx, Filter{IncludeDryRun: true}, 0, 0)
	if err != nil || len(rows) != 20 {
		t.Fatalf("rows: %d %v", len(rows), err)
	}
	raw, err := l.QueryRaw(ctx, []byte(`{"op":"list","filter":{"include_dry_run":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON []Run
	if err := json.Unmarshal(raw, &fromJSON); err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		a, _ := json.Marshal(rows[i])
		b, _ := json.Marshal(fromJSON[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("run %d:\n rows %s\n json %s", i, a, b)
		}
	}
	if !reflect.DeepEqual(len(rows), len(fromJSON)) {
		t.Fatal("lengths")
	}
}

func TestCloseAndContext(t *testing.T) {
	l, _ := open(t)
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.AppendDurable(c, ev("run_started", "r", 1, ""), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	// A receipt waited with a context that has a deadline.
	r, err := l.Append(ctx, ev("run_started", "r", 1, ""), 0)
	if err != nil {
		t.Fatal(err)
	}
	tc, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if _, err := r.Wait(tc); err != nil {
		t.Fatal(err)
	}
	r.Release()
	r.Release()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := l.GetRun(ctx, "r"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// Many goroutines append, query and wait at once; Close waits for them.
func TestGoroutines(t *testing.T) {
	l, _ := open(t)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := l.AppendDurable(ctx, ev("run_started", id, int64(i), `,"skill_id":"k"`), 0); err != nil {
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
	n, err := l.Count(ctx, Filter{Skill: "k"})
	if err != nil || n != 16*50 {
		t.Fatalf("count %d %v", n, err)
	}
}

// Standalone tool calls (docs/tool-calls.md): appended without a run even
// with RequireRun, listed, paged and counted through the call indexes.
func TestStandaloneToolCalls(t *testing.T) {
	l, _ := open(t)
	var batch []byte
	for i, c := range []string{
		`,"channel_id":"s1","caller_id":"a1","tool":"fs.read","status":"error","error_type":"denied"`,
		`,"channel_id":"s1","caller_id":"a2","tool":"http.get","http_status":200,"duration_ms":4.5`,
		`,"channel_id":"s2","caller_id":"a1","tool":"fs.read","payload":{"k":1}`,
	} {
		batch = append(batch, ev("tool_call", "", int64(1000*(i+1)), c)...)
	}
	if _, err := l.AppendDurable(ctx, batch, RequireRun); err != nil {
		t.Fatalf("append: %v", err)
	}
	got, err := l.Calls(ctx, CallFilter{Caller: "a1"}, 0, "", true)
	if err != nil || len(got) != 2 || got[0].ChannelID != "s1" || got[1].ChannelID != "s2" ||
		got[0].RunID != "" || got[0].Source != "tool_call" || string(got[1].Payload) != `{"k":1}` {
		t.Fatalf("calls: %+v %v", got, err)
	}
	first, err := l.Calls(ctx, CallFilter{}, 1, "", false)
	if err != nil || len(first) != 1 || first[0].Tool != "fs.read" || first[0].ChannelID != "s2" {
		t.Fatalf("first page: %+v %v", first, err)
	}
	rest, err := l.Calls(ctx, CallFilter{}, 0, first[0].Cursor(), false)
	if err != nil || len(rest) != 2 || rest[0].HTTPStatus == nil || *rest[0].HTTPStatus != 200 {
		t.Fatalf("next page: %+v %v", rest, err)
	}
	if n, err := l.CountCalls(ctx, CallFilter{Tool: "fs.read"}); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	by, err := l.CountCallsBy(ctx, CallFilter{}, "status")
	if err != nil || !reflect.DeepEqual(by, []CallCount{{"ok", 2}, {"error", 1}}) {
		t.Fatalf("count by: %+v %v", by, err)
	}
	if _, err := l.CountCallsBy(ctx, CallFilter{}, "colour"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad key: %v", err)
	}
}
