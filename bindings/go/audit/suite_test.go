package audit

// The shared suite: every test runs against auditlog (Store, opened in
// the process and connected to `auditlog serve`) and against the SQLite
// reference, which must behave the same.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/auditlog/auditlog/bindings/go/auditlog"
	"github.com/auditlog/auditlog/bindings/go/internal/servetest"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock returns a deterministic clock: base, then 1 ms later per call.
func clock() func() time.Time {
	var mu sync.Mutex
	t := base.Add(24 * time.Hour)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

type impl struct {
	name string
	open func(t testing.TB, now func() time.Time) Storage
}

func openAuditlog(t testing.TB, now func() time.Time) Storage {
	s, err := Open(filepath.Join(t.TempDir(), "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = now
	t.Cleanup(func() { s.Close() })
	return s
}

// openServed is the Store over `auditlog serve` (started for the test on
// a fresh folder): Connect, the same Storage, the same answers.
func openServed(t testing.TB, now func() time.Time) Storage {
	srv := servetest.Start(t, filepath.Join(t.TempDir(), "served"))
	s, err := Connect(ctx, srv.Socket, &auditlog.ConnectOptions{RetryFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.Now = now
	t.Cleanup(func() { s.Close() })
	return s
}

func openReference(t testing.TB, now func() time.Time) Storage {
	s, err := openSQLite(filepath.Join(t.TempDir(), "audit.db"), "NORMAL")
	if err != nil {
		t.Fatal(err)
	}
	s.Now = now
	t.Cleanup(func() { s.Close() })
	return s
}

var impls = []impl{{"auditlog", openAuditlog}, {"served", openServed}, {"sqlite", openReference}}

// each runs body against every implementation.
func each(t *testing.T, body func(t *testing.T, s Storage)) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t, clock())
			if err := s.Initialize(context.Background()); err != nil {
				t.Fatal(err)
			}
			body(t, s)
		})
	}
}

var ctx = context.Background()

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func at(minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }

func start(t testing.TB, s Storage, r SkillRun) {
	t.Helper()
	must(t, s.StartRun(ctx, &r))
}

func ids(rs []SkillRun) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func wantIDs(t testing.TB, rs []SkillRun, err error, want ...string) {
	t.Helper()
	must(t, err)
	if want == nil {
		want = []string{}
	}
	if got := ids(rs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func get(t testing.TB, s Storage, id string) *SkillRun {
	t.Helper()
	r, err := s.GetRun(ctx, id)
	must(t, err)
	return r
}

// --- the runtime's own test list -----------------------------------------

func TestStartFinishRoundTrip(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		in := map[string]any{"query": "weather", "n": 3.0, "nested": map[string]any{"k": []any{"a", true}}}
		start(t, s, SkillRun{ID: "r1", SkillID: "web", CallerID: "u1", ChannelID: "c1", Inputs: in, StartedAt: at(0)})
		r := get(t, s, "r1")
		if r.Status != StatusRunning || r.FinishedAt != nil || !reflect.DeepEqual(r.Inputs, in) {
			t.Fatalf("running run: %+v", r)
		}
		stats := RunStats{ToolCalls: 2, InputTokens: 100, OutputTokens: 20, ThinkingTokens: 5, RuntimeSeconds: 1.5}
		must(t, s.FinishRun(ctx, "r1", StatusOK, "done", "", stats))
		r = get(t, s, "r1")
		if r.Status != StatusOK || r.Output != "done" || r.FinishedAt == nil || r.Stats != stats {
			t.Fatalf("finished run: %+v", r)
		}
		if r.Stats.TotalTokens() != 125 {
			t.Fatalf("token roll-up %d", r.Stats.TotalTokens())
		}
		if !r.StartedAt.Equal(at(0)) || r.SkillID != "web" || r.CallerID != "u1" || r.ChannelID != "c1" {
			t.Fatalf("start fields lost: %+v", r)
		}
	})
}

func TestLogAppendAndOrderedRead(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "r1", SkillID: "k", StartedAt: at(0)})
		for _, seq := range []int64{2, 0, 1} {
			must(t, s.AppendLog(ctx, &SkillRunLog{RunID: "r1", Seq: seq, EventType: "step",
				Payload: []byte(fmt.Sprintf(`{"n": %d}`, seq)), CreatedAt: at(int(seq) + 1)}))
		}
		ls, err := s.ListLogsByRun(ctx, "r1")
		must(t, err)
		if len(ls) != 3 {
			t.Fatalf("%d logs", len(ls))
		}
		for i, l := range ls {
			if l.Seq != int64(i) || string(l.Payload) != fmt.Sprintf(`{"n":%d}`, i) || !l.CreatedAt.Equal(at(i+1)) || l.RunID != "r1" {
				t.Fatalf("log %d: %+v %s", i, l, l.Payload)
			}
		}
		// The same (run_id, seq) replaces.
		must(t, s.AppendLog(ctx, &SkillRunLog{RunID: "r1", Seq: 1, EventType: "retry", Payload: []byte(`"x"`)}))
		ls, err = s.ListLogsByRun(ctx, "r1")
		must(t, err)
		if len(ls) != 3 || ls[1].EventType != "retry" || string(ls[1].Payload) != `"x"` {
			t.Fatalf("replace: %+v", ls)
		}
		// A nil payload is null; an unknown run has no logs.
		must(t, s.AppendLog(ctx, &SkillRunLog{RunID: "r1", Seq: 9}))
		ls, _ = s.ListLogsByRun(ctx, "r1")
		if string(ls[3].Payload) != "null" {
			t.Fatalf("nil payload: %s", ls[3].Payload)
		}
		ls, err = s.ListLogsByRun(ctx, "nope")
		if err != nil || len(ls) != 0 {
			t.Fatalf("unknown run: %v %v", ls, err)
		}
	})
}

func TestParentChildAndChain(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "root", SkillID: "k", StartedAt: at(0)})
		start(t, s, SkillRun{ID: "a", SkillID: "k", ParentRunID: "root", StartedAt: at(1)})
		start(t, s, SkillRun{ID: "b", SkillID: "k", ParentRunID: "root", StartedAt: at(2)})
		start(t, s, SkillRun{ID: "a1", SkillID: "k", ParentRunID: "a", StartedAt: at(3)})
		start(t, s, SkillRun{ID: "dry", SkillID: "k", ParentRunID: "root", Status: StatusDryRun, StartedAt: at(4)})
		rs, err := s.ListChildrenByParent(ctx, "root")
		wantIDs(t, rs, err, "b", "a")
		rs, err = s.ListChildrenByParent(ctx, "nope")
		wantIDs(t, rs, err)
		rs, err = s.WalkParentChain(ctx, "a1")
		wantIDs(t, rs, err, "a1", "a", "root")
		rs, err = s.WalkParentChain(ctx, "nope")
		wantIDs(t, rs, err)
		rs, err = s.WalkParentChain(ctx, "dry")
		wantIDs(t, rs, err, "dry", "root")
		// A missing parent ends the chain.
		start(t, s, SkillRun{ID: "orphan", SkillID: "k", ParentRunID: "gone", StartedAt: at(5)})
		rs, err = s.WalkParentChain(ctx, "orphan")
		wantIDs(t, rs, err, "orphan")
	})
}

func TestWalkParentChainCycles(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "x", ParentRunID: "y", StartedAt: at(0)})
		start(t, s, SkillRun{ID: "y", ParentRunID: "z", StartedAt: at(1)})
		start(t, s, SkillRun{ID: "z", ParentRunID: "x", StartedAt: at(2)})
		start(t, s, SkillRun{ID: "self", ParentRunID: "self", StartedAt: at(3)})
		rs, err := s.WalkParentChain(ctx, "x")
		wantIDs(t, rs, err, "x", "y", "z")
		rs, err = s.WalkParentChain(ctx, "self")
		wantIDs(t, rs, err, "self")
	})
}

func TestListRunsByCaller(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		for i := 0; i < 5; i++ {
			start(t, s, SkillRun{ID: fmt.Sprintf("r%d", i), SkillID: "k", CallerID: []string{"alice", "bob"}[i%2], StartedAt: at(i)})
		}
		start(t, s, SkillRun{ID: "d", CallerID: "alice", Status: StatusDryRun, StartedAt: at(9)})
		rs, err := s.ListRunsByCaller(ctx, "alice", 0)
		wantIDs(t, rs, err, "r4", "r2", "r0")
		rs, err = s.ListRunsByCaller(ctx, "alice", 2)
		wantIDs(t, rs, err, "r4", "r2")
		rs, err = s.ListRunsByCaller(ctx, "carol", 10)
		wantIDs(t, rs, err)
	})
}

func TestTopLevelOnly(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "p", SkillID: "k", StartedAt: at(0)})
		start(t, s, SkillRun{ID: "c", SkillID: "k", ParentRunID: "p", StartedAt: at(1)})
		start(t, s, SkillRun{ID: "q", SkillID: "k", StartedAt: at(2)})
		rs, err := s.ListRunsFiltered(ctx, RunFilter{TopLevelOnly: true}, 0, 0)
		wantIDs(t, rs, err, "q", "p")
		n, err := s.CountRunsFiltered(ctx, RunFilter{TopLevelOnly: true, SkillID: "k"})
		must(t, err)
		if n != 2 {
			t.Fatalf("count %d", n)
		}
		rs, err = s.ListRunsFiltered(ctx, RunFilter{}, 0, 0)
		wantIDs(t, rs, err, "q", "c", "p")
	})
}

func TestLastRunBySkills(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "a1", SkillID: "a", StartedAt: at(1)})
		start(t, s, SkillRun{ID: "a2", SkillID: "a", StartedAt: at(2)})
		must(t, s.FinishRun(ctx, "a2", StatusError, "", "boom", RunStats{}))
		start(t, s, SkillRun{ID: "a3", SkillID: "a", StartedAt: at(3), Status: StatusTimeout})
		start(t, s, SkillRun{ID: "a4", SkillID: "a", StartedAt: at(4), Status: StatusDryRun})
		start(t, s, SkillRun{ID: "b1", SkillID: "b", StartedAt: at(5)})
		must(t, s.FinishRun(ctx, "b1", "cancelled", "", "", RunStats{}))
		start(t, s, SkillRun{ID: "c1", SkillID: "c", StartedAt: at(6), Status: StatusError})
		m, err := s.LastRunBySkills(ctx, []string{"a", "b", "c", "none"}, false)
		must(t, err)
		want := map[string]time.Time{"a": at(1), "b": at(5)}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("without failed: %v", m)
		}
		m, err = s.LastRunBySkills(ctx, []string{"a", "b", "c"}, true)
		must(t, err)
		want = map[string]time.Time{"a": at(3), "b": at(5), "c": at(6)}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("with failed: %v", m)
		}
		m, err = s.LastRunBySkills(ctx, nil, false)
		if err != nil || len(m) != 0 {
			t.Fatalf("no skills: %v %v", m, err)
		}
	})
}

// --- one test per method, with edge cases -----------------------------

func TestStartRunIsAnUpsert(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "r", SkillID: "old", CallerID: "u", Inputs: map[string]any{"v": 1.0}, StartedAt: at(0)})
		must(t, s.FinishRun(ctx, "r", StatusOK, "out", "", RunStats{InputTokens: 3}))
		// A second start replaces the start fields and keeps the finish.
		start(t, s, SkillRun{ID: "r", SkillID: "new", CallerID: "v", Inputs: map[string]any{"v": 2.0}, StartedAt: at(5)})
		r := get(t, s, "r")
		if r.SkillID != "new" || r.CallerID != "v" || r.Inputs["v"] != 2.0 || !r.StartedAt.Equal(at(5)) {
			t.Fatalf("start fields not upserted: %+v", r)
		}
		if r.Status != StatusOK || r.Output != "out" || r.Stats.InputTokens != 3 {
			t.Fatalf("finish lost by the upsert: %+v", r)
		}
		n, _ := s.CountRunsBySkill(ctx, "old")
		m, _ := s.CountRunsBySkill(ctx, "new")
		if n != 0 || m != 1 {
			t.Fatalf("indexes after upsert: old %d new %d", n, m)
		}
		rs, err := s.ListRunsFiltered(ctx, RunFilter{Since: at(5), Until: at(5)}, 0, 0)
		wantIDs(t, rs, err, "r")
		// A start carrying finish fields records the finish too.
		fin := at(9)
		start(t, s, SkillRun{ID: "f", SkillID: "k", StartedAt: at(8), Status: StatusError, Error: "e",
			FinishedAt: &fin, Stats: RunStats{ToolCalls: 4}})
		r = get(t, s, "f")
		if r.Status != StatusError || r.Error != "e" || !r.FinishedAt.Equal(fin) || r.Stats.ToolCalls != 4 {
			t.Fatalf("carried finish: %+v", r)
		}
		// A final status without FinishedAt finishes at StartedAt.
		start(t, s, SkillRun{ID: "g", SkillID: "k", StartedAt: at(10), Status: StatusOK})
		if r := get(t, s, "g"); r.FinishedAt == nil || !r.FinishedAt.Equal(at(10)) {
			t.Fatalf("final status without FinishedAt: %+v", r)
		}
		// StartedAt zero takes the store's clock.
		start(t, s, SkillRun{ID: "now", SkillID: "k"})
		if r := get(t, s, "now"); r.StartedAt.IsZero() || r.StartedAt.Before(base) {
			t.Fatalf("clock: %+v", r)
		}
	})
}

func TestFinishRun(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		err := s.FinishRun(ctx, "nope", StatusOK, "", "", RunStats{})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown run: %v", err)
		}
		if _, err := s.GetRun(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a failed finish must not create the run: %v", err)
		}
		start(t, s, SkillRun{ID: "r", SkillID: "k", StartedAt: at(0)})
		must(t, s.FinishRun(ctx, "r", StatusError, "", "first", RunStats{ToolCalls: 1}))
		must(t, s.FinishRun(ctx, "r", StatusOK, "second", "", RunStats{ToolCalls: 2}))
		r := get(t, s, "r")
		if r.Status != StatusOK || r.Output != "second" || r.Error != "" || r.Stats.ToolCalls != 2 {
			t.Fatalf("last finish must win: %+v", r)
		}
		n, _ := s.CountRunsFiltered(ctx, RunFilter{Status: StatusError})
		m, _ := s.CountRunsFiltered(ctx, RunFilter{Status: StatusOK})
		if n != 0 || m != 1 {
			t.Fatalf("status index after overwrite: error %d ok %d", n, m)
		}
		if err := s.FinishRun(ctx, "r", StatusRunning, "", "", RunStats{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("status running: %v", err)
		}
		if err := s.FinishRun(ctx, "", StatusOK, "", "", RunStats{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("empty id: %v", err)
		}
		must(t, s.FinishRun(ctx, "r", "", "", "", RunStats{}))
		if r := get(t, s, "r"); r.Status != StatusOK {
			t.Fatalf("empty status is ok: %+v", r)
		}
	})
}

func TestAppendLogErrors(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		if err := s.AppendLog(ctx, &SkillRunLog{RunID: "nope", Seq: 0}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown run: %v", err)
		}
		start(t, s, SkillRun{ID: "r", StartedAt: at(0)})
		for _, bad := range []*SkillRunLog{nil, {RunID: "r", Seq: -1}, {RunID: "r", Payload: []byte("{not json")}, {RunID: ""}} {
			if err := s.AppendLog(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%+v: %v", bad, err)
			}
		}
		ls, _ := s.ListLogsByRun(ctx, "r")
		if len(ls) != 0 {
			t.Fatalf("bad logs were stored: %+v", ls)
		}
	})
}

func TestGetRunAndInvalidStarts(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		if _, err := s.GetRun(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
		long := string(make([]byte, MaxRunIDBytes+1))
		for _, bad := range []*SkillRun{nil, {ID: ""}, {ID: long}, {ID: "x", Inputs: map[string]any{"f": func() {}}}} {
			if err := s.StartRun(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v: %v", bad, err)
			}
		}
		start(t, s, SkillRun{ID: "unicode-é", SkillID: "ключ", Inputs: map[string]any{"q": "a\"b\\c\n<>&"}, StartedAt: at(0)})
		r := get(t, s, "unicode-é")
		if r.SkillID != "ключ" || r.Inputs["q"] != "a\"b\\c\n<>&" {
			t.Fatalf("text round trip: %+v", r)
		}
	})
}

func TestListRunsBySkillPagination(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		for i := 0; i < 7; i++ {
			start(t, s, SkillRun{ID: fmt.Sprintf("r%d", i), SkillID: "k", StartedAt: at(i / 2)}) // ties on StartedAt
		}
		start(t, s, SkillRun{ID: "dry", SkillID: "k", Status: StatusDryRun, StartedAt: at(9)})
		start(t, s, SkillRun{ID: "other", SkillID: "j", StartedAt: at(9)})
		rs, err := s.ListRunsBySkill(ctx, "k", 0)
		wantIDs(t, rs, err, "r6", "r5", "r4", "r3", "r2", "r1", "r0")
		rs, err = s.ListRunsBySkill(ctx, "k", 3)
		wantIDs(t, rs, err, "r6", "r5", "r4")
		rs, err = s.ListRunsBySkillPaginated(ctx, "k", 3, 3)
		wantIDs(t, rs, err, "r3", "r2", "r1")
		rs, err = s.ListRunsBySkillPaginated(ctx, "k", 3, 6)
		wantIDs(t, rs, err, "r0")
		rs, err = s.ListRunsBySkillPaginated(ctx, "k", 3, 60)
		wantIDs(t, rs, err)
		rs, err = s.ListRunsBySkillPaginated(ctx, "k", 0, 5)
		wantIDs(t, rs, err, "r1", "r0")
		rs, err = s.ListRunsBySkill(ctx, "", 0)
		wantIDs(t, rs, err)
		n, err := s.CountRunsBySkill(ctx, "k")
		must(t, err)
		if n != 7 {
			t.Fatalf("count %d (dry runs are left out)", n)
		}
		if n, _ := s.CountRunsBySkill(ctx, "missing"); n != 0 {
			t.Fatalf("missing skill count %d", n)
		}
	})
}

func TestListRunsFiltered(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "a", SkillID: "s1", CallerID: "u1", ChannelID: "c1", StartedAt: at(0)})
		start(t, s, SkillRun{ID: "b", SkillID: "s1", CallerID: "u2", ChannelID: "c1", ParentRunID: "a", StartedAt: at(1)})
		start(t, s, SkillRun{ID: "c", SkillID: "s2", CallerID: "u1", ChannelID: "c2", StartedAt: at(2)})
		start(t, s, SkillRun{ID: "d", SkillID: "s2", CallerID: "u1", ChannelID: "c2", StartedAt: at(3), Status: StatusDryRun})
		must(t, s.FinishRun(ctx, "a", StatusError, "", "x", RunStats{}))
		cases := []struct {
			f    RunFilter
			want []string
		}{
			{RunFilter{}, []string{"c", "b", "a"}},
			{RunFilter{IncludeDryRun: true}, []string{"d", "c", "b", "a"}},
			{RunFilter{SkillID: "s1"}, []string{"b", "a"}},
			{RunFilter{CallerID: "u1"}, []string{"c", "a"}},
			{RunFilter{ChannelID: "c2", IncludeDryRun: true}, []string{"d", "c"}},
			{RunFilter{Status: StatusRunning}, []string{"c", "b"}},
			{RunFilter{Status: StatusError}, []string{"a"}},
			{RunFilter{Status: StatusDryRun}, []string{}},
			{RunFilter{Status: StatusDryRun, IncludeDryRun: true}, []string{"d"}},
			{RunFilter{Since: at(1)}, []string{"c", "b"}},
			{RunFilter{Until: at(1)}, []string{"b", "a"}},
			{RunFilter{Since: at(1), Until: at(1)}, []string{"b"}},
			{RunFilter{SkillID: "s1", CallerID: "u1", TopLevelOnly: true}, []string{"a"}},
			{RunFilter{SkillID: "nope"}, []string{}},
		}
		for _, c := range cases {
			rs, err := s.ListRunsFiltered(ctx, c.f, 0, 0)
			must(t, err)
			if got := ids(rs); !reflect.DeepEqual(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Fatalf("%+v: got %v want %v", c.f, got, c.want)
			}
			n, err := s.CountRunsFiltered(ctx, c.f)
			must(t, err)
			if n != int64(len(c.want)) {
				t.Fatalf("count %+v: %d want %d", c.f, n, len(c.want))
			}
		}
		rs, err := s.ListRunsFiltered(ctx, RunFilter{IncludeDryRun: true}, 2, 1)
		wantIDs(t, rs, err, "c", "b")
	})
}

func TestDryRuns(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		start(t, s, SkillRun{ID: "d", SkillID: "k", CallerID: "u", Status: StatusDryRun, StartedAt: at(0)})
		r := get(t, s, "d")
		if r.Status != StatusDryRun {
			t.Fatalf("dry run status: %+v", r)
		}
		if n, _ := s.CountRunsBySkill(ctx, "k"); n != 0 {
			t.Fatalf("dry run counted: %d", n)
		}
		// Finishing it for real makes it an ordinary run.
		must(t, s.FinishRun(ctx, "d", StatusOK, "", "", RunStats{}))
		if n, _ := s.CountRunsBySkill(ctx, "k"); n != 1 {
			t.Fatalf("a run no longer dry is counted: %d", n)
		}
		// And a finish with status dry_run makes a run dry.
		start(t, s, SkillRun{ID: "e", SkillID: "k", StartedAt: at(1)})
		must(t, s.FinishRun(ctx, "e", StatusDryRun, "", "", RunStats{}))
		rs, err := s.ListRunsBySkill(ctx, "k", 0)
		wantIDs(t, rs, err, "d")
	})
}

func TestListFinishedRunsBefore(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		for i := 0; i < 5; i++ {
			f := at(10 + i)
			start(t, s, SkillRun{ID: fmt.Sprintf("f%d", i), SkillID: "k", StartedAt: at(i), Status: StatusOK, FinishedAt: &f})
		}
		start(t, s, SkillRun{ID: "running", SkillID: "k", StartedAt: at(0)})
		start(t, s, SkillRun{ID: "dry", SkillID: "k", StartedAt: at(7), Status: StatusDryRun})
		rs, err := s.ListFinishedRunsBefore(ctx, at(13), 0)
		wantIDs(t, rs, err, "dry", "f2", "f1", "f0")
		rs, err = s.ListFinishedRunsBefore(ctx, at(13), 2)
		wantIDs(t, rs, err, "dry", "f2")
		rs, err = s.ListFinishedRunsBefore(ctx, at(0), 5)
		wantIDs(t, rs, err)
	})
}

func TestConcurrentGoroutines(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		const workers, runs = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < runs; i++ {
					id := fmt.Sprintf("w%d-%d", w, i)
					if err := s.StartRun(ctx, &SkillRun{ID: id, SkillID: "k", CallerID: fmt.Sprint(w), StartedAt: at(i)}); err != nil {
						errs <- err
						return
					}
					for seq := int64(0); seq < 3; seq++ {
						if err := s.AppendLog(ctx, &SkillRunLog{RunID: id, Seq: seq, EventType: "tool_call"}); err != nil {
							errs <- err
							return
						}
					}
					if err := s.FinishRun(ctx, id, StatusOK, "", "", RunStats{ToolCalls: 3}); err != nil {
						errs <- err
						return
					}
					if _, err := s.CountRunsBySkill(ctx, "k"); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		n, err := s.CountRunsFiltered(ctx, RunFilter{Status: StatusOK})
		must(t, err)
		if n != workers*runs {
			t.Fatalf("%d runs finished, want %d", n, workers*runs)
		}
		for w := 0; w < workers; w++ {
			rs, err := s.ListRunsByCaller(ctx, fmt.Sprint(w), 0)
			must(t, err)
			if len(rs) != runs {
				t.Fatalf("caller %d: %d runs", w, len(rs))
			}
			ls, _ := s.ListLogsByRun(ctx, rs[0].ID)
			if len(ls) != 3 {
				t.Fatalf("logs: %d", len(ls))
			}
		}
	})
}

func TestCancelledContext(t *testing.T) {
	each(t, func(t *testing.T, s Storage) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.StartRun(c, &SkillRun{ID: "r"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("start: %v", err)
		}
		if _, err := s.GetRun(c, "r"); !errors.Is(err, context.Canceled) {
			t.Fatalf("get: %v", err)
		}
	})
}

// sortedKeys is for messages.
func sortedKeys(m map[string]time.Time) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
