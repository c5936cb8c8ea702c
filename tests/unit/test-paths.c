/* SPDX-License-Identifier: MIT */
/* paths.c: the XDG base directory rules and where outbox's own programs are. */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"
#include "test.h"

static void
check_path(int (*fn)(char **), const char *want)
{
	char *p = NULL;

	CHECK_INT(fn(&p), 0);
	CHECK_STR(p, want);
	free(p);
}

static void
test_xdg(void)
{
	struct passwd *pw = getpwuid(getuid());
	char want[PATH_MAX];

	CASE("XDG_CONFIG_HOME and XDG_DATA_HOME");
	setenv("XDG_CONFIG_HOME", "/x/config", 1);
	setenv("XDG_DATA_HOME", "/x/data", 1);
	setenv("HOME", "/home/u", 1);
	check_path(paths_config, "/x/config/outbox/config");
	check_path(paths_queue, "/x/data/outbox");

	CASE("a relative XDG_CONFIG_HOME or XDG_DATA_HOME is ignored");
	setenv("XDG_CONFIG_HOME", "cfg", 1);
	setenv("XDG_DATA_HOME", "rel/data", 1);
	check_path(paths_config, "/home/u/.config/outbox/config");
	check_path(paths_queue, "/home/u/.local/share/outbox");

	CASE("HOME");
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("XDG_DATA_HOME");
	check_path(paths_config, "/home/u/.config/outbox/config");
	check_path(paths_queue, "/home/u/.local/share/outbox");

	/* cron and some init scripts run with HOME unset. */
	if (pw && pw->pw_dir && pw->pw_dir[0] == '/') {
		CASE("no HOME: the password database's home");
		unsetenv("HOME");
		snprintf(want, sizeof want, "%s/.local/share/outbox", pw->pw_dir);
		check_path(paths_queue, want);
		CASE("a relative HOME is ignored");
		setenv("HOME", "home/u", 1);
		snprintf(want, sizeof want, "%s/.config/outbox/config", pw->pw_dir);
		check_path(paths_config, want);
	}
	test_case_name[0] = '\0';
}

static void
test_libexec(void)
{
	char self[PATH_MAX], want[PATH_MAX], buf[PATH_MAX];
	ssize_t n;

	CASE("libexec: a program next to the running one is preferred");
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	CHECK(n > 0);
	self[n > 0 ? n : 0] = '\0';
	CHECK_INT(paths_libexec(strrchr(self, '/') + 1, buf, sizeof buf), 0);
	CHECK_STR(buf, self);

	CASE("libexec: else LIBEXECDIR");
	CHECK_INT(paths_libexec("no-such-program", buf, sizeof buf), 0);
	snprintf(want, sizeof want, "%s/no-such-program", LIBEXECDIR);
	CHECK_STR(buf, want);

	CASE("libexec: a name too long for the buffer");
	CHECK_INT(paths_libexec("no-such-program", buf, 8), -ENAMETOOLONG);
	test_case_name[0] = '\0';
}

int
main(void)
{
	test_xdg();
	test_libexec();
	return test_exit("test-paths");
}
