/* SPDX-License-Identifier: MIT */
/*
 * A desktop notification (org.freedesktop.Notifications) for mail that
 * failed for good. Without a session bus or a notification server it does
 * nothing: the journal and the bounce report still tell.
 */
#include <gio/gio.h>

#include "notify.h"

void
notify_desktop(const char *summary, const char *body)
{
	g_autoptr(GDBusConnection) bus = NULL;
	g_autoptr(GVariant) reply = NULL;
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
	                                                  summary, body, &actions, &hints, -1),
	                                    G_VARIANT_TYPE("(u)"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
	                                    2000, NULL, NULL);
}
