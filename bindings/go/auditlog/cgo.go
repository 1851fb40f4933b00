package auditlog

// Linking: statically, against libauditlog_c.a built by cargo
// (`cargo build --release -p auditlog-c`), found in ../../../target/release
// by default. Set CGO_LDFLAGS to point elsewhere (bindings/go/test.sh does
// when CARGO_TARGET_DIR is set). The header comes from bindings/c/include.

/*
#cgo CFLAGS: -I${SRCDIR}/../../c/include
#cgo LDFLAGS: -L${SRCDIR}/../../../target/release -l:libauditlog_c.a -ldl -lpthread -lm
#include "al_wrap.h"
*/
import "C"

import (
	"unsafe"
)

// cStatus turns a status and its C message into a Go error (nil for OK),
// freeing the message.
func cStatus(op string, st C.int32_t, msg *C.char) error {
	if msg != nil {
		defer C.free(unsafe.Pointer(msg))
	}
	if st == 0 {
		return nil
	}
	text := "unknown error"
	if msg != nil {
		text = C.GoString(msg)
	}
	return &Error{Op: op, Code: Code(st), Message: text}
}

// bytesPtr points C at b for the duration of one call (cgo allows passing
// Go memory that holds no Go pointers).
func bytesPtr(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// takeString copies a buffer the library handed out and releases it.
func takeString(p *C.char, n C.size_t) []byte {
	if p == nil {
		return nil
	}
	defer C.auditlog_free(p)
	return C.GoBytes(unsafe.Pointer(p), C.int(n))
}
