/* SPDX-License-Identifier: MIT */
/*
 * $XDG_CONFIG_HOME/outbox/config: a GLib key file. Only [account] address is
 * required; everything else has the Gmail default. Every error names the
 * file, the line and the key. Values may carry a trailing "# comment"
 * (a '#' after white space), as the documented example does.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fs.h"

#define CONFIG_MAX (1u << 20)

void
config_free(struct config *c)
{
	size_t i, k;

	if (!c)
		return;
	g_free(c->path);
	g_free(c->address);
	g_free(c->host);
	g_free(c->ca_file);
	g_free(c->password_command);
	g_free(c->token_command);
	for (i = 0; i < c->n_aliases; i++) {
		g_free(c->aliases[i].name);
		for (k = 0; k < c->aliases[i].n_to; k++)
			g_free(c->aliases[i].to[k]);
		g_free(c->aliases[i].to);
	}
	g_free(c->aliases);
	g_free(c);
}

/* Removes "  # comment" from key=value lines, in place; group and comment lines stay. */
static void
strip_inline_comments(char *text)
{
	char *line = text;

	while (line && *line) {
		char *nl = strchr(line, '\n'), *eq, *p;

		if (nl)
			*nl = '\0';
		eq = strchr(line, '=');
		if (line[0] != '#' && line[0] != '[' && eq) {
			for (p = eq + 1; *p; p++)
				if (*p == '#' && (p[-1] == ' ' || p[-1] == '\t')) {
					char *e = p;

					while (e > eq + 1 && (e[-1] == ' ' || e[-1] == '\t'))
						e--;
					/* Blank out rather than cut, so the line numbers stay. */
					memset(e, ' ', strlen(e));
					break;
				}
		}
		if (nl)
			*nl = '\n';
		line = nl ? nl + 1 : NULL;
	}
}

/* The line where [group] key is set, or where the first unparsable line is (key NULL). */
static unsigned
find_line(const char *text, const char *group, const char *key)
{
	const char *line = text;
	unsigned n = 1;
	bool in_group = group == NULL;

	for (; line && *line; n++) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		const char *p = line;

		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		if (len && p[0] == '[') {
			in_group = group && len >= strlen(group) + 2 && p[strlen(group) + 1] == ']' &&
			           strncmp(p + 1, group, strlen(group)) == 0;
			if (!group && !memchr(p, ']', len))
				return n;
			if (in_group && !key)
				return n;	/* the [group] line itself */
		} else if (len && p[0] != '#') {
			const char *eq = memchr(p, '=', len);

			if (!key && !eq)
				return n;
			if (key && in_group && eq) {
				const char *ke = eq;

				while (ke > p && (ke[-1] == ' ' || ke[-1] == '\t'))
					ke--;
				if ((size_t)(ke - p) == strlen(key) && strncmp(p, key, strlen(key)) == 0)
					return n;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	/* A key not set: its [group] line; no such group: the last line. */
	if (group && key)
		return find_line(text, group, NULL);
	return n > 1 ? n - 1 : 1;
}

static int
fail(char **error, const char *path, const char *text, const char *group, const char *key,
     const char *what)
{
	unsigned line = find_line(text, group, key);

	if (key)
		*error = g_strdup_printf("%s:%u: [%s] %s: %s", path, line, group, key, what);
	else if (group)
		*error = g_strdup_printf("%s:%u: [%s]: %s", path, line, group, what);
	else
		*error = g_strdup_printf("%s:%u: %s", path, line, what);
	return -EINVAL;
}

bool
config_address_valid(const char *s)
{
	const char *at = strrchr(s, '@');
	const char *p;

	if (!at || at == s || !at[1] || !strchr(at + 1, '.') || at[strlen(at) - 1] == '.')
		return false;
	for (p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == ',' || *p == 0x7f)
			return false;
	return true;
}

/* "90", "90s", "30m", "12h", "5d": seconds. */
int
config_parse_duration(const char *s, int64_t *out)
{
	char *e;
	long long v, unit = 1;

	errno = 0;
	v = strtoll(s, &e, 10);
	if (e == s || errno || v < 0)
		return -EINVAL;
	if (*e == '\0' || strcmp(e, "s") == 0)
		;
	else if (strcmp(e, "m") == 0 || strcmp(e, "min") == 0)
		unit = 60;
	else if (strcmp(e, "h") == 0)
		unit = 3600;
	else if (strcmp(e, "d") == 0)
		unit = 86400;
	else
		return -EINVAL;
	if (__builtin_mul_overflow(v, unit, &v))
		return -EINVAL;
	*out = v;
	return 0;
}

static char *
get_string(GKeyFile *kf, const char *group, const char *key)
{
	char *v = g_key_file_get_string(kf, group, key, NULL);

	if (v)
		g_strstrip(v);
	return v;
}

static bool
key_known(const char *const *known, const char *key)
{
	for (; *known; known++)
		if (strcmp(*known, key) == 0)
			return true;
	return false;
}

static int
load_keyfile(const char *path, GKeyFile *kf, char **text, char **error)
{
	g_autoptr(GError) gerr = NULL;
	size_t len;
	int r;

	r = fs_read_file(AT_FDCWD, path, CONFIG_MAX, text, &len);
	if (r < 0) {
		if (r != -ENOENT)
			*error = g_strdup_printf("%s: %s", path, strerror(-r));
		return r;
	}
	if (memchr(*text, '\0', len))
		return fail(error, path, *text, NULL, NULL, "contains a NUL byte");
	strip_inline_comments(*text);
	if (!g_key_file_load_from_data(kf, *text, len, G_KEY_FILE_NONE, &gerr))
		return fail(error, path, *text, NULL, NULL, gerr->message);
	return 0;
}

static int
load_aliases(struct config *c, GKeyFile *kf, const char *text, char **error)
{
	g_auto(GStrv) keys = g_key_file_get_keys(kf, "aliases", NULL, NULL);
	size_t i;

	if (!keys)
		return 0;
	c->aliases = g_new0(struct config_alias, g_strv_length(keys));
	for (i = 0; keys[i]; i++) {
		g_autofree char *v = get_string(kf, "aliases", keys[i]);
		g_auto(GStrv) parts = g_strsplit(v ? v : "", ",", -1);
		struct config_alias *a = &c->aliases[c->n_aliases++];
		size_t k;

		a->name = g_ascii_strdown(keys[i], -1);
		a->to = g_new0(char *, g_strv_length(parts) + 1);
		for (k = 0; parts[k]; k++) {
			char *t = g_strstrip(parts[k]);

			if (!t[0])
				continue;
			if (strpbrk(t, " \t<>\r\n"))
				return fail(error, c->path, text, "aliases", keys[i], "not an address list");
			a->to[a->n_to++] = g_strdup(t);
		}
		if (a->n_to == 0)
			return fail(error, c->path, text, "aliases", keys[i], "empty");
	}
	return 0;
}

int
config_load(const char *path, struct config **out, char **error)
{
	static const char *const account_keys[] = { "address", "host", "port", "tls", "ca-file",
	                                            "password-command", "token-command", NULL };
	static const char *const delivery_keys[] = { "lifetime", "timeout", "idle-exit", NULL };
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *text = NULL;
	g_auto(GStrv) groups = NULL;
	struct config *c;
	char *v;
	size_t i;
	int r;

	*error = NULL;
	r = load_keyfile(path, kf, &text, error);
	if (r < 0)
		return r;
	c = g_new0(struct config, 1);
	c->path = g_strdup(path);
	c->port = 465;
	c->lifetime = 5 * 86400;
	c->timeout = 60;
	c->idle_exit = 30;

	groups = g_key_file_get_groups(kf, NULL);
	for (i = 0; groups[i]; i++) {
		const char *const *known;
		g_auto(GStrv) keys = NULL;
		size_t k;

		if (strcmp(groups[i], "account") == 0)
			known = account_keys;
		else if (strcmp(groups[i], "delivery") == 0)
			known = delivery_keys;
		else if (strcmp(groups[i], "aliases") == 0 || strcmp(groups[i], "system") == 0)
			continue;
		else {
			r = fail(error, path, text, groups[i], NULL, "unknown section");
			goto out;
		}
		keys = g_key_file_get_keys(kf, groups[i], NULL, NULL);
		for (k = 0; keys && keys[k]; k++)
			if (!key_known(known, keys[k])) {
				r = fail(error, path, text, groups[i], keys[k], "unknown key");
				goto out;
			}
	}

	c->address = get_string(kf, "account", "address");
	if (!c->address || !c->address[0]) {
		r = fail(error, path, text, "account", "address", "missing; it is required");
		goto out;
	}
	if (!config_address_valid(c->address)) {
		r = fail(error, path, text, "account", "address", "not an e-mail address");
		goto out;
	}
	c->host = get_string(kf, "account", "host");
	if (!c->host || !c->host[0]) {
		g_free(c->host);
		c->host = g_strdup("smtp.gmail.com");
	} else if (strpbrk(c->host, " \t/")) {
		r = fail(error, path, text, "account", "host", "not a host name");
		goto out;
	}
	v = get_string(kf, "account", "tls");
	if (v && strcmp(v, "starttls") == 0) {
		c->tls = CONFIG_TLS_STARTTLS;
		c->port = 587;
	} else if (v && strcmp(v, "implicit") != 0) {
		g_free(v);
		r = fail(error, path, text, "account", "tls", "must be implicit or starttls");
		goto out;
	}
	g_free(v);
	v = get_string(kf, "account", "port");
	if (v) {
		char *e;
		unsigned long p = strtoul(v, &e, 10);

		if (*e || e == v || p == 0 || p > 65535) {
			g_free(v);
			r = fail(error, path, text, "account", "port", "not a port number");
			goto out;
		}
		c->port = (unsigned)p;
		g_free(v);
	}
	c->ca_file = get_string(kf, "account", "ca-file");
	if (c->ca_file && c->ca_file[0] != '/') {
		r = fail(error, path, text, "account", "ca-file", "must be an absolute path");
		goto out;
	}
	c->password_command = get_string(kf, "account", "password-command");
	c->token_command = get_string(kf, "account", "token-command");
	v = get_string(kf, "delivery", "lifetime");
	if (v) {
		r = config_parse_duration(v, &c->lifetime);
		g_free(v);
		if (r < 0) {
			r = fail(error, path, text, "delivery", "lifetime", "not a duration (like 5d, 12h, 30m)");
			goto out;
		}
	}
	v = get_string(kf, "delivery", "timeout");
	if (v) {
		r = config_parse_duration(v, &c->timeout);
		g_free(v);
		if (r < 0 || c->timeout < 1 || c->timeout > 3600) {
			r = fail(error, path, text, "delivery", "timeout", "not a duration from 1s to 1h");
			goto out;
		}
	}
	v = get_string(kf, "delivery", "idle-exit");
	if (v) {
		r = config_parse_duration(v, &c->idle_exit);
		g_free(v);
		if (r < 0) {
			r = fail(error, path, text, "delivery", "idle-exit", "not a duration (like 30s)");
			goto out;
		}
	}
	r = load_aliases(c, kf, text, error);
	if (r < 0)
		goto out;
	*out = c;
	c = NULL;
out:
	config_free(c);
	return r;
}

enum { ALIAS_NEW, ALIAS_ON_PATH, ALIAS_DONE };

/*
 * Depth first, each name expanded once per lookup: met again on its own
 * path it is a loop, which leads nowhere (the account); met again elsewhere
 * its addresses are out already. Without this "a = b, b, b" and "a = a, a"
 * multiplied at every level, to billions of addresses by depth 8.
 */
static int
alias_resolve(struct config *c, const char *local, unsigned depth, unsigned char *state,
              GPtrArray *out)
{
	size_t i, k;

	for (i = 0; i < c->n_aliases; i++) {
		if (g_ascii_strcasecmp(c->aliases[i].name, local) != 0)
			continue;
		if (state[i] == ALIAS_DONE)
			return 0;
		if (state[i] == ALIAS_ON_PATH)
			break;
		state[i] = ALIAS_ON_PATH;
		for (k = 0; k < c->aliases[i].n_to; k++) {
			const char *t = c->aliases[i].to[k];

			if (strchr(t, '@') || depth >= 8)
				g_ptr_array_add(out, g_strdup(strchr(t, '@') ? t : c->address));
			else
				alias_resolve(c, t, depth + 1, state, out);
		}
		state[i] = ALIAS_DONE;
		return 0;
	}
	g_ptr_array_add(out, g_strdup(c->address));
	return 0;
}

/*
 * A local recipient through [aliases] (a value may list several addresses,
 * or name another alias); anything unlisted goes to the account address.
 */
int
config_alias(void *config, const char *local, char ***out, size_t *n)
{
	struct config *c = config;
	GPtrArray *a = g_ptr_array_new();
	char *lp = g_ascii_strdown(local, -1), *at = strrchr(lp, '@');
	unsigned char *state = g_new0(unsigned char, c->n_aliases + 1);

	if (at)
		*at = '\0';
	alias_resolve(c, lp, 0, state, a);
	g_free(state);
	g_free(lp);
	*n = a->len;
	*out = (char **)g_ptr_array_free(a, FALSE);
	return 0;
}

/* /etc/outbox/config, [system] deliver-to = USER: whose queue receives root's mail. */
int
config_load_system(const char *path, char **deliver_to, char **error)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autofree char *text = NULL;
	char *v;
	int r;

	*error = NULL;
	*deliver_to = NULL;
	r = load_keyfile(path, kf, &text, error);
	if (r < 0)
		return r;
	v = get_string(kf, "system", "deliver-to");
	if (v && (!v[0] || strpbrk(v, "/ \t"))) {
		g_free(v);
		return fail(error, path, text, "system", "deliver-to", "not a user name");
	}
	*deliver_to = v;
	return 0;
}
