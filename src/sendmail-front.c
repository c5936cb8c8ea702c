/* SPDX-License-Identifier: MIT */
/*
 * The bindir outbox-sendmail's half: what needs a configuration file read
 * is done by outbox-sendmail-config, run in our place (sendmail.h).
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "paths.h"
#include "sendmail.h"

static _Noreturn void
hand_over(void)
{
	char path[PATH_MAX];
	int r;

	r = paths_libexec(SENDMAIL_CONFIG_NAME, path, sizeof path);
	if (r == 0) {
		execv(path, sendmail_argv);
		r = -errno;
	}
	die(EX_TEMPFAIL, "cannot run %s: %s", r == -ENAMETOOLONG ? SENDMAIL_CONFIG_NAME : path,
	    strerror(-r));
}

void
sendmail_system_recipient(void)
{
	hand_over();
}

void
sendmail_list(void)
{
	hand_over();
}
