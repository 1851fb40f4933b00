package auditlog

import "fmt"

// Code is the status of a failed call, as the C ABI reports it. Each code
// is also a sentinel error: errors.Is(err, auditlog.ErrNotFound) holds for
// every *Error with that code.
type Code int32

// The codes of bindings/c/include/auditlog.h (AUDITLOG_STATUS_*).
const (
	ErrInvalidArgument Code = 1
	ErrNotFound        Code = 2
	ErrIO              Code = 3
	ErrLocked          Code = 4
	ErrCorrupt         Code = 5
	ErrQueueFull       Code = 6
	ErrDropped         Code = 7
	ErrClosed          Code = 8
	ErrWriterFailed    Code = 9
	ErrTimeout         Code = 10
	ErrUnsupported     Code = 11
	ErrPanic           Code = 12
	ErrInternal        Code = 13
	// A write failed and was cut back; the log carries on. The events of
	// that call were not stored: retrying is safe.
	ErrWriteRolledBack Code = 14
)

var codeNames = map[Code]string{
	ErrInvalidArgument: "invalid argument",
	ErrNotFound:        "not found",
	ErrIO:              "i/o error",
	ErrLocked:          "locked by another writer",
	ErrCorrupt:         "corrupt data",
	ErrQueueFull:       "queue full",
	ErrDropped:         "dropped",
	ErrClosed:          "closed",
	ErrWriterFailed:    "writer failed",
	ErrTimeout:         "timeout",
	ErrUnsupported:     "unsupported format version",
	ErrPanic:           "internal panic",
	ErrInternal:        "internal error",
	ErrWriteRolledBack: "write rolled back (retry)",
}

func (c Code) Error() string {
	if n, ok := codeNames[c]; ok {
		return "auditlog: " + n
	}
	return fmt.Sprintf("auditlog: status %d", int32(c))
}

// Error is a failed call: which operation, its code, and the library's
// message (which names the field, file or offset at fault).
type Error struct {
	Op      string
	Code    Code
	Message string
}

func (e *Error) Error() string { return "auditlog " + e.Op + ": " + e.Message }

// Is makes errors.Is(err, auditlog.ErrNotFound) (or any other Code) work.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}
