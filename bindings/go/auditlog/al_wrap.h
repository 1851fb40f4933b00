/* Wrappers that fetch the thread-local error message in the same C call
 * (see cgo.go). Included by every file of the package that calls C. */
#ifndef AL_WRAP_H
#define AL_WRAP_H
#include <stdlib.h>
#include <string.h>
#include "auditlog.h"

// The error message is thread-local on the C side, and a goroutine may
// move between threads between two cgo calls: each wrapper below fetches
// the message in the same C call that failed (one cgo call runs on one
// thread), as a malloc'd copy the Go side frees.
static inline char *al_err(int32_t st) {
	if (st == 0) return NULL;
	const char *m = auditlog_last_error();
	return m ? strdup(m) : strdup("unknown error");
}

static inline int32_t al_open(const char *dir, const char *opts, AuditlogStore **out, char **err) {
	int32_t st = auditlog_open(dir, opts, out);
	*err = al_err(st);
	return st;
}

static inline int32_t al_connect(const char *path, const char *opts, AuditlogStore **out, char **err) {
	int32_t st = auditlog_connect(path, opts, out);
	*err = al_err(st);
	return st;
}

static inline int32_t al_close(AuditlogStore *s, char **err) {
	int32_t st = auditlog_close(s);
	*err = al_err(st);
	return st;
}

static inline int32_t al_append(const AuditlogStore *s, const uint8_t *json, size_t len, uint32_t flags,
                         AuditlogReceipt **out, char **err) {
	int32_t st = auditlog_append(s, json, len, flags, out);
	*err = al_err(st);
	return st;
}

// Append and wait for durability in one C call (the cheap path when the
// caller's context cannot be cancelled).
static inline int32_t al_append_wait(const AuditlogStore *s, const uint8_t *json, size_t len, uint32_t flags,
                              uint64_t *first, uint64_t *last, char **err) {
	AuditlogReceipt *r = NULL;
	int32_t st = auditlog_append(s, json, len, flags, &r);
	if (st == 0) {
		st = auditlog_receipt_wait(r, -1, first, last);
		auditlog_receipt_free(r);
	}
	*err = al_err(st);
	return st;
}

static inline int32_t al_wait(const AuditlogReceipt *r, int64_t ms, uint64_t *first, uint64_t *last, char **err) {
	int32_t st = auditlog_receipt_wait(r, ms, first, last);
	*err = al_err(st);
	return st;
}

static inline int32_t al_query(const AuditlogStore *s, const uint8_t *req, size_t len, char **out, size_t *out_len, char **err) {
	int32_t st = auditlog_query(s, req, len, out, out_len);
	*err = al_err(st);
	return st;
}

static inline int32_t al_purge(const AuditlogStore *s, int64_t cutoff, char **out, size_t *out_len, char **err) {
	int32_t st = auditlog_purge_older_than(s, cutoff, out, out_len);
	*err = al_err(st);
	return st;
}

static inline int32_t al_flush(const AuditlogStore *s, uint64_t *next, char **err) {
	int32_t st = auditlog_flush(s, next);
	*err = al_err(st);
	return st;
}
#endif
