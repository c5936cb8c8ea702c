/* SPDX-License-Identifier: MIT */
/*
 * outbox-sendmail-config's half (sendmail.h): root's [system] deliver-to
 * and mailq, which read configuration files through GLib's key-file reader.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "paths.h"
#include "queue.h"
#include "sendmail.h"
#include "view.h"

#define SYSTEM_CONFIG SYSCONFDIR "/outbox/config"

/*
 * Root without a configuration of its own: the queue of the user named in
 * /etc/outbox/config [system] deliver-to. Root becomes that user before
 * touching anything in their home, so no path a user controls is ever
 * followed with root's rights.
 */
void
sendmail_system_recipient(void)
{
	char *user = NULL, *error = NULL;
	struct passwd *pw;
	char runtime[64];
	int r;

	r = config_load_system(SYSTEM_CONFIG, &user, &error);
	if (r == -ENOENT || (r == 0 && !user))
		die(EX_TEMPFAIL, "root has no outbox queue: set [system] deliver-to in %s", SYSTEM_CONFIG);
	if (r < 0)
		die(EX_CONFIG, "%s", error);
	pw = getpwnam(user);
	if (!pw || pw->pw_uid == 0)
		die(EX_CONFIG, "%s: [system] deliver-to: no such user: %s", SYSTEM_CONFIG, user);
	if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
		die(EX_OSERR, "cannot become %s: %s", user, strerror(errno));
	/* The user's own paths, not root's environment. */
	setenv("HOME", pw->pw_dir, 1);
	setenv("USER", pw->pw_name, 1);
	setenv("LOGNAME", pw->pw_name, 1);
	unsetenv("XDG_DATA_HOME");
	unsetenv("XDG_CONFIG_HOME");
	snprintf(runtime, sizeof runtime, "/run/user/%u", (unsigned)pw->pw_uid);
	setenv("XDG_RUNTIME_DIR", runtime, 1);
	free(user);
}

void
sendmail_list(void)
{
	struct config *c = NULL;
	struct localnames ln;
	struct view v;
	char *cfg, *error = NULL;
	struct queue *q;
	int r;

	if (paths_config(&cfg) < 0)
		die(EX_TEMPFAIL, "cannot find the home directory");
	r = config_load(cfg, &c, &error);
	if (r < 0 && r != -ENOENT)
		die(EX_CONFIG, "%s", error);
	free(cfg);
	q = open_queue(false);
	if (!q) {
		puts("Mail queue is empty");
		config_free(c);
		return;
	}
	localnames_init(&ln);
	r = view_load(q, c, &ln, &v);
	if (r < 0)
		die(EX_TEMPFAIL, "queue: %s", strerror(-r));
	view_print_mailq(&v, stdout);
	view_clear(&v);
	localnames_clear(&ln);
	queue_free(q);
	config_free(c);
}
