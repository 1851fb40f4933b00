/* A small C program over the auditlog C ABI: open a log, record a run
 * (start, one tool call, finish), wait until it is durable, query it, and
 * close. Built and run by bindings/c/run-example.sh (and so by CI):
 *
 *   cc examples/basic.c -Iinclude -L"$TARGET/release" -l:libauditlog_c.a \
 *      -lpthread -ldl -lm -o basic && ./basic /tmp/some-folder
 *
 * With `--connect SOCKET` it does the same through `auditlog serve`
 * (`auditlog --dir DIR serve`, socket DIR/auditlog.sock): the one line
 * that differs is auditlog_connect in place of auditlog_open.
 */
#include <stdio.h>
#include <string.h>

#include "auditlog.h"

/* Print the failing call with the thread's last error, and give up. */
static int fail(const char *what, AuditlogStatus st) {
    const char *msg = auditlog_last_error();
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)st, msg ? msg : "?");
    return 1;
}

int main(int argc, char **argv) {
    int served = argc == 3 && strcmp(argv[1], "--connect") == 0;
    if (argc != 2 && !served) {
        fprintf(stderr, "usage: %s LOG_FOLDER | --connect SOCKET\n", argv[0]);
        return 2;
    }
    AuditlogStore *log = NULL;
    AuditlogStatus st =
        served ? auditlog_connect(argv[2], "{\"retry_for_ms\":10000}", &log)
               : auditlog_open(argv[1], "{\"durability\":\"every_batch\"}", &log);
    if (st != AUDITLOG_STATUS_OK) return fail(served ? "auditlog_connect" : "auditlog_open", st);

    /* One JSONL batch: consecutive LSNs, all or nothing. */
    const char *events =
        "{\"kind\":\"run_started\",\"run_id\":\"c-1\",\"ts\":1763884800000000,"
        "\"skill_id\":\"web.search\",\"caller_id\":\"u-42\",\"inputs\":{\"q\":\"x\"}}\n"
        "{\"kind\":\"run_log\",\"run_id\":\"c-1\",\"ts\":1763884800000100,\"seq\":0,"
        "\"event_type\":\"tool_call\",\"payload\":{\"tool\":\"http.get\",\"status\":\"ok\"}}\n"
        "{\"kind\":\"run_finished\",\"run_id\":\"c-1\",\"ts\":1763884801500000,"
        "\"status\":\"ok\",\"tool_calls\":1,\"input_tokens\":120}\n";
    AuditlogReceipt *receipt = NULL;
    st = auditlog_append(log, (const uint8_t *)events, strlen(events), 0, &receipt);
    if (st != AUDITLOG_STATUS_OK) return fail("auditlog_append", st);
    uint64_t first = 0, last = 0;
    st = auditlog_receipt_wait(receipt, -1, &first, &last);
    auditlog_receipt_free(receipt);
    if (st != AUDITLOG_STATUS_OK) return fail("auditlog_receipt_wait", st);
    printf("durable: lsn %llu..%llu\n", (unsigned long long)first, (unsigned long long)last);

    /* A finish for a run that was never started: refused, nothing written. */
    const char *orphan = "{\"kind\":\"run_finished\",\"run_id\":\"nope\",\"ts\":1,\"status\":\"ok\"}";
    st = auditlog_append(log, (const uint8_t *)orphan, strlen(orphan),
                         AUDITLOG_APPEND_REQUIRE_RUN, NULL);
    if (st != AUDITLOG_STATUS_NOT_FOUND) return fail("the orphan finish", st);
    printf("refused as expected: %s\n", auditlog_last_error());

    const char *requests[] = {
        "{\"op\":\"get_run\",\"id\":\"c-1\"}",
        "{\"op\":\"logs\",\"id\":\"c-1\"}",
        "{\"op\":\"count\",\"filter\":{\"skill\":\"web.search\"}}",
        "{\"op\":\"last_run\",\"skills\":[\"web.search\",\"other\"]}",
    };
    for (size_t i = 0; i < sizeof requests / sizeof *requests; i++) {
        char *answer = NULL;
        size_t len = 0;
        st = auditlog_query(log, (const uint8_t *)requests[i], strlen(requests[i]), &answer, &len);
        if (st != AUDITLOG_STATUS_OK) return fail("auditlog_query", st);
        printf("%s -> %s\n", requests[i], answer);
        auditlog_free(answer); /* every buffer out goes back through auditlog_free */
    }

    st = auditlog_close(log);
    if (st != AUDITLOG_STATUS_OK) return fail("auditlog_close", st);
    printf("ok\n");
    return 0;
}
