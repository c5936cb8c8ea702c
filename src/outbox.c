/* SPDX-License-Identifier: MIT */
/*
 * outbox: the user's command. Setup and login (the app password into the
 * keyring, checked against the server first), the queue and its messages,
 * and the state of the whole thing. Output is for people on a terminal
 * (aligned, relative times, colour unless NO_COLOR) and stable when piped;
 * "outbox queue --json" is for programs (schema in outbox-queue(5)).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "config.h"
#include "deliver.h"
#include "doorbell.h"
#include "fs.h"
#include "keyring.h"
#include "log.h"
#include "message.h"
#include "paths.h"
#include "queue.h"
#include "secret.h"
#include "view.h"

#define APP_PASSWORDS "https://myaccount.google.com/apppasswords"
#define TWO_STEP "https://myaccount.google.com/signinoptions/two-step-verification"

extern char **environ;

static bool color;

static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fail(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("outbox: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

static const char *
paint(const char *code)
{
	return color ? code : "";
}

#define BOLD paint("\033[1m")
#define RED paint("\033[31m")
#define GREEN paint("\033[32m")
#define YELLOW paint("\033[33m")
#define RESET paint("\033[0m")

/* The configuration, or exit status 78 with the file:line error. NULL only with allow_missing. */
static int
load_config(struct config **out, bool allow_missing)
{
	char *path, *error = NULL;
	int r;

	if (paths_config(&path) < 0)
		return fail(EX_TEMPFAIL, "cannot find the home directory");
	r = config_load(path, out, &error);
	if (r == -ENOENT && allow_missing) {
		*out = NULL;
		free(path);
		return 0;
	}
	if (r == -ENOENT)
		r = fail(EX_CONFIG, "no configuration at %s: run outbox setup", path);
	else if (r < 0)
		r = fail(EX_CONFIG, "%s", error);
	free(error);
	free(path);
	return r;
}

/* The queue; NULL with status 0 when there is none yet and create is false. */
static int
open_queue(struct queue **q, bool create)
{
	char *path;
	int r;

	*q = NULL;
	r = paths_queue(&path);
	if (r < 0)
		return fail(EX_TEMPFAIL, "cannot find the home directory");
	r = queue_open(path, create, q);
	if (r == -ENOENT && !create)
		r = 0;
	else if (r < 0)
		r = fail(EX_CANTCREAT, "queue %s: %s", path, strerror(-r));
	free(path);
	return r;
}

static void
relative(int64_t t, char *buf, size_t len)
{
	int64_t d = (int64_t)time(NULL) - t;
	bool future = d < 0;

	if (future)
		d = -d;
	if (d < 60)
		snprintf(buf, len, future ? "in %" PRId64 " s" : "%" PRId64 " s ago", d);
	else if (d < 3600)
		snprintf(buf, len, future ? "in %" PRId64 " min" : "%" PRId64 " min ago", d / 60);
	else if (d < 86400 * 2)
		snprintf(buf, len, future ? "in %" PRId64 " h" : "%" PRId64 " h ago", d / 3600);
	else
		snprintf(buf, len, future ? "in %" PRId64 " days" : "%" PRId64 " days ago", d / 86400);
}

static void
absolute(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	localtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static const char *
status_color(enum queue_status s)
{
	switch (s) {
	case QUEUE_FAILED:
		return RED;
	case QUEUE_DEFERRED:
	case QUEUE_HELD:
		return YELLOW;
	default:
		return GREEN;
	}
}

/* ---- reading a password ---- */

/* One line from the terminal without echo, or from stdin when it is no terminal. */
static int
read_secret(const char *prompt, struct secret *out)
{
	char buf[1024];
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO);
	size_t len;

	memset(out, 0, sizeof *out);
	if (tty) {
		fputs(prompt, stderr);
		fflush(stderr);
		if (tcgetattr(STDIN_FILENO, &old) < 0)
			return -errno;
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (!fgets(buf, sizeof buf, stdin))
		buf[0] = '\0';
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	/* Gmail shows app passwords in groups of four ("abcd efgh ijkl mnop"); the spaces are not part of it. */
	{
		size_t i, j = 0;

		for (i = 0; i < len; i++)
			if (buf[i] != ' ')
				buf[j++] = buf[i];
		len = j;
		buf[len] = '\0';
	}
	if (len == 0) {
		explicit_bzero(buf, sizeof buf);
		return -ENODATA;
	}
	out->value = malloc(len + 1);
	if (!out->value) {
		explicit_bzero(buf, sizeof buf);
		return -ENOMEM;
	}
	memcpy(out->value, buf, len + 1);
	out->len = len;
	explicit_bzero(buf, sizeof buf);
	return 0;
}

/* One sentence and the next step, for what the server or the network said. */
static const char *
advice(const char *err)
{
	if (strstr(err, "5.7.9"))
		return "Gmail wants an app password, not your account password. App passwords need "
		       "2-Step Verification (" TWO_STEP "); then create one at " APP_PASSWORDS
		       " and run: outbox login";
	if (strstr(err, "5.7.14"))
		return "Gmail wants you to sign in with a web browser once (https://accounts.google.com), "
		       "then run: outbox login";
	if (strstr(err, "5.7.8") || strstr(err, "535"))
		return "The server did not accept the password. Create an app password at " APP_PASSWORDS
		       " and run: outbox login";
	if (strstr(err, "Too many login attempts"))
		return "Gmail saw too many login attempts; outbox leaves it alone for an hour.";
	if (strstr(err, "cannot resolve"))
		return "The mail server's name does not resolve: check the network connection.";
	if (strstr(err, "timed out") && strstr(err, "connect"))
		return "No answer from the mail server: a firewall may block the port (try "
		       "tls = starttls with port = 587 in the configuration).";
	if (strstr(err, "connect to"))
		return "Cannot connect to the mail server: check the network connection and the host and port.";
	if (strstr(err, "not trusted") || strstr(err, "certificate"))
		return "The server's TLS certificate is not trusted; outbox never sends without a "
		       "trusted one (set ca-file for a private server).";
	if (strstr(err, "no password for"))
		return "Store the app password in the keyring with: outbox login";
	if (strstr(err, "keyring") || strstr(err, "Secret Service"))
		return "Unlock your keyring (log in to the desktop, or open your password manager) "
		       "and try again.";
	return "See journalctl --user -u outbox for details.";
}

/* ---- systemd ---- */

static bool
have_user_manager(void)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char path[4096];

	if (!rt)
		return false;
	snprintf(path, sizeof path, "%s/systemd/private", rt);
	return access(path, F_OK) == 0;
}

/* Runs a program (PATH lookup), output to /dev/null unless show; its exit status or -1. */
static int
run(char *const argv[], bool show, char *out, size_t outlen)
{
	posix_spawn_file_actions_t fa;
	int status, pipefd[2] = { -1, -1 };
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	if (out && pipe2(pipefd, O_CLOEXEC) == 0)
		posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
	else if (!show)
		posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	if (!show)
		posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		if (pipefd[0] >= 0) {
			close(pipefd[0]);
			close(pipefd[1]);
		}
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	if (pipefd[0] >= 0) {
		ssize_t n;

		close(pipefd[1]);
		n = fs_read_full(pipefd[0], out, outlen - 1);
		out[n > 0 ? n : 0] = '\0';
		out[strcspn(out, "\n")] = '\0';
		close(pipefd[0]);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
unit_state(const char *unit, char *buf, size_t len)
{
	char *argv[] = { "systemctl", "--user", "is-active", (char *)unit, NULL };

	if (!have_user_manager() || run(argv, false, buf, len) < 0 || !buf[0])
		snprintf(buf, len, "no user manager");
}

/* ---- the queue ---- */

static int
load_view(struct queue **q, struct config **c, struct localnames *ln, struct view *v)
{
	int r;

	r = load_config(c, true);
	if (r)
		return r;
	r = open_queue(q, false);
	if (r)
		return r;
	memset(v, 0, sizeof *v);
	localnames_init(ln);
	if (!*q)
		return 0;
	r = view_load(*q, *c, ln, v);
	if (r < 0)
		return fail(EX_TEMPFAIL, "reading the queue: %s", strerror(-r));
	return 0;
}

static void
json_string(FILE *f, const char *raw)
{
	/* JSON is UTF-8: invalid bytes (8-bit headers, odd addresses) become U+FFFD. */
	g_autofree char *valid = g_utf8_make_valid(raw ? raw : "", -1);
	const char *s = valid;

	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static const char *
msg_status_name(const struct view *v, const struct view_msg *m)
{
	if (v->account_hold && (m->status == QUEUE_QUEUED || m->status == QUEUE_DEFERRED))
		return "held";
	return queue_status_name(m->status);
}

static void
print_json(const struct view *v, FILE *f)
{
	size_t i, k;

	fputs("{\"version\":1,\"held\":", f);
	if (v->account_hold)
		json_string(f, v->account_hold);
	else
		fputs("null", f);
	fputs(",\"messages\":[", f);
	for (i = 0; i < v->n_msg; i++) {
		const struct view_msg *m = &v->msg[i];

		fprintf(f, "%s{\"id\":\"%s\",\"status\":\"%s\",\"arrival\":%" PRId64 ",\"size\":%lld,",
		        i ? "," : "", m->id, msg_status_name(v, m), m->env.arrival, m->size);
		fputs("\"sender\":", f);
		json_string(f, m->sender);
		fprintf(f, ",\"attempts\":%u,\"next_attempt\":", m->st.attempts);
		if (m->st.next)
			fprintf(f, "%" PRId64, m->st.next);
		else
			fputs("null", f);
		fputs(",\"reply\":", f);
		if (m->st.reply)
			json_string(f, m->st.reply);
		else
			fputs("null", f);
		fputs(",\"recipients\":[", f);
		for (k = 0; k < m->n_rcpt; k++) {
			const struct queue_rcpt_state *rs =
				queue_state_find(&m->st, m->rcpt[k]);

			fprintf(f, "%s{\"address\":", k ? "," : "");
			json_string(f, m->rcpt[k]);
			fprintf(f, ",\"status\":\"%s\",\"reply\":",
			        queue_rcpt_status_name(rs ? rs->status : QUEUE_RCPT_PENDING));
			if (rs && rs->reply)
				json_string(f, rs->reply);
			else
				fputs("null", f);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs("]}\n", f);
}

static void
print_table(const struct view *v, FILE *f)
{
	size_t i, k;

	if (v->n_msg == 0) {
		fputs("The queue is empty.\n", f);
		return;
	}
	if (v->account_hold)
		fprintf(f, "%sAll mail is held:%s %s\n\n", RED, RESET, v->account_hold);
	fprintf(f, "%s%-16s  %-8s  %-12s  %8s  %s%s\n", BOLD, "ID", "STATUS", "QUEUED", "SIZE",
	        "RECIPIENTS", RESET);
	for (i = 0; i < v->n_msg; i++) {
		const struct view_msg *m = &v->msg[i];
		char when[32];

		relative(m->env.arrival, when, sizeof when);
		fprintf(f, "%-16s  %s%-8s%s  %-12s  %8lld  ", m->id, status_color(m->status),
		        msg_status_name(v, m), RESET, when, m->size);
		for (k = 0; k < m->n_rcpt; k++)
			fprintf(f, "%s%s", k ? ", " : "", m->rcpt[k]);
		fputc('\n', f);
		if (m->status == QUEUE_DEFERRED && m->st.next) {
			relative(m->st.next, when, sizeof when);
			fprintf(f, "%18snext try %s: %s\n", "", when, m->st.reply ? m->st.reply : "");
		} else if (m->status == QUEUE_FAILED && m->st.reply) {
			fprintf(f, "%18s%s\n", "", m->st.reply);
		}
	}
}

/* The message a prefix names, locked when it is to be changed; exit status on failure. */
static int
open_msg(struct queue *q, const char *prefix, bool lock, struct queue_msg **m)
{
	char id[QUEUE_ID_LEN + 1];
	size_t plen = strlen(prefix);
	int r;

	if (!q) {
		/* Junk is a usage error whether or not the queue exists yet. */
		if (plen == 0 || plen > QUEUE_ID_LEN)
			return fail(EX_USAGE, "not a queue ID: %s", prefix);
		memset(id, '0', QUEUE_ID_LEN);
		memcpy(id, prefix, plen);
		id[QUEUE_ID_LEN] = '\0';
		if (!queue_id_valid(id))
			return fail(EX_USAGE, "not a queue ID: %s", prefix);
		return fail(EX_NOINPUT, "no message %s: the queue is empty", prefix);
	}
	r = queue_resolve_prefix(q, prefix, id);
	if (r == -EINVAL)
		return fail(EX_USAGE, "not a queue ID: %s", prefix);
	if (r == -ENOENT)
		return fail(EX_NOINPUT, "no message %s in the queue", prefix);
	if (r == -EEXIST)
		return fail(EX_USAGE, "%s names more than one message; give more of the ID", prefix);
	if (r < 0)
		return fail(EX_TEMPFAIL, "reading the queue: %s", strerror(-r));
	r = queue_msg_open(q, id, m);
	if (r == -ENOENT)
		return fail(EX_NOINPUT, "message %s has just left the queue", id);
	if (r < 0)
		return fail(EX_DATAERR, "message %s: %s", id, strerror(-r));
	r = lock ? queue_msg_lock(*m, false) : 0;
	if (r < 0) {
		queue_msg_free(*m);
		*m = NULL;
		return fail(EX_TEMPFAIL, "message %s is being delivered right now; try again in a moment", id);
	}
	return 0;
}

enum change {
	CHANGE_HOLD,
	CHANGE_RELEASE,
	CHANGE_RETRY,
};

/*
 * Retry: failed and deferred recipients become pending again, due now, and
 * the attempts start over, so a message that expired gets one more try.
 */
static int
change_state(struct queue *q, struct queue_msg *m, enum change what)
{
	struct queue_state st;
	size_t i;
	int r;

	r = queue_state_load(q, m->id, &st);
	if (r < 0)
		return r;
	switch (what) {
	case CHANGE_HOLD:
		st.hold = QUEUE_HOLD_USER;
		break;
	case CHANGE_RELEASE:
		st.hold = QUEUE_HOLD_NONE;
		st.next = 0;
		break;
	case CHANGE_RETRY:
		st.next = 0;
		for (i = 0; i < st.n_rcpt; i++)
			if (st.rcpt[i].status == QUEUE_RCPT_FAILED || st.rcpt[i].status == QUEUE_RCPT_DEFERRED)
				st.rcpt[i].status = QUEUE_RCPT_PENDING;
		st.attempts = 0;
		queue_state_log(&st, (int64_t)time(NULL), "retry requested by the user");
		break;
	}
	r = queue_state_save(q, m, &st);
	queue_state_clear(&st);
	return r;
}

static void
ring(void)
{
	if (doorbell_ring() < 0)
		printf("outboxd does not answer; the mail goes out when it runs (systemctl --user start outbox).\n");
}

static int
cmd_queue(int argc, char **argv)
{
	struct queue *q = NULL;
	struct config *c = NULL;
	struct localnames ln;
	struct view v;
	bool json = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			return fail(EX_USAGE, "queue: unknown option %s", argv[i]);
	}
	r = load_view(&q, &c, &ln, &v);
	if (r)
		return r;
	if (json)
		print_json(&v, stdout);
	else
		print_table(&v, stdout);
	view_clear(&v);
	localnames_clear(&ln);
	queue_free(q);
	config_free(c);
	return 0;
}

static int
cmd_show(int argc, char **argv)
{
	struct queue *q = NULL;
	struct config *c = NULL;
	struct queue_msg *m = NULL;
	struct localnames ln;
	struct view v;
	char when[64], rel[32], *hdr = NULL;
	size_t i, k;
	int r;

	if (argc != 2)
		return fail(EX_USAGE, "usage: outbox show ID");
	r = load_view(&q, &c, &ln, &v);
	if (r)
		return r;
	r = open_msg(q, argv[1], false, &m);
	if (r)
		goto out;
	for (i = 0; i < v.n_msg; i++) {
		const struct view_msg *vm = &v.msg[i];

		if (strcmp(vm->id, m->id) != 0)
			continue;
		absolute(vm->env.arrival, when, sizeof when);
		relative(vm->env.arrival, rel, sizeof rel);
		printf("%sID:%s        %s\n", BOLD, RESET, vm->id);
		printf("%sStatus:%s    %s%s%s\n", BOLD, RESET, status_color(vm->status), msg_status_name(&v, vm),
		       RESET);
		printf("%sQueued:%s    %s (%s) by %s\n", BOLD, RESET, when, rel, vm->env.user ? vm->env.user : "?");
		printf("%sSize:%s      %lld bytes\n", BOLD, RESET, vm->size);
		printf("%sFrom:%s      %s\n", BOLD, RESET, vm->sender[0] ? vm->sender : "<> (a bounce)");
		printf("%sAttempts:%s  %u\n", BOLD, RESET, vm->st.attempts);
		if (vm->st.next) {
			absolute(vm->st.next, when, sizeof when);
			printf("%sNext try:%s  %s\n", BOLD, RESET, when);
		}
		printf("%sTo:%s\n", BOLD, RESET);
		for (k = 0; k < vm->n_rcpt; k++) {
			const struct queue_rcpt_state *rs =
				queue_state_find(&vm->st, vm->rcpt[k]);

			printf("  %-40s %-8s %s\n", vm->rcpt[k],
			       queue_rcpt_status_name(rs ? rs->status : QUEUE_RCPT_PENDING),
			       rs && rs->reply ? rs->reply : "");
		}
		if (vm->st.n_log) {
			printf("%sHistory:%s\n", BOLD, RESET);
			for (k = 0; k < vm->st.n_log; k++) {
				absolute(vm->st.log[k].time, when, sizeof when);
				printf("  %s  %s\n", when, vm->st.log[k].text);
			}
		}
	}
	/* The header section as it was queued. */
	{
		size_t cap = 65536;
		ssize_t n, h;

		hdr = malloc(cap);
		n = hdr ? pread(m->fd, hdr, cap, m->body_offset) : -1;
		if (n > 0) {
			h = message_header_len(hdr, (size_t)n, true);
			printf("%sHeaders:%s\n", BOLD, RESET);
			fwrite(hdr, 1, h > 0 ? (size_t)h : (size_t)n, stdout);
		}
	}
out:
	free(hdr);
	queue_msg_free(m);
	view_clear(&v);
	localnames_clear(&ln);
	queue_free(q);
	config_free(c);
	return r;
}

static bool
confirm(const char *question)
{
	char answer[16];

	fprintf(stderr, "%s [y/N] ", question);
	fflush(stderr);
	if (!fgets(answer, sizeof answer, stdin))
		return false;
	return answer[0] == 'y' || answer[0] == 'Y';
}

/* hold, release, retry, delete: one message, or every message with --all (retry). */
static int
cmd_change(int argc, char **argv, const char *name)
{
	struct queue *q = NULL;
	bool all = false, yes = false;
	const char *target = NULL;
	int i, r = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0 && strcmp(name, "retry") == 0)
			all = true;
		else if ((strcmp(argv[i], "--yes") == 0 || strcmp(argv[i], "-y") == 0) &&
		         strcmp(name, "delete") == 0)
			yes = true;
		else if (argv[i][0] == '-')
			return fail(EX_USAGE, "%s: unknown option %s", name, argv[i]);
		else if (target)
			return fail(EX_USAGE, "%s: one ID at a time", name);
		else
			target = argv[i];
	}
	if (!all && !target)
		return fail(EX_USAGE, "usage: outbox %s ID%s", name, strcmp(name, "retry") == 0 ? "|--all" : "");
	if (all && target)
		return fail(EX_USAGE, "retry: an ID or --all, not both");
	r = open_queue(&q, false);
	if (r)
		return r;
	if (all) {
		char (*ids)[QUEUE_ID_LEN + 1] = NULL;
		size_t n = 0, k, done = 0;

		if (q && queue_list(q, &ids, &n) < 0)
			n = 0;
		for (k = 0; k < n; k++) {
			struct queue_msg *m;

			if (queue_msg_open(q, ids[k], &m) < 0)
				continue;
			if (queue_msg_lock(m, false) == 0 && change_state(q, m, CHANGE_RETRY) == 0)
				done++;
			queue_msg_free(m);
		}
		free(ids);
		printf("%zu message%s to retry now.\n", done, done == 1 ? "" : "s");
		if (done)
			ring();
	} else {
		struct queue_msg *m = NULL;

		r = open_msg(q, target, true, &m);
		if (r) {
			queue_free(q);
			return r;
		}
		if (strcmp(name, "delete") == 0) {
			char question[128];

			snprintf(question, sizeof question, "Delete message %s for good?", m->id);
			if (!yes && !isatty(STDIN_FILENO)) {
				r = fail(EX_USAGE, "delete: not asking without a terminal; use --yes");
			} else if (yes || confirm(question)) {
				r = queue_msg_remove(q, m);
				if (r < 0)
					r = fail(EX_IOERR, "delete %s: %s", m->id, strerror(-r));
				else
					printf("Deleted %s.\n", m->id);
			} else {
				printf("Kept %s.\n", m->id);
			}
		} else {
			enum change what = strcmp(name, "hold") == 0      ? CHANGE_HOLD
			                   : strcmp(name, "release") == 0 ? CHANGE_RELEASE
			                                                  : CHANGE_RETRY;

			r = change_state(q, m, what);
			if (r < 0) {
				r = fail(EX_IOERR, "%s %s: %s", name, m->id, strerror(-r));
			} else {
				printf("%s %s.\n", what == CHANGE_HOLD ? "Holding" : what == CHANGE_RELEASE
				                                                        ? "Released"
				                                                        : "Retrying", m->id);
				if (what != CHANGE_HOLD)
					ring();
			}
		}
		queue_msg_free(m);
	}
	queue_free(q);
	return r;
}

static int
cmd_flush(int argc, char **argv)
{
	struct queue *q = NULL;
	int r;

	(void)argv;
	if (argc != 1)
		return fail(EX_USAGE, "usage: outbox flush");
	r = open_queue(&q, false);
	if (r)
		return r;
	if (q)
		(void)queue_flush(q);
	queue_free(q);
	ring();
	return 0;
}

/* Stores the password after the server took it; clears an account hold. */
static int
login(const struct config *c, bool verify)
{
	struct secret pw;
	struct queue *q = NULL;
	char err[600] = "";
	int r;

	if (c->password_command)
		return fail(EX_CONFIG, "%s sets password-command; outbox login stores passwords in the keyring "
		            "and would not be used", c->path);
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "Create an app password for %s at %s\n(it needs 2-Step Verification on the account).\n",
		        c->address, APP_PASSWORDS);
	r = read_secret("App password: ", &pw);
	if (r < 0)
		return fail(EX_USAGE, "no password given");
	if (verify) {
		fprintf(stderr, "Checking the password with %s...\n", c->host);
		r = deliver_check_login(c, &pw, err, sizeof err);
		if (r < 0) {
			secret_wipe(&pw);
			fprintf(stderr, "outbox: %s\n", err);
			fprintf(stderr, "%s\n", advice(err));
			return r == -EACCES ? EX_NOPERM : EX_TEMPFAIL;
		}
	}
	r = keyring_store(c->address, c->host, pw.value, err, sizeof err);
	secret_wipe(&pw);
	if (r < 0) {
		fprintf(stderr, "outbox: %s\n%s\n", err, advice(err));
		return EX_UNAVAILABLE;
	}
	fprintf(stderr, "Password for %s stored in the keyring.\n", c->address);
	if (open_queue(&q, false) == 0 && q) {
		if (unlinkat(q->dirfd, "account-hold", 0) == 0) {
			fprintf(stderr, "Held mail released.\n");
			ring();
		}
		queue_free(q);
	}
	return 0;
}

static int
cmd_login(int argc, char **argv)
{
	struct config *c;
	bool verify = true;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-verify") == 0)
			verify = false;
		else
			return fail(EX_USAGE, "login: unknown option %s", argv[i]);
	}
	r = load_config(&c, false);
	if (r)
		return r;
	r = login(c, verify);
	config_free(c);
	return r;
}

/* ---- setup ---- */

static int
write_config(const char *path, const char *address, const char *host, const char *port,
             const char *tls, const char *ca_file)
{
	char *dir = strdup(path), *slash, *text = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	slash = strrchr(dir, '/');
	*slash = '\0';
	r = fs_mkdir_parents(dir);
	if (r == 0 && chmod(dir, 0700) < 0)
		r = -errno;
	f = open_memstream(&text, &len);
	fprintf(f, "# outbox configuration: see outbox.conf(5)\n[account]\naddress = %s\n", address);
	if (host)
		fprintf(f, "host = %s\n", host);
	else
		fputs("# host = smtp.gmail.com\n", f);
	if (port)
		fprintf(f, "port = %s\n", port);
	else
		fputs("# port = 465\n", f);
	if (tls)
		fprintf(f, "tls = %s\n", tls);
	if (ca_file)
		fprintf(f, "ca-file = %s\n", ca_file);
	fputs("\n[aliases]\n# Local recipients (root, your login, cron's mail) go to the address above\n"
	      "# unless listed here, e.g.:\n# root = you@example.org\n", f);
	fclose(f);
	if (r == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		r = dfd < 0 ? -errno : fs_replace(dfd, "config", text, len);
		if (dfd >= 0)
			close(dfd);
	}
	free(text);
	free(dir);
	return r;
}

static bool
ask(const char *prompt, char *buf, size_t len)
{
	fputs(prompt, stderr);
	fflush(stderr);
	if (!fgets(buf, (int)len, stdin))
		return false;
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] != '\0';
}

/* The test message to oneself, queued like any other. */
static int
queue_test_message(struct queue *q, const struct config *c, char id[QUEUE_ID_LEN + 1])
{
	struct envelope env = { 0 };
	struct queue_writer *w;
	char *rcpt[1] = { c->address }, date[64], host[256] = "this machine", *body = NULL;
	int n, r;

	gethostname(host, sizeof host - 1);
	message_format_date((int64_t)time(NULL), date, sizeof date);
	n = asprintf(&body, "From: %s\nTo: %s\nSubject: outbox works\nDate: %s\n\n"
	             "This message was sent by \"outbox setup\" on %s.\n"
	             "Mail from this machine's sendmail now reaches you through %s.\n",
	             c->address, c->address, date, host, c->host);
	if (n < 0)
		return -ENOMEM;
	env.arrival = (int64_t)time(NULL);
	env.user = getenv("USER") ? getenv("USER") : "user";
	env.rcpt = rcpt;
	env.n_rcpt = 1;
	r = queue_writer_new(q, &env, &w);
	if (r == 0) {
		r = queue_writer_write(w, body, (size_t)n);
		if (r == 0)
			r = queue_writer_commit(w, id);
		else
			queue_writer_free(w);
	}
	free(body);
	return r;
}

/* The reply recorded for a message that left the queue, from queue/last. */
static bool
sent_reply(struct queue *q, const char *id, char *buf, size_t len)
{
	char *text, *line, *save = NULL;
	size_t tlen;
	bool found = false;

	if (fs_read_file(q->dirfd, "last", 1u << 16, &text, &tlen) < 0)
		return false;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[5], *p = line;
		int i;

		for (i = 0; i < 5 && p; i++) {
			f[i] = p;
			p = strchr(p, '\t');
			if (p)
				*p++ = '\0';
		}
		if (i == 5 && strcmp(f[0], "sent") == 0 && strcmp(f[2], id) == 0) {
			snprintf(buf, len, "%s", f[4]);
			found = true;
		}
	}
	free(text);
	return found;
}

/* Waits for the test message's outcome: 0 sent, else an exit status. */
static int
await_test(struct queue *q, const struct config *c, const char *id, bool daemon)
{
	int waited;

	for (waited = 0; waited < 90 * 10; waited++) {
		struct queue_msg *m;
		struct queue_state st;
		char reply[600], *hold;

		if (!daemon && waited == 0) {
			/* Nobody answers the doorbell: deliver from here, as outboxd --once would. */
			struct deliver d;
			struct deliver_result res;

			if (deliver_init(&d, q, c) == 0) {
				(void)deliver_run(&d, &res);
				deliver_clear(&d);
			}
		}
		hold = queue_account_hold(q);
		if (hold) {
			fprintf(stderr, "outbox: %s\n%s\n", hold, advice(hold));
			free(hold);
			return EX_NOPERM;
		}
		if (queue_msg_open(q, id, &m) == -ENOENT) {
			if (sent_reply(q, id, reply, sizeof reply))
				printf("Test message sent to %s: the server said \"%s\".\n", c->address, reply);
			else
				printf("Test message sent to %s.\n", c->address);
			return 0;
		}
		if (m && queue_state_load(q, id, &st) == 0) {
			if (st.attempts > 0 && st.reply) {
				fprintf(stderr, "outbox: the test message was not delivered: %s\n%s\n", st.reply,
				        advice(st.reply));
				queue_state_clear(&st);
				queue_msg_free(m);
				return EX_TEMPFAIL;
			}
			queue_state_clear(&st);
		}
		queue_msg_free(m);
		{
			char *last = NULL;
			size_t len;

			/* A held keyring shows as the last error without touching the message. */
			if (waited > 20 && fs_read_file(q->dirfd, "last", 1u << 16, &last, &len) == 0) {
				char *e = strstr(last, "error\t");

				if (e && (strstr(e, "keyring") || strstr(e, "Secret Service") ||
				          strstr(e, "password-command"))) {
					e[strcspn(e, "\n")] = '\0';
					fprintf(stderr, "outbox: %s\n%s\n", strrchr(e, '\t') + 1, advice(e));
					free(last);
					return EX_TEMPFAIL;
				}
			}
			free(last);
		}
		poll(NULL, 0, 100);
	}
	fprintf(stderr, "outbox: no outcome for the test message after 90 s; it stays queued (outbox status).\n");
	return EX_TEMPFAIL;
}

static int
cmd_setup(int argc, char **argv)
{
	const char *address = NULL, *host = NULL, *port = NULL, *tls = NULL, *ca_file = NULL;
	char *path, buf[512], id[QUEUE_ID_LEN + 1];
	struct config *c = NULL;
	struct queue *q = NULL;
	bool test = true, verify = true, daemon = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--no-test") == 0)
			test = false;
		else if (strcmp(a, "--no-verify") == 0)
			verify = false;
		else if (v && strcmp(a, "--address") == 0)
			address = argv[++i];
		else if (v && strcmp(a, "--host") == 0)
			host = argv[++i];
		else if (v && strcmp(a, "--port") == 0)
			port = argv[++i];
		else if (v && strcmp(a, "--tls") == 0)
			tls = argv[++i];
		else if (v && strcmp(a, "--ca-file") == 0)
			ca_file = argv[++i];
		else
			return fail(EX_USAGE, "setup: unknown option %s (see outbox setup --help)", a);
	}
	if (paths_config(&path) < 0)
		return fail(EX_TEMPFAIL, "cannot find the home directory");
	bool write = access(path, F_OK) < 0;

	if (!write && (address || host || port || tls || ca_file)) {
		/* Never overwrite a configuration without asking. */
		if (isatty(STDIN_FILENO) && confirm("A configuration exists; replace it with the options given?")) {
			write = true;
			if (!address && load_config(&c, false) == 0) {
				snprintf(buf, sizeof buf, "%s", c->address);
				address = buf;
				config_free(c);
				c = NULL;
			}
		} else {
			fprintf(stderr, "Keeping %s.\n", path);
		}
	}
	if (write) {
		if (!address) {
			if (!isatty(STDIN_FILENO)) {
				free(path);
				return fail(EX_USAGE, "setup: give --address when not on a terminal");
			}
			fprintf(stderr, "outbox sends this machine's mail through your Gmail account.\n");
			while (ask("Gmail address: ", buf, sizeof buf) && !config_address_valid(buf))
				fprintf(stderr, "That is not an e-mail address (like alice@gmail.com).\n");
			if (!config_address_valid(buf)) {
				free(path);
				return fail(EX_USAGE, "setup: no address given");
			}
			address = buf;
		} else if (!config_address_valid(address)) {
			free(path);
			return fail(EX_USAGE, "setup: not an e-mail address: %s", address);
		}
		r = write_config(path, address, host, port, tls, ca_file);
		if (r < 0) {
			free(path);
			return fail(EX_CANTCREAT, "cannot write %s: %s", path, strerror(-r));
		}
		fprintf(stderr, "Wrote %s.\n", path);
	}
	free(path);
	r = load_config(&c, false);
	if (r)
		return r;
	if (!c->password_command) {
		r = login(c, verify);
		if (r) {
			config_free(c);
			return r;
		}
	}
	if (have_user_manager()) {
		char *en[] = { "systemctl", "--user", "enable", "--now", "outbox.socket", "outbox.timer", NULL };

		if (run(en, true, NULL, 0) == 0) {
			fprintf(stderr, "Enabled outbox.socket and outbox.timer (systemctl --user).\n");
			daemon = true;
		} else {
			fprintf(stderr, "outbox: could not enable outbox.socket; run: systemctl --user enable --now outbox.socket outbox.timer\n");
		}
	} else {
		fprintf(stderr, "No systemd user manager runs here: run \"outboxd --once\" (for example from "
		        "cron) to deliver, or log in to a systemd session and run outbox setup again.\n");
	}
	r = 0;
	if (test) {
		r = open_queue(&q, true);
		if (r == 0) {
			r = queue_test_message(q, c, id);
			if (r < 0) {
				r = fail(EX_IOERR, "cannot queue the test message: %s", strerror(-r));
			} else {
				fprintf(stderr, "Sending a test message to %s...\n", c->address);
				if (daemon && doorbell_ring() < 0)
					daemon = false;
				r = await_test(q, c, id, daemon);
			}
		}
	}
	if (r == 0)
		printf("outbox is set up: mail clients and cron can use %s/sendmail.\n", BINDIR);
	queue_free(q);
	config_free(c);
	return r;
}

/* ---- status ---- */

static int
cmd_status(int argc, char **argv)
{
	struct queue *q = NULL;
	struct config *c = NULL;
	struct localnames ln;
	struct view v;
	char sock[64], svc[64], err[600] = "";
	unsigned counts[QUEUE_SENT + 1] = { 0 };
	bool trouble = false;
	size_t i;
	int r;

	(void)argv;
	if (argc != 1)
		return fail(EX_USAGE, "usage: outbox status");
	unit_state("outbox.socket", sock, sizeof sock);
	unit_state("outbox.service", svc, sizeof svc);
	printf("%sService:%s   socket %s, delivery %s\n", BOLD, RESET, sock, svc);
	r = load_config(&c, true);
	if (r) {
		printf("%sAccount:%s   configuration error (above)\n", BOLD, RESET);
		return r;
	}
	if (!c) {
		printf("%sAccount:%s   not set up: run outbox setup\n", BOLD, RESET);
		trouble = true;
	} else {
		struct secret s;
		enum secret_status ss;

		printf("%sAccount:%s   %s via %s:%u\n", BOLD, RESET, c->address, c->host, c->port);
		if (c->password_command) {
			printf("%sPassword:%s  from password-command\n", BOLD, RESET);
		} else {
			ss = keyring_lookup(c->address, c->host, &s, err, sizeof err);
			secret_wipe(&s);
			printf("%sKeyring:%s   %s%s%s\n", BOLD, RESET, ss == SECRET_FOUND ? GREEN : RED,
			       secret_status_text(ss), RESET);
			if (ss != SECRET_FOUND) {
				printf("           %s\n", advice(err));
				trouble = true;
			}
		}
	}
	r = open_queue(&q, false);
	if (r)
		return r;
	localnames_init(&ln);
	memset(&v, 0, sizeof v);
	if (q && view_load(q, c, &ln, &v) < 0)
		fprintf(stderr, "outbox: cannot read the queue\n");
	for (i = 0; i < v.n_msg; i++)
		counts[v.msg[i].status]++;
	printf("%sQueue:%s     %zu message%s", BOLD, RESET, v.n_msg, v.n_msg == 1 ? "" : "s");
	if (v.n_msg)
		printf(" (%u queued, %u deferred, %u held, %u failed)", counts[QUEUE_QUEUED],
		       counts[QUEUE_DEFERRED], counts[QUEUE_HELD], counts[QUEUE_FAILED]);
	putchar('\n');
	if (v.account_hold) {
		printf("%sHeld:%s      %s%s%s\n", BOLD, RESET, RED, v.account_hold, RESET);
		trouble = true;
	}
	if (counts[QUEUE_FAILED])
		trouble = true;
	if (q) {
		char *last = NULL, *line, *save = NULL;
		size_t len;

		if (fs_read_file(q->dirfd, "last", 1u << 16, &last, &len) == 0) {
			for (line = strtok_r(last, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
				char *f[5], *p = line, rel[32];
				int k;

				for (k = 0; k < 5 && p; k++) {
					f[k] = p;
					p = strchr(p, '\t');
					if (p)
						*p++ = '\0';
				}
				if (k < 4)
					continue;
				relative(strtoll(f[1], NULL, 10), rel, sizeof rel);
				if (strcmp(f[0], "sent") == 0 && k == 5)
					printf("%sLast sent:%s %s, %s to %s\n", BOLD, RESET, rel, f[2], f[3]);
				else if (strcmp(f[0], "error") == 0)
					printf("%sLast error:%s %s: %s\n", BOLD, RESET, rel, f[3]);
			}
			free(last);
		}
	}
	view_clear(&v);
	localnames_clear(&ln);
	queue_free(q);
	config_free(c);
	return trouble ? 1 : 0;
}

/* ---- main ---- */

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *usage;
	const char *help;
} commands[] = {
	{ "setup", cmd_setup, "setup [--address ADDR] [--host H] [--port N] [--tls implicit|starttls] "
	  "[--ca-file F] [--no-verify] [--no-test]",
	  "Set up the account: write the configuration, store the app password in the\n"
	  "keyring (read without echo, or from standard input), enable outbox.socket and\n"
	  "send a test message to yourself." },
	{ "login", cmd_login, "login [--no-verify]",
	  "Store or replace the app password in the keyring, after checking it with the\n"
	  "server (unless --no-verify), and release mail held for a login problem." },
	{ "status", cmd_status, "status",
	  "Show the service, the account, the keyring, the queue and the last delivery.\n"
	  "Exits 1 when something needs your attention." },
	{ "queue", cmd_queue, "queue [--json]", "List the queue (--json: for programs, see outbox(1))." },
	{ "show", cmd_show, "show ID", "Show one message: envelope, state, history and headers." },
	{ "flush", cmd_flush, "flush", "Try every deferred message now." },
	{ "retry", NULL, "retry ID|--all", "Send a failed or deferred message again, now." },
	{ "hold", NULL, "hold ID", "Keep a message from being sent until released." },
	{ "release", NULL, "release ID", "Let a held message go." },
	{ "delete", NULL, "delete [--yes] ID", "Remove a message from the queue for good." },
};

static void
usage(FILE *f)
{
	size_t i;

	fputs("Usage: outbox COMMAND [OPTIONS]\n\nCommands:\n", f);
	for (i = 0; i < sizeof commands / sizeof *commands; i++)
		fprintf(f, "  %s\n", commands[i].usage);
	fputs("\nIDs may be shortened to any unique prefix. outbox COMMAND --help tells more.\n", f);
}

int
main(int argc, char **argv)
{
	const char *nc = getenv("NO_COLOR");
	size_t i;

	log_stderr(false);
	color = isatty(STDOUT_FILENO) && !(nc && nc[0]) && getenv("TERM") && strcmp(getenv("TERM"), "dumb");
	if (argc < 2) {
		usage(stderr);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		puts("outbox " VERSION);
		return 0;
	}
	for (i = 0; i < sizeof commands / sizeof *commands; i++) {
		int k;

		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		for (k = 2; k < argc; k++)
			if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
				printf("Usage: outbox %s\n\n%s\n", commands[i].usage, commands[i].help);
				return 0;
			}
		if (commands[i].fn)
			return commands[i].fn(argc - 1, argv + 1);
		return cmd_change(argc - 1, argv + 1, commands[i].name);
	}
	fprintf(stderr, "outbox: unknown command %s\n", argv[1]);
	usage(stderr);
	return EX_USAGE;
}
