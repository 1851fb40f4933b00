package audit

// Benchmarks: the interface's write methods and queries through auditlog
// beside the SQLite reference, in the same run. Commands and figures are
// in docs/benchmarks.md ("Go: audit.Storage").
//
//   bindings/go/test.sh -run '^$' -bench . -benchtime 2s
//
// Writes are durable on both sides: auditlog appends are fdatasync'ed
// (group commit) before the call returns; SQLite runs WAL with
// synchronous=FULL (a commit is synced). sqlite-normal (synchronous=NORMAL,
// not durable at commit in WAL mode) is shown for reference.

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditlog/auditlog/bindings/go/auditlog"
)

type benchStore struct {
	name string
	open func(b *testing.B) Storage
}

var benchStores = []benchStore{
	{"auditlog", func(b *testing.B) Storage {
		s, err := Open(filepath.Join(b.TempDir(), "log"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}},
	{"sqlite-full", func(b *testing.B) Storage { return benchSQLite(b, "FULL") }},
	{"sqlite-normal", func(b *testing.B) Storage { return benchSQLite(b, "NORMAL") }},
}

func benchSQLite(b *testing.B, sync string) *sqliteStore {
	s, err := openSQLite(filepath.Join(b.TempDir(), "audit.db"), sync)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// Goroutines calling at once in the write benchmarks.
var benchParallelism = []int{1, 32, 256}

var benchSeq atomic.Int64

func newID(prefix string) string { return prefix + strconv.FormatInt(benchSeq.Add(1), 36) }

func benchRun(id string) *SkillRun {
	return &SkillRun{ID: id, SkillID: "web.search", CallerID: "u-42", ChannelID: "sess-7",
		Inputs: map[string]any{"q": "weather in Paris", "max_results": 10.0}}
}

// writeBench runs one write per call: sequentially ("1"), and from 32
// goroutines ("32", the gateway under load).
func writeBench(b *testing.B, name string, setup func(b *testing.B, s Storage) func(s Storage) error) {
	for _, bs := range benchStores {
		for _, par := range benchParallelism {
			b.Run(fmt.Sprintf("%s/%s/goroutines=%d", name, bs.name, par), func(b *testing.B) {
				s := bs.open(b)
				call := setup(b, s)
				b.SetParallelism(max(par/max(1, runtimeProcs()), 1))
				b.ResetTimer()
				if par == 1 {
					for i := 0; i < b.N; i++ {
						if err := call(s); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := call(s); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			})
		}
	}
}

func BenchmarkStartRun(b *testing.B) {
	writeBench(b, "StartRun", func(b *testing.B, s Storage) func(Storage) error {
		return func(s Storage) error { return s.StartRun(ctx, benchRun(newID("s"))) }
	})
}

func BenchmarkAppendLog(b *testing.B) {
	writeBench(b, "AppendLog", func(b *testing.B, s Storage) func(Storage) error {
		id := newID("l")
		must(b, s.StartRun(ctx, benchRun(id)))
		var seq atomic.Int64
		payload := []byte(`{"tool":"http.get","status":"ok","duration_ms":120,"args_summary":"GET example.org"}`)
		return func(s Storage) error {
			return s.AppendLog(ctx, &SkillRunLog{RunID: id, Seq: seq.Add(1), EventType: "tool_call", Payload: payload})
		}
	})
}

func BenchmarkFinishRun(b *testing.B) {
	writeBench(b, "FinishRun", func(b *testing.B, s Storage) func(Storage) error {
		// Runs to finish, started beforehand (untimed); more than any b.N
		// would use is wasteful, so they are started in chunks on demand.
		var ids []string
		var next atomic.Int64
		prefix := newID("f")
		const pool = 20000
		for i := 0; i < pool; i++ {
			ids = append(ids, prefix+"-"+strconv.Itoa(i))
		}
		started := startMany(b, s, ids)
		_ = started
		stats := RunStats{ToolCalls: 3, InputTokens: 1200, OutputTokens: 300, RuntimeSeconds: 2.5}
		return func(s Storage) error {
			i := next.Add(1) - 1
			id := ids[int(i)%pool] // past the pool: last-finish-wins overwrites
			return s.FinishRun(ctx, id, StatusOK, "done", "", stats)
		}
	})
}

// startMany starts runs quickly (untimed setup): one batch append on
// auditlog, one transaction on SQLite.
func startMany(b *testing.B, s Storage, ids []string) int {
	switch st := s.(type) {
	case *Store:
		var buf []byte
		for _, id := range ids {
			p, err := planStart(benchRun(id), time.Now)
			must(b, err)
			buf = startEvent(buf, &p)
			if len(buf) > 4<<20 {
				_, err := st.Log().AppendDurable(ctx, buf, 0)
				must(b, err)
				buf = buf[:0]
			}
		}
		if len(buf) > 0 {
			_, err := st.Log().AppendDurable(ctx, buf, 0)
			must(b, err)
		}
	case *sqliteStore:
		tx, err := st.db.Begin()
		must(b, err)
		for _, id := range ids {
			_, err := tx.Exec(`INSERT INTO skill_runs (`+runCols+`) VALUES (?, 'web.search', 'u-42', 'sess-7', '', '{}', 'running', '', '', 0, 0, 0, 0, 0.0, ?, NULL)`, id, time.Now().UnixMicro())
			must(b, err)
		}
		must(b, tx.Commit())
	}
	return len(ids)
}

func runtimeProcs() int { return goMaxProcs() }

// --- queries ------------------------------------------------------------

const (
	qRuns    = 20000
	qSkills  = 20
	qCallers = 200
)

// populate fills both stores with the same runs (3 logs each; a fifth of
// them sub-runs; statuses ok/error/timeout/running/dry_run), over two
// days so that auditlog has a sealed segment and an active one.
func populate(b *testing.B, s Storage) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	statuses := []string{"ok", "ok", "ok", "ok", "ok", "ok", "error", "timeout", "running", "dry_run"}
	var starts, logs [][]any
	var jsonl []byte
	flush := func() {
		if st, ok := s.(*Store); ok && len(jsonl) > 0 {
			_, err := st.Log().AppendDurable(ctx, jsonl, 0)
			must(b, err)
			jsonl = jsonl[:0]
		}
	}
	for i := 0; i < qRuns; i++ {
		id := fmt.Sprintf("run-%06d", i)
		r := SkillRun{ID: id, SkillID: fmt.Sprintf("skill-%02d", i%qSkills), CallerID: fmt.Sprintf("user-%03d", (i*7)%qCallers),
			ChannelID: fmt.Sprintf("ch-%d", i%5), StartedAt: t0.Add(time.Duration(i) * 8 * time.Second),
			Inputs: map[string]any{"q": "question " + strconv.Itoa(i)}}
		if i%5 == 4 {
			r.ParentRunID = fmt.Sprintf("run-%06d", i-1-i%3)
		}
		st := statuses[i%len(statuses)]
		if st != "running" {
			r.Status = st
			f := r.StartedAt.Add(3 * time.Second)
			r.FinishedAt = &f
			r.Stats = RunStats{ToolCalls: 3, InputTokens: 500, OutputTokens: 100}
		}
		p, err := planStart(&r, time.Now)
		must(b, err)
		switch st := s.(type) {
		case *Store:
			jsonl = startEvent(jsonl, &p)
			if p.finishes {
				jsonl = finishEvent(jsonl, id, p.finishAt, p.status, "", "", r.Stats)
			}
			for seq := 0; seq < 3; seq++ {
				jsonl = fmt.Appendf(jsonl, `{"kind":"run_log","run_id":"%s","ts":%d,"seq":%d,"event_type":"tool_call","payload":{"tool":"http.get","status":"ok"}}`+"\n",
					id, r.StartedAt.Add(time.Second).UnixMicro(), seq)
			}
			if len(jsonl) > 4<<20 {
				flush()
			}
		case *sqliteStore:
			var fin any
			if p.finishes {
				fin = p.finishAt.UnixMicro()
			}
			status := "running"
			if p.finishes {
				status = p.status
			}
			starts = append(starts, []any{id, r.SkillID, r.CallerID, r.ChannelID, r.ParentRunID, string(p.inputs), status,
				r.Stats.ToolCalls, r.Stats.InputTokens, r.Stats.OutputTokens, r.StartedAt.UnixMicro(), fin})
			for seq := 0; seq < 3; seq++ {
				logs = append(logs, []any{id, seq, r.StartedAt.Add(time.Second).UnixMicro()})
			}
			_ = st
		}
	}
	flush()
	if st, ok := s.(*sqliteStore); ok {
		tx, err := st.db.Begin()
		must(b, err)
		for _, a := range starts {
			_, err := tx.Exec(`INSERT INTO skill_runs (`+runCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, '', '', ?, ?, ?, 0, 0.0, ?, ?)`, a...)
			must(b, err)
		}
		for _, a := range logs {
			_, err := tx.Exec(`INSERT INTO skill_run_logs (run_id, seq, event_type, payload, created_at) VALUES (?, ?, 'tool_call', '{"tool":"http.get","status":"ok"}', ?)`, a...)
			must(b, err)
		}
		must(b, tx.Commit())
		_, err = st.db.Exec(`ANALYZE`)
		must(b, err)
	}
	if st, ok := s.(*Store); ok {
		_, err := st.Log().Flush(ctx)
		must(b, err)
	}
}

type namedQuery struct {
	name string
	do   func(s Storage, i int) error
}

var queries = []namedQuery{
	{"GetRun", func(s Storage, i int) error {
		_, err := s.GetRun(ctx, fmt.Sprintf("run-%06d", (i*7919)%qRuns))
		return err
	}},
	{"ListLogsByRun", func(s Storage, i int) error {
		_, err := s.ListLogsByRun(ctx, fmt.Sprintf("run-%06d", (i*7919)%qRuns))
		return err
	}},
	{"ListRunsBySkill50", func(s Storage, i int) error {
		_, err := s.ListRunsBySkill(ctx, fmt.Sprintf("skill-%02d", i%qSkills), 50)
		return err
	}},
	{"ListRunsBySkillPaginated50at200", func(s Storage, i int) error {
		_, err := s.ListRunsBySkillPaginated(ctx, fmt.Sprintf("skill-%02d", i%qSkills), 50, 200)
		return err
	}},
	{"CountRunsBySkill", func(s Storage, i int) error {
		_, err := s.CountRunsBySkill(ctx, fmt.Sprintf("skill-%02d", i%qSkills))
		return err
	}},
	{"ListRunsByCaller50", func(s Storage, i int) error {
		_, err := s.ListRunsByCaller(ctx, fmt.Sprintf("user-%03d", i%qCallers), 50)
		return err
	}},
	{"ListRunsFilteredStatusTopLevel50", func(s Storage, i int) error {
		_, err := s.ListRunsFiltered(ctx, RunFilter{Status: "error", TopLevelOnly: true}, 50, 0)
		return err
	}},
	{"CountRunsFilteredSkillStatus", func(s Storage, i int) error {
		_, err := s.CountRunsFiltered(ctx, RunFilter{SkillID: fmt.Sprintf("skill-%02d", i%qSkills), Status: "ok"})
		return err
	}},
	{"ListChildrenByParent", func(s Storage, i int) error {
		_, err := s.ListChildrenByParent(ctx, fmt.Sprintf("run-%06d", (i*5+3)%qRuns))
		return err
	}},
	{"WalkParentChain", func(s Storage, i int) error {
		_, err := s.WalkParentChain(ctx, fmt.Sprintf("run-%06d", (i*5+4)%qRuns))
		return err
	}},
	{"ListFinishedRunsBefore100", func(s Storage, i int) error {
		t := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		_, err := s.ListFinishedRunsBefore(ctx, t, 100)
		return err
	}},
	{"LastRunBySkills3", func(s Storage, i int) error {
		_, err := s.LastRunBySkills(ctx, []string{"skill-01", "skill-07", "skill-13"}, false)
		return err
	}},
}

func BenchmarkQueries(b *testing.B) {
	for _, bs := range benchStores[:2] {
		b.Run(bs.name, func(b *testing.B) {
			s := bs.open(b)
			populate(b, s)
			for _, q := range queries { // warm: indexes built, pages cached
				must(b, q.do(s, 0))
			}
			for _, q := range queries {
				b.Run(q.name, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						if err := q.do(s, i); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

var _ = context.Background
var _ = auditlog.ErrNotFound
