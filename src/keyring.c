/* SPDX-License-Identifier: MIT */
/*
 * The app password in the Secret Service, through libsecret: stored with
 * (service=outbox, address, host) by outbox login, and looked up by those
 * attributes, else by the ones msmtp stores (host, service=smtp, user), so
 * an msmtp user's keyring entry works. A lookup never unlocks and never
 * prompts: a locked item is reported as locked and the queue waits.
 *
 * Linked by outbox-desktop (outboxd's helper) and the outbox command; never
 * by outboxd, which runs outbox-desktop instead.
 */
#include <errno.h>
#include <libsecret/secret.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "keyring.h"

static const SecretSchema outbox_schema = {
	"org.outbox.Password", SECRET_SCHEMA_DONT_MATCH_NAME,
	{
		{ "service", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ "address", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ "host", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ NULL, 0 },
	},
};

/* Searches without unlocking; *locked tells whether a locked match exists. */
static int
search(SecretService *svc, GHashTable *attrs, struct secret *out, bool *locked, GError **error)
{
	GList *items, *l;
	int found = 0;

	items = secret_service_search_sync(svc, NULL, attrs, SECRET_SEARCH_ALL, NULL, error);
	for (l = items; l && !found; l = l->next) {
		SecretItem *item = l->data;
		SecretValue *value;
		const char *v;
		gsize len;

		if (secret_item_get_locked(item)) {
			*locked = true;
			continue;
		}
		if (!secret_item_load_secret_sync(item, NULL, NULL))
			continue;
		value = secret_item_get_secret(item);
		if (!value)
			continue;
		v = secret_value_get(value, &len);
		if (v && len > 0 && len < SECRET_MAX && secret_set(out, v, len) == 0)
			found = 1;
		secret_value_unref(value);
	}
	g_list_free_full(items, g_object_unref);
	return found;
}

enum secret_status
keyring_lookup(const char *address, const char *host, struct secret *out, char *err, size_t errlen)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GHashTable) ours = NULL, msmtp = NULL;
	SecretService *svc;
	bool locked = false;
	int found;

	memset(out, 0, sizeof *out);
	/*
	 * A proxy of our own each time, not libsecret's shared one: that one
	 * stays bound to the keyring daemon that answered first, and a program
	 * that keeps running would never see a restarted keyring.
	 */
	svc = secret_service_open_sync(SECRET_TYPE_SERVICE, NULL, SECRET_SERVICE_NONE, NULL, &error);
	if (!svc) {
		snprintf(err, errlen, "no Secret Service: %s", error ? error->message : "unknown error");
		return SECRET_UNAVAILABLE;
	}
	ours = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_insert(ours, "service", "outbox");
	g_hash_table_insert(ours, "address", (char *)address);
	g_hash_table_insert(ours, "host", (char *)host);
	found = search(svc, ours, out, &locked, &error);
	if (!found && !error) {
		msmtp = g_hash_table_new(g_str_hash, g_str_equal);
		g_hash_table_insert(msmtp, "host", (char *)host);
		g_hash_table_insert(msmtp, "service", "smtp");
		g_hash_table_insert(msmtp, "user", (char *)address);
		found = search(svc, msmtp, out, &locked, &error);
	}
	g_object_unref(svc);
	if (found)
		return SECRET_FOUND;
	if (error) {
		snprintf(err, errlen, "Secret Service: %s", error->message);
		return SECRET_UNAVAILABLE;
	}
	if (locked) {
		snprintf(err, errlen, "the keyring holding the password for %s is locked", address);
		return SECRET_LOCKED;
	}
	snprintf(err, errlen, "no password for %s on %s in the keyring; run: outbox login", address, host);
	return SECRET_MISSING;
}

int
keyring_store(const char *address, const char *host, const char *password, char *err, size_t errlen)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *label = g_strdup_printf("outbox: %s on %s", address, host);

	if (!secret_password_store_sync(&outbox_schema, SECRET_COLLECTION_DEFAULT, label, password, NULL,
	                                &error, "service", "outbox", "address", address, "host", host,
	                                NULL)) {
		snprintf(err, errlen, "cannot store the password: %s",
		         error ? error->message : "unknown error");
		return -EIO;
	}
	return 0;
}
