/* SPDX-License-Identifier: MIT */
/*
 * outbox-desktop: what outboxd needs from the user's desktop session, in a
 * process of its own, so that outboxd maps neither GIO nor libsecret and
 * never speaks D-Bus. outboxd runs it as a child (same environment, same
 * sandbox) and reads its standard output through a pipe:
 *
 *   outbox-desktop password ADDRESS HOST
 *	The password from the Secret Service (keyring.c: never unlocks, never
 *	prompts) and "\n", exit 0; else one line saying why, and the exit
 *	status of helper.h that tells missing, locked and unavailable apart.
 *   outbox-desktop notify SUMMARY BODY
 *	A desktop notification (org.freedesktop.Notifications); exit 0
 *	whether or not a notification server took it.
 *
 * Anything else: one line on standard error, exit 64.
 */
#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fs.h"
#include "helper.h"
#include "keyring.h"

static int
password(const char *address, const char *host)
{
	struct secret s;
	enum secret_status ss;
	char err[600] = "";
	size_t i;

	ss = keyring_lookup(address, host, &s, err, sizeof err);
	if (ss == SECRET_FOUND) {
		int k = fs_write_all(STDOUT_FILENO, s.value, s.len);

		if (k == 0)
			k = fs_write_all(STDOUT_FILENO, "\n", 1);
		secret_wipe(&s);
		return k == 0 ? HELPER_FOUND : EXIT_FAILURE;
	}
	/* One line: a D-Bus error's text is the Secret Service's to choose. */
	for (i = 0; err[i]; i++)
		if (err[i] == '\n' || err[i] == '\r')
			err[i] = ' ';
	printf("%s\n", err);
	switch (ss) {
	case SECRET_MISSING:
		return HELPER_MISSING;
	case SECRET_LOCKED:
		return HELPER_LOCKED;
	default:
		return HELPER_UNAVAILABLE;
	}
}

/* Without a session bus or a notification server, nothing happens. */
static void
notify(const char *summary, const char *body)
{
	g_autoptr(GDBusConnection) bus = NULL;
	g_autoptr(GVariant) reply = NULL;
	/* D-Bus strings are UTF-8; the body quotes a server's reply, which need not be. */
	g_autofree char *s = g_utf8_make_valid(summary, -1), *b = g_utf8_make_valid(body, -1);
	GVariantBuilder actions, hints;

	bus = g_bus_get_sync(G_BUS_TYPE_SESSION, NULL, NULL);
	if (!bus)
		return;
	g_variant_builder_init(&actions, G_VARIANT_TYPE("as"));
	g_variant_builder_init(&hints, G_VARIANT_TYPE("a{sv}"));
	g_variant_builder_add(&hints, "{sv}", "urgency", g_variant_new_byte(2));
	g_variant_builder_add(&hints, "{sv}", "desktop-entry", g_variant_new_string("outbox"));
	reply = g_dbus_connection_call_sync(bus, "org.freedesktop.Notifications",
	                                    "/org/freedesktop/Notifications",
	                                    "org.freedesktop.Notifications", "Notify",
	                                    g_variant_new("(susssasa{sv}i)", "outbox", 0u, "mail-send",
	                                                  s, b, &actions, &hints, -1),
	                                    G_VARIANT_TYPE("(u)"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
	                                    2000, NULL, NULL);
}

int
main(int argc, char **argv)
{
	struct rlimit nocore = { 0, 0 };

	/* The password passes through this process: no core dumps, no ptrace by the user's other programs. */
	(void)prctl(PR_SET_DUMPABLE, 0);
	(void)setrlimit(RLIMIT_CORE, &nocore);

	if (argc == 4 && strcmp(argv[1], "password") == 0)
		return password(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "notify") == 0) {
		notify(argv[2], argv[3]);
		return EXIT_SUCCESS;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		puts(HELPER_NAME " " VERSION);
		return EXIT_SUCCESS;
	}
	fputs(HELPER_NAME ": usage: " HELPER_NAME " password ADDRESS HOST | notify SUMMARY BODY "
	      "(run by outboxd)\n", stderr);
	return HELPER_USAGE;
}
