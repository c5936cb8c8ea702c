/* SPDX-License-Identifier: MIT */
/*
 * Delivery: the queue to the relay over one verified TLS connection, reused
 * for every message that is due. Per recipient, the server's verdict is
 * kept in the message's state before the next message is touched: a
 * recipient the server accepted is never sent the message again.
 *
 * The only window for a duplicate is the one every MTA has (RFC 1047): the
 * connection lost after the final "." and before the server's reply. Every
 * other failure leaves the message as it was, deferred.
 *
 * A credential problem never burns retries: the whole queue is held
 * (queue/account-hold) until "outbox login" clears it.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "fs.h"
#include "log.h"
#include "notify.h"
#include "sasl.h"

#define HEADER_MAX (8u << 20)
#define CHUNK (256u << 10)
#define BATCH_MAX 100		/* Gmail takes 100 recipients per message (452 4.5.3) */
#define CONNECTIONS_PER_RUN 3	/* in a row without a delivery */
#define LOGIN_BACKOFF 3600

enum msg_result {
	MSG_DONE,		/* the message's state is saved; go on */
	MSG_CONN_LOST,		/* saved as deferred; the connection is gone */
	MSG_HOLD,		/* credential problem; nothing was changed */
};

struct txn {
	char **rcpt;		/* this transaction's recipients */
	size_t n;
	enum smtp_verdict *verdict;
	char **reply;
	char (*dsn)[16];
};

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

int
deliver_init(struct deliver *d, struct queue *q, const struct config *cfg)
{
	memset(d, 0, sizeof *d);
	d->q = q;
	d->cfg = cfg;
	return localnames_init(&d->ln);
}

static void
session_close(struct deliver *d, bool quit)
{
	if (!d->conn)
		return;
	if (quit && !d->conn_broken) {
		struct smtp_reply r = { 0 };
		char line[512];
		size_t len;

		/* QUIT politely; the reply is not worth a long wait. */
		d->conn->timeout_ms = 2000;
		if (conn_printf(d->conn, "QUIT\r\n") == 0 && conn_flush(d->conn) == 0)
			(void)conn_read_line(d->conn, line, sizeof line, &len);
		smtp_reply_clear(&r);
	}
	conn_free(d->conn);
	d->conn = NULL;
	d->conn_broken = false;
}

void
deliver_clear(struct deliver *d)
{
	session_close(d, true);
	secret_wipe(&d->secret);
	localnames_clear(&d->ln);
	tls_client_free(d->tls);
	d->tls = NULL;
	free(d->last_sent);
	free(d->last_error);
}

static int
read_reply(struct conn *c, struct smtp_reply *r)
{
	char line[8192];
	size_t len;
	int k;

	memset(r, 0, sizeof *r);
	do {
		k = conn_read_line(c, line, sizeof line, &len);
		if (k < 0)
			return k;
		k = smtp_reply_add(r, line, len);
		if (k < 0) {
			smtp_reply_clear(r);
			return -EPROTO;
		}
	} while (k == 0);
	return 0;
}

static int
command(struct deliver *d, const char *line, struct smtp_reply *r)
{
	int k;

	k = conn_printf(d->conn, "%s\r\n", line);
	if (k == 0)
		k = conn_flush(d->conn);
	if (k == 0)
		k = read_reply(d->conn, r);
	if (k < 0)
		d->conn_broken = true;
	return k;
}

static int
sasl_io(void *userdata, const char *line, struct smtp_reply *r)
{
	return command(userdata, line, r);
}

static const char *
err_text(int k)
{
	return k == -EPROTO ? "malformed reply" : conn_error(k);
}

/* The name we give in EHLO: our FQDN, never "localhost" (Gmail refuses it), else an address literal. */
static void
ehlo_name(struct deliver *d, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char addr[INET6_ADDRSTRLEN] = "127.0.0.1";
	const char *f = d->ln.fqdn;

	if (f && strchr(f, '.') && !address_is_local(f, NULL)) {
		snprintf(buf, len, "%s", f);
		return;
	}
	if (getsockname(d->conn->fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
			snprintf(buf, len, "[IPv6:%s]", addr);
			return;
		}
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
	}
	snprintf(buf, len, "[%s]", addr);
}

static int
ehlo(struct deliver *d, struct smtp_reply *r)
{
	char name[300], line[320];
	int k;

	ehlo_name(d, name, sizeof name);
	snprintf(line, sizeof line, "EHLO %s", name);
	k = command(d, line, r);
	if (k == 0 && r->code == 250)
		smtp_caps_parse(r, &d->caps);
	return k;
}

/*
 * Connects, says EHLO, secures (implicit TLS, or STARTTLS which must be
 * offered) and authenticates. The verdict tells the caller what to do with
 * the messages; text says why.
 */
static enum smtp_verdict
session_open(struct deliver *d, char *text, size_t textlen)
{
	const struct config *c = d->cfg;
	struct smtp_reply r = { 0 };
	char err[512] = "", mech[32];
	char *desc, *rt;
	int k;
	enum smtp_verdict v = SMTP_DEFER;

	d->connections++;
	memset(&d->caps, 0, sizeof d->caps);
	/* The trust, once per process: ca-file is checked now, the CA bundle read on demand. */
	if (!d->tls && tls_client_new(&d->tls, c->ca_file, err, sizeof err) < 0) {
		d->tls = NULL;
		snprintf(text, textlen, "%s", err);
		return SMTP_DEFER;
	}
	k = conn_open(c->host, c->port, (int)c->timeout * 1000, &d->conn, err, sizeof err);
	if (k < 0) {
		snprintf(text, textlen, "%s", err[0] ? err : conn_error(k));
		return SMTP_DEFER;
	}
	if (c->tls == CONFIG_TLS_IMPLICIT) {
		k = conn_starttls(d->conn, d->tls, err, sizeof err);
		if (k < 0)
			goto tls_failed;
	}
	k = read_reply(d->conn, &r);
	if (k < 0)
		goto lost;
	if (r.code != 220)
		goto refused;
	smtp_reply_clear(&r);
	k = ehlo(d, &r);
	if (k < 0)
		goto lost;
	if (r.code != 250)
		goto refused;
	smtp_reply_clear(&r);
	if (c->tls == CONFIG_TLS_STARTTLS) {
		/* Never go on in the clear: no STARTTLS, no mail (a downgrade would expose the password). */
		if (!d->caps.starttls) {
			snprintf(text, textlen, "%s[%s]:%u does not offer STARTTLS; not sending in the clear",
			         c->host, d->conn->peer, c->port);
			goto fail;
		}
		k = command(d, "STARTTLS", &r);
		if (k < 0)
			goto lost;
		if (r.code != 220)
			goto refused;
		smtp_reply_clear(&r);
		/* RFC 3207 4.2: nothing the server sent before TLS may be used after it. */
		if (conn_has_input(d->conn)) {
			snprintf(text, textlen, "%s[%s]: data after STARTTLS before the handshake", c->host,
			         d->conn->peer);
			goto fail;
		}
		k = conn_starttls(d->conn, d->tls, err, sizeof err);
		if (k < 0)
			goto tls_failed;
		k = ehlo(d, &r);
		if (k < 0)
			goto lost;
		if (r.code != 250)
			goto refused;
		smtp_reply_clear(&r);
	}
	desc = conn_tls_description(d->conn);
	log_info("Trusted TLS connection established to %s[%s]:%u: %s", c->host, d->conn->peer, c->port,
	         desc ? desc : "?");
	free(desc);

	k = sasl_authenticate(d->caps.auth, c->address, &d->secret, c->token_command != NULL, sasl_io, d,
	                      &r, mech, sizeof mech, err, sizeof err);
	if (k < 0 && d->conn_broken)
		goto lost;
	if (k < 0) {
		/* No common mechanism: an account problem, not the message's. */
		snprintf(text, textlen, "%s[%s]: %s", c->host, d->conn->peer, err);
		smtp_reply_clear(&r);
		session_close(d, true);
		return SMTP_HOLD;
	}
	v = smtp_classify(&r, SMTP_AUTH);
	if (v != SMTP_OK) {
		rt = smtp_reply_text(&r);
		snprintf(text, textlen, "%s[%s] said: %s (in reply to AUTH %s)", c->host, d->conn->peer,
		         rt ? rt : "?", mech);
		free(rt);
		smtp_reply_clear(&r);
		session_close(d, v != SMTP_DEFER || !d->conn_broken);
		return v;
	}
	smtp_reply_clear(&r);
	return SMTP_OK;

refused:
	rt = smtp_reply_text(&r);
	snprintf(text, textlen, "%s[%s] refused the session: %s", c->host, d->conn->peer, rt ? rt : "?");
	free(rt);
	v = smtp_classify(&r, SMTP_EHLO) == SMTP_FAIL ? SMTP_DEFER : smtp_classify(&r, SMTP_EHLO);
	smtp_reply_clear(&r);
	session_close(d, true);
	return v == SMTP_HOLD ? SMTP_HOLD : SMTP_DEFER;
lost:
	snprintf(text, textlen, "lost connection with %s[%s] during the greeting: %s", c->host,
	         d->conn->peer, err_text(k));
	smtp_reply_clear(&r);
	d->conn_broken = true;
	session_close(d, false);
	return SMTP_DEFER;
tls_failed:
	snprintf(text, textlen, "%s", err);
	d->conn_broken = true;
	session_close(d, false);
	return SMTP_DEFER;
fail:
	smtp_reply_clear(&r);
	session_close(d, true);
	return SMTP_DEFER;
}

/*
 * The account-wide hold: written on a credential problem, removed by
 * "outbox login"; why quotes the server (NULL: nothing to quote). Once per
 * run: *held (unless NULL) says it is done, and a second problem adds
 * nothing.
 */
static void
hold_account(struct deliver *d, bool *held, const char *why)
{
	char *text = NULL;
	int n;

	if (held && *held)
		return;
	if (held)
		*held = true;
	if (!why)
		why = "authentication required";
	n = asprintf(&text, "%s; run: outbox login\n", why);
	if (n > 0)
		(void)fs_replace(d->q->dirfd, "account-hold", text, (size_t)n);
	free(text);
	log_event(LOG_ERR, NULL, NULL, "held", "queue held: %s; run: outbox login", why);
}

/* The header section of the stored message, as far as it goes (bounded). */
static int
read_headers(const struct queue_msg *m, char **out, size_t *len)
{
	size_t cap = 16384, n = 0;
	char *buf = NULL;

	for (;;) {
		ssize_t got, h;
		char *nb;

		nb = realloc(buf, cap);
		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		buf = nb;
		got = pread(m->fd, buf + n, cap - n, m->body_offset + (off_t)n);
		if (got < 0) {
			free(buf);
			return -errno;
		}
		n += (size_t)got;
		h = message_header_len(buf, n, got == 0 || (off_t)n >= m->size);
		if (h >= 0) {
			*out = buf;
			*len = (size_t)h;
			return 0;
		}
		if (cap >= HEADER_MAX) {
			/* A header section this long is body as far as we are concerned. */
			*out = buf;
			*len = 0;
			return 0;
		}
		cap *= 2;
	}
}

struct msgctx {
	struct queue_msg *m;
	struct queue_state st;
	char *hdr;		/* the header section as it leaves */
	size_t hdr_len;
	off_t body;		/* file offset of the body */
	bool has_8bit;
	bool utf8;		/* SMTPUTF8 needed */
	uint64_t size;		/* estimate for SIZE= */
	char *sender;
	char **rcpt;		/* resolved recipients */
	size_t n_rcpt;
	char *from_hdr;		/* the From: address, when it differs from the account */
	char *last_reply;
	struct queue *reserved;	/* room for the state's next save is held in this queue */
};

/* Scans the body once: 8-bit bytes and line ends decide BODY= and SIZE=. */
static int
prescan(struct msgctx *mc, char *buf)
{
	off_t off = mc->body, end = mc->m->body_offset + mc->m->size;
	uint64_t lf = 0;
	size_t i;

	mc->has_8bit = message_has_8bit(mc->hdr, mc->hdr_len);
	for (i = 0; i < mc->hdr_len; i++)
		lf += mc->hdr[i] == '\n';
	while (off < end) {
		ssize_t n = pread(mc->m->fd, buf, CHUNK, off);
		const char *p;

		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		if (!mc->has_8bit)
			mc->has_8bit = message_has_8bit(buf, (size_t)n);
		for (p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))); p++)
			lf++;
		off += n;
	}
	mc->size = (uint64_t)mc->hdr_len + (uint64_t)(end - mc->body) + lf;
	return 0;
}

static bool
is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s & 0x80)
			return false;
	return true;
}

static void
msgctx_clear(struct msgctx *mc)
{
	queue_state_clear(&mc->st);
	free(mc->hdr);
	free(mc->sender);
	strv_free(mc->rcpt, mc->n_rcpt);
	free(mc->from_hdr);
	free(mc->last_reply);
	if (mc->reserved)
		queue_state_unreserve(mc->reserved, mc->m);
	queue_msg_free(mc->m);
	memset(mc, 0, sizeof *mc);
}

/* The From: address, if it is not the account (Gmail then rewrites it unless it is an alias). */
static char *
from_mismatch(const char *hdr, size_t len, const char *account)
{
	struct header_field f;
	size_t pos = 0;

	while (message_header_next(hdr, len, &pos, &f)) {
		struct mailbox *mb;
		size_t n;
		char *r = NULL;

		if (!header_is(&f, "From"))
			continue;
		if (message_parse_addresses(f.value, f.value_len, &mb, &n) < 0)
			return NULL;
		if (n >= 1 && strcasecmp(mb[0].addr, account) != 0)
			r = strdup(mb[0].addr);
		mailboxes_free(mb, n);
		return r;
	}
	return NULL;
}

static int
msgctx_open(struct deliver *d, const char *id, struct msgctx *mc, char *buf)
{
	struct message_out o = {
		.account = d->cfg->address,
		.local = &d->ln,
		.alias = config_alias,
		.alias_data = (void *)d->cfg,
	};
	char *raw = NULL;
	size_t raw_len = 0, i;
	int k;

	memset(mc, 0, sizeof *mc);
	k = queue_msg_open(d->q, id, &mc->m);
	if (k < 0)
		return k;
	k = queue_msg_lock(mc->m, false);
	if (k < 0)
		return k;	/* somebody else has it */
	k = queue_state_load(d->q, id, &mc->st);
	if (k < 0)
		return k;
	/*
	 * Room to record the server's verdicts, taken before any is asked for:
	 * an acceptance the state cannot keep (a full disk) would be sent again.
	 */
	raw = queue_state_format(&mc->st, &raw_len);
	if (!raw)
		return -ENOMEM;
	free(raw);
	raw = NULL;
	k = queue_state_reserve(d->q, mc->m, raw_len + 8192 + 1024 * mc->m->env.n_rcpt);
	if (k < 0) {
		log_error("%s: no room in the queue to record its delivery (%s); not sending it now", id,
		          strerror(-k));
		return k;
	}
	mc->reserved = d->q;
	raw_len = 0;
	o.id = mc->m->id;
	o.fullname = mc->m->env.fullname;
	o.arrival = mc->m->env.arrival;
	k = message_resolve_sender(mc->m->env.sender, &o, &mc->sender);
	if (k < 0)
		return k;
	k = message_resolve_rcpts(mc->m->env.rcpt, mc->m->env.n_rcpt, &o, &mc->rcpt, &mc->n_rcpt);
	if (k < 0)
		return k;
	k = read_headers(mc->m, &raw, &raw_len);
	if (k < 0)
		return k;
	mc->body = mc->m->body_offset + (off_t)raw_len;
	k = message_out_headers(raw, raw_len, &o, &mc->hdr, &mc->hdr_len);
	free(raw);
	if (k < 0)
		return k;
	mc->from_hdr = from_mismatch(mc->hdr, mc->hdr_len, d->cfg->address);
	mc->utf8 = !is_ascii(mc->sender);
	for (i = 0; i < mc->n_rcpt; i++)
		if (!is_ascii(mc->rcpt[i]))
			mc->utf8 = true;
	return prescan(mc, buf);
}

static void
note_error(struct deliver *d, const char *id, const char *text)
{
	free(d->last_error);
	if (asprintf(&d->last_error, "error\t%" PRId64 "\t%s\t%s", now_s(), id ? id : "-", text) < 0)
		d->last_error = NULL;
}

/*
 * queue/last: the latest delivery and the latest problem, for "outbox
 * status" and "outbox setup". One line each, replaced together.
 */
static void
write_last(struct deliver *d)
{
	char *old = NULL, *buf = NULL, *line, *save = NULL;
	size_t len = 0, size = 0;
	FILE *f;

	if (!d->last_sent && !d->last_error)
		return;
	(void)fs_read_file(d->q->dirfd, "last", 1u << 16, &old, &len);
	f = open_memstream(&buf, &size);
	if (!f) {
		free(old);
		return;
	}
	for (line = old ? strtok_r(old, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		if ((d->last_sent && strncmp(line, "sent\t", 5) == 0) ||
		    (d->last_error && strncmp(line, "error\t", 6) == 0))
			continue;
		fprintf(f, "%s\n", line);
	}
	if (d->last_sent)
		fprintf(f, "%s\n", d->last_sent);
	if (d->last_error)
		fprintf(f, "%s\n", d->last_error);
	if (fclose(f) == 0)
		(void)fs_replace(d->q->dirfd, "last", buf, size);
	free(buf);
	free(old);
}

/* Seconds since arrival, to a tenth (arrival itself is whole seconds). */
static double
delay_since(int64_t arrival)
{
	struct timespec ts;
	double d;

	clock_gettime(CLOCK_REALTIME, &ts);
	d = (double)(ts.tv_sec - arrival) + (double)ts.tv_nsec / 1e9;
	return d < 0 ? 0 : d;
}

static void
log_rcpt(struct deliver *d, struct msgctx *mc, const char *rcpt, const char *status, const char *dsn,
         const char *reply)
{
	int prio = strcmp(status, "sent") == 0 ? LOG_INFO : strcmp(status, "deferred") == 0 ? LOG_NOTICE
	                                                                                 : LOG_WARNING;

	log_event(prio, mc->m->id, rcpt, status,
	          "%s: to=<%s>, relay=%s[%s]:%u, delay=%.1f, dsn=%s, status=%s (%s)", mc->m->id, rcpt,
	          d->cfg->host, d->conn ? d->conn->peer : "none", d->cfg->port, delay_since(mc->m->env.arrival),
	          dsn, status, reply);
}

/* Records one recipient's outcome in the state (not yet saved). */
static void
record(struct deliver *d, struct msgctx *mc, const char *rcpt, enum smtp_verdict v, const char *dsn,
       const char *reply)
{
	struct queue_rcpt_state *rs = queue_state_rcpt(&mc->st, rcpt);
	const char *status = v == SMTP_OK ? "sent" : v == SMTP_FAIL ? "bounced" : "deferred";

	if (!rs)
		return;
	rs->status = v == SMTP_OK ? QUEUE_RCPT_SENT : v == SMTP_FAIL ? QUEUE_RCPT_FAILED
	                                                            : QUEUE_RCPT_DEFERRED;
	rs->time = now_s();
	free(rs->reply);
	rs->reply = strdup(reply);
	if (v != SMTP_OK) {
		free(mc->last_reply);
		mc->last_reply = strdup(reply);
	}
	if (v == SMTP_OK) {
		d->sent++;
		/* A session that delivered was no failure, however it ended (Gmail closes long ones). */
		d->connections = 0;
		free(d->last_sent);
		if (asprintf(&d->last_sent, "sent\t%" PRId64 "\t%s\t%s\t%s", rs->time, mc->m->id, rcpt,
		             reply) < 0)
			d->last_sent = NULL;
	} else {
		if (v == SMTP_FAIL)
			d->failed++;
		else
			d->deferred++;
		note_error(d, mc->m->id, reply);
	}
	log_rcpt(d, mc, rcpt, status, dsn, reply);
}

static void
record_all(struct deliver *d, struct msgctx *mc, char **rcpt, size_t n, enum smtp_verdict v,
           const char *dsn, const char *reply)
{
	size_t i;

	for (i = 0; i < n; i++)
		record(d, mc, rcpt[i], v, dsn, reply);
}

static void
reply_parts(const struct smtp_reply *r, char **text, char *dsn, size_t dsnlen, const char *after)
{
	char *t = smtp_reply_text(r);

	smtp_reply_dsn(r, dsn, dsnlen);
	if (t && after && asprintf(text, "%s (in reply to %s)", t, after) >= 0)
		free(t);
	else
		*text = t;
}

/* Streams the header section and the body, CRLF and dot-stuffed, in large writes. */
static int
send_body(struct deliver *d, struct msgctx *mc, char *buf, char *wbuf)
{
	off_t off = mc->body, end = mc->m->body_offset + mc->m->size;
	struct wire w;
	size_t n;
	int k = 0;

	wire_init(&w, true);
	/* wbuf holds the encoding of CHUNK bytes: a long header section goes in pieces. */
	for (off_t h = 0; h < (off_t)mc->hdr_len && k == 0; h += CHUNK) {
		size_t piece = mc->hdr_len - (size_t)h < CHUNK ? mc->hdr_len - (size_t)h : CHUNK;

		n = wire_encode(&w, mc->hdr + h, piece, wbuf);
		k = conn_write(d->conn, wbuf, n);
	}
	while (k == 0 && off < end) {
		ssize_t got = pread(mc->m->fd, buf, CHUNK, off);

		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		off += got;
		n = wire_encode(&w, buf, (size_t)got, wbuf);
		k = conn_write(d->conn, wbuf, n);
		if (k == 0)
			k = conn_flush(d->conn);
	}
	if (k == 0) {
		n = wire_finish(&w, wbuf);
		k = conn_write(d->conn, wbuf, n);
	}
	if (k == 0)
		k = conn_flush(d->conn);
	return k;
}

/* MAIL FROM with what the server offers: SIZE=, BODY=8BITMIME, SMTPUTF8. */
static void
mail_command(struct deliver *d, const struct msgctx *mc, char *mail, size_t len)
{
	size_t n = (size_t)snprintf(mail, len, "MAIL FROM:<%s>", mc->sender);

	if (d->caps.size && n < len)
		n += (size_t)snprintf(mail + n, len - n, " SIZE=%" PRIu64, mc->size);
	if (mc->has_8bit && d->caps.eightbitmime && n < len)
		n += (size_t)snprintf(mail + n, len - n, " BODY=8BITMIME");
	if (mc->utf8 && n < len)
		snprintf(mail + n, len - n, " SMTPUTF8");
}

/*
 * One SMTP transaction for up to BATCH_MAX recipients. With PIPELINING,
 * MAIL, every RCPT and DATA leave in one flight and the replies are matched
 * to them in order. Recipients a 452 turned away come back in *later.
 * Returns 0, or <0 when the connection is gone (the caller defers what is left).
 */
static int
transaction(struct deliver *d, struct msgctx *mc, char **rcpt, size_t n, char **later, size_t *n_later,
            char *buf, char *wbuf, bool *hold)
{
	struct smtp_reply r = { 0 };
	char mail[1200], dsn[16], *text = NULL;
	size_t i, accepted = 0;
	bool *ok = calloc(n, sizeof *ok);
	bool pipelining = d->caps.pipelining, data_sent = false;
	enum smtp_verdict v;
	int k = 0;

	if (!ok)
		return -ENOMEM;
	mail_command(d, mc, mail, sizeof mail);
	k = conn_printf(d->conn, "%s\r\n", mail);
	for (i = 0; pipelining && k == 0 && i < n; i++)
		k = conn_printf(d->conn, "RCPT TO:<%s>\r\n", rcpt[i]);
	if (pipelining && k == 0) {
		k = conn_printf(d->conn, "DATA\r\n");
		data_sent = true;
	}
	if (k == 0)
		k = conn_flush(d->conn);
	if (k == 0)
		k = read_reply(d->conn, &r);
	if (k < 0)
		goto lost;
	v = smtp_classify(&r, SMTP_MAIL);
	if (v != SMTP_OK) {
		reply_parts(&r, &text, dsn, sizeof dsn, "MAIL FROM");
		smtp_reply_clear(&r);
		if (v == SMTP_HOLD) {
			hold_account(d, hold, text);
		} else {
			record_all(d, mc, rcpt, n, v, dsn, text ? text : "?");
		}
		free(text);
		text = NULL;
		/* With pipelining the RCPT and DATA replies (503s) are still to come. */
		for (i = 0; pipelining && k == 0 && i < n + 1; i++) {
			k = read_reply(d->conn, &r);
			if (k == 0 && i == n && r.code == 354) {
				/* A server that said 354 anyway gets an empty message ended at once. */
				k = conn_printf(d->conn, ".\r\n");
				if (k == 0)
					k = conn_flush(d->conn);
				smtp_reply_clear(&r);
				if (k == 0)
					k = read_reply(d->conn, &r);
			}
			smtp_reply_clear(&r);
		}
		if (k == 0) {
			k = command(d, "RSET", &r);
			smtp_reply_clear(&r);
		}
		free(ok);
		return k < 0 ? -EPIPE : 0;
	}
	smtp_reply_clear(&r);

	for (i = 0; i < n; i++) {
		if (!pipelining) {
			char line[1024];

			snprintf(line, sizeof line, "RCPT TO:<%s>", rcpt[i]);
			k = command(d, line, &r);
		} else {
			k = read_reply(d->conn, &r);
		}
		if (k < 0)
			goto lost;
		v = smtp_classify(&r, SMTP_RCPT);
		if (v == SMTP_OK) {
			ok[i] = true;
			accepted++;
		} else if (v == SMTP_TOO_MANY) {
			later[(*n_later)++] = rcpt[i];
		} else {
			reply_parts(&r, &text, dsn, sizeof dsn, "RCPT TO");
			if (v == SMTP_HOLD) {
				/* A credential problem: the whole queue waits for outbox login. */
				hold_account(d, hold, text);
				v = SMTP_DEFER;
			}
			record(d, mc, rcpt[i], v, dsn, text ? text : "?");
			free(text);
			text = NULL;
		}
		smtp_reply_clear(&r);
	}

	if (!data_sent && accepted) {
		k = conn_printf(d->conn, "DATA\r\n");
		if (k == 0)
			k = conn_flush(d->conn);
		data_sent = true;
	}
	if (data_sent) {
		k = k < 0 ? k : read_reply(d->conn, &r);
		if (k < 0)
			goto lost;
		if (r.code == 354 && accepted == 0) {
			/* RFC 2920 3.1: nobody to send to, end the data at once. */
			smtp_reply_clear(&r);
			k = conn_printf(d->conn, ".\r\n");
			if (k == 0)
				k = conn_flush(d->conn);
			if (k == 0)
				k = read_reply(d->conn, &r);
			if (k < 0)
				goto lost;
			smtp_reply_clear(&r);
			goto rset;
		}
		if (r.code != 354) {
			v = smtp_classify(&r, SMTP_DATA);
			reply_parts(&r, &text, dsn, sizeof dsn, "DATA");
			smtp_reply_clear(&r);
			for (i = 0; i < n; i++)
				if (ok[i])
					record(d, mc, rcpt[i], v == SMTP_OK ? SMTP_DEFER : v, dsn, text ? text : "?");
			free(text);
			text = NULL;
			goto rset;
		}
		smtp_reply_clear(&r);
		k = send_body(d, mc, buf, wbuf);
		if (k < 0)
			goto lost;
		/* From here to the reply is the window where a lost connection may mean a duplicate. */
		k = read_reply(d->conn, &r);
		if (k < 0) {
			char why[256];

			snprintf(why, sizeof why,
			         "lost connection with %s[%s] after end of data, before the reply (%s); "
			         "the message may have been delivered",
			         d->cfg->host, d->conn->peer, err_text(k));
			for (i = 0; i < n; i++)
				if (ok[i])
					record(d, mc, rcpt[i], SMTP_DEFER, "4.4.2", why);
			goto gone;
		}
		v = smtp_classify(&r, SMTP_DATA_END);
		reply_parts(&r, &text, dsn, sizeof dsn, v == SMTP_OK ? NULL : "end of DATA");
		smtp_reply_clear(&r);
		if (v == SMTP_HOLD) {
			hold_account(d, hold, text);
			v = SMTP_DEFER;
		}
		for (i = 0; i < n; i++)
			if (ok[i])
				record(d, mc, rcpt[i], v, dsn, text ? text : "?");
		free(text);
		free(ok);
		return 0;
	}
rset:
	k = command(d, "RSET", &r);
	smtp_reply_clear(&r);
	free(ok);
	return k < 0 ? -EPIPE : 0;

lost:
	{
		char why[256];

		snprintf(why, sizeof why, "lost connection with %s[%s] while sending the message: %s",
		         d->cfg->host, d->conn ? d->conn->peer : "?", err_text(k));
		/* Nothing was accepted for good: every recipient still open waits. */
		for (i = 0; i < n; i++)
			record(d, mc, rcpt[i], SMTP_DEFER, "4.4.2", why);
		for (i = 0; i < *n_later; i++)
			record(d, mc, later[i], SMTP_DEFER, "4.4.2", why);
		*n_later = 0;
	}
gone:
	smtp_reply_clear(&r);
	free(text);
	free(ok);
	d->conn_broken = true;
	return -EPIPE;
}

static void
enqueue_bounce(struct deliver *d, struct msgctx *mc)
{
	struct envelope env = { 0 };
	struct queue_writer *w;
	char id[QUEUE_ID_LEN + 1], date[64], *rcpt[1];
	char *body = NULL;
	size_t len = 0, i;
	FILE *f;

	if (!mc->sender[0])
		return;		/* never bounce a bounce */
	f = open_memstream(&body, &len);
	if (!f)
		return;
	message_format_date(now_s(), date, sizeof date);
	fprintf(f, "From: \"Mail Delivery System (outbox)\" <%s>\n", d->cfg->address);
	fprintf(f, "To: %s\nDate: %s\nSubject: Undelivered Mail Returned to Sender\n", d->cfg->address, date);
	fprintf(f, "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
	fprintf(f, "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n");
	fprintf(f, "This is outbox on %s.\n\n", d->ln.fqdn ? d->ln.fqdn : "this machine");
	fprintf(f, "Your message %s could not be delivered to one or more recipients.\n", mc->m->id);
	fprintf(f, "It is kept in your queue: \"outbox show %s\" shows it, \"outbox retry %s\"\n",
	        mc->m->id, mc->m->id);
	fprintf(f, "sends it again, \"outbox delete %s\" removes it.\n\n", mc->m->id);
	for (i = 0; i < mc->st.n_rcpt; i++)
		if (mc->st.rcpt[i].status == QUEUE_RCPT_FAILED)
			fprintf(f, "<%s>: %s\n", mc->st.rcpt[i].addr,
			        mc->st.rcpt[i].reply ? mc->st.rcpt[i].reply : "failed");
	fprintf(f, "\n--- The headers of your message ---\n\n");
	fwrite(mc->hdr, 1, mc->hdr_len, f);
	if (fclose(f) != 0) {
		free(body);
		return;
	}
	env.arrival = now_s();
	env.user = "outboxd";
	env.sender = "";
	rcpt[0] = d->cfg->address;
	env.rcpt = rcpt;
	env.n_rcpt = 1;
	if (queue_writer_new(d->q, &env, &w) == 0) {
		if (queue_writer_write(w, body, len) == 0 && queue_writer_commit(w, id) == 0) {
			log_info("%s: sender non-delivery notification: %s", mc->m->id, id);
			d->bounced++;
		}
		else
			queue_writer_free(w);
	}
	free(body);
}

/* Saves the state after an attempt; a message with every recipient sent is removed. */
static void
finish_msg(struct deliver *d, struct msgctx *mc)
{
	enum queue_status s;
	int k;

	mc->st.attempts++;
	mc->st.last = now_s();
	if (!mc->st.first)
		mc->st.first = mc->st.last;
	s = queue_state_status(&mc->st, mc->rcpt, mc->n_rcpt, 0);
	if (s == QUEUE_SENT) {
		k = queue_msg_remove(d->q, mc->m);
		if (k < 0)
			log_error("%s: cannot remove: %s", mc->m->id, strerror(-k));
		else
			log_event(LOG_INFO, mc->m->id, NULL, "removed", "%s: removed", mc->m->id);
		return;
	}
	if (mc->last_reply) {
		free(mc->st.reply);
		mc->st.reply = strdup(mc->last_reply);
		queue_state_log(&mc->st, mc->st.last, mc->last_reply);
	}
	if (s == QUEUE_QUEUED || s == QUEUE_DEFERRED) {
		/* Retry on the backoff schedule, but never past the message's lifetime. */
		mc->st.next = mc->st.last + smtp_backoff(mc->st.attempts);
		if (mc->st.next > mc->m->env.arrival + d->cfg->lifetime)
			mc->st.next = mc->m->env.arrival + d->cfg->lifetime;
	}
	k = queue_state_save(d->q, mc->m, &mc->st);
	if (k < 0)
		log_error("%s: cannot save the delivery state: %s", mc->m->id, strerror(-k));
	if (s == QUEUE_FAILED) {
		char *body = NULL;

		log_event(LOG_WARNING, mc->m->id, NULL, "failed", "%s: failed for good, kept in the queue: %s",
		          mc->m->id, mc->st.reply ? mc->st.reply : "");
		if (asprintf(&body, "Message %s could not be delivered: %s", mc->m->id,
		             mc->st.reply ? mc->st.reply : "") >= 0)
			notify_desktop("Mail not delivered", body);
		free(body);
		enqueue_bounce(d, mc);
	}
}

static void
duration_text(int64_t sec, char *buf, size_t len)
{
	if (sec >= 86400)
		snprintf(buf, len, "%" PRId64 " day%s", sec / 86400, sec / 86400 == 1 ? "" : "s");
	else if (sec >= 3600)
		snprintf(buf, len, "%" PRId64 " hour%s", sec / 3600, sec / 3600 == 1 ? "" : "s");
	else if (sec >= 60)
		snprintf(buf, len, "%" PRId64 " minute%s", sec / 60, sec / 60 == 1 ? "" : "s");
	else
		snprintf(buf, len, "%" PRId64 " second%s", sec, sec == 1 ? "" : "s");
}

static void
expired_text(const struct deliver *d, const char *last, char *buf, size_t len)
{
	char life[32];

	duration_text(d->cfg->lifetime, life, sizeof life);
	/* An earlier expiry's text is not nested in the new one. */
	if (last && strncmp(last, "message expired", 15) == 0)
		last = NULL;
	snprintf(buf, len, "message expired after %s in the queue; last reply: %s", life, last ? last : "none");
}

/* The recipients still to do, and those that fail before any server sees them. */
static size_t
todo(struct deliver *d, struct msgctx *mc, char **out)
{
	bool expired = mc->st.attempts > 0 && now_s() >= mc->m->env.arrival + d->cfg->lifetime;
	size_t i, n = 0;

	for (i = 0; i < mc->n_rcpt; i++) {
		const struct queue_rcpt_state *rs = queue_state_find(&mc->st, mc->rcpt[i]);
		char why[600];

		if (rs && (rs->status == QUEUE_RCPT_SENT || rs->status == QUEUE_RCPT_FAILED))
			continue;
		if (!message_address_sane(mc->rcpt[i])) {
			record(d, mc, mc->rcpt[i], SMTP_FAIL, "5.1.3", "bad recipient address syntax");
		} else if (expired) {
			expired_text(d, rs && rs->reply ? rs->reply : mc->st.reply, why, sizeof why);
			record(d, mc, mc->rcpt[i], SMTP_FAIL, "4.4.7", why);
		} else if (mc->utf8 && !d->caps.smtputf8) {
			record(d, mc, mc->rcpt[i], SMTP_FAIL, "5.6.7",
			       "the address needs SMTPUTF8, which the server does not offer");
		} else if (d->caps.size && mc->size > d->caps.size) {
			snprintf(why, sizeof why,
			         "message size %" PRIu64 " exceeds the server's limit of %" PRIu64 " bytes",
			         mc->size, d->caps.size);
			record(d, mc, mc->rcpt[i], SMTP_FAIL, "5.3.4", why);
		} else {
			out[n++] = mc->rcpt[i];
		}
	}
	return n;
}

static enum msg_result
deliver_msg(struct deliver *d, struct msgctx *mc, char *buf, char *wbuf)
{
	char **rcpt, **later;
	size_t n, n_later = 0;
	bool hold = false;
	int k = 0;

	if (!message_address_sane(mc->sender)) {
		size_t i;

		for (i = 0; i < mc->n_rcpt; i++)
			record(d, mc, mc->rcpt[i], SMTP_FAIL, "5.1.7", "bad sender address syntax");
		finish_msg(d, mc);
		return MSG_DONE;
	}
	rcpt = calloc(mc->n_rcpt + 1, sizeof *rcpt);
	later = calloc(mc->n_rcpt + 1, sizeof *later);
	if (!rcpt || !later) {
		free(rcpt);
		free(later);
		return MSG_DONE;
	}
	n = todo(d, mc, rcpt);
	if (n && mc->from_hdr && mc->st.attempts == 0)
		log_event(LOG_NOTICE, mc->m->id, NULL, NULL,
		          "%s: From: <%s> is not the account <%s>: Gmail rewrites it unless it is a "
		          "verified \"Send mail as\" address", mc->m->id, mc->from_hdr, d->cfg->address);
	if (n)
		log_event(LOG_INFO, mc->m->id, NULL, NULL, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%zu",
		          mc->m->id, mc->sender, mc->size, n);
	while (n > 0 && !hold) {
		size_t batch = n > BATCH_MAX ? BATCH_MAX : n, prev_later = n_later;

		k = transaction(d, mc, rcpt, batch, later, &n_later, buf, wbuf, &hold);
		if (k < 0) {
			/* Defer the recipients no transaction has tried yet. */
			size_t i;
			char why[256];

			snprintf(why, sizeof why, "lost connection with %s before this recipient was tried",
			         d->cfg->host);
			for (i = batch; i < n; i++)
				record(d, mc, rcpt[i], SMTP_DEFER, "4.4.2", why);
			break;
		}
		memmove(rcpt, rcpt + batch, (n - batch) * sizeof *rcpt);
		n -= batch;
		if (n == 0 && n_later > 0) {
			/* 452 4.5.3: those go in a transaction of their own, unless none got through. */
			if (n_later == prev_later + batch && batch == n_later) {
				size_t i;

				for (i = 0; i < n_later; i++)
					record(d, mc, later[i], SMTP_DEFER, "4.5.3", "too many recipients");
				n_later = 0;
				break;
			}
			memcpy(rcpt, later, n_later * sizeof *rcpt);
			n = n_later;
			n_later = 0;
		}
	}
	free(rcpt);
	free(later);
	if (hold && !mc->last_reply) {
		/* Held before anything was decided: the message stays exactly as it was. */
		return MSG_HOLD;
	}
	finish_msg(d, mc);
	if (hold)
		return MSG_HOLD;
	return k < 0 ? MSG_CONN_LOST : MSG_DONE;
}

/*
 * Pipelining across messages (RFC 2920 with RFC 3030 CHUNKING): with BDAT
 * a whole transaction — MAIL, every RCPT, the body in BDAT chunks, the last
 * with LAST — leaves without waiting for a reply, and the next message
 * follows it at once. Up to WINDOW messages are in flight; their replies
 * come back in the order the commands went out and are matched to them
 * exactly: one for MAIL, one per RCPT, one per BDAT, one for each RSET.
 *
 * A transaction that fails is followed by an RSET in the stream. A 503
 * ("bad sequence") is never a verdict on a recipient: it means the server
 * was still in an earlier, failed transaction, so that message's state is
 * left as it was and it is sent again after the RSET.
 */
#define WINDOW 16
#define WINDOW_BYTES (4u << 20)

struct flight {
	struct msgctx mc;	/* holds the message's lock while in flight */
	bool rset;		/* only an RSET: one reply to read and forget */
	char **rcpt;		/* this transaction's recipients (in mc.rcpt) */
	size_t n;
	size_t chunks;		/* BDAT commands sent */
	size_t bytes;
	bool complete;		/* BDAT LAST went out whole */
	int64_t started;	/* recipients decided before this are from an earlier try */
	bool rset_first;	/* RSET before MAIL: an earlier flight's transaction may be open */
};

struct window {
	struct flight *f[WINDOW + 1];
	size_t n;
	size_t bytes;
	bool hold;		/* a credential problem was seen */
	char (*requeue)[QUEUE_ID_LEN + 1];	/* to send again: after a 503, or a 421 (see closing) */
	size_t n_requeue;
	char *closing;		/* a 421 ended this session: its text */
	char *requeue_why;	/* the latest 421 that turned messages back */
};

static void
flight_free(struct flight *f)
{
	if (!f)
		return;
	free(f->rcpt);
	msgctx_clear(&f->mc);
	free(f);
}

/* Encodes and queues one BDAT chunk for src (a piece of the message); last adds LAST. */
static int
bdat_chunk(struct deliver *d, struct flight *f, struct wire *w, const char *src, size_t len, bool last,
           char *wbuf)
{
	size_t n = wire_encode(w, src, len, wbuf);
	int k;

	if (last)
		n += wire_finish(w, wbuf + n);
	if (n == 0 && !last)
		return 0;
	k = conn_printf(d->conn, "BDAT %zu%s\r\n", n, last ? " LAST" : "");
	if (k == 0)
		k = conn_write(d->conn, wbuf, n);
	f->chunks++;
	f->bytes += n;
	/* Large bodies leave as they are read, in large writes. */
	if (k == 0 && d->conn->out_len >= CHUNK)
		k = conn_flush(d->conn);
	return k;
}

/* Writes a whole transaction without waiting for any reply. */
static int
flight_send(struct deliver *d, struct flight *f, char *buf, char *wbuf)
{
	off_t off = f->mc.body, end = f->mc.m->body_offset + f->mc.m->size;
	char mail[1200];
	struct wire w;
	size_t i, h;
	int k;

	mail_command(d, &f->mc, mail, sizeof mail);
	k = f->rset_first ? conn_printf(d->conn, "RSET\r\n") : 0;
	if (k == 0)
		k = conn_printf(d->conn, "%s\r\n", mail);
	for (i = 0; k == 0 && i < f->n; i++)
		k = conn_printf(d->conn, "RCPT TO:<%s>\r\n", f->rcpt[i]);
	wire_init(&w, false);
	for (h = 0; k == 0 && h < f->mc.hdr_len; h += CHUNK) {
		size_t piece = f->mc.hdr_len - h < CHUNK ? f->mc.hdr_len - h : CHUNK;

		k = bdat_chunk(d, f, &w, f->mc.hdr + h, piece, h + piece == f->mc.hdr_len && off >= end, wbuf);
	}
	while (k == 0 && off < end) {
		ssize_t got = pread(f->mc.m->fd, buf, CHUNK, off);

		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		off += got;
		k = bdat_chunk(d, f, &w, buf, (size_t)got, off >= end, wbuf);
	}
	if (k == 0)
		k = conn_flush(d->conn);
	if (k == 0)
		f->complete = true;
	return k;
}

/*
 * Recipients of a flight not yet decided wait: the connection went away;
 * or the server ended the session with a 421 (closing: why, verbatim) at
 * this message or before it, which then cannot have been delivered.
 */
static void
flight_lost(struct deliver *d, struct flight *f, int k, const char *closing)
{
	char why[600];
	size_t i;

	if (f->rset)
		return;
	if (closing)
		snprintf(why, sizeof why, "%s", closing);
	else if (f->complete)
		snprintf(why, sizeof why,
		         "lost connection with %s[%s] after end of data, before the reply (%s); "
		         "the message may have been delivered",
		         d->cfg->host, d->conn ? d->conn->peer : "?", err_text(k));
	else
		snprintf(why, sizeof why, "lost connection with %s[%s] while sending the message: %s",
		         d->cfg->host, d->conn ? d->conn->peer : "?", err_text(k));
	for (i = 0; i < f->n; i++) {
		const struct queue_rcpt_state *rs = queue_state_find(&f->mc.st, f->rcpt[i]);

		if (!rs || rs->status == QUEUE_RCPT_PENDING || rs->time < f->started)
			record(d, &f->mc, f->rcpt[i], SMTP_DEFER, "4.4.2", why);
	}
	finish_msg(d, &f->mc);
}

/*
 * A 421 ends the session; the commands after it were never read. On a
 * session that delivered mail it is a per-connection limit (Gmail closes
 * long sessions so): what it did not take goes again at once, on a new
 * connection. Before any delivery it is the server saying "later", and the
 * messages wait on the backoff schedule.
 */
static void
note_closing(struct window *win, const struct smtp_reply *r, const char *after)
{
	char dsn[16];

	if (!win->closing)
		reply_parts(r, &win->closing, dsn, sizeof dsn, after);
}

/* A 421 on a session that delivered: record() sets connections back to 0 at each acceptance. */
static bool
closing_requeues(const struct deliver *d, const struct window *win)
{
	return win->closing && d->connections == 0;
}

/* Never tried for real: its state stays, and it goes again later in this run. */
static void
requeue(struct window *win, struct flight *f)
{
	void *nv = realloc(win->requeue, (win->n_requeue + 1) * sizeof *win->requeue);

	if (nv) {
		win->requeue = nv;
		memcpy(win->requeue[win->n_requeue++], f->mc.m->id, QUEUE_ID_LEN + 1);
	}
	if (win->closing) {
		free(win->requeue_why);
		win->requeue_why = strdup(win->closing);
	}
}

static int
push_rset(struct window *win)
{
	struct flight *f = calloc(1, sizeof *f);

	if (!f)
		return -ENOMEM;
	f->rset = true;
	win->f[win->n++] = f;
	return 0;
}

/*
 * Reads the replies of the oldest flight and records them. Returns <0 when
 * the connection is gone (the caller gives up the rest of the window).
 */
static int
flight_collect(struct deliver *d, struct window *win)
{
	struct flight *f = win->f[0];
	struct smtp_reply r = { 0 };
	bool mail_ok = false, failed = false, bad_sequence = false, *ok = NULL;
	size_t i, accepted = 0, recorded = 0;
	char dsn[16], *text = NULL, *chunk_error = NULL, chunk_dsn[16] = "";
	enum smtp_verdict v, chunk_v = SMTP_OK;
	const char *stage = "RSET";	/* what the reply being read answers */
	int k;

	memmove(win->f, win->f + 1, --win->n * sizeof *win->f);
	win->bytes -= f->bytes;
	if (f->rset) {
		k = read_reply(d->conn, &r);
		if (k == 0 && r.code == 421) {
			note_closing(win, &r, "RSET");
			k = -ECONNABORTED;
		}
		smtp_reply_clear(&r);
		flight_free(f);
		return k;
	}
	ok = calloc(f->n + 1, sizeof *ok);
	if (!ok) {
		flight_free(f);
		return -ENOMEM;
	}
	/* RSET: whatever it says, MAIL's reply tells how this transaction starts */
	if (f->rset_first) {
		k = read_reply(d->conn, &r);
		if (k < 0)
			goto lost;
		if (r.code == 421)
			goto closed;
		smtp_reply_clear(&r);
	}
	/* MAIL */
	stage = "MAIL FROM";
	k = read_reply(d->conn, &r);
	if (k < 0)
		goto lost;
	if (r.code == 421)
		goto closed;
	v = smtp_classify(&r, SMTP_MAIL);
	if (r.code == 503) {
		bad_sequence = true;
	} else if (v == SMTP_HOLD) {
		reply_parts(&r, &text, dsn, sizeof dsn, "MAIL FROM");
		hold_account(d, &win->hold, text);
		failed = true;
	} else if (v != SMTP_OK) {
		reply_parts(&r, &text, dsn, sizeof dsn, "MAIL FROM");
		if (!win->hold) {
			record_all(d, &f->mc, f->rcpt, f->n, v, dsn, text ? text : "?");
			recorded += f->n;
		}
		failed = true;
	} else {
		mail_ok = true;
	}
	free(text);
	text = NULL;
	smtp_reply_clear(&r);
	/* RCPT, one reply each */
	stage = "RCPT TO";
	for (i = 0; i < f->n; i++) {
		k = read_reply(d->conn, &r);
		if (k < 0)
			goto lost;
		if (r.code == 421)
			goto closed;
		if (mail_ok) {
			v = smtp_classify(&r, SMTP_RCPT);
			if (r.code == 503) {
				bad_sequence = true;
			} else if (v == SMTP_OK) {
				ok[i] = true;
				accepted++;
			} else if (v == SMTP_HOLD) {
				/* A credential problem: the whole queue waits for outbox login. */
				reply_parts(&r, &text, dsn, sizeof dsn, "RCPT TO");
				hold_account(d, &win->hold, text);
				free(text);
				text = NULL;
				failed = true;
			} else if (!win->hold) {
				reply_parts(&r, &text, dsn, sizeof dsn, "RCPT TO");
				/* Too many recipients cannot happen below BATCH_MAX; if it does, later. */
				record(d, &f->mc, f->rcpt[i], v == SMTP_TOO_MANY ? SMTP_DEFER : v, dsn,
				       text ? text : "?");
				recorded++;
				free(text);
				text = NULL;
			}
		}
		smtp_reply_clear(&r);
	}
	/* BDAT, one reply each; the last one's is the verdict on the message */
	stage = "BDAT";
	for (i = 0; i < f->chunks; i++) {
		bool last = i + 1 == f->chunks;

		k = read_reply(d->conn, &r);
		if (k < 0)
			goto lost;
		if (r.code == 421)
			goto closed;
		v = smtp_classify(&r, SMTP_DATA_END);
		/* After a chunk of this message was refused, 503s are its own transaction's end. */
		if (r.code == 503 && !failed && !chunk_error) {
			bad_sequence = true;
		} else if (v != SMTP_OK && !chunk_error) {
			chunk_v = v;
			reply_parts(&r, &chunk_error, chunk_dsn, sizeof chunk_dsn, "BDAT");
		}
		if (last && accepted && !bad_sequence) {
			if (chunk_error) {
				if (!win->hold && chunk_v != SMTP_HOLD) {
					for (size_t j = 0; j < f->n; j++)
						if (ok[j])
							record(d, &f->mc, f->rcpt[j], chunk_v, chunk_dsn, chunk_error);
					recorded += accepted;
				}
			} else {
				reply_parts(&r, &text, dsn, sizeof dsn, NULL);
				for (size_t j = 0; j < f->n; j++)
					if (ok[j])
						record(d, &f->mc, f->rcpt[j], SMTP_OK, dsn, text ? text : "?");
				recorded += accepted;
				free(text);
				text = NULL;
			}
		}
		smtp_reply_clear(&r);
	}
	if (chunk_error || !accepted)
		failed = true;
	if (chunk_v == SMTP_HOLD)
		hold_account(d, &win->hold, chunk_error);
	if (bad_sequence && !recorded) {
		requeue(win, f);
	} else if (recorded) {
		finish_msg(d, &f->mc);
	}
	free(chunk_error);
	free(ok);
	flight_free(f);
	/* A failed transaction may leave the server in it: reset before what follows. */
	if (failed || bad_sequence) {
		k = conn_printf(d->conn, "RSET\r\n");
		if (k == 0)
			k = conn_flush(d->conn);
		if (k == 0)
			k = push_rset(win);
	}
	return k;
closed:
	/*
	 * A 421: the server ends the session and reads nothing after it, so no
	 * further reply is waited for (it may linger before closing).
	 */
	note_closing(win, &r, stage);
	k = -ECONNABORTED;
lost:
	smtp_reply_clear(&r);
	free(chunk_error);
	free(ok);
	if (closing_requeues(d, win) && !recorded)
		requeue(win, f);
	else
		flight_lost(d, f, k, win->closing);	/* closing: NULL unless a 421 ended it */
	flight_free(f);
	return k;
}

/* Gives up the window after a lost connection: every open recipient waits. */
static void
window_lost(struct deliver *d, struct window *win, int k)
{
	char why[600];
	size_t i;

	if (win->closing)
		snprintf(why, sizeof why, "not taken: the server closed the session before it: %s", win->closing);
	for (i = 0; i < win->n; i++) {
		if (closing_requeues(d, win) && !win->f[i]->rset)
			requeue(win, win->f[i]);
		else
			flight_lost(d, win->f[i], k, win->closing ? why : NULL);
		flight_free(win->f[i]);
	}
	win->n = 0;
	win->bytes = 0;
	free(win->closing);
	win->closing = NULL;
	d->conn_broken = true;
	session_close(d, false);
}

static int
window_drain(struct deliver *d, struct window *win)
{
	int k = 0;

	while (win->n > 0 && k >= 0)
		k = flight_collect(d, win);
	if (k < 0)
		window_lost(d, win, k);
	return k;
}

/* Can this message go pipelined? At most BATCH_MAX recipients to do, all sane. */
static bool
pipelinable(struct deliver *d, struct msgctx *mc, char ***rcpt, size_t *n)
{
	char **v;

	if (!d->caps.pipelining || !d->caps.chunking || !message_address_sane(mc->sender))
		return false;
	v = calloc(mc->n_rcpt + 1, sizeof *v);
	if (!v)
		return false;
	*n = todo(d, mc, v);
	if (*n == 0 || *n > BATCH_MAX) {
		free(v);
		return false;
	}
	*rcpt = v;
	return true;
}

/*
 * Sends a message into the window (collecting the oldest flights first when
 * it is full). <0: the connection is gone; everything in flight was deferred.
 */
static int
window_send(struct deliver *d, struct window *win, struct flight *f, char *buf, char *wbuf)
{
	int k = 0;

	while (k >= 0 && (win->n >= WINDOW || (win->n && win->bytes >= WINDOW_BYTES)))
		k = flight_collect(d, win);
	if (k >= 0) {
		if (f->mc.from_hdr && f->mc.st.attempts == 0)
			log_event(LOG_NOTICE, f->mc.m->id, NULL, NULL,
			          "%s: From: <%s> is not the account <%s>: Gmail rewrites it unless it is a "
			          "verified \"Send mail as\" address", f->mc.m->id, f->mc.from_hdr,
			          d->cfg->address);
		log_event(LOG_INFO, f->mc.m->id, NULL, NULL, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%zu",
		          f->mc.m->id, f->mc.sender, f->mc.size, f->n);
		f->started = now_s();
		/*
		 * A transaction still in flight may fail and stay open at the server
		 * (every RCPT refused): without an RSET this message's RCPTs and
		 * chunks would join it, and go out under its MAIL FROM.
		 */
		f->rset_first = win->n > 0;
		k = flight_send(d, f, buf, wbuf);
		win->f[win->n++] = f;
		win->bytes += f->bytes;
	} else {
		win->f[win->n++] = f;	/* never sent: it shares the fate of the window */
	}
	if (k < 0)
		window_lost(d, win, k);
	return k;
}

/*
 * Reads the queue: which messages are due now, when the next deferred one
 * is, and how many wait. Corrupt state files are reported and skipped, never
 * guessed at (guessing could send twice).
 */
static int
scan(struct deliver *d, char (**due)[QUEUE_ID_LEN + 1], size_t *n_due, struct deliver_result *res)
{
	char (*ids)[QUEUE_ID_LEN + 1];
	struct message_out o = { .account = d->cfg->address, .local = &d->ln, .alias = config_alias,
	                         .alias_data = (void *)d->cfg };
	int64_t now = now_s();
	size_t n, i;
	int k;

	k = queue_list(d->q, &ids, &n);
	if (k < 0)
		return k;
	*n_due = 0;
	res->next = 0;
	res->waiting = 0;
	for (i = 0; i < n; i++) {
		struct queue_msg *m;
		struct queue_state st;
		char **rcpt;
		size_t nr;
		enum queue_status s;

		k = queue_msg_open(d->q, ids[i], &m);
		if (k < 0) {
			if (k != -ENOENT)
				log_error("%s: unreadable message file (%s); message left alone", ids[i],
				          k == -EPROTO ? "written by a newer outbox" : strerror(-k));
			continue;
		}
		k = queue_state_load(d->q, ids[i], &st);
		if (k < 0) {
			log_error("%s: unreadable delivery state (%s); message left alone", ids[i], strerror(-k));
			queue_msg_free(m);
			continue;
		}
		if (message_resolve_rcpts(m->env.rcpt, m->env.n_rcpt, &o, &rcpt, &nr) == 0) {
			s = queue_state_status(&st, rcpt, nr, now);
			if (s == QUEUE_QUEUED)
				memcpy(ids[(*n_due)++], ids[i], sizeof *ids);
			if (s == QUEUE_DEFERRED && (!res->next || st.next < res->next))
				res->next = st.next;
			if (s == QUEUE_QUEUED || s == QUEUE_DEFERRED)
				res->waiting++;
			strv_free(rcpt, nr);
		}
		queue_state_clear(&st);
		queue_msg_free(m);
	}
	*due = ids;
	return 0;
}

/* A message past its lifetime that no server could be asked about: it fails now. */
static void
expire(struct deliver *d, const char *id, const char *why)
{
	struct msgctx mc = { 0 };
	char *buf = malloc(CHUNK), text[700];
	size_t i;

	if (buf && msgctx_open(d, id, &mc, buf) == 0) {
		expired_text(d, why, text, sizeof text);
		for (i = 0; i < mc.n_rcpt; i++) {
			const struct queue_rcpt_state *rs = queue_state_find(&mc.st, mc.rcpt[i]);

			if (!rs || rs->status == QUEUE_RCPT_PENDING || rs->status == QUEUE_RCPT_DEFERRED)
				record(d, &mc, mc.rcpt[i], SMTP_FAIL, "4.4.7", text);
		}
		finish_msg(d, &mc);
	}
	msgctx_clear(&mc);
	free(buf);
}

/*
 * Every due message waits until `until` with the reason. With count, the
 * attempt counts and the backoff schedule decides (a message past its
 * lifetime fails instead); without, attempts are not counted (login backoff).
 */
static void
defer_all(struct deliver *d, char (*ids)[QUEUE_ID_LEN + 1], size_t n, const char *why, int64_t until,
          bool count)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct queue_msg *m;
		struct queue_state st;

		if (queue_msg_open(d->q, ids[i], &m) < 0)
			continue;
		if (queue_msg_lock(m, false) < 0 || queue_state_load(d->q, ids[i], &st) < 0) {
			queue_msg_free(m);
			continue;
		}
		if (count && st.attempts > 0 && now_s() >= m->env.arrival + d->cfg->lifetime) {
			queue_state_clear(&st);
			queue_msg_free(m);	/* expire() takes the lock again */
			expire(d, ids[i], why);
			continue;
		}
		if (count) {
			st.attempts++;
			st.last = now_s();
			if (!st.first)
				st.first = st.last;
			until = st.last + smtp_backoff(st.attempts);
			if (until > m->env.arrival + d->cfg->lifetime)
				until = m->env.arrival + d->cfg->lifetime;
		}
		st.next = until;
		free(st.reply);
		st.reply = strdup(why);
		queue_state_log(&st, now_s(), why);
		(void)queue_state_save(d->q, m, &st);
		log_event(LOG_NOTICE, m->id, NULL, "deferred", "%s: status=deferred (%s)", m->id, why);
		d->deferred++;
		queue_state_clear(&st);
		queue_msg_free(m);
	}
}

/* The password (or token) for opening a session; held outcome when there is none. */
static int
need_secret(struct deliver *d, size_t n_due, struct deliver_result *res)
{
	enum secret_status ss;
	char err[600] = "";

	if (d->secret.value)
		return 0;
	if (d->cfg->token_command)
		ss = secret_command(d->cfg->token_command, "token-command", &d->secret, err, sizeof err);
	else
		ss = secret_lookup(d->cfg, &d->secret, err, sizeof err);
	if (ss == SECRET_FOUND)
		return 0;
	res->outcome = DELIVER_HELD_SECRET;
	snprintf(res->reason, sizeof res->reason, "%s", err);
	note_error(d, NULL, err);
	write_last(d);
	log_event(LOG_WARNING, NULL, NULL, "held", "holding %zu message%s: %s", n_due, n_due == 1 ? "" : "s",
	          err);
	return -EACCES;
}

/*
 * A session kept open from the last run: usable if the server has said
 * nothing meanwhile (no 421, no close) and answers a NOOP.
 */
static bool
session_alive(struct deliver *d)
{
	struct pollfd p = { .fd = d->conn->fd, .events = POLLIN };
	struct smtp_reply r = { 0 };
	bool ok;

	if (d->conn_broken || conn_has_input(d->conn) || poll(&p, 1, 0) != 0)
		return false;
	ok = command(d, "NOOP", &r) == 0 && r.code == 250;
	smtp_reply_clear(&r);
	return ok;
}

static int
run_pass(struct deliver *d, struct deliver_result *res)
{
	char (*due)[QUEUE_ID_LEN + 1] = NULL;
	char *hold, err[600] = "", *buf = NULL, *wbuf = NULL;
	struct window win = { 0 };
	size_t n_due = 0, n_total, requeued = 0, i;
	bool no_room = false;
	int k;

	memset(res, 0, sizeof *res);
	d->connections = 0;
	hold = queue_account_hold(d->q);
	k = scan(d, &due, &n_due, res);
	if (k < 0) {
		free(hold);
		return k;
	}
	if (hold) {
		res->outcome = DELIVER_HELD_ACCOUNT;
		snprintf(res->reason, sizeof res->reason, "%s", hold);
		free(hold);
		free(due);
		return 0;
	}
	if (n_due == 0) {
		free(due);
		return 0;
	}
	/* An open session (kept from a moment ago) needs no password. */
	if (d->conn && !session_alive(d))
		session_close(d, false);
	if (!d->conn && need_secret(d, n_due, res) < 0) {
		free(due);
		return 0;
	}
	n_total = n_due;
	buf = malloc(CHUNK);
	wbuf = malloc(3 * CHUNK + 8);
	if (!buf || !wbuf) {
		k = -ENOMEM;
		goto out;
	}
	for (i = 0;; i++) {
		struct flight *f;
		enum msg_result mr;

		/* Messages a 503 or a 421 turned back go again, once, after the others. */
		if (win.n_requeue && requeued < n_due) {
			void *nv = realloc(due, (n_total + win.n_requeue) * sizeof *due);

			if (nv) {
				due = nv;
				memcpy(due + n_total, win.requeue, win.n_requeue * sizeof *due);
				n_total += win.n_requeue;
				requeued += win.n_requeue;
			}
			win.n_requeue = 0;
		}
		if (i >= n_total || win.hold || (d->stop && d->stop(d->userdata))) {
			if (win.n == 0 || !d->conn)
				break;
			(void)window_drain(d, &win);
			i--;
			if (win.hold || (d->stop && d->stop(d->userdata)))
				break;
			continue;
		}
		/* The message first (its lock, room for its state): no session for nothing. */
		f = calloc(1, sizeof *f);
		if (!f)
			break;
		k = msgctx_open(d, due[i], &f->mc, buf);
		if (k < 0) {
			if (k != -ENOENT && k != -EWOULDBLOCK && k != -ENOSPC && k != -EDQUOT)
				log_error("%s: cannot read the message: %s", due[i], strerror(-k));
			flight_free(f);
			if (k == -ENOSPC || k == -EDQUOT) {
				no_room = true;
				break;	/* the queue's disk is full: nothing can be recorded */
			}
			k = 0;
			continue;
		}
		if (!d->conn) {
			enum smtp_verdict v;

			if (d->connections >= CONNECTIONS_PER_RUN) {
				flight_free(f);
				defer_all(d, due + i, n_total - i, "too many lost connections; trying later",
				          0, true);
				break;
			}
			if (need_secret(d, n_total - i, res) < 0) {
				flight_free(f);
				break;
			}
			v = session_open(d, err, sizeof err);
			if (v != SMTP_OK) {
				note_error(d, NULL, err);
				flight_free(f);	/* defer_all() takes the message's lock */
			}
			if (v == SMTP_HOLD) {
				hold_account(d, NULL, err);
				res->outcome = DELIVER_HELD_ACCOUNT;
				snprintf(res->reason, sizeof res->reason, "%s", err);
				break;
			}
			if (v == SMTP_BACKOFF) {
				log_warning("%s; leaving the server alone for an hour", err);
				defer_all(d, due + i, n_total - i, err, now_s() + LOGIN_BACKOFF, false);
				break;
			}
			if (v != SMTP_OK) {
				log_warning("%s", err);
				defer_all(d, due + i, n_total - i, err, 0, true);
				break;
			}
		}
		if (d->status) {
			char line[300];

			snprintf(line, sizeof line, "sending %zu/%zu to %s", i + 1, n_total, d->cfg->host);
			d->status(d->userdata, line);
		}
		if (pipelinable(d, &f->mc, &f->rcpt, &f->n)) {
			(void)window_send(d, &win, f, buf, wbuf);
			continue;
		}
		/* Anything else goes alone, after what is in flight. */
		if (window_drain(d, &win) < 0) {
			flight_free(f);
			i--;		/* reconnect and take it again */
			continue;
		}
		mr = deliver_msg(d, &f->mc, buf, wbuf);
		flight_free(f);
		if (mr == MSG_HOLD) {
			win.hold = true;
			break;
		}
		if (mr == MSG_CONN_LOST)
			session_close(d, false);
	}
	if (win.n && d->conn)
		(void)window_drain(d, &win);
	for (i = 0; i < win.n; i++)
		flight_free(win.f[i]);
	/* Turned back more often than there are messages: they wait like any deferred one. */
	if (win.n_requeue && !win.hold && !(d->stop && d->stop(d->userdata)))
		defer_all(d, win.requeue, win.n_requeue,
		          win.requeue_why ? win.requeue_why : "the server refused the command sequence (503)", 0,
		          true);
	free(win.requeue);
	free(win.requeue_why);
	free(win.closing);
	if (win.hold) {
		res->outcome = DELIVER_HELD_ACCOUNT;
		free(hold);
		hold = queue_account_hold(d->q);
		snprintf(res->reason, sizeof res->reason, "%s", hold ? hold : "account problem");
	}
	k = 0;
out:
	write_last(d);
	free(buf);
	free(wbuf);
	free(due);
	free(hold);
	/* What is left, for the caller's timers and status. */
	{
		struct deliver_result after;
		char (*again)[QUEUE_ID_LEN + 1] = NULL;
		size_t n_again;

		memset(&after, 0, sizeof after);
		if (scan(d, &again, &n_again, &after) == 0) {
			res->next = after.next;
			res->waiting = after.waiting;
			/*
			 * Due again right away (a message another process held): retry
			 * soon; a disk too full to record anything, in a minute.
			 */
			if (n_again && res->outcome == DELIVER_IDLE &&
			    (!res->next || res->next > now_s() + (no_room ? 60 : 5)))
				res->next = now_s() + (no_room ? 60 : 5);
		}
		free(again);
	}
	return k;
}

int
deliver_run(struct deliver *d, struct deliver_result *res)
{
	int k;

	d->bounced = 0;
	k = run_pass(d, res);
	/* Bounce reports queued by this pass go out now, on the same connection. */
	if (k == 0 && d->bounced && res->outcome == DELIVER_IDLE) {
		d->bounced = 0;
		k = run_pass(d, res);
	}
	/* The session may stay for the next doorbell (a burst of mail); the secret never does. */
	if (!d->linger || res->outcome != DELIVER_IDLE || d->conn_broken)
		session_close(d, true);
	secret_wipe(&d->secret);
	return k;
}

/* Ends a session kept open by deliver_run() with linger. */
void
deliver_close(struct deliver *d)
{
	session_close(d, true);
}

/* outbox login: does the server take this password? 0 yes; -EACCES no (err says why). */
int
deliver_check_login(const struct config *cfg, const struct secret *secret, char *err, size_t errlen)
{
	struct deliver d;
	enum smtp_verdict v;
	int k;

	k = deliver_init(&d, NULL, cfg);
	if (k < 0)
		return k;
	d.secret.value = secret->value;
	d.secret.len = secret->len;
	v = session_open(&d, err, errlen);
	d.secret.value = NULL;
	d.secret.len = 0;
	deliver_clear(&d);
	if (v == SMTP_OK)
		return 0;
	return v == SMTP_HOLD ? -EACCES : -EAGAIN;
}

/*
 * A reservation (state/.ID.tmp) another outboxd's delivery of ID is using:
 * the message is locked. However long that delivery takes, its room for
 * the state stays.
 */
static bool
reservation_in_use(struct queue *q, const char *name)
{
	char id[QUEUE_ID_LEN + 1];
	bool busy;
	int fd;

	if (!fs_tmp_target(name, id, sizeof id) || !queue_id_valid(id))
		return false;
	fd = openat(q->msgfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	busy = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);		/* and with it the shared lock, if taken */
	return busy;
}

/*
 * Leftovers of crashes: files in tmp/ older than a day (a sendmail killed
 * mid-write), state files without a message (a crash between the two
 * unlinks), temporary state files.
 */
void
deliver_sweep(struct queue *q)
{
	int64_t now = now_s();
	int dirs[] = { q->tmpfd, q->statefd };
	size_t i;

	for (i = 0; i < 2; i++) {
		struct dirent *de;
		DIR *dir;
		int fd = openat(dirs[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			continue;
		dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			continue;
		}
		while ((de = readdir(dir))) {
			struct stat st;

			if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || strcmp(de->d_name, "..") == 0))
				continue;
			if (fstatat(dirs[i], de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
				continue;
			if (dirs[i] == q->tmpfd) {
				if (now - st.st_mtime > 86400)
					unlinkat(q->tmpfd, de->d_name, 0);
			} else if (queue_id_valid(de->d_name)) {
				if (faccessat(q->msgfd, de->d_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
					unlinkat(q->statefd, de->d_name, 0);
			} else if (now - st.st_mtime > 3600 && !reservation_in_use(q, de->d_name)) {
				unlinkat(q->statefd, de->d_name, 0);
			}
		}
		closedir(dir);
	}
}
