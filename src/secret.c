/* SPDX-License-Identifier: MIT */
/*
 * The app password: from the Secret Service through libsecret, looked up by
 * (service=outbox, address, host), else by the attributes msmtp stores
 * (host, service=smtp, user), so an msmtp user's keyring entry works; or
 * from password-command. The daemon never prompts: a locked item is
 * reported as locked and the queue waits. The secret exists in one buffer
 * of ours, wiped before it is freed; it never enters argv, the environment,
 * a file or a log.
 */
#include <errno.h>
#include <libsecret/secret.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "helper.h"
#include "secret.h"

#define SECRET_MAX 4096
#define COMMAND_TIMEOUT_MS 30000

static const SecretSchema outbox_schema = {
	"org.outbox.Password", SECRET_SCHEMA_DONT_MATCH_NAME,
	{
		{ "service", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ "address", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ "host", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ NULL, 0 },
	},
};

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

static int
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
secret_lookup(const struct config *c, struct secret *out, char *err, size_t errlen)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GHashTable) ours = NULL, msmtp = NULL;
	SecretService *svc;
	bool locked = false;
	int found;

	memset(out, 0, sizeof *out);
	if (c->password_command)
		return secret_command(c->password_command, out, err, errlen);
	/*
	 * A proxy of our own each time, not libsecret's shared one: that one
	 * stays bound to the keyring daemon that answered first, and a daemon
	 * that keeps running would never see a restarted keyring.
	 */
	svc = secret_service_open_sync(SECRET_TYPE_SERVICE, NULL, SECRET_SERVICE_NONE, NULL, &error);
	if (!svc) {
		snprintf(err, errlen, "no Secret Service: %s", error ? error->message : "unknown error");
		return SECRET_UNAVAILABLE;
	}
	ours = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_insert(ours, "service", "outbox");
	g_hash_table_insert(ours, "address", c->address);
	g_hash_table_insert(ours, "host", c->host);
	found = search(svc, ours, out, &locked, &error);
	if (!found && !error) {
		msmtp = g_hash_table_new(g_str_hash, g_str_equal);
		g_hash_table_insert(msmtp, "host", c->host);
		g_hash_table_insert(msmtp, "service", "smtp");
		g_hash_table_insert(msmtp, "user", c->address);
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
		snprintf(err, errlen, "the keyring holding the password for %s is locked", c->address);
		return SECRET_LOCKED;
	}
	snprintf(err, errlen, "no password for %s on %s in the keyring; run: outbox login", c->address,
	         c->host);
	return SECRET_MISSING;
}

int
secret_store(const char *address, const char *host, const char *password, char *err, size_t errlen)
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

/* password-command / token-command: its first line of output, through /bin/sh. */
enum secret_status
secret_command(const char *cmd, struct secret *out, char *err, size_t errlen)
{
	char buf[SECRET_MAX + 1];
	char *argv[] = { "/bin/sh", "-c", (char *)cmd, NULL };
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
		snprintf(err, errlen, "password-command: timed out");
	} else if (k < 0) {
		snprintf(err, errlen, "password-command: cannot run %s: %s", argv[0], strerror(-k));
	} else if (code == 0 && len > 0) {
		if (secret_set(out, buf, len) == 0)
			result = SECRET_FOUND;
		else
			snprintf(err, errlen, "password-command: %s", strerror(ENOMEM));
	} else if (code < 0) {
		snprintf(err, errlen, "password-command failed (killed by signal %d)", WTERMSIG(status));
	} else {
		snprintf(err, errlen, "password-command failed (%s)", code ? "non-zero exit status" : "no output");
	}
	explicit_bzero(buf, sizeof buf);
	return result;
}
