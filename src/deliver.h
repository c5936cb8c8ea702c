/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "message.h"
#include "queue.h"
#include "secret.h"
#include "smtp.h"
#include "tls.h"

struct deliver {
	struct queue *q;
	const struct config *cfg;
	struct localnames ln;
	struct conn *conn;
	struct smtp_caps caps;
	struct secret secret;
	unsigned connections;	/* opened in this run since the last delivery */
	bool conn_broken;
	/* Called with a status line ("sending 3/10 to smtp.gmail.com"). */
	void (*status)(void *userdata, const char *text);
	/* Asked between messages: stop early (SIGTERM). */
	bool (*stop)(void *userdata);
	void *userdata;
	unsigned sent, deferred, failed;
	unsigned bounced;	/* bounce reports queued in this pass */
	bool linger;		/* keep the session open after a run (outboxd) */
	struct tls_client *tls;	/* the trust, for every session of this process */
	char *last_sent;	/* for queue/last: the latest acceptance in this run */
	char *last_error;	/* and the latest problem */
};

enum deliver_outcome {
	DELIVER_IDLE,		/* nothing left to do now */
	DELIVER_HELD_ACCOUNT,	/* credential problem: waits for outbox login */
	DELIVER_HELD_SECRET,	/* keyring locked or no password: waits for it */
};

struct deliver_result {
	enum deliver_outcome outcome;
	int64_t next;		/* the earliest deferred retry, 0 if none */
	unsigned waiting;	/* messages queued or deferred */
	char reason[512];
};

int deliver_init(struct deliver *d, struct queue *q, const struct config *cfg);
void deliver_clear(struct deliver *d);
int deliver_run(struct deliver *d, struct deliver_result *res);
void deliver_close(struct deliver *d);
int deliver_check_login(const struct config *cfg, const struct secret *secret, char *err, size_t errlen);
void deliver_sweep(struct queue *q);
