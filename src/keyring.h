/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "secret.h"

enum secret_status keyring_lookup(const char *address, const char *host, struct secret *out, char *err,
                                  size_t errlen);
int keyring_store(const char *address, const char *host, const char *password, char *err, size_t errlen);
