package audit

import (
	"fmt"
	"testing"
	"time"
)

// PurgeOlderThan on both stores, with a cutoff at a day boundary (auditlog
// drops whole days: docs in README.md): finished runs before the cutoff go,
// running runs and runs finished after it stay, with their logs.
func TestPurgeOlderThan(t *testing.T) {
	day := func(d, h int) time.Time { return base.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour) }
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			now := day(0, 1)
			s := im.open(t, func() time.Time { return now })
			fin := func(id string, at time.Time) {
				now = at
				must(t, s.FinishRun(ctx, id, StatusOK, "", "", RunStats{}))
			}
			// Day 0: done (finished day 0), open (running, with logs),
			// late (finished on day 2), dry (a dry run of day 0).
			start(t, s, SkillRun{ID: "done", SkillID: "k", StartedAt: day(0, 1)})
			fin("done", day(0, 2))
			start(t, s, SkillRun{ID: "open", SkillID: "k", StartedAt: day(0, 3)})
			for seq := int64(0); seq < 3; seq++ {
				must(t, s.AppendLog(ctx, &SkillRunLog{RunID: "open", Seq: seq, EventType: "step", CreatedAt: day(0, 4)}))
			}
			start(t, s, SkillRun{ID: "late", SkillID: "k", StartedAt: day(0, 5)})
			start(t, s, SkillRun{ID: "dry", SkillID: "k", StartedAt: day(0, 6), Status: StatusDryRun})
			// Day 1: mid, finished on day 1.
			start(t, s, SkillRun{ID: "mid", SkillID: "k", StartedAt: day(1, 1)})
			fin("mid", day(1, 2))
			// Day 2 (auditlog's active segment): late finishes, new starts.
			fin("late", day(2, 1))
			start(t, s, SkillRun{ID: "new", SkillID: "k", StartedAt: day(2, 2)})

			n, err := s.PurgeOlderThan(ctx, day(2, 0))
			must(t, err)
			if n != 3 {
				t.Fatalf("purged %d runs, want 3 (done, dry, mid)", n)
			}
			rs, err := s.ListRunsFiltered(ctx, RunFilter{IncludeDryRun: true}, 0, 0)
			wantIDs(t, rs, err, "new", "late", "open")
			if r := get(t, s, "open"); r.Status != StatusRunning || !r.StartedAt.Equal(day(0, 3)) {
				t.Fatalf("the running run changed: %+v", r)
			}
			ls, err := s.ListLogsByRun(ctx, "open")
			must(t, err)
			if len(ls) != 3 {
				t.Fatalf("the running run lost logs: %d", len(ls))
			}
			if r := get(t, s, "late"); r.FinishedAt == nil || !r.FinishedAt.Equal(day(2, 1)) {
				t.Fatalf("late: %+v", r)
			}
			// It can still be finished, and a second purge finds nothing.
			fin("open", day(2, 3))
			if r := get(t, s, "open"); r.Status != StatusOK {
				t.Fatalf("finish after purge: %+v", r)
			}
			n, err = s.PurgeOlderThan(ctx, day(2, 0))
			must(t, err)
			if n != 0 {
				t.Fatalf("second purge: %d", n)
			}
			if _, err := s.GetRun(ctx, "done"); err == nil {
				t.Fatal(fmt.Sprint("done survived"))
			}
		})
	}
}
