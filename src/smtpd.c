/* SPDX-License-Identifier: MIT */
/*
 * The SMTP server dialog of "sendmail -bs" (RFC 5321), spoken to the user's
 * own mail client over a pipe: no AUTH, no STARTTLS. It holds no socket:
 * bytes come in through smtpd_feed(), replies collect in an output buffer
 * that the caller flushes once the input at hand is used up, which is what
 * RFC 2920 asks of a server for pipelined commands.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"

#define LINE_MAX_CMD 4096	/* RFC 5321 4.5.3.1.4 wants 512; be generous */
#define MAX_RCPT 10000

enum state {
	STATE_READY,		/* between transactions */
	STATE_MAIL,		/* MAIL given */
	STATE_RCPT,		/* at least one RCPT */
	STATE_DATA,		/* reading the message */
	STATE_QUIT,
};

struct smtpd {
	char *hostname;
	struct smtpd_sink sink;
	enum state state;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_cap;
	bool too_long;		/* discarding the rest of an overlong command line */
	char *sender;
	char **rcpt;
	size_t n_rcpt;
	void *msg;		/* the message being received */
	int msg_error;		/* the first error while writing it */
	bool at_bol;
	unsigned queued;
};

static void reply(struct smtpd *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct smtpd *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(s->out + s->out_len, s->out_cap - s->out_len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n + 2 < s->out_cap - s->out_len)
			break;
		size_t cap = (s->out_cap + (size_t)n + 3) * 2;
		char *nb = realloc(s->out, cap);

		if (!nb)
			return;
		s->out = nb;
		s->out_cap = cap;
	}
	s->out_len += (size_t)n;
	memcpy(s->out + s->out_len, "\r\n", 2);
	s->out_len += 2;
}

int
smtpd_new(const char *hostname, const struct smtpd_sink *sink, struct smtpd **out)
{
	struct smtpd *s = calloc(1, sizeof *s);

	if (!s)
		return -ENOMEM;
	s->hostname = strdup(hostname && hostname[0] ? hostname : "localhost");
	s->out_cap = 1024;
	s->out = malloc(s->out_cap);
	if (!s->hostname || !s->out) {
		smtpd_free(s);
		return -ENOMEM;
	}
	s->sink = *sink;
	*out = s;
	return 0;
}

static void
transaction_reset(struct smtpd *s)
{
	size_t i;

	if (s->msg) {
		s->sink.abort(s->msg);
		s->msg = NULL;
	}
	free(s->sender);
	s->sender = NULL;
	for (i = 0; i < s->n_rcpt; i++)
		free(s->rcpt[i]);
	free(s->rcpt);
	s->rcpt = NULL;
	s->n_rcpt = 0;
	s->msg_error = 0;
	if (s->state != STATE_QUIT)
		s->state = STATE_READY;
}

void
smtpd_free(struct smtpd *s)
{
	if (!s)
		return;
	transaction_reset(s);
	free(s->hostname);
	free(s->in);
	free(s->out);
	free(s);
}

void
smtpd_greet(struct smtpd *s)
{
	reply(s, "220 %s ESMTP outbox", s->hostname);
}

bool
smtpd_done(const struct smtpd *s)
{
	return s->state == STATE_QUIT;
}

const char *
smtpd_output(const struct smtpd *s, size_t *len)
{
	*len = s->out_len;
	return s->out;
}

void
smtpd_output_clear(struct smtpd *s)
{
	s->out_len = 0;
}

unsigned
smtpd_queued(const struct smtpd *s)
{
	return s->queued;
}

/* "FROM:" / "TO:" then <path> or a bare path; *params points past it. NULL when malformed. */
static char *
parse_path(const char *arg, const char *prefix, const char **params)
{
	size_t plen = strlen(prefix);
	const char *p, *e;

	if (strncasecmp(arg, prefix, plen) != 0)
		return NULL;
	p = arg + plen;
	while (*p == ' ')
		p++;
	if (*p == '<') {
		const char *q;

		/* A quoted local part may hold '>' */
		for (q = p + 1; *q && *q != '>'; q++)
			if (*q == '"') {
				for (q++; *q && *q != '"'; q++)
					if (*q == '\\' && q[1])
						q++;
				if (!*q)
					break;	/* unterminated: the loop's q++ would pass the NUL */
			}
		if (*q != '>')
			return NULL;
		e = q;
		*params = q + 1;
		p++;
		/* RFC 5321 4.1.2 obsolete source route: drop "@a,@b:" */
		if (*p == '@') {
			const char *colon = memchr(p, ':', (size_t)(e - p));

			if (!colon)
				return NULL;
			p = colon + 1;
		}
	} else {
		e = p + strcspn(p, " ");
		*params = e;
	}
	return strndup(p, (size_t)(e - p));
}

/* A tab or other control character: no envelope address may hold one (see envelope_value_valid). */
static bool
has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* MAIL and RCPT parameters: those we offer are accepted; DSN is not offered (Gmail has none). */
static bool
params_ok(const char *params, bool mail)
{
	char *copy = strdup(params), *tok, *save = NULL;
	bool ok = copy != NULL;

	for (tok = copy ? strtok_r(copy, " ", &save) : NULL; tok && ok; tok = strtok_r(NULL, " ", &save)) {
		if (!mail)
			ok = false;
		else if (strncasecmp(tok, "BODY=", 5) == 0)
			ok = strcasecmp(tok + 5, "7BIT") == 0 || strcasecmp(tok + 5, "8BITMIME") == 0;
		else if (strncasecmp(tok, "SIZE=", 5) == 0)
			ok = tok[5] && strspn(tok + 5, "0123456789") == strlen(tok + 5);
		else if (strcasecmp(tok, "SMTPUTF8") == 0)
			ok = true;
		else
			ok = false;
	}
	free(copy);
	return ok;
}

static void
command(struct smtpd *s, char *line)
{
	char *arg = line + strcspn(line, " ");
	size_t vlen = (size_t)(arg - line);
	const char *params;

	while (*arg == ' ')
		arg++;
#define VERB(v) (vlen == sizeof(v) - 1 && strncasecmp(line, v, vlen) == 0)
	if (VERB("EHLO") || VERB("HELO")) {
		if (!arg[0]) {
			reply(s, "501 5.5.4 Syntax: %s hostname", VERB("EHLO") ? "EHLO" : "HELO");
			return;
		}
		transaction_reset(s);
		if (VERB("HELO")) {
			reply(s, "250 %s", s->hostname);
			return;
		}
		reply(s, "250-%s", s->hostname);
		reply(s, "250-PIPELINING");
		reply(s, "250-8BITMIME");
		reply(s, "250-SMTPUTF8");
		reply(s, "250 ENHANCEDSTATUSCODES");
	} else if (VERB("MAIL")) {
		char *path;

		if (s->state != STATE_READY) {
			reply(s, "503 5.5.1 Error: nested MAIL command");
			return;
		}
		path = parse_path(arg, "FROM:", &params);
		if (!path || has_control(path)) {
			free(path);
			reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
			return;
		}
		if (!params_ok(params, true)) {
			free(path);
			reply(s, "555 5.5.4 Unsupported option: %s", params);
			return;
		}
		s->sender = path;
		s->state = STATE_MAIL;
		reply(s, "250 2.1.0 Ok");
	} else if (VERB("RCPT")) {
		char *path, **nv;

		if (s->state != STATE_MAIL && s->state != STATE_RCPT) {
			reply(s, "503 5.5.1 Error: need MAIL command");
			return;
		}
		path = parse_path(arg, "TO:", &params);
		if (!path || !path[0] || has_control(path)) {
			free(path);
			reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
			return;
		}
		if (!params_ok(params, false)) {
			free(path);
			reply(s, "555 5.5.4 Unsupported option: %s", params);
			return;
		}
		if (s->n_rcpt >= MAX_RCPT) {
			free(path);
			reply(s, "452 4.5.3 Error: too many recipients");
			return;
		}
		nv = realloc(s->rcpt, (s->n_rcpt + 1) * sizeof *nv);
		if (!nv) {
			free(path);
			reply(s, "452 4.3.1 Insufficient system resources");
			return;
		}
		s->rcpt = nv;
		s->rcpt[s->n_rcpt++] = path;
		s->state = STATE_RCPT;
		reply(s, "250 2.1.5 Ok");
	} else if (VERB("DATA")) {
		int r;

		if (s->state == STATE_MAIL) {
			reply(s, "554 5.5.1 Error: no valid recipients");
			return;
		}
		if (s->state != STATE_RCPT) {
			reply(s, "503 5.5.1 Error: need RCPT command");
			return;
		}
		if (arg[0]) {
			reply(s, "501 5.5.4 Syntax: DATA");
			return;
		}
		r = s->sink.begin(s->sink.userdata, s->sender, s->rcpt, s->n_rcpt, &s->msg);
		if (r < 0) {
			s->msg = NULL;
			reply(s, "451 4.3.0 Cannot queue: %s", strerror(-r));
			return;
		}
		s->state = STATE_DATA;
		s->at_bol = true;
		reply(s, "354 End data with <CR><LF>.<CR><LF>");
	} else if (VERB("RSET")) {
		transaction_reset(s);
		reply(s, "250 2.0.0 Ok");
	} else if (VERB("NOOP")) {
		reply(s, "250 2.0.0 Ok");
	} else if (VERB("VRFY")) {
		reply(s, "252 2.5.2 Cannot VRFY user");
	} else if (VERB("HELP")) {
		reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY QUIT");
	} else if (VERB("QUIT")) {
		reply(s, "221 2.0.0 Bye");
		transaction_reset(s);
		s->state = STATE_QUIT;
	} else if (VERB("AUTH") || VERB("STARTTLS") || VERB("BDAT") || VERB("ETRN")) {
		reply(s, "502 5.5.1 Error: command not implemented");
	} else {
		reply(s, "500 5.5.2 Error: command not recognized");
	}
#undef VERB
}

static void
data_write(struct smtpd *s, const char *p, size_t n)
{
	if (n && s->msg && s->msg_error == 0) {
		int r = s->sink.write(s->msg, p, n);

		if (r < 0)
			s->msg_error = r;
	}
}

static void
data_end(struct smtpd *s)
{
	char id[64] = "";
	int r = s->msg_error;

	if (r == 0 && s->msg)
		r = s->sink.commit(s->msg, id, sizeof id);
	else if (s->msg)
		s->sink.abort(s->msg);
	s->msg = NULL;
	if (r == 0) {
		s->queued++;
		reply(s, "250 2.0.0 Ok: queued as %s", id);
	} else if (r == -ENOSPC || r == -EDQUOT) {
		reply(s, "452 4.3.1 Insufficient system storage");
	} else {
		reply(s, "451 4.3.0 Error: queue file write error: %s", strerror(-r));
	}
	s->state = STATE_READY;
	transaction_reset(s);
}

/*
 * DATA: RFC 5321 4.5.2 transparency. A line "." ends the message, a leading
 * dot is removed. Lines pass on as they come, whatever their length; only
 * a line start that may still be the end (".", ".\r") waits for more input.
 * Returns the bytes used.
 */
static size_t
data(struct smtpd *s, const char *buf, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		const char *nl;

		if (s->at_bol && buf[pos] == '.') {
			size_t rest = len - pos;

			if ((rest >= 2 && buf[pos + 1] == '\n') ||
			    (rest >= 3 && buf[pos + 1] == '\r' && buf[pos + 2] == '\n')) {
				pos += buf[pos + 1] == '\n' ? 2 : 3;
				data_end(s);
				return pos;
			}
			if (rest == 1 || (rest == 2 && buf[pos + 1] == '\r'))
				return pos;
			pos++;		/* the stuffed dot */
		}
		nl = memchr(buf + pos, '\n', len - pos);
		if (!nl) {
			data_write(s, buf + pos, len - pos);
			s->at_bol = false;
			return len;
		}
		data_write(s, buf + pos, (size_t)(nl + 1 - (buf + pos)));
		pos = (size_t)(nl - buf) + 1;
		s->at_bol = true;
	}
	return pos;
}

/* Takes what the client sent; replies collect for smtpd_output(). */
int
smtpd_feed(struct smtpd *s, const char *buf, size_t len)
{
	size_t pos = 0;

	if (len == 0)
		return 0;	/* nothing new: what is buffered waits for more already */
	if (s->in_len + len > s->in_cap) {
		size_t cap = s->in_len + len + 4096;
		char *nb = realloc(s->in, cap);

		if (!nb)
			return -ENOMEM;
		s->in = nb;
		s->in_cap = cap;
	}
	memcpy(s->in + s->in_len, buf, len);
	s->in_len += len;

	while (pos < s->in_len && s->state != STATE_QUIT) {
		char *p = s->in + pos, *nl;
		size_t rest = s->in_len - pos, line;

		if (s->state == STATE_DATA) {
			pos += data(s, p, rest);
			if (s->state == STATE_DATA)
				break;	/* need more input */
			continue;
		}
		nl = memchr(p, '\n', rest);
		if (!nl) {
			/* Not yet too long if only the CR of the line end is here. */
			if (rest > LINE_MAX_CMD + 1) {
				s->too_long = true;
				pos = s->in_len;
			}
			break;
		}
		line = (size_t)(nl - p);
		pos += line + 1;
		if (s->too_long) {
			s->too_long = false;
			reply(s, "500 5.5.2 Error: line too long");
			continue;
		}
		if (line && p[line - 1] == '\r')
			line--;
		if (line > LINE_MAX_CMD) {
			reply(s, "500 5.5.2 Error: line too long");
			continue;
		}
		if (memchr(p, '\0', line) || memchr(p, '\r', line)) {
			reply(s, "500 5.5.2 Error: bad character in command");
			continue;
		}
		p[line] = '\0';
		command(s, p);
	}
	memmove(s->in, s->in + pos, s->in_len - pos);
	s->in_len -= pos;
	return 0;
}

/* The client went away: a message without its final "." is not queued. */
void
smtpd_eof(struct smtpd *s)
{
	transaction_reset(s);
	s->state = STATE_QUIT;
}
