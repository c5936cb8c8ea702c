/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

int helper_run(char *const argv[], int timeout_ms, char *out, size_t outsize, size_t *outlen,
               int *status);
