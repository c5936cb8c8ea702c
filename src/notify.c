/* SPDX-License-Identifier: MIT */
/*
 * A desktop notification for mail that failed for good, sent by
 * outbox-desktop: outboxd waits for it (it is quick: one D-Bus call with a
 * short timeout) but never long, and a helper that cannot be run or finds
 * no session bus changes nothing: the journal and the bounce report still
 * tell.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "helper.h"
#include "log.h"
#include "notify.h"
#include "paths.h"

#define NOTIFY_TIMEOUT_MS 5000	/* outbox-desktop's D-Bus call gives up after 2 s */

void
notify_desktop(const char *summary, const char *body)
{
	char path[PATH_MAX];
	char *argv[] = { path, "notify", (char *)summary, (char *)body, NULL };
	size_t len;
	int k, status;

	k = paths_libexec(HELPER_NAME, path, sizeof path);
	if (k == 0)
		k = helper_run(argv, NOTIFY_TIMEOUT_MS, NULL, 0, &len, &status);
	if (k == -ETIMEDOUT)
		log_event(LOG_DEBUG, NULL, NULL, NULL, "no desktop notification: %s did not finish in %d s",
		          HELPER_NAME, NOTIFY_TIMEOUT_MS / 1000);
	else if (k < 0)
		log_event(LOG_DEBUG, NULL, NULL, NULL, "no desktop notification: cannot run %s: %s", path,
		          strerror(-k));
}
