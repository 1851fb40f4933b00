package audit

// The differential test: random operation sequences against auditlog and
// the SQLite reference; after every operation both must give the same
// answer to every query. AUDITLOG_LONG=1 runs more and longer sequences.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"testing"
	"time"
)

type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.Intn(len(xs))] }

var (
	diffIDs      = []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"}
	diffSkills   = []string{"s0", "s1", "s2"}
	diffCallers  = []string{"c0", "c1", "c2"}
	diffChannels = []string{"", "ch0", "ch1"}
	diffStatuses = []string{"", "running", "ok", "error", "timeout", "dry_run", "cancelled"}
)

// day d (0..3) at one of a few hours: ties on StartedAt are common, and
// the days make auditlog roll segments (starts, finishes and amendments
// then live in different segments).
func (g gen) when() time.Time {
	return base.Add(time.Duration(g.r.Intn(4))*24*time.Hour + time.Duration(g.r.Intn(3))*time.Hour)
}

func (g gen) start() *SkillRun {
	r := &SkillRun{
		ID: g.pick(diffIDs...), SkillID: g.pick(diffSkills...), CallerID: g.pick(diffCallers...),
		ChannelID: g.pick(diffChannels...), StartedAt: g.when(),
		Inputs: map[string]any{"n": float64(g.r.Intn(3))},
	}
	if g.r.Intn(3) == 0 {
		r.ParentRunID = g.pick(diffIDs...)
	}
	if g.r.Intn(3) == 0 {
		r.Status = g.pick(diffStatuses...)
		r.Output = g.pick("", "out")
		r.Stats = RunStats{ToolCalls: int64(g.r.Intn(3)), InputTokens: int64(g.r.Intn(100))}
	}
	if g.r.Intn(5) == 0 {
		t := g.when()
		r.FinishedAt = &t
	}
	return r
}

type op struct {
	name string
	do   func(s Storage) error
}

func (g gen) op() op {
	switch n := g.r.Intn(10); {
	case n < 4:
		r := g.start()
		return op{fmt.Sprintf("StartRun(%+v)", *r), func(s Storage) error { c := *r; return s.StartRun(ctx, &c) }}
	case n < 7:
		id, st := g.pick(append(diffIDs, "unknown")...), g.pick(diffStatuses[2:]...)
		stats := RunStats{OutputTokens: int64(g.r.Intn(50)), RuntimeSeconds: float64(g.r.Intn(4)) / 2}
		return op{fmt.Sprintf("FinishRun(%s, %s)", id, st), func(s Storage) error {
			return s.FinishRun(ctx, id, st, "o", g2s(st), stats)
		}}
	default:
		l := SkillRunLog{RunID: g.pick(append(diffIDs, "unknown")...), Seq: int64(g.r.Intn(4)),
			EventType: g.pick("tool_call", "note"), Payload: []byte(fmt.Sprintf(`{"v":%d}`, g.r.Intn(9)))}
		return op{fmt.Sprintf("AppendLog(%+v)", l), func(s Storage) error { c := l; return s.AppendLog(ctx, &c) }}
	}
}

func g2s(status string) string {
	if status == "error" {
		return "failed"
	}
	return ""
}

// answers asks every query of the interface and renders the answers.
func answers(s Storage, g gen) []string {
	var out []string
	add := func(what string, v any, err error) {
		b, _ := json.Marshal(v)
		out = append(out, fmt.Sprintf("%s => %s err=%v", what, b, errClass(err)))
	}
	for _, id := range append(diffIDs, "unknown") {
		r, err := s.GetRun(ctx, id)
		add("GetRun "+id, r, err)
		ls, err := s.ListLogsByRun(ctx, id)
		add("ListLogsByRun "+id, ls, err)
		rs, err := s.ListChildrenByParent(ctx, id)
		add("ListChildrenByParent "+id, ids(rs), err)
		rs, err = s.WalkParentChain(ctx, id)
		add("WalkParentChain "+id, ids(rs), err)
	}
	for _, sk := range diffSkills {
		limit, offset := g.r.Intn(4), g.r.Intn(3)
		rs, err := s.ListRunsBySkill(ctx, sk, limit)
		add(fmt.Sprintf("ListRunsBySkill %s %d", sk, limit), rs, err)
		rs, err = s.ListRunsBySkillPaginated(ctx, sk, limit, offset)
		add(fmt.Sprintf("ListRunsBySkillPaginated %s %d %d", sk, limit, offset), ids(rs), err)
		n, err := s.CountRunsBySkill(ctx, sk)
		add("CountRunsBySkill "+sk, n, err)
	}
	for _, c := range diffCallers {
		rs, err := s.ListRunsByCaller(ctx, c, 0)
		add("ListRunsByCaller "+c, ids(rs), err)
	}
	for i := 0; i < 4; i++ {
		f := RunFilter{IncludeDryRun: g.r.Intn(2) == 0, TopLevelOnly: g.r.Intn(3) == 0}
		if g.r.Intn(2) == 0 {
			f.Status = g.pick(diffStatuses[1:]...)
		}
		if g.r.Intn(2) == 0 {
			f.SkillID = g.pick(diffSkills...)
		}
		if g.r.Intn(3) == 0 {
			f.CallerID = g.pick(diffCallers...)
		}
		if g.r.Intn(3) == 0 {
			f.ChannelID = g.pick(diffChannels[1:]...)
		}
		if g.r.Intn(3) == 0 {
			f.Since = g.when()
		}
		if g.r.Intn(3) == 0 {
			f.Until = g.when()
		}
		limit, offset := g.r.Intn(5), g.r.Intn(3)
		rs, err := s.ListRunsFiltered(ctx, f, limit, offset)
		add(fmt.Sprintf("ListRunsFiltered %+v %d %d", f, limit, offset), rs, err)
		n, err := s.CountRunsFiltered(ctx, f)
		add(fmt.Sprintf("CountRunsFiltered %+v", f), n, err)
	}
	t, limit := g.when(), g.r.Intn(4)
	rs, err := s.ListFinishedRunsBefore(ctx, t, limit)
	add(fmt.Sprintf("ListFinishedRunsBefore %v %d", t, limit), ids(rs), err)
	for _, failed := range []bool{false, true} {
		m, err := s.LastRunBySkills(ctx, append(diffSkills, "none"), failed)
		add(fmt.Sprintf("LastRunBySkills %v", failed), m, err)
	}
	return out
}

func errClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrNotFound):
		return "ErrNotFound"
	case errors.Is(err, ErrInvalid):
		return "ErrInvalid"
	}
	return "other: " + err.Error()
}

func TestDifferentialRandomSequences(t *testing.T) {
	seqs, steps := 12, 40
	if os.Getenv("AUDITLOG_LONG") != "" {
		seqs, steps = 200, 150
	}
	for seed := int64(1); seed <= int64(seqs); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			a, b := openAuditlog(t, clock()), openReference(t, clock())
			opGen := gen{rand.New(rand.NewSource(seed))}
			var history []string
			for i := 0; i < steps; i++ {
				o := opGen.op()
				history = append(history, o.name)
				ea, eb := o.do(a), o.do(b)
				if errClass(ea) != errClass(eb) {
					t.Fatalf("step %d %s: auditlog %v, sqlite %v\nhistory:\n%v", i, o.name, ea, eb, history)
				}
				qa := answers(a, gen{rand.New(rand.NewSource(seed*1000 + int64(i)))})
				qb := answers(b, gen{rand.New(rand.NewSource(seed*1000 + int64(i)))})
				for k := range qa {
					if qa[k] != qb[k] {
						t.Fatalf("step %d after %s:\n auditlog: %s\n sqlite:   %s\nhistory:\n%v", i, o.name, qa[k], qb[k], history)
					}
				}
			}
		})
	}
}
