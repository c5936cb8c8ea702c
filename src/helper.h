/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#define HELPER_NAME "outbox-desktop"

/*
 * The exit status of "outbox-desktop password ADDRESS HOST", the contract
 * between outboxd and its helper. With HELPER_FOUND the password is the
 * first line of its output; otherwise that line says why there is none.
 */
enum helper_exit {
	HELPER_FOUND = 0,
	HELPER_MISSING = 2,		/* SECRET_MISSING: nothing stored */
	HELPER_LOCKED = 3,		/* SECRET_LOCKED: stored, but the keyring is locked */
	HELPER_UNAVAILABLE = 4,		/* SECRET_UNAVAILABLE: no Secret Service */
	HELPER_USAGE = 64,		/* EX_USAGE */
};

int helper_run(char *const argv[], int timeout_ms, char *out, size_t outsize, size_t *outlen,
               int *status);
