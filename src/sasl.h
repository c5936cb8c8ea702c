/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "secret.h"
#include "smtp.h"

/* Sends one line (CRLF added) and reads the whole reply into *reply. */
typedef int (*sasl_send_fn)(void *userdata, const char *line, struct smtp_reply *reply);

int sasl_authenticate(const char *offered, const char *user, const struct secret *secret, bool token,
                      sasl_send_fn send, void *userdata, struct smtp_reply *final,
                      char *mech, size_t mechlen, char *err, size_t errlen);
