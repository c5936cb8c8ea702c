/* SPDX-License-Identifier: MIT */
/*
 * The app password (or token), as outboxd gets it: from password-command,
 * or from the Secret Service through outbox-desktop, so that libsecret and
 * GIO stay out of outboxd. Either is a child whose first line of output is
 * the secret; it travels over a pipe into one buffer of ours, is copied
 * into locked memory and the buffer is wiped. The secret never enters argv,
 * the environment, a file or a log.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "helper.h"
#include "paths.h"
#include "secret.h"

#define COMMAND_TIMEOUT_MS 30000

const char *
secret_status_text(enum secret_status s)
{
	switch (s) {
	case SECRET_FOUND:
		return "unlocked";
	case SECRET_MISSING:
		return "no password stored";
	case SECRET_LOCKED:
		return "keyring locked";
	default:
		return "no keyring";
	}
}

void
secret_wipe(struct secret *s)
{
	if (s->value) {
		explicit_bzero(s->value, s->len + 1);
		munlock(s->value, s->len + 1);
		free(s->value);
	}
	s->value = NULL;
	s->len = 0;
}

int
secret_set(struct secret *s, const char *v, size_t len)
{
	s->value = calloc(1, len + 1);
	if (!s->value)
		return -ENOMEM;
	(void)mlock(s->value, len + 1);		/* keep it out of swap where we may */
	memcpy(s->value, v, len);
	s->value[len] = '\0';
	s->len = len;
	return 0;
}

/*
 * Runs argv for the secret on its first line of output; what names it in
 * errors. From outbox-desktop (from_helper), a failure's exit status says
 * which one (helper.h) and its line says why; any other program's failure
 * is only that.
 */
static enum secret_status
secret_run(char *const argv[], const char *what, bool from_helper, struct secret *out, char *err,
           size_t errlen)
{
	char buf[SECRET_MAX + 1];
	enum secret_status result = SECRET_UNAVAILABLE;
	size_t len;
	int k, status, code;

	memset(out, 0, sizeof *out);
	k = helper_run(argv, COMMAND_TIMEOUT_MS, buf, sizeof buf - 1, &len, &status);
	buf[len] = '\0';
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (k == -ETIMEDOUT) {
		snprintf(err, errlen, "%s: timed out", what);
	} else if (k < 0) {
		snprintf(err, errlen, "%s: cannot run %s: %s", what, argv[0], strerror(-k));
	} else if (code == 0 && len >= SECRET_MAX) {
		/* Cut short, it would fail the login and hold the queue for a wrong password. */
		snprintf(err, errlen, "%s: the first line of its output is longer than %d bytes", what,
		         SECRET_MAX - 1);
	} else if (code == 0 && len > 0) {
		if (secret_set(out, buf, len) == 0)
			result = SECRET_FOUND;
		else
			snprintf(err, errlen, "%s: %s", what, strerror(ENOMEM));
	} else if (from_helper && len > 0 &&
	           (code == HELPER_MISSING || code == HELPER_LOCKED || code == HELPER_UNAVAILABLE)) {
		snprintf(err, errlen, "%s", buf);
		result = code == HELPER_MISSING ? SECRET_MISSING :
		         code == HELPER_LOCKED ? SECRET_LOCKED : SECRET_UNAVAILABLE;
	} else if (code < 0) {
		snprintf(err, errlen, "%s failed (killed by signal %d)", what, WTERMSIG(status));
	} else {
		snprintf(err, errlen, "%s failed (%s)", what, code ? "non-zero exit status" : "no output");
	}
	explicit_bzero(buf, sizeof buf);
	return result;
}

/* password-command or token-command (what names it in errors): its first line of output, through /bin/sh. */
enum secret_status
secret_command(const char *cmd, const char *what, struct secret *out, char *err, size_t errlen)
{
	char *argv[] = { "/bin/sh", "-c", (char *)cmd, NULL };

	return secret_run(argv, what, false, out, err, errlen);
}

/* The account's password: password-command if set, else the keyring through outbox-desktop. */
enum secret_status
secret_lookup(const struct config *c, struct secret *out, char *err, size_t errlen)
{
	char path[PATH_MAX];
	char *argv[] = { path, "password", c->address, c->host, NULL };
	int k;

	if (c->password_command)
		return secret_command(c->password_command, "password-command", out, err, errlen);
	memset(out, 0, sizeof *out);
	k = paths_libexec(HELPER_NAME, path, sizeof path);
	if (k < 0) {
		snprintf(err, errlen, HELPER_NAME ": %s", strerror(-k));
		return SECRET_UNAVAILABLE;
	}
	return secret_run(argv, HELPER_NAME, true, out, err, errlen);
}
