/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Where the dialog puts a message; the sendmail program writes it into the queue. */
struct smtpd_sink {
	/* A new message; returns an opaque handle in *msg, or -errno. */
	int (*begin)(void *userdata, const char *sender, char **rcpt, size_t n_rcpt, void **msg);
	int (*write)(void *msg, const char *buf, size_t len);
	/* Makes the message durable; id receives its queue ID. Frees msg either way. */
	int (*commit)(void *msg, char *id, size_t id_size);
	void (*abort)(void *msg);
	void *userdata;
};

struct smtpd;

int smtpd_new(const char *hostname, const struct smtpd_sink *sink, struct smtpd **out);
void smtpd_free(struct smtpd *s);
void smtpd_greet(struct smtpd *s);
int smtpd_feed(struct smtpd *s, const char *buf, size_t len);
void smtpd_eof(struct smtpd *s);
bool smtpd_done(const struct smtpd *s);
const char *smtpd_output(const struct smtpd *s, size_t *len);
void smtpd_output_clear(struct smtpd *s);
unsigned smtpd_queued(const struct smtpd *s);
