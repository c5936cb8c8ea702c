/* SPDX-License-Identifier: MIT */
/*
 * Where outbox's files are: the user's configuration and queue, by the XDG
 * base directory rules, and its own programs. libc only: sendmail's
 * enqueue path needs these and nothing more.
 */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"

/*
 * $VAR/SUB, else HOME/FALLBACK/SUB. XDG: a relative path is invalid and must
 * be ignored; so is a relative $HOME, and then the password database says.
 */
static int
xdg_path(const char *var, const char *fallback, const char *sub, char **out)
{
	const char *dir = getenv(var);
	const char *home;

	if (dir && dir[0] == '/')
		return asprintf(out, "%s/%s", dir, sub) < 0 ? -ENOMEM : 0;
	home = getenv("HOME");
	if (!home || home[0] != '/') {
		struct passwd *pw = getpwuid(getuid());

		if (!pw || !pw->pw_dir || pw->pw_dir[0] != '/')
			return -ENOENT;
		home = pw->pw_dir;
	}
	return asprintf(out, "%s/%s/%s", home, fallback, sub) < 0 ? -ENOMEM : 0;
}

int
paths_config(char **out)
{
	return xdg_path("XDG_CONFIG_HOME", ".config", "outbox/config", out);
}

int
paths_queue(char **out)
{
	return xdg_path("XDG_DATA_HOME", ".local/share", "outbox", out);
}

/*
 * Next to our own executable when it is there (outboxd in libexecdir, or
 * any program of a build tree), else in LIBEXECDIR (programs installed in
 * bindir).
 */
int
paths_libexec(const char *name, char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash && (size_t)snprintf(buf, len, "%.*s/%s", (int)(slash - self), self, name) < len &&
		    access(buf, X_OK) == 0)
			return 0;
	}
	if ((size_t)snprintf(buf, len, "%s/%s", LIBEXECDIR, name) >= len)
		return -ENAMETOOLONG;
	return 0;
}
