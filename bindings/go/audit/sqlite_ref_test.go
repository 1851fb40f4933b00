package audit

// The reference implementation of Storage over SQLite, written from the
// runtime's schema (skill_runs: one row per run with a JSON inputs blob;
// skill_run_logs: primary key (run_id, seq)). The shared suite and the
// differential test run against it and against auditlog; the benchmarks
// put the two side by side.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS skill_runs (
	id TEXT PRIMARY KEY,
	skill_id TEXT NOT NULL,
	caller_id TEXT NOT NULL,
	channel_id TEXT NOT NULL,
	parent_run_id TEXT NOT NULL,
	inputs TEXT NOT NULL,
	status TEXT NOT NULL,
	output TEXT NOT NULL,
	error TEXT NOT NULL,
	tool_calls INTEGER NOT NULL,
	input_tokens INTEGER NOT NULL,
	output_tokens INTEGER NOT NULL,
	thinking_tokens INTEGER NOT NULL,
	runtime_seconds REAL NOT NULL,
	started_at INTEGER NOT NULL,
	finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS skill_runs_skill ON skill_runs(skill_id, started_at);
CREATE INDEX IF NOT EXISTS skill_runs_caller ON skill_runs(caller_id, started_at);
CREATE INDEX IF NOT EXISTS skill_runs_channel ON skill_runs(channel_id, started_at);
CREATE INDEX IF NOT EXISTS skill_runs_parent ON skill_runs(parent_run_id, started_at);
CREATE INDEX IF NOT EXISTS skill_runs_status ON skill_runs(status, started_at);
CREATE INDEX IF NOT EXISTS skill_runs_started ON skill_runs(started_at);
CREATE INDEX IF NOT EXISTS skill_runs_finished ON skill_runs(finished_at);
CREATE TABLE IF NOT EXISTS skill_run_logs (
	run_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	event_type TEXT NOT NULL,
	payload TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (run_id, seq)
);
`

const runCols = `id, skill_id, caller_id, channel_id, parent_run_id, inputs, status, output, error,
	tool_calls, input_tokens, output_tokens, thinking_tokens, runtime_seconds, started_at, finished_at`

// sqliteStore is the reference Storage.
type sqliteStore struct {
	path string
	// synchronous: FULL makes each commit durable (the fair peer of
	// auditlog's durable appends); NORMAL is what gateways often run.
	synchronous string
	db          *sql.DB
	Now         func() time.Time
}

var _ Storage = (*sqliteStore)(nil)

func openSQLite(path, synchronous string) (*sqliteStore, error) {
	s := &sqliteStore{path: path, synchronous: synchronous, Now: time.Now}
	return s, s.Initialize(context.Background())
}

func (s *sqliteStore) Initialize(ctx context.Context) error {
	if s.db != nil {
		return nil
	}
	db, err := sql.Open("sqlite3", "file:"+s.path+"?_journal_mode=WAL&_synchronous="+s.synchronous+"&_busy_timeout=10000")
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1) // one writer, as the runtime runs it
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		db.Close()
		return err
	}
	s.db = db
	return nil
}

func (s *sqliteStore) Close() error { return s.db.Close() }

func (s *sqliteStore) StartRun(ctx context.Context, run *SkillRun) error {
	p, err := planStart(run, s.Now)
	if err != nil {
		return err
	}
	if p.finishes {
		if err := checkStats(run.Stats); err != nil {
			return err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	r := &p.run
	_, err = tx.ExecContext(ctx, `INSERT INTO skill_runs (`+runCols+`)
		VALUES (?, ?, ?, ?, ?, ?, 'running', '', '', 0, 0, 0, 0, 0.0, ?, NULL)
		ON CONFLICT(id) DO UPDATE SET skill_id = excluded.skill_id, caller_id = excluded.caller_id,
			channel_id = excluded.channel_id, parent_run_id = excluded.parent_run_id,
			inputs = excluded.inputs, started_at = excluded.started_at`,
		r.ID, r.SkillID, r.CallerID, r.ChannelID, r.ParentRunID, string(p.inputs), r.StartedAt.UnixMicro())
	if err != nil {
		return err
	}
	if p.finishes {
		if err := finishRow(ctx, tx, r.ID, p.finishAt, p.status, run.Output, run.Error, run.Stats); err != nil {
			return err
		}
	}
	return tx.Commit()
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func finishRow(ctx context.Context, db execer, id string, at time.Time, status, output, errMsg string, st RunStats) error {
	res, err := db.ExecContext(ctx, `UPDATE skill_runs SET status = ?, output = ?, error = ?, tool_calls = ?,
		input_tokens = ?, output_tokens = ?, thinking_tokens = ?, runtime_seconds = ?, finished_at = ?
		WHERE id = ?`,
		status, output, errMsg, st.ToolCalls, st.InputTokens, st.OutputTokens, st.ThinkingTokens,
		st.RuntimeSeconds, at.UnixMicro(), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: run %q", ErrNotFound, id)
	}
	return nil
}

func (s *sqliteStore) FinishRun(ctx context.Context, runID, status, output, errMsg string, stats RunStats) error {
	status, err := checkFinish(runID, status)
	if err != nil {
		return err
	}
	if err := checkStats(stats); err != nil {
		return err
	}
	return finishRow(ctx, s.db, runID, s.Now().Truncate(time.Microsecond), status, output, errMsg, stats)
}

func (s *sqliteStore) AppendLog(ctx context.Context, l *SkillRunLog) error {
	payload, err := checkLog(l)
	if err != nil {
		return err
	}
	at := l.CreatedAt
	if at.IsZero() {
		at = s.Now()
	}
	res, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO skill_run_logs (run_id, seq, event_type, payload, created_at)
		SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM skill_runs WHERE id = ?)`,
		l.RunID, l.Seq, l.EventType, string(payload), at.UnixMicro(), l.RunID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: run %q", ErrNotFound, l.RunID)
	}
	return nil
}

func scanRuns(rows *sql.Rows) ([]SkillRun, error) {
	defer rows.Close()
	out := []SkillRun{}
	for rows.Next() {
		var r SkillRun
		var inputs string
		var started int64
		var finished sql.NullInt64
		if err := rows.Scan(&r.ID, &r.SkillID, &r.CallerID, &r.ChannelID, &r.ParentRunID, &inputs,
			&r.Status, &r.Output, &r.Error, &r.Stats.ToolCalls, &r.Stats.InputTokens,
			&r.Stats.OutputTokens, &r.Stats.ThinkingTokens, &r.Stats.RuntimeSeconds, &started, &finished); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(inputs), &r.Inputs); err != nil {
			return nil, err
		}
		r.StartedAt = time.UnixMicro(started).UTC()
		if finished.Valid {
			t := time.UnixMicro(finished.Int64).UTC()
			r.FinishedAt = &t
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *sqliteStore) GetRun(ctx context.Context, runID string) (*SkillRun, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+runCols+` FROM skill_runs WHERE id = ?`, runID)
	if err != nil {
		return nil, err
	}
	rs, err := scanRuns(rows)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: run %q", ErrNotFound, runID)
	}
	return &rs[0], nil
}

func (s *sqliteStore) ListLogsByRun(ctx context.Context, runID string) ([]SkillRunLog, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, event_type, payload, created_at FROM skill_run_logs
		WHERE run_id = ? ORDER BY seq`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []SkillRunLog{}
	for rows.Next() {
		l := SkillRunLog{RunID: runID}
		var payload string
		var at int64
		if err := rows.Scan(&l.Seq, &l.EventType, &payload, &at); err != nil {
			return nil, err
		}
		l.Payload = json.RawMessage(payload)
		l.CreatedAt = time.UnixMicro(at).UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}

const notDry = ` AND status != 'dry_run'`
const order = ` ORDER BY started_at DESC, id DESC`

func limitClause(limit, offset int) string {
	if limit <= 0 {
		limit = -1
	}
	return fmt.Sprintf(" LIMIT %d OFFSET %d", limit, max(offset, 0))
}

func (s *sqliteStore) query(ctx context.Context, where string, args []any, tail string) ([]SkillRun, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+runCols+` FROM skill_runs WHERE `+where+tail, args...)
	if err != nil {
		return nil, err
	}
	return scanRuns(rows)
}

func (s *sqliteStore) count(ctx context.Context, where string, args []any) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM skill_runs WHERE `+where, args...).Scan(&n)
	return n, err
}

func (s *sqliteStore) ListRunsBySkill(ctx context.Context, skillID string, limit int) ([]SkillRun, error) {
	return s.ListRunsBySkillPaginated(ctx, skillID, limit, 0)
}

func (s *sqliteStore) ListRunsBySkillPaginated(ctx context.Context, skillID string, limit, offset int) ([]SkillRun, error) {
	return s.query(ctx, `skill_id = ?`+notDry, []any{skillID}, order+limitClause(limit, offset))
}

func (s *sqliteStore) CountRunsBySkill(ctx context.Context, skillID string) (int64, error) {
	return s.count(ctx, `skill_id = ?`+notDry, []any{skillID})
}

func (s *sqliteStore) ListRunsByCaller(ctx context.Context, callerID string, limit int) ([]SkillRun, error) {
	return s.query(ctx, `caller_id = ?`+notDry, []any{callerID}, order+limitClause(limit, 0))
}

func filterWhere(f RunFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.SkillID != "" {
		add("skill_id = ?", f.SkillID)
	}
	if f.CallerID != "" {
		add("caller_id = ?", f.CallerID)
	}
	if f.ChannelID != "" {
		add("channel_id = ?", f.ChannelID)
	}
	if f.TopLevelOnly {
		conds = append(conds, "parent_run_id = ''")
	}
	if !f.Since.IsZero() {
		add("started_at >= ?", f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add("started_at <= ?", f.Until.UnixMicro())
	}
	if !f.IncludeDryRun {
		conds = append(conds, "status != 'dry_run'")
	}
	if len(conds) == 0 {
		return "1", nil
	}
	return strings.Join(conds, " AND "), args
}

func (s *sqliteStore) ListRunsFiltered(ctx context.Context, f RunFilter, limit, offset int) ([]SkillRun, error) {
	where, args := filterWhere(f)
	return s.query(ctx, where, args, order+limitClause(limit, offset))
}

func (s *sqliteStore) CountRunsFiltered(ctx context.Context, f RunFilter) (int64, error) {
	where, args := filterWhere(f)
	return s.count(ctx, where, args)
}

func (s *sqliteStore) PurgeOlderThan(ctx context.Context, cutoff time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	const old = `SELECT id FROM skill_runs WHERE started_at < ? AND finished_at IS NOT NULL AND finished_at < ?`
	c := cutoff.UnixMicro()
	if _, err := tx.ExecContext(ctx, `DELETE FROM skill_run_logs WHERE run_id IN (`+old+`)`, c, c); err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM skill_runs WHERE id IN (`+old+`)`, c, c)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

func (s *sqliteStore) ListChildrenByParent(ctx context.Context, parentID string) ([]SkillRun, error) {
	return s.query(ctx, `parent_run_id = ?`+notDry, []any{parentID}, order)
}

func (s *sqliteStore) WalkParentChain(ctx context.Context, runID string) ([]SkillRun, error) {
	out := []SkillRun{}
	seen := map[string]bool{}
	for id := runID; id != "" && !seen[id]; {
		seen[id] = true
		r, err := s.GetRun(ctx, id)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
		id = r.ParentRunID
	}
	return out, nil
}

func (s *sqliteStore) ListFinishedRunsBefore(ctx context.Context, before time.Time, limit int) ([]SkillRun, error) {
	return s.query(ctx, `finished_at IS NOT NULL AND finished_at < ?`, []any{before.UnixMicro()}, order+limitClause(limit, 0))
}

func (s *sqliteStore) LastRunBySkills(ctx context.Context, skillIDs []string, includeFailed bool) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	failed := ` AND status NOT IN ('error', 'timeout')`
	if includeFailed {
		failed = ""
	}
	for _, skill := range skillIDs {
		var t sql.NullInt64
		err := s.db.QueryRowContext(ctx, `SELECT MAX(started_at) FROM skill_runs WHERE skill_id = ?`+notDry+failed, skill).Scan(&t)
		if err != nil {
			return nil, err
		}
		if t.Valid {
			out[skill] = time.UnixMicro(t.Int64).UTC()
		}
	}
	return out, nil
}
