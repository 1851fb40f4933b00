package auditlog

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// Run is one run as the engine folds it from its events.
type Run struct {
	ID             string          `json:"id"`
	SkillID        string          `json:"skill_id"`
	CallerID       string          `json:"caller_id"`
	ChannelID      string          `json:"channel_id"`
	ParentRunID    string          `json:"parent_run_id"`
	Inputs         json.RawMessage `json:"inputs"`
	DryRun         bool            `json:"dry_run"`
	StartedAt      time.Time       `json:"started_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	Status         string          `json:"status"`
	Output         string          `json:"output"`
	Error          string          `json:"error"`
	ToolCalls      int64           `json:"tool_calls"`
	RuntimeSeconds float64         `json:"runtime_seconds"`
	InputTokens    int64           `json:"input_tokens"`
	OutputTokens   int64           `json:"output_tokens"`
	ThinkingTokens int64           `json:"thinking_tokens"`
}

// LogEntry is one run_log of a run.
type LogEntry struct {
	Seq       int64           `json:"seq"`
	TS        time.Time       `json:"ts"`
	EventType string          `json:"event_type"`
	Payload   json.RawMessage `json:"payload"`
}

// Filter selects runs (all set fields must match). Since and Until bound
// started_at, inclusive; the zero time means unbounded.
type Filter struct {
	Skill         string
	Caller        string
	Channel       string
	Status        string // "running" finds unfinished runs
	Parent        string
	TopLevel      bool
	Since, Until  time.Time
	IncludeDryRun bool
}

type filterJSON struct {
	Skill         *string `json:"skill,omitempty"`
	Caller        *string `json:"caller,omitempty"`
	Channel       *string `json:"channel,omitempty"`
	Status        *string `json:"status,omitempty"`
	Parent        *string `json:"parent,omitempty"`
	TopLevel      bool    `json:"top_level,omitempty"`
	Since         *int64  `json:"since,omitempty"`
	Until         *int64  `json:"until,omitempty"`
	IncludeDryRun bool    `json:"include_dry_run,omitempty"`
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func micros(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	m := t.UnixMicro()
	return &m
}

func (f Filter) toJSON() filterJSON {
	return filterJSON{
		Skill: opt(f.Skill), Caller: opt(f.Caller), Channel: opt(f.Channel),
		Status: opt(f.Status), Parent: opt(f.Parent), TopLevel: f.TopLevel,
		Since: micros(f.Since), Until: micros(f.Until), IncludeDryRun: f.IncludeDryRun,
	}
}

// QueryRuns sends a request whose answer is runs (get_run, list, children,
// chain, finished_before: see the header's auditlog_query) and decodes the
// answer, asked for as binary rows. The typed methods use it; it is there
// for what they cannot say (a filter matching "" exactly).
func (l *Log) QueryRuns(ctx context.Context, req map[string]any) ([]Run, error) {
	req["encoding"] = "rows"
	raw, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	answer, err := l.QueryRaw(ctx, raw)
	if err != nil {
		return nil, err
	}
	return decodeRuns(answer)
}

func (l *Log) query(ctx context.Context, req any, out any) error {
	raw, err := json.Marshal(req)
	if err != nil {
		return err
	}
	answer, err := l.QueryRaw(ctx, raw)
	if err != nil {
		return err
	}
	return json.Unmarshal(answer, out)
}

// GetRun returns the run; ErrNotFound if no run of that id is stored.
func (l *Log) GetRun(ctx context.Context, id string) (*Run, error) {
	rs, err := l.QueryRuns(ctx, map[string]any{"op": "get_run", "id": id})
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 {
		return nil, &Error{Op: "query", Code: ErrInternal, Message: "get_run answered no run"}
	}
	return &rs[0], nil
}

// Logs returns the run's logs in seq order (empty for an unknown run).
func (l *Log) Logs(ctx context.Context, id string) ([]LogEntry, error) {
	var out []LogEntry
	err := l.query(ctx, map[string]any{"op": "logs", "id": id}, &out)
	return out, err
}

// List returns the runs matching f, newest start first (ties: id
// descending), skipping offset and returning at most limit (limit <= 0:
// all).
func (l *Log) List(ctx context.Context, f Filter, limit, offset int) ([]Run, error) {
	req := map[string]any{"op": "list", "filter": f.toJSON(), "offset": max(offset, 0)}
	if limit > 0 {
		req["limit"] = limit
	}
	return l.QueryRuns(ctx, req)
}

// Count returns how many runs match f.
func (l *Log) Count(ctx context.Context, f Filter) (int64, error) {
	var out struct{ Count int64 }
	err := l.query(ctx, map[string]any{"op": "count", "filter": f.toJSON()}, &out)
	return out.Count, err
}

// Children returns the runs whose parent is id.
func (l *Log) Children(ctx context.Context, id string, includeDryRun bool) ([]Run, error) {
	return l.QueryRuns(ctx, map[string]any{"op": "children", "id": id, "include_dry_run": includeDryRun})
}

// Chain returns the run, its parent, its parent's parent... (stops at a
// top-level run, a parent not stored, or a repeat). ErrNotFound for an
// unknown id.
func (l *Log) Chain(ctx context.Context, id string) ([]Run, error) {
	return l.QueryRuns(ctx, map[string]any{"op": "chain", "id": id})
}

// LastRun returns, per skill, the latest started_at of a run that counts
// (nil if none): error and timeout runs only with includeFailed.
func (l *Log) LastRun(ctx context.Context, skills []string, includeFailed bool) (map[string]*time.Time, error) {
	out := map[string]*time.Time{}
	if skills == nil {
		skills = []string{}
	}
	err := l.query(ctx, map[string]any{"op": "last_run", "skills": skills, "include_failed": includeFailed}, &out)
	return out, err
}

// FinishedBefore returns finished runs with finished_at before t, newest
// start first, at most limit (limit <= 0: all).
func (l *Log) FinishedBefore(ctx context.Context, t time.Time, limit int) ([]Run, error) {
	req := map[string]any{"op": "finished_before", "before": t.UnixMicro()}
	if limit > 0 {
		req["limit"] = limit
	}
	return l.QueryRuns(ctx, req)
}

// ErrorGroup is one group of failing tool calls.
type ErrorGroup struct {
	ChannelID     string    `json:"channel_id"`
	Tool          string    `json:"tool"`
	ErrorType     string    `json:"error_type"`
	Count         int64     `json:"count"`
	FirstTS       time.Time `json:"first_ts"`
	LastTS        time.Time `json:"last_ts"`
	AvgDurationMS *float64  `json:"avg_duration_ms"`
	CallerIDs     []string  `json:"caller_ids"`
	RunIDs        []string  `json:"run_ids"`
}

// Errors groups failing tool calls with ts in [since, until] (zero times:
// unbounded).
func (l *Log) Errors(ctx context.Context, since, until time.Time) ([]ErrorGroup, error) {
	req := map[string]any{"op": "errors"}
	if m := micros(since); m != nil {
		req["since"] = *m
	}
	if m := micros(until); m != nil {
		req["until"] = *m
	}
	var out []ErrorGroup
	err := l.query(ctx, req, &out)
	return out, err
}

// Call is one tool call, with or without a run (docs/tool-calls.md), as
// `auditlog calls` prints it.
type Call struct {
	LSN         uint64          `json:"lsn"`
	TS          time.Time       `json:"ts"`
	Source      string          `json:"source"` // "tool_call" or "run_log"
	RunID       string          `json:"run_id"`
	CallID      string          `json:"call_id"`
	ChannelID   string          `json:"channel_id"`
	CallerID    string          `json:"caller_id"`
	WorkspaceID string          `json:"workspace_id"`
	RequestID   string          `json:"request_id"`
	Tool        string          `json:"tool"`
	Engine      string          `json:"engine"`
	Status      string          `json:"status"`
	ErrorType   string          `json:"error_type"`
	Error       string          `json:"error"`
	DurationMS  *float64        `json:"duration_ms"`
	InputBytes  *uint64         `json:"input_bytes"`
	ResultBytes *uint64         `json:"result_bytes"`
	ExitCode    *int64          `json:"exit_code"`
	HTTPStatus  *uint16         `json:"http_status"`
	InputHash   string          `json:"input_hash"`
	ArgsSummary string          `json:"args_summary"`
	Payload     json.RawMessage `json:"payload"`
}

// Cursor is where the next page of calls starts: "TS,LSN" of the last
// call of a page.
func (c Call) Cursor() string {
	return c.TS.UTC().Format(time.RFC3339Nano) + "," + strconv.FormatUint(c.LSN, 10)
}

// CallFilter selects tool calls (all set fields must match exactly).
// Channel is the session, Caller the agent; Since and Until bound the
// call's ts, inclusive (zero: unbounded).
type CallFilter struct {
	Tool, Engine, Channel, Caller, Workspace, Status, ErrorType, RunID string
	Since, Until                                                       time.Time
	IncludeDryRun                                                      bool
}

type callFilterJSON struct {
	Tool          *string `json:"tool,omitempty"`
	Engine        *string `json:"engine,omitempty"`
	Channel       *string `json:"channel,omitempty"`
	Caller        *string `json:"caller,omitempty"`
	Workspace     *string `json:"workspace,omitempty"`
	Status        *string `json:"status,omitempty"`
	ErrorType     *string `json:"error_type,omitempty"`
	RunID         *string `json:"run_id,omitempty"`
	Since         *int64  `json:"since,omitempty"`
	Until         *int64  `json:"until,omitempty"`
	IncludeDryRun bool    `json:"include_dry_run,omitempty"`
}

func (f CallFilter) toJSON() callFilterJSON {
	return callFilterJSON{
		Tool: opt(f.Tool), Engine: opt(f.Engine), Channel: opt(f.Channel), Caller: opt(f.Caller),
		Workspace: opt(f.Workspace), Status: opt(f.Status), ErrorType: opt(f.ErrorType),
		RunID: opt(f.RunID), Since: micros(f.Since), Until: micros(f.Until),
		IncludeDryRun: f.IncludeDryRun,
	}
}

// Calls returns the tool calls matching f, newest first (oldest first
// with oldestFirst), at most limit (0: all), after cursor ("" : from the
// start; else a previous page's last Call.Cursor()).
func (l *Log) Calls(ctx context.Context, f CallFilter, limit int, cursor string, oldestFirst bool) ([]Call, error) {
	req := map[string]any{"op": "calls", "filter": f.toJSON(), "oldest_first": oldestFirst}
	if limit > 0 {
		req["limit"] = limit
	}
	if cursor != "" {
		req["cursor"] = cursor
	}
	var out []Call
	err := l.query(ctx, req, &out)
	return out, err
}

// CountCalls counts the tool calls matching f.
func (l *Log) CountCalls(ctx context.Context, f CallFilter) (int64, error) {
	var out struct {
		Count int64 `json:"count"`
	}
	err := l.query(ctx, map[string]any{"op": "count_calls", "filter": f.toJSON()}, &out)
	return out.Count, err
}

// CallCount is the number of calls with one value of the key counted by.
type CallCount struct {
	Value string
	Count int64
}

// CountCallsBy counts the calls matching f per value of by ("tool",
// "engine", "channel_id", "caller_id", "workspace_id", "status",
// "error_type", "run_id"), most first.
func (l *Log) CountCallsBy(ctx context.Context, f CallFilter, by string) ([]CallCount, error) {
	var groups []map[string]json.RawMessage
	if err := l.query(ctx, map[string]any{"op": "count_calls", "filter": f.toJSON(), "by": by}, &groups); err != nil {
		return nil, err
	}
	out := make([]CallCount, 0, len(groups))
	for _, g := range groups {
		var c CallCount
		for k, v := range g {
			var err error
			if k == "count" {
				err = json.Unmarshal(v, &c.Count)
			} else {
				err = json.Unmarshal(v, &c.Value)
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, nil
}
