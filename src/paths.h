/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* The user's configuration file: $XDG_CONFIG_HOME/outbox/config, else ~/.config/outbox/config. */
int paths_config(char **out);

/* The user's queue: $XDG_DATA_HOME/outbox, else ~/.local/share/outbox. */
int paths_queue(char **out);

/* One of outbox's own programs in libexecdir (or next to the running one, in a build tree). */
int paths_libexec(const char *name, char *buf, size_t len);
