package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/auditlog/auditlog/bindings/go/auditlog"
)

// Store implements Storage on an auditlog folder, opened in this process
// (Open) or held by `auditlog serve` (Connect). Every write is one append
// of contract events, durable (fdatasync, group-committed with the other
// goroutines' and processes' writes) before the call returns. Safe for use
// by many goroutines.
type Store struct {
	// open opens (or connects to) the log on Initialize.
	open func(ctx context.Context) (*auditlog.Log, error)
	log  *auditlog.Log
	// Now is the clock of FinishRun and of a StartRun without StartedAt
	// (time.Now unless set before the first call).
	Now func() time.Time
}

var _ Storage = (*Store)(nil)

// Open opens (or creates) the auditlog in dir. opts may be nil.
func Open(dir string, opts *auditlog.Options) (*Store, error) {
	return newStore(func(context.Context) (*auditlog.Log, error) { return auditlog.Open(dir, opts) })
}

// Connect is Open through `auditlog serve` (its Unix socket path,
// DIR/auditlog.sock by default), for gateways that run several
// processes on one log: the same Store, methods and answers. The swap is
// one line:
//
//	store, err := audit.Open("/var/lib/gateway/audit", nil)
//	store, err := audit.Connect(ctx, "/var/lib/gateway/audit/auditlog.sock", nil)
//
// opts may be nil (auditlog.ConnectOptions: how long a call retries).
func Connect(ctx context.Context, path string, opts *auditlog.ConnectOptions) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Store{Now: time.Now, open: func(ctx context.Context) (*auditlog.Log, error) {
		return auditlog.Connect(ctx, path, opts)
	}}
	if err := s.Initialize(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// New is a Store over a log the caller opened (auditlog.Open) or
// connected to (auditlog.Connect). Close closes it.
func New(l *auditlog.Log) *Store {
	return &Store{log: l, Now: time.Now, open: func(context.Context) (*auditlog.Log, error) { return l, nil }}
}

func newStore(open func(ctx context.Context) (*auditlog.Log, error)) (*Store, error) {
	s := &Store{open: open, Now: time.Now}
	if err := s.Initialize(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// Log is the underlying log (replay-free queries of the engine itself).
func (s *Store) Log() *auditlog.Log { return s.log }

// Initialize opens (or connects to) the log if that is not done yet.
func (s *Store) Initialize(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.log != nil {
		return nil
	}
	l, err := s.open(ctx)
	if err != nil {
		return err
	}
	s.log = l
	return nil
}

// Close closes the log.
func (s *Store) Close() error {
	if s.log == nil {
		return nil
	}
	return s.log.Close()
}

// mapErr gives auditlog's not-found and invalid-argument errors the
// interface's sentinels (the original stays in the chain).
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auditlog.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, auditlog.ErrInvalidArgument):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// Every event the store writes carries "replace":true: the amending
// events of docs/contract.md (a start upserts the start fields, a finish
// overrides an earlier finish, a log replaces the one with the same
// seq), so every reader folds them the same way.

func appendStr(b []byte, s string) []byte { return strconv.AppendQuote(b, s) }

// appendJSONString writes s as a JSON string (strconv.Quote's escapes
// are not all JSON, so use encoding/json for anything unusual).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	return appendStr(b, s)
}

func startEvent(b []byte, p *startPlan) []byte {
	r := &p.run
	b = append(b, `{"kind":"run_started","replace":true,"run_id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, r.StartedAt.UnixMicro(), 10)
	b = append(b, `,"skill_id":`...)
	b = appendJSONString(b, r.SkillID)
	b = append(b, `,"caller_id":`...)
	b = appendJSONString(b, r.CallerID)
	b = append(b, `,"channel_id":`...)
	b = appendJSONString(b, r.ChannelID)
	b = append(b, `,"parent_run_id":`...)
	b = appendJSONString(b, r.ParentRunID)
	b = append(b, `,"inputs":`...)
	b = append(b, p.inputs...)
	return append(b, "}\n"...)
}

func finishEvent(b []byte, id string, at time.Time, status, output, errMsg string, st RunStats) []byte {
	b = append(b, `{"kind":"run_finished","replace":true,"run_id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, at.UnixMicro(), 10)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, status)
	b = append(b, `,"output":`...)
	b = appendJSONString(b, output)
	b = append(b, `,"error":`...)
	b = appendJSONString(b, errMsg)
	b = append(b, `,"tool_calls":`...)
	b = strconv.AppendInt(b, st.ToolCalls, 10)
	b = append(b, `,"runtime_seconds":`...)
	b = strconv.AppendFloat(b, st.RuntimeSeconds, 'g', -1, 64)
	b = append(b, `,"input_tokens":`...)
	b = strconv.AppendInt(b, st.InputTokens, 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, st.OutputTokens, 10)
	b = append(b, `,"thinking_tokens":`...)
	b = strconv.AppendInt(b, st.ThinkingTokens, 10)
	return append(b, "}\n"...)
}

func checkStats(st RunStats) error {
	if st.ToolCalls < 0 || st.InputTokens < 0 || st.OutputTokens < 0 || st.ThinkingTokens < 0 {
		return fmt.Errorf("%w: negative counts in %+v", ErrInvalid, st)
	}
	return nil
}

// StartRun implements Storage.
func (s *Store) StartRun(ctx context.Context, run *SkillRun) error {
	p, err := planStart(run, s.Now)
	if err != nil {
		return err
	}
	b := startEvent(make([]byte, 0, 256+len(p.inputs)), &p)
	if p.finishes {
		if err := checkStats(run.Stats); err != nil {
			return err
		}
		b = finishEvent(b, run.ID, p.finishAt, p.status, run.Output, run.Error, run.Stats)
	}
	_, err = s.log.AppendDurable(ctx, b, 0)
	return mapErr(err)
}

// FinishRun implements Storage.
func (s *Store) FinishRun(ctx context.Context, runID, status, output, errMsg string, stats RunStats) error {
	status, err := checkFinish(runID, status)
	if err != nil {
		return err
	}
	if err := checkStats(stats); err != nil {
		return err
	}
	b := finishEvent(make([]byte, 0, 256), runID, s.Now().Truncate(time.Microsecond), status, output, errMsg, stats)
	_, err = s.log.AppendDurable(ctx, b, auditlog.RequireRun)
	return mapErr(err)
}

// AppendLog implements Storage.
func (s *Store) AppendLog(ctx context.Context, l *SkillRunLog) error {
	payload, err := checkLog(l)
	if err != nil {
		return err
	}
	at := l.CreatedAt
	if at.IsZero() {
		at = s.Now()
	}
	b := make([]byte, 0, 160+len(payload))
	b = append(b, `{"kind":"run_log","replace":true,"run_id":`...)
	b = appendJSONString(b, l.RunID)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, at.UnixMicro(), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, l.Seq, 10)
	b = append(b, `,"event_type":`...)
	b = appendJSONString(b, l.EventType)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	b = append(b, "}\n"...)
	_, err = s.log.AppendDurable(ctx, b, auditlog.RequireRun)
	return mapErr(err)
}

// toSkillRun maps an engine run to a row.
func toSkillRun(r *auditlog.Run) (SkillRun, error) {
	out := SkillRun{
		ID: r.ID, SkillID: r.SkillID, CallerID: r.CallerID, ChannelID: r.ChannelID,
		ParentRunID: r.ParentRunID, Status: r.Status, Output: r.Output, Error: r.Error,
		StartedAt: r.StartedAt.UTC(),
		Stats: RunStats{
			ToolCalls: r.ToolCalls, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
			ThinkingTokens: r.ThinkingTokens, RuntimeSeconds: r.RuntimeSeconds,
		},
	}
	if r.FinishedAt != nil {
		t := r.FinishedAt.UTC()
		out.FinishedAt = &t
	}
	if err := json.Unmarshal(r.Inputs, &out.Inputs); err != nil || out.Inputs == nil {
		// inputs written by other producers may be any JSON value
		out.Inputs = map[string]any{"_": json.RawMessage(r.Inputs)}
		if len(r.Inputs) == 0 || string(r.Inputs) == "{}" {
			out.Inputs = map[string]any{}
		}
	}
	return out, nil
}

func toSkillRuns(rs []auditlog.Run) ([]SkillRun, error) {
	out := make([]SkillRun, 0, len(rs))
	for i := range rs {
		r, err := toSkillRun(&rs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// GetRun implements Storage.
func (s *Store) GetRun(ctx context.Context, runID string) (*SkillRun, error) {
	r, err := s.log.GetRun(ctx, runID)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := toSkillRun(r)
	return &out, err
}

// ListLogsByRun implements Storage.
func (s *Store) ListLogsByRun(ctx context.Context, runID string) ([]SkillRunLog, error) {
	ls, err := s.log.Logs(ctx, runID)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]SkillRunLog, 0, len(ls))
	for _, l := range ls {
		out = append(out, SkillRunLog{RunID: runID, Seq: l.Seq, EventType: l.EventType, Payload: l.Payload, CreatedAt: l.TS.UTC()})
	}
	return out, nil
}

// byField lists (or counts) non-dry runs whose field equals value
// exactly, "" included (an empty auditlog.Filter field means "any").
func (s *Store) byField(ctx context.Context, op, key, value string, limit, offset int, out any) error {
	req := map[string]any{"op": op, "filter": map[string]any{key: value}}
	if op == "list" {
		req["offset"] = max(offset, 0)
		if limit > 0 {
			req["limit"] = limit
		}
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return err
	}
	answer, err := s.log.QueryRaw(ctx, raw)
	if err != nil {
		return mapErr(err)
	}
	return json.Unmarshal(answer, out)
}

func (s *Store) listBy(ctx context.Context, key, value string, limit, offset int) ([]SkillRun, error) {
	req := map[string]any{"op": "list", "filter": map[string]any{key: value}, "offset": max(offset, 0)}
	if limit > 0 {
		req["limit"] = limit
	}
	rs, err := s.log.QueryRuns(ctx, req)
	if err != nil {
		return nil, mapErr(err)
	}
	return toSkillRuns(rs)
}

// ListRunsBySkill implements Storage.
func (s *Store) ListRunsBySkill(ctx context.Context, skillID string, limit int) ([]SkillRun, error) {
	return s.listBy(ctx, "skill", skillID, limit, 0)
}

// ListRunsBySkillPaginated implements Storage.
func (s *Store) ListRunsBySkillPaginated(ctx context.Context, skillID string, limit, offset int) ([]SkillRun, error) {
	return s.listBy(ctx, "skill", skillID, limit, offset)
}

// CountRunsBySkill implements Storage.
func (s *Store) CountRunsBySkill(ctx context.Context, skillID string) (int64, error) {
	var out struct{ Count int64 }
	err := s.byField(ctx, "count", "skill", skillID, 0, 0, &out)
	return out.Count, err
}

// ListRunsByCaller implements Storage.
func (s *Store) ListRunsByCaller(ctx context.Context, callerID string, limit int) ([]SkillRun, error) {
	return s.listBy(ctx, "caller", callerID, limit, 0)
}

func engineFilter(f RunFilter) auditlog.Filter {
	return auditlog.Filter{
		Skill: f.SkillID, Caller: f.CallerID, Channel: f.ChannelID, Status: f.Status,
		TopLevel: f.TopLevelOnly, Since: f.Since, Until: f.Until, IncludeDryRun: f.IncludeDryRun,
	}
}

// ListRunsFiltered implements Storage.
func (s *Store) ListRunsFiltered(ctx context.Context, f RunFilter, limit, offset int) ([]SkillRun, error) {
	rs, err := s.log.List(ctx, engineFilter(f), orAll(limit), max(offset, 0))
	if err != nil {
		return nil, mapErr(err)
	}
	return toSkillRuns(rs)
}

// CountRunsFiltered implements Storage.
func (s *Store) CountRunsFiltered(ctx context.Context, f RunFilter) (int64, error) {
	n, err := s.log.Count(ctx, engineFilter(f))
	return n, mapErr(err)
}

// PurgeOlderThan implements Storage: whole segments (days) whose newest
// event is older than cutoff are dropped; a run still running is carried
// forward first (see README.md).
func (s *Store) PurgeOlderThan(ctx context.Context, cutoff time.Time) (int64, error) {
	rep, err := s.log.PurgeOlderThan(ctx, cutoff)
	return rep.PurgedRuns, mapErr(err)
}

// ListChildrenByParent implements Storage.
func (s *Store) ListChildrenByParent(ctx context.Context, parentID string) ([]SkillRun, error) {
	rs, err := s.log.Children(ctx, parentID, false)
	if err != nil {
		return nil, mapErr(err)
	}
	return toSkillRuns(rs)
}

// WalkParentChain implements Storage.
func (s *Store) WalkParentChain(ctx context.Context, runID string) ([]SkillRun, error) {
	rs, err := s.log.Chain(ctx, runID)
	if errors.Is(err, auditlog.ErrNotFound) {
		return []SkillRun{}, nil
	}
	if err != nil {
		return nil, mapErr(err)
	}
	return toSkillRuns(rs)
}

// ListFinishedRunsBefore implements Storage.
func (s *Store) ListFinishedRunsBefore(ctx context.Context, before time.Time, limit int) ([]SkillRun, error) {
	rs, err := s.log.FinishedBefore(ctx, before, orAll(limit))
	if err != nil {
		return nil, mapErr(err)
	}
	return toSkillRuns(rs)
}

// LastRunBySkills implements Storage.
func (s *Store) LastRunBySkills(ctx context.Context, skillIDs []string, includeFailed bool) (map[string]time.Time, error) {
	m, err := s.log.LastRun(ctx, skillIDs, includeFailed)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make(map[string]time.Time, len(m))
	for k, v := range m {
		if v != nil {
			out[k] = v.UTC()
		}
	}
	return out, nil
}
