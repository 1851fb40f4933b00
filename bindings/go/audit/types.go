// Package audit is the agent runtime's audit store interface (Storage,
// over skill_runs and skill_run_logs) and an implementation of it on
// auditlog (Store). Swapping the runtime's SQLite store for auditlog is
// one line: `store, err := audit.Open(dir, nil)` in place of the SQLite
// store's constructor (*Store satisfies Storage; close it with Close). The semantics are the SQLite store's, expressed as
// events that every auditlog reader folds the same way (see README.md and
// docs/contract.md, "Amending events").
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound: the run does not exist (GetRun, FinishRun, AppendLog).
var ErrNotFound = errors.New("audit: not found")

// ErrInvalid: an argument breaks the store's limits (empty or too long
// id, a finish status of "running", payload that is not JSON...).
var ErrInvalid = errors.New("audit: invalid argument")

// Status values with a meaning of their own.
const (
	StatusRunning = "running"
	StatusOK      = "ok"
	StatusError   = "error"
	StatusTimeout = "timeout"
	// A dry run is a run whose status is dry_run. Lists and counts leave
	// dry runs out unless asked (RunFilter.IncludeDryRun).
	StatusDryRun = "dry_run"
)

// RunStats is what a finished run consumed. The token fields are the
// run's own totals, rolled up by the runtime before FinishRun.
type RunStats struct {
	ToolCalls      int64
	InputTokens    int64
	OutputTokens   int64
	ThinkingTokens int64
	RuntimeSeconds float64
}

// TotalTokens is the roll-up of the three token counts.
func (s RunStats) TotalTokens() int64 { return s.InputTokens + s.OutputTokens + s.ThinkingTokens }

// SkillRun is one row of skill_runs: a run of a skill.
type SkillRun struct {
	ID          string
	SkillID     string
	CallerID    string
	ChannelID   string
	ParentRunID string // "" for a top-level run
	Inputs      map[string]any
	Status      string // "running" until finished
	Output      string
	Error       string
	StartedAt   time.Time
	FinishedAt  *time.Time // nil while running
	Stats       RunStats
}

// SkillRunLog is one row of skill_run_logs, keyed by (RunID, Seq).
type SkillRunLog struct {
	RunID     string
	Seq       int64
	EventType string
	Payload   json.RawMessage // any JSON value; nil is null
	CreatedAt time.Time
}

// RunFilter selects runs; set fields must all match. Since and Until
// bound StartedAt, inclusive (zero: unbounded).
type RunFilter struct {
	Status        string
	SkillID       string
	CallerID      string
	ChannelID     string
	TopLevelOnly  bool
	Since         time.Time
	Until         time.Time
	IncludeDryRun bool
}

// Storage is the runtime's audit store. Lists are ordered by StartedAt
// descending, then ID descending (bytes). A limit <= 0 means no limit.
type Storage interface {
	// Initialize prepares the store (creates tables, opens the log).
	Initialize(ctx context.Context) error
	// StartRun upserts the run's start fields (SkillID, CallerID,
	// ChannelID, ParentRunID, Inputs, StartedAt). It may carry finish
	// fields: a Status other than "" or "running", or a FinishedAt, also
	// records the finish (a final Status without FinishedAt finishes at
	// StartedAt; a FinishedAt without Status is "ok").
	StartRun(ctx context.Context, run *SkillRun) error
	// FinishRun records the finish at the store's clock; the last finish
	// wins. ErrNotFound for an unknown run.
	FinishRun(ctx context.Context, runID, status, output, errMsg string, stats RunStats) error
	// AppendLog stores the log, replacing the one with the same (RunID,
	// Seq). ErrNotFound for an unknown run.
	AppendLog(ctx context.Context, log *SkillRunLog) error
	// GetRun returns the run, or ErrNotFound.
	GetRun(ctx context.Context, runID string) (*SkillRun, error)
	// ListLogsByRun returns the run's logs by Seq (empty if unknown).
	ListLogsByRun(ctx context.Context, runID string) ([]SkillRunLog, error)
	// ListRunsBySkill: the skill's runs (dry runs left out).
	ListRunsBySkill(ctx context.Context, skillID string, limit int) ([]SkillRun, error)
	ListRunsBySkillPaginated(ctx context.Context, skillID string, limit, offset int) ([]SkillRun, error)
	// CountRunsBySkill: how many (dry runs left out).
	CountRunsBySkill(ctx context.Context, skillID string) (int64, error)
	// ListRunsByCaller: the caller's runs (dry runs left out).
	ListRunsByCaller(ctx context.Context, callerID string, limit int) ([]SkillRun, error)
	ListRunsFiltered(ctx context.Context, f RunFilter, limit, offset int) ([]SkillRun, error)
	CountRunsFiltered(ctx context.Context, f RunFilter) (int64, error)
	// PurgeOlderThan removes finished runs older than cutoff (and their
	// logs) and returns how many runs it removed. A run still running is
	// never removed. (auditlog removes whole days: see README.md.)
	PurgeOlderThan(ctx context.Context, cutoff time.Time) (int64, error)
	// ListChildrenByParent: runs whose ParentRunID is parentID (dry runs
	// left out).
	ListChildrenByParent(ctx context.Context, parentID string) ([]SkillRun, error)
	// WalkParentChain: the run, its parent, ... up to a top-level run, a
	// missing parent, or a repeat (cycle-safe). Empty for an unknown id.
	WalkParentChain(ctx context.Context, runID string) ([]SkillRun, error)
	// ListFinishedRunsBefore: finished runs with FinishedAt before t
	// (dry runs included), at most limit.
	ListFinishedRunsBefore(ctx context.Context, before time.Time, limit int) ([]SkillRun, error)
	// LastRunBySkills: per skill, the latest StartedAt of a run that
	// counts (running, ok, cancelled...; error and timeout only with
	// includeFailed; never dry runs). Skills without one are absent.
	LastRunBySkills(ctx context.Context, skillIDs []string, includeFailed bool) (map[string]time.Time, error)
}
