/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "message.h"
#include "queue.h"

/* One message as a user sees it: envelope resolved through the configuration. */
struct view_msg {
	char id[QUEUE_ID_LEN + 1];
	struct envelope env;
	struct queue_state st;
	long long size;
	enum queue_status status;
	bool active;		/* being delivered right now */
	char *sender;		/* as it goes out */
	char **rcpt;		/* as they go out */
	size_t n_rcpt;
};

struct view {
	struct view_msg *msg;
	size_t n_msg;
	char *account_hold;	/* why the whole queue is held, or NULL */
};

void view_out(struct message_out *o, const struct config *c, const struct localnames *ln);
int view_load(struct queue *q, const struct config *c, const struct localnames *ln, struct view *v);
void view_clear(struct view *v);
void view_print_mailq(const struct view *v, FILE *f);
