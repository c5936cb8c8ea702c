/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define QUEUE_ID_LEN 16
#define QUEUE_FORMAT 1

struct queue {
	char *path;
	int dirfd;		/* the queue directory */
	int msgfd;		/* msg/: one immutable file per message */
	int statefd;		/* state/: delivery state, replaced atomically */
	int tmpfd;		/* tmp/: messages being written */
};

struct envelope {
	int64_t arrival;	/* seconds since the epoch */
	char *user;		/* the login that queued it */
	char *fullname;		/* -F, or NULL */
	char *sender;		/* -f, "" for the null sender, NULL for the account */
	char **rcpt;
	size_t n_rcpt;
};

enum queue_rcpt_status {
	QUEUE_RCPT_PENDING,
	QUEUE_RCPT_SENT,
	QUEUE_RCPT_DEFERRED,
	QUEUE_RCPT_FAILED,
};

enum queue_hold {
	QUEUE_HOLD_NONE,
	QUEUE_HOLD_USER,	/* outbox hold */
};

struct queue_rcpt_state {
	char *addr;		/* the address as given to the server */
	enum queue_rcpt_status status;
	int64_t time;
	char *reply;		/* last reply for this recipient, or NULL */
};

struct queue_log {
	int64_t time;
	char *text;
};

struct queue_state {
	unsigned attempts;
	int64_t first;		/* first attempt, 0 = never tried */
	int64_t last;		/* last attempt */
	int64_t next;		/* not before this time; 0 = now */
	enum queue_hold hold;
	char *reply;		/* the last reply or error for the message */
	struct queue_rcpt_state *rcpt;
	size_t n_rcpt;
	struct queue_log *log;	/* oldest first */
	size_t n_log;
};

/* What a user sees; derived from the state, never stored. */
enum queue_status {
	QUEUE_QUEUED,
	QUEUE_DEFERRED,
	QUEUE_HELD,
	QUEUE_FAILED,
	QUEUE_SENT,
};

struct queue_msg {
	char id[QUEUE_ID_LEN + 1];
	int fd;
	struct envelope env;
	off_t body_offset;	/* where the message bytes begin */
	off_t size;		/* message bytes */
	bool locked;
};

struct queue_writer;

int queue_open(const char *path, bool create, struct queue **out);
void queue_free(struct queue *q);

void queue_id_new(char id[QUEUE_ID_LEN + 1]);
bool queue_id_valid(const char *id);

int queue_writer_new(struct queue *q, const struct envelope *env, struct queue_writer **out);
int queue_writer_write(struct queue_writer *w, const void *buf, size_t len);
int queue_writer_commit(struct queue_writer *w, char id[QUEUE_ID_LEN + 1]);
void queue_writer_free(struct queue_writer *w);

int queue_list(struct queue *q, char (**ids)[QUEUE_ID_LEN + 1], size_t *n);
int queue_resolve_prefix(struct queue *q, const char *prefix, char id[QUEUE_ID_LEN + 1]);

int queue_msg_open(struct queue *q, const char *id, struct queue_msg **out);
int queue_msg_lock(struct queue_msg *m, bool wait);
void queue_msg_free(struct queue_msg *m);
int queue_msg_remove(struct queue *q, struct queue_msg *m);
char *queue_account_hold(struct queue *q);
int queue_msg_flush(struct queue *q, struct queue_msg *m);
int queue_flush(struct queue *q);

int envelope_parse(const char *buf, size_t len, struct envelope *env, size_t *consumed);
char *envelope_format(const struct envelope *env, size_t *len);
void envelope_clear(struct envelope *env);
bool envelope_value_valid(const char *s);

int queue_state_load(struct queue *q, const char *id, struct queue_state *st);
int queue_state_save(struct queue *q, const struct queue_msg *m, const struct queue_state *st);
int queue_state_reserve(struct queue *q, const struct queue_msg *m, size_t len);
void queue_state_unreserve(struct queue *q, const struct queue_msg *m);
int queue_state_parse(const char *buf, size_t len, struct queue_state *st);
char *queue_state_format(const struct queue_state *st, size_t *len);
void queue_state_clear(struct queue_state *st);
const struct queue_rcpt_state *queue_state_find(const struct queue_state *st, const char *addr);
struct queue_rcpt_state *queue_state_rcpt(struct queue_state *st, const char *addr);
int queue_state_log(struct queue_state *st, int64_t when, const char *text);
enum queue_status queue_state_status(const struct queue_state *st, char *const *rcpt,
                                     size_t n_rcpt, int64_t now);
const char *queue_status_name(enum queue_status s);
const char *queue_rcpt_status_name(enum queue_rcpt_status s);
