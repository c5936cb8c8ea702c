/* SPDX-License-Identifier: MIT */
/*
 * The SMTP client's logic without a socket: server replies (RFC 5321 4.2,
 * multi-line, RFC 3463 enhanced codes), EHLO capabilities, what a reply
 * means for the message (the verdict), and the retry schedule. Everything
 * the server says is untrusted input with bounded size.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp.h"

void
smtp_reply_clear(struct smtp_reply *r)
{
	unsigned i;

	for (i = 0; i < r->n_lines; i++)
		free(r->lines[i]);
	memset(r, 0, sizeof *r);
}

/* "N.N.N" with 1-3 digit parts, class 2, 4 or 5; its length or 0. */
static size_t
enhanced_len(const char *s, size_t len)
{
	size_t i = 0;
	int part;

	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		size_t d = 0;

		while (i < len && isdigit((unsigned char)s[i]) && d < 3) {
			i++;
			d++;
		}
		if (d == 0)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/*
 * Adds one line of a reply. 1: the reply is complete; 0: more lines follow;
 * -EBADMSG: not a reply line, or its code differs from the first line's;
 * -E2BIG: more lines or bytes than we keep.
 */
int
smtp_reply_add(struct smtp_reply *r, const char *line, size_t len)
{
	int code;
	bool last;
	size_t skip = 4, e;

	if (r->done)
		return -EBADMSG;
	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || line[0] < '2' || line[0] > '5')
		return -EBADMSG;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -EBADMSG;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->code && code != r->code)
		return -EBADMSG;
	last = len == 3 || line[3] == ' ';
	if (r->n_lines == SMTP_REPLY_MAX_LINES || r->bytes + len > SMTP_REPLY_MAX_BYTES)
		return -E2BIG;
	if (len <= 3)
		skip = len;
	e = enhanced_len(line + skip, len - skip);
	if (r->n_lines == 0 && e && e < sizeof r->enh) {
		memcpy(r->enh, line + skip, e);
		r->enh[e] = '\0';
	}
	r->code = code;
	r->lines[r->n_lines] = strndup(line + skip, len - skip);
	if (!r->lines[r->n_lines])
		return -ENOMEM;
	r->n_lines++;
	r->bytes += len;
	r->done = last;
	return last ? 1 : 0;
}

/* "535 5.7.8 Username and Password not accepted. Learn more at ..." on one line. */
char *
smtp_reply_text(const struct smtp_reply *r)
{
	size_t len = 4, i;
	char *s, *p;

	for (i = 0; i < r->n_lines; i++)
		len += strlen(r->lines[i]) + 1;
	s = malloc(len + 1);
	if (!s)
		return NULL;
	p = s + sprintf(s, "%03d", r->code);
	for (i = 0; i < r->n_lines; i++) {
		const char *t = r->lines[i];
		size_t e = enhanced_len(t, strlen(t));

		/* The enhanced code is said once, on the first line. */
		if (i > 0 && e && strncmp(t, r->enh, e) == 0)
			t += e;
		while (*t == ' ')
			t++;
		if (*t)
			p += sprintf(p, " %s", t);
	}
	/* Control characters from the server never reach a log line or a state file. */
	for (p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return s;
}

/* The DSN code for logs: the enhanced code, or the class from the basic code. */
void
smtp_reply_dsn(const struct smtp_reply *r, char *buf, size_t len)
{
	if (r->enh[0])
		snprintf(buf, len, "%s", r->enh);
	else
		snprintf(buf, len, "%d.0.0", r->code ? r->code / 100 : 4);
}

void
smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps)
{
	unsigned i;

	memset(caps, 0, sizeof *caps);
	/* The first line is the server's name and greeting. */
	for (i = 1; i < r->n_lines; i++) {
		const char *l = r->lines[i];
		size_t kw = strcspn(l, " =");

#define IS(k) (kw == sizeof(k) - 1 && strncasecmp(l, k, kw) == 0)
		if (IS("PIPELINING"))
			caps->pipelining = true;
		else if (IS("CHUNKING"))
			caps->chunking = true;
		else if (IS("8BITMIME"))
			caps->eightbitmime = true;
		else if (IS("SMTPUTF8"))
			caps->smtputf8 = true;
		else if (IS("STARTTLS"))
			caps->starttls = true;
		else if (IS("ENHANCEDSTATUSCODES"))
			caps->enhanced = true;
		else if (IS("SIZE"))
			caps->size = l[kw] ? strtoull(l + kw + 1, NULL, 10) : 0;
		else if (IS("AUTH")) {
			const char *m = l + kw;

			while (*m == ' ' || *m == '=')
				m++;
			/* Several AUTH lines (old servers also say AUTH=...) add up. */
			if (strlen(caps->auth) + strlen(m) + 2 < sizeof caps->auth) {
				if (caps->auth[0])
					strcat(caps->auth, " ");
				strcat(caps->auth, m);
			}
		}
#undef IS
	}
}

static bool
enh_is(const struct smtp_reply *r, const char *code)
{
	return strcmp(r->enh, code) == 0;
}

static bool
text_has(const struct smtp_reply *r, const char *needle)
{
	unsigned i;

	for (i = 0; i < r->n_lines; i++)
		if (strcasestr(r->lines[i], needle))
			return true;
	return false;
}

/*
 * What a reply means. Gmail's credential replies (535 5.7.8, 534 5.7.9,
 * 534 5.7.14, and any 5xx to AUTH) hold the queue: retrying a wrong password
 * gets accounts locked and bouncing mail for it helps nobody. 454 4.7.0 "Too
 * many login attempts" backs off for long. 550 5.4.5 (daily sending limit) is
 * temporary whatever its class. 452 4.5.3 to RCPT means "the rest in another
 * transaction".
 */
enum smtp_verdict
smtp_classify(const struct smtp_reply *r, enum smtp_stage stage)
{
	int c = r->code;

	if (c >= 200 && c < 400)
		return SMTP_OK;
	if (stage == SMTP_AUTH) {
		if (c == 454 && text_has(r, "Too many login attempts"))
			return SMTP_BACKOFF;
		return c >= 500 ? SMTP_HOLD : SMTP_DEFER;
	}
	if ((c == 530 || c == 534 || c == 535) && (r->enh[0] == '\0' || strncmp(r->enh, "5.7.", 4) == 0))
		return SMTP_HOLD;
	if (enh_is(r, "5.4.5") || enh_is(r, "4.4.5"))
		return SMTP_DEFER;
	if (stage == SMTP_RCPT && c == 452 && (enh_is(r, "4.5.3") || r->enh[0] == '\0'))
		return SMTP_TOO_MANY;
	if (c >= 400 && c < 500)
		return SMTP_DEFER;
	return SMTP_FAIL;
}

/* 5 minutes, doubling, at most an hour between tries. */
int64_t
smtp_backoff(unsigned attempts)
{
	int64_t d = 300;

	while (attempts-- > 1 && d < 3600)
		d *= 2;
	return d > 3600 ? 3600 : d;
}

const char *
smtp_verdict_name(enum smtp_verdict v)
{
	static const char *const names[] = { "sent", "deferred", "bounced", "held", "backoff", "too-many" };

	return names[v];
}
