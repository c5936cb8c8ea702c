/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/*
 * outbox-sendmail is built twice from sendmail.c. The program in bindir adds
 * sendmail-front.c and links libc only: a mail client or a cron job waiting
 * on it waits for no library to load. The two cases that read a
 * configuration file, root without one of its own ([system] deliver-to) and
 * mailq, it hands over to its twin in libexecdir, outbox-sendmail-config,
 * with the same command line and standard input unread. The twin adds
 * sendmail-config.c and GLib's key-file reader; it does everything itself.
 */
#define SENDMAIL_CONFIG_NAME "outbox-sendmail-config"

struct queue;

extern char **sendmail_argv;	/* main()'s, for the hand-over */

_Noreturn void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct queue *open_queue(bool create);

/* Root without a configuration of its own: become [system] deliver-to's user. */
void sendmail_system_recipient(void);
/* mailq, sendmail -bp */
void sendmail_list(void);
