/* SPDX-License-Identifier: MIT */
/*
 * config.c: the input is a configuration file. config_load reads a path, so
 * the input is written to a file in a private temporary directory first
 * (in /dev/shm when there is one: no disk writes per run; else under
 * $TMPDIR or /tmp). A crash leaves that directory behind. A loaded
 * configuration is checked and every alias resolved; a refused one has an
 * error message of one line. The same file goes through config_load_system,
 * and the input as a string through the value parsers.
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char *path;

static void
remove_dir(void)
{
	char *dir = g_path_get_dirname(path);

	unlink(path);
	rmdir(dir);
	g_free(dir);
	g_free(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : g_get_tmp_dir();
	char *tmpl = g_build_filename(base, "outbox-fuzz-config-XXXXXX", NULL);

	if (!g_mkdtemp(tmpl))
		abort();
	path = g_build_filename(tmpl, "config", NULL);
	g_free(tmpl);
	atexit(remove_dir);
	return 0;
}

static void
write_input(const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t off = 0;

	assert(fd >= 0);
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);

		assert(n > 0);
		off += (size_t)n;
	}
	close(fd);
}

static void
check_alias(struct config *c, const char *local)
{
	char **to = NULL;
	size_t n = 0, i;

	assert(config_alias(c, local, &to, &n) == 0);
	assert(n >= 1);
	for (i = 0; i < n; i++) {
		assert(to[i] && strchr(to[i], '@'));
		g_free(to[i]);
	}
	g_free(to);
}

static void
check_error(int r, char *error)
{
	if (r == -EINVAL) {
		assert(error && strncmp(error, path, strlen(path)) == 0);
		assert(!strchr(error, '\n'));
	}
	g_free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	char *error = NULL, *deliver_to = NULL, *s;
	int64_t d;
	size_t i, k;
	int r;

	write_input(data, size);
	r = config_load(path, &c, &error);
	if (r == 0) {
		assert(c && !error);
		assert(c->address && config_address_valid(c->address));
		assert(c->host && c->host[0]);
		assert(c->port >= 1 && c->port <= 65535);
		assert(c->timeout >= 1 && c->timeout <= 3600);
		assert(c->lifetime >= 0 && c->idle_exit >= 0);
		assert(!c->ca_file || c->ca_file[0] == '/');
		check_alias(c, "root");
		check_alias(c, "Postmaster");
		for (i = 0; i < c->n_aliases; i++) {
			assert(c->aliases[i].n_to >= 1);
			for (k = 0; k < c->aliases[i].n_to; k++)
				assert(c->aliases[i].to[k] && c->aliases[i].to[k][0]);
			check_alias(c, c->aliases[i].name);
		}
		config_free(c);
	} else {
		assert(r < 0 && r != -ENOENT);
		check_error(r, error);
	}

	error = NULL;
	r = config_load_system(path, &deliver_to, &error);
	if (r == 0) {
		assert(!error);
		assert(!deliver_to || (deliver_to[0] && !strpbrk(deliver_to, "/ \t")));
		g_free(deliver_to);
	} else {
		assert(!deliver_to);
		check_error(r, error);
	}

	s = g_strndup((const char *)data, size);
	if (config_parse_duration(s, &d) == 0)
		assert(d >= 0);
	(void)config_address_valid(s);
	g_free(s);
	return 0;
}
