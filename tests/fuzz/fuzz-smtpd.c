/* SPDX-License-Identifier: MIT */
/*
 * smtpd.c, the "sendmail -bs" dialog: the input is what the mail client
 * sends. It is fed twice, at once and in pieces whose sizes derive from the
 * input, flushing the replies after each piece as sendmail does. Both runs
 * must give the same replies and the same messages; every reply line is
 * "NNN-text" or "NNN text" ending in CRLF; the sink sees writes only between
 * begin and commit or abort, and every message it handed out comes back.
 *
 * The sink fails on request, so that the error replies run too: a recipient
 * whose local part is "begin-error" or "nospace" fails begin, "write-error"
 * fails the writes, and a sender "commit-error@..." or "quota@..." fails
 * the commit.
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

struct buf {
	char *p;
	size_t len;
};

struct fmsg {
	struct sink *owner;
	struct buf body;
	int write_error, commit_error;
};

struct sink {
	struct fmsg *live;	/* the message between begin and commit/abort */
	struct buf log;		/* messages queued: envelope and body */
	unsigned begins, ends;
};

static void
buf_add(struct buf *b, const char *p, size_t len)
{
	char *nb = realloc(b->p, b->len + len + 1);

	assert(nb);
	b->p = nb;
	memcpy(b->p + b->len, p, len);
	b->len += len;
}

static bool
local_is(const char *addr, const char *local)
{
	size_t n = strlen(local);

	return strncmp(addr, local, n) == 0 && (addr[n] == '@' || addr[n] == '\0');
}

static int
sink_begin(void *userdata, const char *sender, char **rcpt, size_t n_rcpt, void **out)
{
	struct sink *s = userdata;
	struct fmsg *m;
	size_t i;

	assert(!s->live);
	assert(sender && n_rcpt > 0);
	for (i = 0; i < n_rcpt; i++) {
		assert(rcpt[i] && rcpt[i][0]);
		if (local_is(rcpt[i], "begin-error"))
			return -EIO;
		if (local_is(rcpt[i], "nospace"))
			return -ENOSPC;
	}
	m = calloc(1, sizeof *m);
	assert(m);
	m->owner = s;
	for (i = 0; i < n_rcpt; i++)
		if (local_is(rcpt[i], "write-error"))
			m->write_error = -EIO;
	if (local_is(sender, "commit-error"))
		m->commit_error = -EIO;
	else if (local_is(sender, "quota"))
		m->commit_error = -EDQUOT;
	buf_add(&m->body, "from ", 5);
	buf_add(&m->body, sender, strlen(sender) + 1);
	for (i = 0; i < n_rcpt; i++) {
		buf_add(&m->body, "to ", 3);
		buf_add(&m->body, rcpt[i], strlen(rcpt[i]) + 1);
	}
	s->live = m;
	s->begins++;
	*out = m;
	return 0;
}

static int
sink_write(void *msg, const char *p, size_t len)
{
	struct fmsg *m = msg;

	assert(m && m->owner->live == m);
	assert(len > 0);
	if (m->write_error)
		return m->write_error;
	buf_add(&m->body, p, len);
	return 0;
}

static void
msg_end(struct fmsg *m)
{
	assert(m && m->owner->live == m);
	m->owner->live = NULL;
	m->owner->ends++;
	free(m->body.p);
	free(m);
}

static int
sink_commit(void *msg, char *id, size_t id_size)
{
	struct fmsg *m = msg;
	struct sink *s = m->owner;
	int r = m->commit_error;

	assert(id_size >= 17);
	if (r == 0) {
		buf_add(&s->log, m->body.p, m->body.len);
		buf_add(&s->log, "\n.\n", 3);
		snprintf(id, id_size, "ID%u", s->begins);
	}
	msg_end(m);
	return r;
}

static void
sink_abort(void *msg)
{
	msg_end(msg);
}

static uint64_t
hash(const char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3u;
	return h | 1;
}

/* Reply lines: "NNN" then " " or "-" and text, CRLF; no CR or LF inside. */
static void
check_replies(const char *p, size_t len)
{
	size_t pos = 0;

	assert(len == 0 || (len >= 2 && p[len - 2] == '\r' && p[len - 1] == '\n'));
	while (pos < len) {
		const char *e = memchr(p + pos, '\n', len - pos);
		size_t line;

		assert(e && e > p + pos && e[-1] == '\r');
		line = (size_t)(e - (p + pos)) - 1;
		assert(line >= 4);
		assert(p[pos] >= '2' && p[pos] <= '5');
		assert(p[pos + 1] >= '0' && p[pos + 1] <= '9' && p[pos + 2] >= '0' && p[pos + 2] <= '9');
		assert(p[pos + 3] == ' ' || p[pos + 3] == '-');
		assert(!memchr(p + pos, '\r', line) && !memchr(p + pos, '\0', line));
		pos += line + 2;
	}
}

/* One dialog; chunk seed 0 feeds everything at once. Returns the replies. */
static struct buf
run(const char *in, size_t len, uint64_t seed, struct buf *log, unsigned *queued)
{
	struct sink sk = { 0 };
	struct smtpd_sink sink = {
		.begin = sink_begin,
		.write = sink_write,
		.commit = sink_commit,
		.abort = sink_abort,
		.userdata = &sk,
	};
	struct buf replies = { 0 };
	struct smtpd *s = NULL;
	size_t pos = 0, olen;
	const char *o;
	int r;

	r = smtpd_new("myhost", &sink, &s);
	assert(r == 0);
	smtpd_greet(s);
	do {
		size_t n = len - pos;

		if (seed) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			/* Mostly small pieces, now and then one byte, now and then large. */
			switch (seed % 4) {
			case 0: n = 1; break;
			case 1: n = 1 + (seed >> 8) % 8; break;
			case 2: n = 1 + (seed >> 8) % 512; break;
			default: n = 1 + (seed >> 8) % 8192; break;
			}
			if (n > len - pos)
				n = len - pos;
		}
		r = smtpd_feed(s, in + pos, n);
		assert(r == 0);
		pos += n;
		o = smtpd_output(s, &olen);
		check_replies(o, olen);
		buf_add(&replies, o, olen);
		smtpd_output_clear(s);
	} while (pos < len && !smtpd_done(s));
	smtpd_eof(s);
	assert(smtpd_done(s));
	assert(!sk.live && sk.begins == sk.ends);
	o = smtpd_output(s, &olen);
	check_replies(o, olen);
	buf_add(&replies, o, olen);
	*queued = smtpd_queued(s);
	smtpd_free(s);
	*log = sk.log;
	return replies;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct buf r1, r2, l1, l2;
	unsigned q1, q2;

	r1 = run(in, size, 0, &l1, &q1);
	r2 = run(in, size, hash(in, size), &l2, &q2);
	assert(r1.len == r2.len && (r1.len == 0 || memcmp(r1.p, r2.p, r1.len) == 0));
	assert(l1.len == l2.len && (l1.len == 0 || memcmp(l1.p, l2.p, l1.len) == 0));
	assert(q1 == q2);
	free(r1.p);
	free(r2.p);
	free(l1.p);
	free(l2.p);
	return 0;
}
