/* SPDX-License-Identifier: MIT */
/*
 * config.c: the key file, its defaults, one error line naming file, line and
 * key for each mistake, the aliases, and /etc/outbox/config. Files are
 * written into a fresh directory under $TMPDIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "test.h"

static char *dir;

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* Writes text to dir/name; returns the path. */
static char *
write_file(const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0 || !(f = fopen(path, "w"))) {
		perror(name);
		exit(99);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

static void
test_minimal(void)
{
	struct config *c = NULL;
	char *path, *err = NULL;

	CASE("minimal config: address only, defaults");
	path = write_file("minimal", "[account]\naddress = alice@gmail.com\n");
	CHECK_INT(config_load(path, &c, &err), 0);
	CHECK(err == NULL);
	if (c) {
		CHECK_STR(c->path, path);
		CHECK_STR(c->address, "alice@gmail.com");
		CHECK_STR(c->host, "smtp.gmail.com");
		CHECK_INT(c->port, 465);
		CHECK_INT(c->tls, CONFIG_TLS_IMPLICIT);
		CHECK(c->ca_file == NULL);
		CHECK(c->password_command == NULL);
		CHECK(c->token_command == NULL);
		CHECK_INT(c->lifetime, 5 * 86400);
		CHECK_INT(c->timeout, 60);
		CHECK_INT(c->idle_exit, 30);
		CHECK_INT(c->n_aliases, 0);
	}
	config_free(c);
	config_free(NULL);
	free(path);

	CASE("the documented example, comments inline");
	path = write_file("example",
	                  "[account]\n"
	                  "address = alice@gmail.com        # login name and envelope sender\n"
	                  "# host = smtp.gmail.com\n"
	                  "# port = 465\n"
	                  "tls = implicit                 # implicit (465) | starttls (587)\n"
	                  "password-command = pass show mail/gmail#2   # instead of the keyring\n"
	                  "\n"
	                  "[aliases]\n"
	                  "# local recipients go to `address` unless listed here\n"
	                  "root = alice@gmail.com\t# tab before the comment\n");
	c = NULL;
	CHECK_INT(config_load(path, &c, &err), 0);
	if (!c && err)
		fprintf(stderr, "\terror: %s\n", err);
	if (c) {
		CHECK_STR(c->address, "alice@gmail.com");
		CHECK_INT(c->tls, CONFIG_TLS_IMPLICIT);
		CHECK_INT(c->port, 465);
		CHECK_STR(c->password_command, "pass show mail/gmail#2");
		if (CHECK_INT(c->n_aliases, 1) && CHECK_INT(c->aliases[0].n_to, 1))
			CHECK_STR(c->aliases[0].to[0], "alice@gmail.com");
	}
	config_free(c);
	g_free(err);
	free(path);
	test_case_name[0] = '\0';
}

static void
test_values(void)
{
	static const struct {
		const char *name;
		const char *text;
		const char *host;
		unsigned port;
		enum config_tls tls;
		int64_t lifetime;
	} cases[] = {
		{ "starttls gives 587", "[account]\naddress = a@b.example\ntls = starttls\n",
		  "smtp.gmail.com", 587, CONFIG_TLS_STARTTLS, 5 * 86400 },
		{ "starttls with a port", "[account]\naddress = a@b.example\nport = 2525\ntls = starttls\n",
		  "smtp.gmail.com", 2525, CONFIG_TLS_STARTTLS, 5 * 86400 },
		{ "implicit with a port", "[account]\naddress = a@b.example\nport=10465\n",
		  "smtp.gmail.com", 10465, CONFIG_TLS_IMPLICIT, 5 * 86400 },
		{ "host", "[account]\naddress = a@b.example\nhost = mail.example.com  # relay\n",
		  "mail.example.com", 465, CONFIG_TLS_IMPLICIT, 5 * 86400 },
		{ "empty host is the default", "[account]\naddress = a@b.example\nhost =\n",
		  "smtp.gmail.com", 465, CONFIG_TLS_IMPLICIT, 5 * 86400 },
		{ "lifetime in hours", "[account]\naddress = a@b.example\n[delivery]\nlifetime = 12h\n",
		  "smtp.gmail.com", 465, CONFIG_TLS_IMPLICIT, 12 * 3600 },
		{ "lifetime in seconds", "[delivery]\nlifetime = 90\n[account]\naddress = a@b.example\n",
		  "smtp.gmail.com", 465, CONFIG_TLS_IMPLICIT, 90 },
		{ "white space and CRLF", "  [account]\r\n\taddress\t=\ta@b.example \r\n",
		  "smtp.gmail.com", 465, CONFIG_TLS_IMPLICIT, 5 * 86400 },
		{ "[system] is allowed in a user's file",
		  "[account]\naddress = a@b.example\n[system]\ndeliver-to = alice\n",
		  "smtp.gmail.com", 465, CONFIG_TLS_IMPLICIT, 5 * 86400 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct config *c = NULL;
		char *path, *err = NULL;

		CASE("values: %s", cases[i].name);
		path = write_file("values", cases[i].text);
		CHECK_INT(config_load(path, &c, &err), 0);
		if (err)
			fprintf(stderr, "\terror: %s\n", err);
		if (c) {
			CHECK_STR(c->address, "a@b.example");
			CHECK_STR(c->host, cases[i].host);
			CHECK_INT(c->port, cases[i].port);
			CHECK_INT(c->tls, cases[i].tls);
			CHECK_INT(c->lifetime, cases[i].lifetime);
		}
		config_free(c);
		g_free(err);
		free(path);
	}
	test_case_name[0] = '\0';
}

static void
test_errors(void)
{
	static const struct {
		const char *name;
		const char *text;
		const char *error;	/* after "PATH:" */
	} cases[] = {
		{ "bad port", "[account]\naddress = a@b.example\n\nport = 99999\n",
		  "4: [account] port: not a port number" },
		{ "port zero", "[account]\nport = 0\naddress = a@b.example\n",
		  "2: [account] port: not a port number" },
		{ "port not a number", "[account]\naddress = a@b.example\nport = smtps\n",
		  "3: [account] port: not a port number" },
		{ "negative port", "[account]\naddress = a@b.example\nport = -465\n",
		  "3: [account] port: not a port number" },
		{ "unknown key", "[account]\naddress = a@b.example\n# c\nusername = alice\n",
		  "4: [account] username: unknown key" },
		{ "unknown key in [delivery]", "[account]\naddress = a@b.example\n[delivery]\nretries = 3\n",
		  "4: [delivery] retries: unknown key" },
		{ "unknown section", "[account]\naddress = a@b.example\n\n[acount]\nhost = x\n",
		  "4: [acount]: unknown section" },
		{ "missing address", "[account]\nhost = smtp.example.com\n",
		  "1: [account] address: missing; it is required" },
		{ "no [account] at all", "[delivery]\nlifetime = 1d\n",
		  "2: [account] address: missing; it is required" },
		{ "empty file", "", "1: [account] address: missing; it is required" },
		{ "empty address", "[account]\naddress =   # nobody\n",
		  "2: [account] address: missing; it is required" },
		{ "invalid address", "[account]\n\naddress = alice\n",
		  "3: [account] address: not an e-mail address" },
		{ "address with a space", "[account]\naddress = alice smith@example.com\n",
		  "2: [account] address: not an e-mail address" },
		{ "address without a dot in the domain", "[account]\naddress = alice@localhost\n",
		  "2: [account] address: not an e-mail address" },
		{ "bad tls", "[account]\naddress = a@b.example\ntls = yes\n",
		  "3: [account] tls: must be implicit or starttls" },
		{ "unknown key after a known one", "[account]\naddress = a@b.example\nhost = x\nhost2 = x\n",
		  "4: [account] host2: unknown key" },
		{ "host with a slash", "[account]\naddress = a@b.example\nhost = smtp/x\n",
		  "3: [account] host: not a host name" },
		{ "bad duration", "[account]\naddress = a@b.example\n[delivery]\nlifetime = 5 days\n",
		  "4: [delivery] lifetime: not a duration (like 5d, 12h, 30m)" },
		{ "negative duration", "[delivery]\nlifetime = -1d\n[account]\naddress = a@b.example\n",
		  "2: [delivery] lifetime: not a duration (like 5d, 12h, 30m)" },
		{ "overflowing duration",
		  "[delivery]\nlifetime = 999999999999999999d\n[account]\naddress = a@b.example\n",
		  "2: [delivery] lifetime: not a duration (like 5d, 12h, 30m)" },
		{ "timeout out of range", "[account]\naddress = a@b.example\n[delivery]\ntimeout = 2h\n",
		  "4: [delivery] timeout: not a duration from 1s to 1h" },
		{ "relative ca-file", "[account]\naddress = a@b.example\nca-file = certs/ca.pem\n",
		  "3: [account] ca-file: must be an absolute path" },
		{ "unparsable line", "[account]\naddress = a@b.example\nthis is not a key\n", "3: " },
		{ "unclosed group", "[account]\naddress = a@b.example\n[aliases\n", "3: " },
		{ "alias with a space", "[account]\naddress = a@b.example\n[aliases]\nroot = a b@c.example\n",
		  "4: [aliases] root: not an address list" },
		{ "empty alias", "[account]\naddress = a@b.example\n[aliases]\nroot = , ,\n",
		  "4: [aliases] root: empty" },
		{ "the same key in another group", "[aliases]\nport = a@b.example\n[account]\n"
		  "address = a@b.example\nport = x\n",
		  "5: [account] port: not a port number" },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct config *c = NULL;
		char *path, *err = NULL, *want;
		int r;

		CASE("error: %s", cases[i].name);
		path = write_file("bad", cases[i].text);
		r = config_load(path, &c, &err);
		CHECK_INT(r, -EINVAL);
		CHECK(c == NULL);
		if (asprintf(&want, "%s:%s", path, cases[i].error) < 0)
			exit(99);
		/* GLib words its own parse errors: only the location is ours. */
		if (!CHECK(err && strncmp(err, want, strlen(want)) == 0))
			fprintf(stderr, "\tgot:  %s\n\twant: %s...\n", err ? err : "(null)", want);
		if (err && strchr(cases[i].error, '['))
			CHECK_STR(err, want);
		CHECK(err && !strchr(err, '\n'));
		free(want);
		g_free(err);
		config_free(c);
		free(path);
	}

	CASE("error: no file is -ENOENT without a message");
	{
		struct config *c = NULL;
		char *err = NULL, *path;

		if (asprintf(&path, "%s/absent", dir) < 0)
			exit(99);
		CHECK_INT(config_load(path, &c, &err), -ENOENT);
		CHECK(err == NULL);
		free(path);
	}

	CASE("error: a NUL byte");
	{
		struct config *c = NULL;
		char *err = NULL, *path;
		int fd;

		if (asprintf(&path, "%s/nul", dir) < 0)
			exit(99);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK_INT(write(fd, "[account]\naddress = a@b.example\0\n", 34), 34);
		close(fd);
		CHECK_INT(config_load(path, &c, &err), -EINVAL);
		CHECK(err && strstr(err, "NUL"));
		g_free(err);
		free(path);
	}

	CASE("error: a directory");
	{
		struct config *c = NULL;
		char *err = NULL;

		CHECK(config_load(dir, &c, &err) < 0);
		CHECK(err != NULL && strncmp(err, dir, strlen(dir)) == 0);
		g_free(err);
	}
	test_case_name[0] = '\0';
}

static void
test_aliases(void)
{
	static const struct {
		const char *local;
		const char *want[4];
	} cases[] = {
		{ "root", { "admin@example.org", "ops@example.org" } },
		{ "ROOT", { "admin@example.org", "ops@example.org" } },
		{ "root@localhost", { "admin@example.org", "ops@example.org" } },
		{ "postmaster", { "admin@example.org", "ops@example.org" } },
		{ "abuse", { "admin@example.org", "ops@example.org", "abuse@example.org" } },
		{ "www-data", { "alice@gmail.com" } },
		{ "cron", { "alice@gmail.com" } },
		{ "nobody", { "alice@gmail.com" } },
		{ "loop1", { "alice@gmail.com" } },
		{ "unlisted", { "alice@gmail.com" } },
		{ "MixedCase", { "m@example.org" } },
	};
	struct config *c = NULL;
	char *path, *err = NULL;
	size_t i, k;

	path = write_file("aliases", "[account]\naddress = alice@gmail.com\n"
	                             "[aliases]\n"
	                             "root = admin@example.org, ops@example.org\n"
	                             "postmaster = root\n"
	                             "abuse = postmaster,abuse@example.org\n"
	                             "www-data = unlisted\n"
	                             "cron = alice@gmail.com   # comment\n"
	                             "nobody = nobody\n"
	                             "loop1 = loop2\n"
	                             "loop2 = loop1\n"
	                             "MixedCase = m@example.org\n");
	CASE("aliases: load");
	if (!CHECK_INT(config_load(path, &c, &err), 0)) {
		fprintf(stderr, "\terror: %s\n", err ? err : "(null)");
		g_free(err);
		free(path);
		return;
	}
	CHECK_INT(c->n_aliases, 9);
	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char **to = NULL;
		size_t n = 0, nwant = 0;

		CASE("aliases: %s", cases[i].local);
		while (nwant < 4 && cases[i].want[nwant])
			nwant++;
		CHECK_INT(config_alias(c, cases[i].local, &to, &n), 0);
		if (CHECK(n >= 1) && nwant == 1) {
			/* A loop or a self-reference may repeat the account: callers keep each once. */
			for (k = 0; k < n; k++)
				CHECK_STR(to[k], cases[i].want[0]);
		} else if (CHECK_INT(n, nwant)) {
			for (k = 0; k < n; k++)
				CHECK_STR(to[k], cases[i].want[k]);
		}
		for (k = 0; k < n; k++)
			g_free(to[k]);
		g_free(to);
	}
	config_free(c);
	free(path);
	test_case_name[0] = '\0';
}

static void
test_system(void)
{
	static const struct {
		const char *name;
		const char *text;
		int r;
		const char *deliver_to;
		const char *error;
	} cases[] = {
		{ "deliver-to", "[system]\ndeliver-to = alice\n", 0, "alice", NULL },
		{ "with a comment", "# system-wide\n[system]\ndeliver-to = bob   # the admin\n", 0, "bob",
		  NULL },
		{ "no [system]", "[account]\naddress = a@b.example\n", 0, NULL, NULL },
		{ "empty file", "", 0, NULL, NULL },
		{ "a path", "[system]\n\ndeliver-to = ../alice\n", -EINVAL, NULL,
		  "3: [system] deliver-to: not a user name" },
		{ "empty", "[system]\ndeliver-to =\n", -EINVAL, NULL,
		  "2: [system] deliver-to: not a user name" },
		{ "two names", "[system]\ndeliver-to = alice bob\n", -EINVAL, NULL,
		  "2: [system] deliver-to: not a user name" },
		{ "unparsable", "[system]\ndeliver-to\n", -EINVAL, NULL, "2: " },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *path, *err = NULL, *to = NULL, *want = NULL;

		CASE("system: %s", cases[i].name);
		path = write_file("system", cases[i].text);
		CHECK_INT(config_load_system(path, &to, &err), cases[i].r);
		CHECK_STR(to, cases[i].deliver_to);
		if (cases[i].error) {
			if (asprintf(&want, "%s:%s", path, cases[i].error) < 0)
				exit(99);
			if (!CHECK(err && strncmp(err, want, strlen(want)) == 0))
				fprintf(stderr, "\tgot:  %s\n\twant: %s\n", err ? err : "(null)", want);
		} else {
			CHECK(err == NULL);
		}
		free(want);
		g_free(err);
		g_free(to);
		free(path);
	}

	CASE("system: no file");
	{
		char *err = NULL, *to = NULL, *path;

		if (asprintf(&path, "%s/absent", dir) < 0)
			exit(99);
		CHECK_INT(config_load_system(path, &to, &err), -ENOENT);
		CHECK(to == NULL && err == NULL);
		free(path);
	}
	test_case_name[0] = '\0';
}

static void
test_duration(void)
{
	static const struct {
		const char *s;
		int r;
		int64_t v;
	} cases[] = {
		{ "90", 0, 90 },
		{ "0", 0, 0 },
		{ "90s", 0, 90 },
		{ "30m", 0, 1800 },
		{ "30min", 0, 1800 },
		{ "12h", 0, 43200 },
		{ "5d", 0, 432000 },
		{ "", -EINVAL, 0 },
		{ "d", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "5 d", -EINVAL, 0 },
		{ "5w", -EINVAL, 0 },
		{ "5dd", -EINVAL, 0 },
		{ "1.5h", -EINVAL, 0 },
		{ "99999999999999999999", -EINVAL, 0 },
		{ "999999999999999999d", -EINVAL, 0 },
		{ "9223372036854775807s", 0, INT64_MAX },
		{ "153722867280912931m", -EINVAL, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		int64_t v = -42;
		int r;

		CASE("duration: \"%s\"", cases[i].s);
		r = config_parse_duration(cases[i].s, &v);
		CHECK_INT(r, cases[i].r);
		if (r == 0)
			CHECK_INT(v, cases[i].v);
	}
	test_case_name[0] = '\0';
}

static void
test_address_valid(void)
{
	static const struct {
		const char *s;
		bool valid;
	} cases[] = {
		{ "alice@gmail.com", true },
		{ "a.b+tag@sub.example.co.uk", true },
		{ "alice", false },
		{ "@gmail.com", false },
		{ "alice@", false },
		{ "alice@gmail", false },
		{ "alice@gmail.com.", false },
		{ "alice smith@gmail.com", false },
		{ "<alice@gmail.com>", false },
		{ "a@b.example,c@d.example", false },
		{ "alice@gmail.com\n", false },
		{ "al\x7f" "ice@gmail.com", false },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		CASE("address_valid: %zu", i);
		CHECK_INT(config_address_valid(cases[i].s), cases[i].valid);
	}
	test_case_name[0] = '\0';
}

int
main(void)
{
	const char *base = getenv("TMPDIR");

	if (asprintf(&dir, "%s/outbox-config-XXXXXX", base && base[0] ? base : "/tmp") < 0 ||
	    !mkdtemp(dir)) {
		perror("mkdtemp");
		return 99;
	}
	test_minimal();
	test_values();
	test_errors();
	test_aliases();
	test_system();
	test_duration();
	test_address_valid();
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
	return test_exit("test-config");
}
