/* SPDX-License-Identifier: MIT */
/*
 * outbox-sendmail: sendmail(1), mailq(1) and newaliases(1) for the user's
 * own queue. It writes the message into the queue, rings outboxd's doorbell
 * and exits; it never talks to the network, the keyring or the journal.
 * Exit statuses are sysexits(3), as every sendmail caller expects.
 *
 * Built twice, as sendmail.h says: everything here is libc only; the two
 * cases that read a configuration file come from sendmail-front.c or
 * sendmail-config.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "doorbell.h"
#include "message.h"
#include "paths.h"
#include "queue.h"
#include "sendmail.h"
#include "smtpd.h"

#define HEADER_MAX (1u << 20)	/* -t looks no further for the end of the header section */
#define CHUNK (64u << 10)

enum mode {
	MODE_DELIVER,		/* -bm */
	MODE_SMTP,		/* -bs */
	MODE_LIST,		/* -bp, mailq */
	MODE_ALIASES,		/* -bi, newaliases */
	MODE_FLUSH,		/* -q */
};

struct opts {
	enum mode mode;
	bool extract;		/* -t */
	bool ignore_dots;	/* -i, -oi */
	const char *sender;	/* -f, -r */
	const char *fullname;	/* -F */
	char **rcpt;		/* after the options */
	size_t n_rcpt;
};

static const char *prog = "sendmail";
char **sendmail_argv;

void
die(int status, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

/* A value for an option: the rest of this word (-fADDR) or the next word (-f ADDR). */
static const char *
optarg_of(char **argv, int *i, const char *rest, const char *opt)
{
	if (rest[0])
		return rest;
	if (!argv[*i + 1])
		die(EX_USAGE, "option -%s needs a value", opt);
	return argv[++*i];
}

/*
 * The classic sendmail command line. Options come first; the first word that
 * is no option, or "--", starts the recipients, and no recipient is ever
 * read as an option. Options for features outbox has no use for are accepted
 * and ignored where every MTA does so; anything else is refused (exit 64),
 * and no option names a file to read or write (-C and -X are never honoured).
 */
static void
parse_args(int argc, char **argv, struct opts *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || a[1] == '\0')
			break;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		switch (a[1]) {
		case 't':
			if (a[2])
				goto bad;
			o->extract = true;
			break;
		case 'i':
			if (a[2])
				goto bad;
			o->ignore_dots = true;
			break;
		case 'v':
		case 'm':	/* -m: send to me too (old sendmail); always so */
			if (a[2])
				goto bad;
			break;
		case 'f':
		case 'r':
			o->sender = optarg_of(argv, &i, a + 2, a[1] == 'f' ? "f" : "r");
			break;
		case 'F':
			o->fullname = optarg_of(argv, &i, a + 2, "F");
			break;
		case 'B':	/* -B8BITMIME or -B 8BITMIME: outbox decides from the bytes */
		case 'N':	/* DSN: Gmail offers none, so these are not forwarded */
		case 'R':
		case 'V':
		case 'h':	/* hop count */
		case 'C':	/* another configuration file: never read */
		case 'L':	/* syslog tag */
			(void)optarg_of(argv, &i, a + 2, (char[]){ a[1], '\0' });
			break;
		case 'o':
			/* -oi as -i; -oXXX sendmail.cf options (-oem, -odb, -oQ...) are ignored, as Postfix does. */
			if (strcmp(a, "-oi") == 0)
				o->ignore_dots = true;
			else if (a[2] == '\0')
				goto bad;
			break;
		case 'b':
			if (strcmp(a, "-bm") == 0)
				o->mode = MODE_DELIVER;
			else if (strcmp(a, "-bs") == 0)
				o->mode = MODE_SMTP;
			else if (strcmp(a, "-bp") == 0)
				o->mode = MODE_LIST;
			else if (strcmp(a, "-bi") == 0)
				o->mode = MODE_ALIASES;
			else
				goto bad;
			break;
		case 'q':
			/* -q, -q30m: process the queue now; -qR/-qS/-qI select and are refused */
			if (a[2] && !strchr("0123456789", a[2]))
				goto bad;
			o->mode = MODE_FLUSH;
			break;
		default:
			goto bad;
		}
		continue;
bad:
		die(EX_USAGE, "unsupported option: %s (see outbox-sendmail(8))", a);
	}
	o->rcpt = argv + i;
	o->n_rcpt = (size_t)(argc - i);
}

/*
 * Root (cron, mdadm, smartd) uses its own configuration if it has one, else
 * the queue of [system] deliver-to's user. System accounts (below UID 1000)
 * without a configuration have nobody to read their mail.
 */
static void
check_caller(void)
{
	char *cfg = NULL;
	uid_t uid = getuid();

	if (uid >= 1000)
		return;
	if (paths_config(&cfg) < 0)
		die(EX_TEMPFAIL, "cannot find the home directory");
	if (access(cfg, F_OK) < 0) {
		struct passwd *pw;

		if (uid == 0) {
			free(cfg);
			sendmail_system_recipient();
			return;
		}
		pw = getpwuid(uid);
		die(EX_TEMPFAIL, "user %s has no outbox configuration (%s); mail not queued",
		    pw ? pw->pw_name : "?", cfg);
	}
	free(cfg);
}

struct queue *
open_queue(bool create)
{
	struct queue *q;
	char *path;
	int r;

	r = paths_queue(&path);
	if (r < 0)
		die(EX_TEMPFAIL, "cannot find the home directory: %s", strerror(-r));
	r = queue_open(path, create, &q);
	if (r == -ENOENT && !create) {
		free(path);
		return NULL;
	}
	if (r < 0)
		die(EX_CANTCREAT, "queue %s: %s", path, strerror(-r));
	free(path);
	return q;
}

static int
io_status(int r)
{
	return r == -ENOSPC || r == -EDQUOT || r == -EIO || r == -EROFS ? EX_IOERR : EX_TEMPFAIL;
}

static char *
sender_value(const char *s)
{
	size_t len = strlen(s);

	if (!envelope_value_valid(s))
		die(EX_USAGE, "-f: the address contains a line break or another control character");
	/* "-f <>" or "-f ''" is the null sender; "<addr>" loses its brackets */
	if (len >= 2 && s[0] == '<' && s[len - 1] == '>')
		return strndup(s + 1, len - 2);
	return strdup(s);
}

static void
add_rcpt(struct envelope *env, const char *addr)
{
	char **nv;

	if (!envelope_value_valid(addr) || !addr[0])
		die(EX_USAGE, "bad recipient address: %s", addr);
	nv = realloc(env->rcpt, (env->n_rcpt + 1) * sizeof *nv);
	if (!nv || !(nv[env->n_rcpt] = strdup(addr)))
		die(EX_TEMPFAIL, "out of memory");
	env->rcpt = nv;
	env->n_rcpt++;
}

/* White space outside quotes and comments within s[from, to). */
static bool
has_gap(const char *s, size_t from, size_t to)
{
	bool quoted = false;
	int comment = 0;
	size_t i;

	for (i = from; i < to; i++) {
		if (s[i] == '\\' && i + 1 < to)
			i++;
		else if (!comment && s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == '(')
			comment++;
		else if (!quoted && s[i] == ')' && comment)
			comment--;
		else if (!quoted && !comment && (s[i] == ' ' || s[i] == '\t'))
			return true;
	}
	return false;
}

/* Each command-line recipient may be an address list ("a@x, Bob <b@y>"). */
static void
add_arg_rcpts(struct envelope *env, char **args, size_t n)
{
	size_t i, k;

	for (i = 0; i < n; i++) {
		struct mailbox *mb;
		size_t nmb;

		/* The address parser would drop a line break as folding white space. */
		if (!envelope_value_valid(args[i]))
			die(EX_USAGE, "bad recipient address: it contains a line break or another control character");
		if (message_parse_addresses(args[i], strlen(args[i]), &mb, &nmb) < 0)
			die(EX_TEMPFAIL, "out of memory");
		if (nmb == 0)
			die(EX_USAGE, "bad recipient address: %s", args[i]);
		for (k = 0; k < nmb; k++) {
			/*
			 * "a@b c@d" would read as one address "a@bc@d": words of a bare
			 * address must not be apart (in <>, or quoted, they may).
			 */
			if (!mb[k].angle && has_gap(args[i], mb[k].addr_start, mb[k].addr_end))
				die(EX_USAGE, "bad recipient address: %s (separate addresses with commas)",
				    args[i]);
			add_rcpt(env, mb[k].addr);
		}
		mailboxes_free(mb, nmb);
	}
}

static void
envelope_base(struct envelope *env, const struct opts *o)
{
	struct passwd *pw = getpwuid(getuid());
	char *p;

	memset(env, 0, sizeof *env);
	env->arrival = (int64_t)time(NULL);
	env->user = strdup(pw ? pw->pw_name : "unknown");
	if (o->fullname)
		env->fullname = strdup(o->fullname);
	else if (pw && pw->pw_gecos && pw->pw_gecos[0])
		env->fullname = strndup(pw->pw_gecos, strcspn(pw->pw_gecos, ","));
	/* A name is display text: control characters become spaces, never a new header. */
	for (p = env->fullname; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	if (o->sender)
		env->sender = sender_value(o->sender);
}

struct input {
	char *buf;
	size_t len;		/* bytes in buf not yet passed on */
	bool eof;
	bool done;		/* the "." line was seen */
	bool at_bol;
	bool dots;		/* a lone "." ends the message (no -i) */
};

/* Reads more of stdin into in->buf at in->len; the caller makes room. */
static int
input_fill(struct input *in, size_t room)
{
	ssize_t n;

	if (in->eof || in->done)
		return 0;
	do
		n = read(STDIN_FILENO, in->buf + in->len, room);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		in->eof = true;
	in->len += (size_t)n;
	return 0;
}

/* How many of the buffered bytes are message, with the "." rule applied. */
static size_t
input_usable(struct input *in, size_t from)
{
	size_t emit;

	if (!in->dots || in->done)
		return in->len;
	if (dotscan(in->buf + from, in->len - from, &in->at_bol, in->eof, &emit)) {
		in->done = true;
		in->len = from + emit;
		return in->len;
	}
	return from + emit;
}

static void
deliver_mode(const struct opts *o)
{
	struct input in = { .at_bol = true, .dots = !o->ignore_dots };
	struct queue_writer *w = NULL;
	char id[QUEUE_ID_LEN + 1];
	struct envelope env;
	struct queue *q;
	size_t cap = CHUNK, hlen = 0;
	int r;

	check_caller();
	envelope_base(&env, o);
	add_arg_rcpts(&env, o->rcpt, o->n_rcpt);

	in.buf = malloc(cap);
	if (!in.buf)
		die(EX_TEMPFAIL, "out of memory");
	if (o->extract) {
		char **rcpt = NULL;
		size_t n = 0, i, scanned = 0;

		/* Buffer the header section: the envelope, written first, needs its recipients. */
		for (;;) {
			ssize_t h;

			if (cap - in.len < CHUNK / 2) {
				char *nb = realloc(in.buf, cap * 2);

				if (!nb)
					die(EX_TEMPFAIL, "out of memory");
				in.buf = nb;
				cap *= 2;
			}
			r = input_fill(&in, cap - in.len);
			if (r < 0)
				die(EX_IOERR, "reading the message: %s", strerror(-r));
			scanned = input_usable(&in, scanned);
			h = message_header_len(in.buf, scanned, in.eof || in.done);
			if (h >= 0 || in.eof || in.done || scanned >= HEADER_MAX) {
				hlen = h >= 0 ? (size_t)h : scanned;
				break;
			}
		}
		r = message_extract_rcpts(in.buf, hlen, &rcpt, &n);
		if (r < 0)
			die(EX_TEMPFAIL, "out of memory");
		for (i = 0; i < n; i++)
			if (envelope_value_valid(rcpt[i]))
				add_rcpt(&env, rcpt[i]);
		strv_free(rcpt, n);
		/* Everything buffered past the scan point is rescanned by the copy loop. */
		hlen = scanned;
	}
	if (env.n_rcpt == 0)
		die(EX_DATAERR, "no recipients%s", o->extract ? " in To, Cc or Bcc" : " given");

	q = open_queue(true);
	r = queue_writer_new(q, &env, &w);
	if (r < 0)
		die(io_status(r), "queue: %s", strerror(-r));
	if (hlen) {
		r = queue_writer_write(w, in.buf, hlen);
		memmove(in.buf, in.buf + hlen, in.len - hlen);
		in.len -= hlen;
	}
	while (r >= 0) {
		size_t usable;

		usable = input_usable(&in, 0);
		r = queue_writer_write(w, in.buf, usable);
		if (r < 0)
			break;
		memmove(in.buf, in.buf + usable, in.len - usable);
		in.len -= usable;
		if (in.eof || in.done)
			break;
		r = input_fill(&in, cap - in.len);
		if (r < 0) {
			queue_writer_free(w);
			die(EX_IOERR, "reading the message: %s", strerror(-r));
		}
	}
	if (r >= 0)
		r = queue_writer_commit(w, id);
	if (r < 0) {
		queue_writer_free(w);
		die(io_status(r), "queue: %s", strerror(-r));
	}
	(void)doorbell_ring();
	free(in.buf);
	envelope_clear(&env);
	queue_free(q);
}

struct bs_msg {
	struct queue_writer *w;
};

static int
bs_begin(void *userdata, const char *sender, char **rcpt, size_t n, void **out)
{
	struct queue *q = userdata;
	struct queue_writer *w;
	struct envelope env;
	struct opts none = { 0 };
	size_t i;
	int r;

	envelope_base(&env, &none);
	env.sender = strdup(sender);
	env.rcpt = calloc(n, sizeof *env.rcpt);
	if (!env.sender || !env.rcpt) {
		envelope_clear(&env);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		env.rcpt[i] = strdup(rcpt[i]);
		if (!env.rcpt[i]) {
			envelope_clear(&env);
			return -ENOMEM;
		}
		env.n_rcpt++;
	}
	r = queue_writer_new(q, &env, &w);
	envelope_clear(&env);
	if (r < 0)
		return r;
	*out = w;
	return 0;
}

static int
bs_write(void *msg, const char *buf, size_t len)
{
	return queue_writer_write(msg, buf, len);
}

static int
bs_commit(void *msg, char *id, size_t size)
{
	char qid[QUEUE_ID_LEN + 1];
	int r;

	r = queue_writer_commit(msg, qid);
	if (r < 0) {
		queue_writer_free(msg);
		return r;
	}
	snprintf(id, size, "%s", qid);
	return 0;
}

static void
bs_abort(void *msg)
{
	queue_writer_free(msg);
}

/* -bs: an SMTP dialog on stdin and stdout (Alpine's default). */
static void
smtp_mode(void)
{
	struct smtpd_sink sink = { bs_begin, bs_write, bs_commit, bs_abort, NULL };
	char host[HOST_NAME_MAX + 1] = "localhost", *buf;
	struct smtpd *s;
	struct queue *q;
	int r;

	check_caller();
	q = open_queue(true);
	sink.userdata = q;
	gethostname(host, sizeof host - 1);
	if (smtpd_new(host, &sink, &s) < 0 || !(buf = malloc(CHUNK)))
		die(EX_TEMPFAIL, "out of memory");
	smtpd_greet(s);
	for (;;) {
		const char *out;
		size_t olen;
		ssize_t n;

		out = smtpd_output(s, &olen);
		if (olen && fwrite(out, 1, olen, stdout) != olen)
			break;
		fflush(stdout);
		smtpd_output_clear(s);
		if (smtpd_done(s))
			break;
		do
			n = read(STDIN_FILENO, buf, CHUNK);
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			smtpd_eof(s);
			break;
		}
		r = smtpd_feed(s, buf, (size_t)n);
		if (r < 0)
			die(EX_TEMPFAIL, "out of memory");
	}
	if (smtpd_queued(s))
		(void)doorbell_ring();
	free(buf);
	smtpd_free(s);
	queue_free(q);
}

int
main(int argc, char **argv)
{
	struct opts o = { .mode = MODE_DELIVER };
	const char *base = argv[0] ? strrchr(argv[0], '/') : NULL;

	sendmail_argv = argv;
	base = base ? base + 1 : argv[0] ? argv[0] : "sendmail";
	if (strcmp(base, "mailq") == 0) {
		prog = "mailq";
		o.mode = MODE_LIST;
	} else if (strcmp(base, "newaliases") == 0) {
		prog = "newaliases";
		o.mode = MODE_ALIASES;
	}
	parse_args(argc, argv, &o);
	if (o.n_rcpt && o.mode != MODE_DELIVER)
		die(EX_USAGE, "recipients make no sense with this mode");

	switch (o.mode) {
	case MODE_DELIVER:
		if (!o.extract && o.n_rcpt == 0)
			die(EX_USAGE, "no recipients given (use -t to read them from the message)");
		deliver_mode(&o);
		break;
	case MODE_SMTP:
		smtp_mode();
		break;
	case MODE_LIST:
		sendmail_list();
		break;
	case MODE_ALIASES:
		/* Aliases live in the configuration file; there is no database to rebuild. */
		break;
	case MODE_FLUSH: {
		struct queue *q;

		/* As postqueue -f: deferred mail is due now. */
		check_caller();
		q = open_queue(false);
		if (q)
			(void)queue_flush(q);
		queue_free(q);
		(void)doorbell_ring();
		break;
	}
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		die(EX_IOERR, "write error on standard output");
	return EX_OK;
}
