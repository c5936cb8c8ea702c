/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "config.h"

#define SECRET_MAX 4096		/* bytes: a password or token is shorter */

enum secret_status {
	SECRET_FOUND,
	SECRET_MISSING,		/* nothing stored: run outbox login */
	SECRET_LOCKED,		/* the keyring is locked; never prompted for here */
	SECRET_UNAVAILABLE,	/* no Secret Service (no session bus), or a command failed */
};

/* One copy of a secret, in memory that is wiped before it is freed. */
struct secret {
	char *value;
	size_t len;
};

enum secret_status secret_lookup(const struct config *c, struct secret *out, char *err, size_t errlen);
enum secret_status secret_command(const char *cmd, const char *what, struct secret *out, char *err,
                                  size_t errlen);
int secret_set(struct secret *s, const char *v, size_t len);
void secret_wipe(struct secret *s);
const char *secret_status_text(enum secret_status s);
