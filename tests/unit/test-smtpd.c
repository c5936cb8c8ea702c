/* SPDX-License-Identifier: MIT */
/*
 * smtpd.c: whole "sendmail -bs" dialogs replayed from tables against a sink
 * that keeps messages in memory. Each dialog is fed at once (pipelined), byte
 * by byte and in other piece sizes: the replies and the messages must come
 * out the same every time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "test.h"

#define MAX_MSG 4

struct rec_msg {
	char sender[128];
	char rcpt[256];		/* the recipients, joined by "," */
	char *body;
	size_t len;
	bool committed, aborted;
};

struct rec {
	struct rec_msg msg[MAX_MSG];
	size_t n_msg;
	int begin_error, write_error, commit_error;
	unsigned begins, writes, commits, aborts;
};

static int
rec_begin(void *userdata, const char *sender, char **rcpt, size_t n_rcpt, void **msg)
{
	struct rec *r = userdata;
	struct rec_msg *m;
	size_t i;

	r->begins++;
	if (r->begin_error)
		return r->begin_error;
	if (r->n_msg == MAX_MSG)
		return -ENOSPC;
	m = &r->msg[r->n_msg++];
	memset(m, 0, sizeof *m);
	snprintf(m->sender, sizeof m->sender, "%s", sender);
	for (i = 0; i < n_rcpt; i++) {
		size_t l = strlen(m->rcpt);

		snprintf(m->rcpt + l, sizeof m->rcpt - l, "%s%s", i ? "," : "", rcpt[i]);
	}
	*msg = m;
	return 0;
}

static int
rec_write(void *msg, const char *buf, size_t len)
{
	struct rec_msg *m = msg;
	char *nb;

	nb = realloc(m->body, m->len + len + 1);
	if (!nb)
		return -ENOMEM;
	memcpy(nb + m->len, buf, len);
	m->body = nb;
	m->len += len;
	return 0;
}

/* The sink the dialogs use; errors come from the struct rec it belongs to. */
static struct rec *current;

static int
rec_write_checked(void *msg, const char *buf, size_t len)
{
	current->writes++;
	if (current->write_error)
		return current->write_error;
	return rec_write(msg, buf, len);
}

static int
rec_commit(void *msg, char *id, size_t id_size)
{
	struct rec_msg *m = msg;

	current->commits++;
	if (current->commit_error)
		return current->commit_error;
	m->committed = true;
	snprintf(id, id_size, "ID%zu", (size_t)(m - current->msg) + 1);
	return 0;
}

static void
rec_abort(void *msg)
{
	struct rec_msg *m = msg;

	current->aborts++;
	m->aborted = true;
}

static void
rec_clear(struct rec *r)
{
	size_t i;

	for (i = 0; i < r->n_msg; i++)
		free(r->msg[i].body);
	memset(r, 0, sizeof *r);
}

/* Feeds input in pieces of chunk bytes (0: at once); returns all the replies. */
static char *
run(struct rec *r, const char *in, size_t len, size_t chunk, bool eof, size_t *out_len,
    bool *done)
{
	struct smtpd_sink sink = {
		.begin = rec_begin,
		.write = rec_write_checked,
		.commit = rec_commit,
		.abort = rec_abort,
		.userdata = r,
	};
	struct smtpd *s = NULL;
	char *out = NULL;
	size_t pos = 0, olen = 0;

	current = r;
	if (smtpd_new("myhost", &sink, &s) < 0)
		exit(99);
	smtpd_greet(s);
	if (!chunk)
		chunk = len ? len : 1;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		const char *o;
		size_t ol;

		CHECK_INT(smtpd_feed(s, in + pos, n), 0);
		pos += n;
		/* Flush the way sendmail does once the input at hand is used up. */
		o = smtpd_output(s, &ol);
		out = xrealloc(out, olen + ol + 1);
		memcpy(out + olen, o, ol);
		olen += ol;
		smtpd_output_clear(s);
	}
	if (eof)
		smtpd_eof(s);
	{
		const char *o;
		size_t ol;

		o = smtpd_output(s, &ol);
		out = xrealloc(out, olen + ol + 1);
		memcpy(out + olen, o, ol);
		olen += ol;
	}
	out[olen] = '\0';
	*done = smtpd_done(s);
	CHECK_INT(smtpd_queued(s), (int)(r->commits - (r->commit_error ? r->commits : 0)));
	smtpd_free(s);
	*out_len = olen;
	return out;
}

#define GREET "220 myhost ESMTP outbox\r\n"
#define EHLO_IN "EHLO client.example\r\n"
#define EHLO_OUT \
	"250-myhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define GO_DATA "354 End data with <CR><LF>.<CR><LF>\r\n"
#define BYE "221 2.0.0 Bye\r\n"
#define QUEUED(n) "250 2.0.0 Ok: queued as ID" #n "\r\n"

#define BAD_BYTES_IN "NOOP\0x\r\nNOOP\rx\r\nNOOP\r\nQUIT\r\n"
#define LONG_LINE \
	"0123456789012345678901234567890123456789012345678901234567890123456789" \
	"0123456789012345678901234567890123456789012345678901234567890123456789"
#define EXACT_IN                                                                          \
	EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n"              \
	"a\0b\r\n\xc3\xa9\r\nx\ry\r\n.\r.\r\n..\r..\r\n" LONG_LINE "\r\n.\r\nQUIT\r\n"
#define EXACT_BODY "a\0b\r\n\xc3\xa9\r\nx\ry\r\n\r.\r\n.\r..\r\n" LONG_LINE "\r\n"

struct want_msg {
	const char *sender, *rcpt, *body;
	size_t body_len;	/* 0: strlen */
	bool committed;
};

static const struct {
	const char *name;
	const char *in;
	size_t in_len;		/* 0: strlen */
	const char *out;
	bool eof, done;
	int write_error, commit_error, begin_error;
	unsigned aborts;
	struct want_msg msg[MAX_MSG];
} dialogs[] = {
	{ "one message, dot-unstuffing",
	  EHLO_IN "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
	  "Subject: x\r\n\r\n..leading dot\r\n. not the end\r\n...\r\n.\r\nQUIT\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT GO_DATA QUEUED(1) BYE,
	  false, true, 0, 0, 0, 0,
	  { { "alice@example.com", "bob@example.com",
	      "Subject: x\r\n\r\n.leading dot\r\n not the end\r\n..\r\n", 0, true } } },
	{ "HELO, bare LF line ends, lower case",
	  "helo client\nmail from:<a@x.example>\nrcpt to:<b@x.example>\ndata\nbody\n.\nquit\n", 0,
	  GREET "250 myhost\r\n" OK_MAIL OK_RCPT GO_DATA QUEUED(1) BYE,
	  false, true, 0, 0, 0, 0,
	  { { "a@x.example", "b@x.example", "body\n", 0, true } } },
	{ "two transactions, several recipients, null sender",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n"
	  "DATA\r\none\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<d@x.example>\r\nDATA\r\ntwo\r\n.\r\n"
	  "QUIT\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT OK_RCPT GO_DATA QUEUED(1) OK_MAIL OK_RCPT GO_DATA
	  QUEUED(2) BYE,
	  false, true, 0, 0, 0, 0,
	  { { "a@x.example", "b@x.example,c@x.example", "one\r\n", 0, true },
	    { "", "d@x.example", "two\r\n", 0, true } } },
	{ "RSET, NOOP, VRFY, HELP",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRSET\r\nDATA\r\nNOOP\r\n"
	  "VRFY root\r\nHELP\r\nMAIL FROM:<c@x.example>\r\nRCPT TO:<d@x.example>\r\nDATA\r\n"
	  "x\r\n.\r\nQUIT\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT "250 2.0.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n"
	  "250 2.0.0 Ok\r\n252 2.5.2 Cannot VRFY user\r\n"
	  "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY QUIT\r\n" OK_MAIL OK_RCPT
	  GO_DATA QUEUED(1) BYE,
	  false, true, 0, 0, 0, 0,
	  { { "c@x.example", "d@x.example", "x\r\n", 0, true } } },
	{ "out of sequence",
	  EHLO_IN "RCPT TO:<b@x.example>\r\nDATA\r\nMAIL FROM:<a@x.example>\r\n"
	  "MAIL FROM:<a@x.example>\r\nDATA\r\nRCPT TO:<b@x.example>\r\nQUIT\r\n",
	  0,
	  GREET EHLO_OUT "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need RCPT command\r\n"
	  OK_MAIL "503 5.5.1 Error: nested MAIL command\r\n554 5.5.1 Error: no valid recipients\r\n"
	  OK_RCPT BYE,
	  false, true, 0, 0, 0, 0, { { NULL } } },
	{ "EHLO resets the transaction",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\n" EHLO_IN "RCPT TO:<b@x.example>\r\nQUIT\r\n", 0,
	  GREET EHLO_OUT OK_MAIL EHLO_OUT "503 5.5.1 Error: need MAIL command\r\n" BYE,
	  false, true, 0, 0, 0, 0, { { NULL } } },
	{ "syntax errors",
	  "EHLO\r\nHELO \r\n" EHLO_IN "MAIL FROM:<a@x.example\r\nMAIL TO:<a@x.example>\r\n"
	  "MAIL FROM:<a@x.example>\r\nRCPT TO:<>\r\nRCPT <b@x.example>\r\nRCPT TO:<b@x.example>\r\n"
	  "DATA now\r\nFOO\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTARTTLS\r\nBDAT 10 LAST\r\n"
	  "\r\nQUIT\r\n",
	  0,
	  GREET "501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: HELO hostname\r\n" EHLO_OUT
	  "501 5.5.4 Syntax: MAIL FROM:<address>\r\n501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	  OK_MAIL "501 5.5.4 Syntax: RCPT TO:<address>\r\n501 5.5.4 Syntax: RCPT TO:<address>\r\n"
	  OK_RCPT "501 5.5.4 Syntax: DATA\r\n500 5.5.2 Error: command not recognized\r\n"
	  "502 5.5.1 Error: command not implemented\r\n502 5.5.1 Error: command not implemented\r\n"
	  "502 5.5.1 Error: command not implemented\r\n500 5.5.2 Error: command not recognized\r\n"
	  BYE,
	  false, true, 0, 0, 0, 0, { { NULL } } },
	{ "paths: bare, obs-route, quoted local part with >",
	  EHLO_IN "MAIL FROM:alice@example.com\r\nRCPT TO:<@relay.example,@r2.example:bob@example.com>\r\n"
	  "RCPT TO:<\"a>b\"@example.com>\r\nRCPT TO: <c@example.com>\r\nDATA\r\n.\r\nQUIT\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_DATA QUEUED(1) BYE,
	  false, true, 0, 0, 0, 0,
	  { { "alice@example.com", "bob@example.com,\"a>b\"@example.com,c@example.com", "", 0,
	      true } } },
	{ "bad bytes in a command", BAD_BYTES_IN, sizeof BAD_BYTES_IN - 1,
	  GREET "500 5.5.2 Error: bad character in command\r\n"
	  "500 5.5.2 Error: bad character in command\r\n250 2.0.0 Ok\r\n" BYE,
	  false, true, 0, 0, 0, 0, { { NULL } } },
	{ "body bytes exact: NUL, 8-bit, bare CR, long line", EXACT_IN, sizeof EXACT_IN - 1,
	  GREET EHLO_OUT OK_MAIL OK_RCPT GO_DATA QUEUED(1) BYE,
	  false, true, 0, 0, 0, 0,
	  { { "a@x.example", "b@x.example", EXACT_BODY, sizeof EXACT_BODY - 1, true } } },
	{ "EOF mid-DATA aborts",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nhalf a message\r\n.",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT GO_DATA,
	  true, true, 0, 0, 0, 1,
	  { { "a@x.example", "b@x.example", NULL, 0, false } } },
	{ "EOF without QUIT after a message",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nm\r\n.\r\n"
	  "MAIL FROM:<a@x.example>\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT GO_DATA QUEUED(1) OK_MAIL,
	  true, true, 0, 0, 0, 0,
	  { { "a@x.example", "b@x.example", "m\r\n", 0, true } } },
	{ "no EOF, no QUIT: not done",
	  EHLO_IN "NOOP\r\n", 0, GREET EHLO_OUT "250 2.0.0 Ok\r\n",
	  false, false, 0, 0, 0, 0, { { NULL } } },
	{ "input after QUIT is ignored",
	  EHLO_IN "QUIT\r\nNOOP\r\nMAIL FROM:<a@x.example>\r\n", 0, GREET EHLO_OUT BYE,
	  false, true, 0, 0, 0, 0, { { NULL } } },
	{ "sink write error: 451 at the end of data, then the session goes on",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nbody\r\nmore\r\n.\r\n"
	  "NOOP\r\nQUIT\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT GO_DATA
	  "451 4.3.0 Error: queue file write error: Input/output error\r\n250 2.0.0 Ok\r\n" BYE,
	  false, true, -EIO, 0, 0, 1,
	  { { "a@x.example", "b@x.example", NULL, 0, false } } },
	{ "sink out of space: 452",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT GO_DATA "452 4.3.1 Insufficient system storage\r\n" BYE,
	  false, true, -ENOSPC, 0, 0, 1,
	  { { "a@x.example", "b@x.example", NULL, 0, false } } },
	{ "commit error: 451",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n",
	  0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT GO_DATA
	  "451 4.3.0 Error: queue file write error: Input/output error\r\n" BYE,
	  false, true, 0, -EIO, 0, 0,
	  { { "a@x.example", "b@x.example", "body\r\n", 0, false } } },
	{ "begin error: 451 at DATA",
	  EHLO_IN "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nRSET\r\nQUIT\r\n", 0,
	  GREET EHLO_OUT OK_MAIL OK_RCPT "451 4.3.0 Cannot queue: Read-only file system\r\n"
	  "250 2.0.0 Ok\r\n" BYE,
	  false, true, 0, 0, -EROFS, 0, { { NULL } } },
};

static void
check_dialog(size_t i, size_t chunk)
{
	struct rec r;
	size_t out_len, k, nwant = 0;
	bool done;
	size_t in_len = dialogs[i].in_len ? dialogs[i].in_len : strlen(dialogs[i].in);
	char *out;

	memset(&r, 0, sizeof r);
	r.write_error = dialogs[i].write_error;
	r.commit_error = dialogs[i].commit_error;
	r.begin_error = dialogs[i].begin_error;
	out = run(&r, dialogs[i].in, in_len, chunk, dialogs[i].eof, &out_len, &done);
	CHECK_MEM(out, out_len, dialogs[i].out, strlen(dialogs[i].out));
	CHECK_INT(done, dialogs[i].done);
	CHECK_INT(r.aborts, dialogs[i].aborts);
	while (nwant < MAX_MSG && dialogs[i].msg[nwant].sender)
		nwant++;
	CHECK_INT(r.n_msg, nwant);
	for (k = 0; k < r.n_msg && k < nwant; k++) {
		const struct want_msg *w = &dialogs[i].msg[k];

		CHECK_STR(r.msg[k].sender, w->sender);
		CHECK_STR(r.msg[k].rcpt, w->rcpt);
		CHECK_INT(r.msg[k].committed, w->committed);
		CHECK_INT(r.msg[k].aborted, !w->committed && !dialogs[i].commit_error);
		if (w->body)
			CHECK_MEM(r.msg[k].body, r.msg[k].len, w->body,
			          w->body_len ? w->body_len : strlen(w->body));
	}
	/* Never offered: the pipe is the user's own. */
	CHECK(!strstr(out, "AUTH") || strstr(out, "502"));
	CHECK(!strstr(out, "250-AUTH") && !strstr(out, "250 AUTH"));
	CHECK(!strstr(out, "STARTTLS"));
	free(out);
	rec_clear(&r);
}

static void
test_dialogs(void)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 5, 7, 64 };
	size_t i, c;

	for (i = 0; i < sizeof dialogs / sizeof *dialogs; i++)
		for (c = 0; c < sizeof chunks / sizeof *chunks; c++) {
			CASE("dialog: %s, fed in pieces of %zu", dialogs[i].name, chunks[c]);
			check_dialog(i, chunks[c]);
		}
	test_case_name[0] = '\0';
}

/* Runs EHLO then one command; returns the reply to that command. */
static char *
one_reply(const char *cmd)
{
	char in[512], *out, *reply;
	struct rec r;
	size_t len;
	bool done;

	memset(&r, 0, sizeof r);
	snprintf(in, sizeof in, EHLO_IN "%s\r\n", cmd);
	out = run(&r, in, strlen(in), 0, false, &len, &done);
	reply = strdup(out + strlen(GREET EHLO_OUT));
	free(out);
	rec_clear(&r);
	return reply;
}

static void
test_parameters(void)
{
	static const struct {
		const char *cmd;
		const char *code;
	} cases[] = {
		{ "MAIL FROM:<a@x.example> BODY=8BITMIME", "250 " },
		{ "MAIL FROM:<a@x.example> BODY=7BIT", "250 " },
		{ "MAIL FROM:<a@x.example> body=8bitmime", "250 " },
		{ "MAIL FROM:<a@x.example> SIZE=12345", "250 " },
		{ "MAIL FROM:<a@x.example> SMTPUTF8 BODY=8BITMIME SIZE=1", "250 " },
		{ "MAIL FROM:<a@x.example>  BODY=8BITMIME", "250 " },
		{ "MAIL FROM:<a@x.example> BODY=BINARYMIME", "555 " },
		{ "MAIL FROM:<a@x.example> SIZE=", "555 " },
		{ "MAIL FROM:<a@x.example> SIZE=12k", "555 " },
		{ "MAIL FROM:<a@x.example> RET=HDRS", "555 " },
		{ "MAIL FROM:<a@x.example> ENVID=x", "555 " },
		{ "MAIL FROM:<a@x.example> AUTH=<>", "555 " },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *reply;

		CASE("parameters: %s", cases[i].cmd);
		reply = one_reply(cases[i].cmd);
		if (!CHECK(strncmp(reply, cases[i].code, 4) == 0))
			fprintf(stderr, "\treply: %s", reply);
		free(reply);
	}

	/* RCPT parameters: DSN is not offered, so NOTIFY= and ORCPT= are refused. */
	{
		static const char *const rcpt[] = {
			"RCPT TO:<b@x.example> NOTIFY=SUCCESS,FAILURE",
			"RCPT TO:<b@x.example> NOTIFY=NEVER",
			"RCPT TO:<b@x.example> ORCPT=rfc822;b@x.example",
		};
		char in[512], *out;
		struct rec r;
		size_t len;
		bool done;

		for (i = 0; i < sizeof rcpt / sizeof *rcpt; i++) {
			CASE("parameters: %s", rcpt[i]);
			memset(&r, 0, sizeof r);
			snprintf(in, sizeof in, "MAIL FROM:<a@x.example>\r\n%s\r\nDATA\r\n", rcpt[i]);
			out = run(&r, in, strlen(in), 0, false, &len, &done);
			if (!CHECK(strncmp(out + strlen(GREET OK_MAIL), "555 ", 4) == 0))
				fprintf(stderr, "\treplies: %s", out);
			/* The refused recipient is not taken. */
			CHECK(strstr(out, "554 5.5.1 Error: no valid recipients") != NULL);
			CHECK_INT(r.begins, 0);
			free(out);
			rec_clear(&r);
		}
	}
	test_case_name[0] = '\0';
}

static void
test_long_line(void)
{
	size_t n = 5000, len, out_len, chunk;
	char *in = xmalloc(n + 100), *out, *first = NULL;
	struct rec r;
	bool done;

	len = (size_t)sprintf(in, "NOOP ");
	memset(in + len, 'x', n);
	len += n;
	len += (size_t)sprintf(in + len, "\r\nNOOP\r\nQUIT\r\n");
	for (chunk = 0; chunk < 6000; chunk = chunk ? chunk * 4 : 1) {
		CASE("overlong command line, pieces of %zu", chunk);
		memset(&r, 0, sizeof r);
		out = run(&r, in, len, chunk, false, &out_len, &done);
		CHECK_STR(out, GREET "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n" BYE);
		if (first)
			CHECK_STR(out, first);
		free(first);
		first = out;
		rec_clear(&r);
	}
	free(first);

	/* The limit holds wherever the pieces of the line end. */
	{
		static const struct {
			size_t line;
			const char *want;
		} limits[] = {
			{ 4096, GREET "250 2.0.0 Ok\r\n" },
			{ 4097, GREET "500 5.5.2 Error: line too long\r\n" },
		};
		static const size_t pieces[] = { 0, 1, 2, 4096, 4097 };
		size_t l, p;

		for (l = 0; l < 2; l++)
			for (p = 0; p < sizeof pieces / sizeof *pieces; p++) {
				chunk = pieces[p];
				CASE("a command line of %zu bytes, pieces of %zu", limits[l].line, chunk);
				len = (size_t)sprintf(in, "NOOP ");
				memset(in + len, 'x', limits[l].line - 5);
				len = limits[l].line;
				len += (size_t)sprintf(in + len, "\r\n");
				memset(&r, 0, sizeof r);
				out = run(&r, in, len, chunk, false, &out_len, &done);
				CHECK_STR(out, limits[l].want);
				free(out);
			}
	}

	CASE("a long body line needs no memory for itself");
	{
		size_t body = 1 << 20, k;
		char *big = xmalloc(body + 200);

		len = (size_t)sprintf(big, "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n");
		for (k = 0; k < body; k++)
			big[len + k] = (char)('a' + k % 26);
		len += body;
		len += (size_t)sprintf(big + len, "\r\n.\r\n");
		memset(&r, 0, sizeof r);
		out = run(&r, big, len, 4096, false, &out_len, &done);
		CHECK_STR(out, GREET OK_MAIL OK_RCPT GO_DATA QUEUED(1));
		CHECK_INT(r.n_msg, 1);
		CHECK_INT(r.msg[0].len, body + 2);
		free(out);
		rec_clear(&r);
		free(big);
	}
	free(in);
	test_case_name[0] = '\0';
}

/* A DATA line split across feeds, with output flushed in between. */
static void
test_split_data(void)
{
	static const char *const pieces[] = {
		"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nline one ",
		"part two\r",
		"\n.",
		".stuffed\r\n.",
		"\r",
		"\nNOOP\r\n",
	};
	struct smtpd_sink sink = {
		.begin = rec_begin,
		.write = rec_write_checked,
		.commit = rec_commit,
		.abort = rec_abort,
	};
	static const char *const want[] = {
		GREET OK_MAIL OK_RCPT GO_DATA, "", "", "", "", QUEUED(1) "250 2.0.0 Ok\r\n",
	};
	struct smtpd *s;
	struct rec r;
	size_t i;

	CASE("a DATA line split across feeds");
	memset(&r, 0, sizeof r);
	sink.userdata = &r;
	current = &r;
	CHECK_INT(smtpd_new("myhost", &sink, &s), 0);
	smtpd_greet(s);
	for (i = 0; i < sizeof pieces / sizeof *pieces; i++) {
		const char *o;
		size_t ol;

		CHECK_INT(smtpd_feed(s, pieces[i], strlen(pieces[i])), 0);
		o = smtpd_output(s, &ol);
		CHECK_MEM(o, ol, want[i], strlen(want[i]));
		smtpd_output_clear(s);
	}
	CHECK(!smtpd_done(s));
	CHECK_INT(smtpd_queued(s), 1);
	if (CHECK_INT(r.n_msg, 1))
		CHECK_MEM_LIT(r.msg[0].body, r.msg[0].len, "line one part two\r\n.stuffed\r\n");
	smtpd_free(s);
	rec_clear(&r);

	CASE("smtpd_new: no host name");
	CHECK_INT(smtpd_new(NULL, &sink, &s), 0);
	smtpd_greet(s);
	{
		size_t ol;
		const char *o = smtpd_output(s, &ol);

		CHECK_MEM_LIT(o, ol, "220 localhost ESMTP outbox\r\n");
	}
	smtpd_free(s);
	smtpd_free(NULL);
	test_case_name[0] = '\0';
}

int
main(void)
{
	test_dialogs();
	test_parameters();
	test_long_line();
	test_split_data();
	return test_exit("test-smtpd");
}
