/* SPDX-License-Identifier: MIT */
/*
 * One event, one line, in the shape Postfix users read, to the journal with
 * fields to search by (OUTBOX_ID=, OUTBOX_RCPT=, OUTBOX_STATUS=); to stderr
 * when there is no journal. Callers never pass a secret here.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "log.h"

static bool to_stderr = true;

/* The outbox command says what matters itself; its deliveries log to the journal only. */
void
log_stderr(bool on)
{
	to_stderr = on;
}

void
log_event(int priority, const char *id, const char *rcpt, const char *status, const char *fmt, ...)
{
	char *msg = NULL, *fields[6] = { 0 };
	struct iovec iov[6];
	va_list ap;
	int n = 0, i;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	if (asprintf(&fields[n++], "MESSAGE=%s", msg) < 0 ||
	    asprintf(&fields[n++], "PRIORITY=%d", priority) < 0 ||
	    asprintf(&fields[n++], "SYSLOG_IDENTIFIER=outboxd") < 0 ||
	    (id && asprintf(&fields[n++], "OUTBOX_ID=%s", id) < 0) ||
	    (rcpt && asprintf(&fields[n++], "OUTBOX_RCPT=%s", rcpt) < 0) ||
	    (status && asprintf(&fields[n++], "OUTBOX_STATUS=%s", status) < 0)) {
		n--;
		fields[n] = NULL;
	}
	for (i = 0; i < n; i++) {
		iov[i].iov_base = fields[i];
		iov[i].iov_len = strlen(fields[i]);
	}
	/* sd_journal_sendv() says nothing when there is no journal: look first. */
	if ((access("/run/systemd/journal/socket", W_OK) < 0 || sd_journal_sendv(iov, n) < 0) && to_stderr)
		fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg);
	for (i = 0; i < n; i++)
		free(fields[i]);
	free(msg);
}
