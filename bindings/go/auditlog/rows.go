package auditlog

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"time"
)

// The binary rows of an answer made of runs (the header's auditlog_query,
// "encoding":"rows"): several times cheaper to decode than JSON.

var errShortRows = errors.New("auditlog: rows answer cut short")

type rowReader struct {
	b   []byte
	err error
}

func (r *rowReader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.err = errShortRows
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *rowReader) u8() byte {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *rowReader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *rowReader) u64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *rowReader) str() string { return string(r.take(int(r.u32()))) }

func decodeRuns(b []byte) ([]Run, error) {
	r := &rowReader{b: b}
	n := int(r.u32())
	if n > len(b)/4 {
		return nil, errShortRows
	}
	out := make([]Run, n)
	for i := range out {
		run := &out[i]
		run.ID, run.SkillID, run.CallerID, run.ChannelID, run.ParentRunID = r.str(), r.str(), r.str(), r.str(), r.str()
		run.Inputs = json.RawMessage(r.take(int(r.u32())))
		run.Status, run.Output, run.Error = r.str(), r.str(), r.str()
		run.StartedAt = time.UnixMicro(int64(r.u64())).UTC()
		if fin := int64(r.u64()); fin != math.MinInt64 {
			t := time.UnixMicro(fin).UTC()
			run.FinishedAt = &t
		}
		run.DryRun = r.u8() == 1
		run.ToolCalls, run.InputTokens = int64(r.u64()), int64(r.u64())
		run.OutputTokens, run.ThinkingTokens = int64(r.u64()), int64(r.u64())
		run.RuntimeSeconds = math.Float64frombits(r.u64())
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("auditlog: trailing bytes after the rows")
	}
	return out, r.err
}
