/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_MAX_LINES 512
#define SMTP_REPLY_MAX_BYTES 65536

struct smtp_reply {
	int code;		/* 0 until the first line */
	char enh[16];		/* RFC 3463 enhanced code of the first line, or "" */
	char *lines[SMTP_REPLY_MAX_LINES];	/* text after "NNN-" / "NNN " */
	unsigned n_lines;
	size_t bytes;
	bool done;
};

struct smtp_caps {
	bool pipelining;
	bool chunking;
	bool eightbitmime;
	bool smtputf8;
	bool starttls;
	bool enhanced;
	uint64_t size;		/* 0: no limit announced */
	char auth[256];		/* mechanisms, space separated */
};

enum smtp_stage {
	SMTP_GREETING,
	SMTP_EHLO,
	SMTP_STARTTLS,
	SMTP_AUTH,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_DATA_END,
	SMTP_RSET,
};

enum smtp_verdict {
	SMTP_OK,
	SMTP_DEFER,		/* try again later */
	SMTP_FAIL,		/* permanent for this recipient or message */
	SMTP_HOLD,		/* a credential problem: hold the whole queue, no retries */
	SMTP_BACKOFF,		/* too many logins: leave the server alone for long */
	SMTP_TOO_MANY,		/* too many recipients: the rest go in another transaction */
};

int smtp_reply_add(struct smtp_reply *r, const char *line, size_t len);
void smtp_reply_clear(struct smtp_reply *r);
char *smtp_reply_text(const struct smtp_reply *r);
void smtp_reply_dsn(const struct smtp_reply *r, char *buf, size_t len);
void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps);
enum smtp_verdict smtp_classify(const struct smtp_reply *r, enum smtp_stage stage);
int64_t smtp_backoff(unsigned attempts);
const char *smtp_verdict_name(enum smtp_verdict v);
