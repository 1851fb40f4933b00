package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Limits shared by every implementation (they are auditlog's event
// limits, so both stores refuse the same calls).
const (
	MaxRunIDBytes = 256
	MaxNameBytes  = 1024
)

// startPlan is a StartRun call after the shared rules: the start fields,
// and the finish it carries, if any.
type startPlan struct {
	run      SkillRun
	inputs   []byte
	finishes bool
	finishAt time.Time
	status   string
}

func checkName(field, v string, limit int) error {
	if len(v) > limit {
		return fmt.Errorf("%w: %s is %d bytes; the limit is %d", ErrInvalid, field, len(v), limit)
	}
	return nil
}

func checkRunID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: run id is empty", ErrInvalid)
	}
	return checkName("run id", id, MaxRunIDBytes)
}

// planStart applies the shared StartRun rules (see Storage.StartRun).
func planStart(run *SkillRun, now func() time.Time) (startPlan, error) {
	if run == nil {
		return startPlan{}, fmt.Errorf("%w: run is nil", ErrInvalid)
	}
	p := startPlan{run: *run}
	if err := checkRunID(run.ID); err != nil {
		return p, err
	}
	for _, f := range []struct{ name, v string }{
		{"skill id", run.SkillID}, {"caller id", run.CallerID}, {"channel id", run.ChannelID},
		{"parent run id", run.ParentRunID}, {"status", run.Status},
	} {
		if err := checkName(f.name, f.v, MaxNameBytes); err != nil {
			return p, err
		}
	}
	inputs := run.Inputs
	if inputs == nil {
		inputs = map[string]any{}
	}
	raw, err := json.Marshal(inputs)
	if err != nil {
		return p, fmt.Errorf("%w: inputs: %v", ErrInvalid, err)
	}
	p.inputs = raw
	if p.run.StartedAt.IsZero() {
		p.run.StartedAt = now()
	}
	p.run.StartedAt = p.run.StartedAt.Truncate(time.Microsecond)
	final := run.Status != "" && run.Status != StatusRunning
	if final || run.FinishedAt != nil {
		p.finishes = true
		p.status = run.Status
		if !final {
			p.status = StatusOK
		}
		p.finishAt = p.run.StartedAt
		if run.FinishedAt != nil {
			p.finishAt = run.FinishedAt.Truncate(time.Microsecond)
		}
	}
	return p, nil
}

// checkFinish applies the shared FinishRun rules; "" means "ok".
func checkFinish(runID, status string) (string, error) {
	if err := checkRunID(runID); err != nil {
		return "", err
	}
	if status == "" {
		status = StatusOK
	}
	if status == StatusRunning {
		return "", fmt.Errorf("%w: a finish status cannot be %q", ErrInvalid, StatusRunning)
	}
	return status, checkName("status", status, MaxNameBytes)
}

// checkLog applies the shared AppendLog rules; a nil payload is null.
func checkLog(l *SkillRunLog) (json.RawMessage, error) {
	if l == nil {
		return nil, fmt.Errorf("%w: log is nil", ErrInvalid)
	}
	if err := checkRunID(l.RunID); err != nil {
		return nil, err
	}
	if l.Seq < 0 {
		return nil, fmt.Errorf("%w: seq %d is negative", ErrInvalid, l.Seq)
	}
	if err := checkName("event type", l.EventType, MaxNameBytes); err != nil {
		return nil, err
	}
	if len(l.Payload) == 0 {
		return json.RawMessage("null"), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, l.Payload); err != nil {
		return nil, fmt.Errorf("%w: payload is not valid JSON: %v", ErrInvalid, err)
	}
	return buf.Bytes(), nil
}

func orAll(limit int) int {
	if limit <= 0 {
		return 0
	}
	return limit
}
