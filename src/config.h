/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_tls {
	CONFIG_TLS_IMPLICIT,
	CONFIG_TLS_STARTTLS,
};

struct config_alias {
	char *name;		/* lower-case local part */
	char **to;
	size_t n_to;
};

struct config {
	char *path;
	char *address;		/* required: login and envelope sender */
	char *host;
	unsigned port;
	enum config_tls tls;
	char *ca_file;
	char *password_command;
	char *token_command;	/* XOAUTH2 access token, instead of a password */
	int64_t lifetime;	/* seconds a message may stay deferred before it fails */
	int64_t timeout;	/* seconds to wait for the server at each step */
	int64_t idle_exit;	/* seconds outboxd stays with nothing to do */
	struct config_alias *aliases;
	size_t n_aliases;
};

int config_load(const char *path, struct config **out, char **error);
void config_free(struct config *c);
int config_alias(void *config, const char *local, char ***out, size_t *n);
int config_load_system(const char *path, char **deliver_to, char **error);
int config_parse_duration(const char *s, int64_t *out);
bool config_address_valid(const char *s);
