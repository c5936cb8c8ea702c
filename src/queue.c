/* SPDX-License-Identifier: MIT */
/*
 * The queue: $XDG_DATA_HOME/outbox, mode 0700, format in outbox-queue(5).
 *
 *   msg/ID     envelope and message bytes; whole or absent, never edited
 *   state/ID   delivery state; absent until the first attempt, replaced atomically
 *   tmp/       messages being written; nothing there is a message
 *
 * A message exists once msg/ID does. It is written under tmp/, fsync()ed and
 * published with a rename that never replaces, and the directory is fsync()ed
 * before sendmail reports success. Whoever changes a message's state or
 * removes it holds flock(LOCK_EX) on msg/ID: the lock is per message, so
 * writers never wait on each other, and readers need no lock at all.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "fs.h"
#include "queue.h"

#define ENVELOPE_MAX (16u << 20)
#define STATE_MAX (16u << 20)
#define STATE_LOG_KEEP 20
#define WRITE_BUF (128u << 10)

/* Crockford's base32: no I, L, O, U; IDs sort by time of arrival. */
static const char id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

struct queue_writer {
	struct queue *q;
	int fd;
	char id[QUEUE_ID_LEN + 1];
	char *buf;
	size_t len;
};

void
queue_free(struct queue *q)
{
	if (!q)
		return;
	if (q->dirfd >= 0)
		close(q->dirfd);
	if (q->msgfd >= 0)
		close(q->msgfd);
	if (q->statefd >= 0)
		close(q->statefd);
	if (q->tmpfd >= 0)
		close(q->tmpfd);
	free(q->path);
	free(q);
}

int
queue_open(const char *path, bool create, struct queue **out)
{
	struct queue *q;
	int r;

	q = calloc(1, sizeof *q);
	if (!q)
		return -ENOMEM;
	q->dirfd = q->msgfd = q->statefd = q->tmpfd = -1;
	q->path = strdup(path);
	if (!q->path) {
		r = -ENOMEM;
		goto out;
	}
	if (create) {
		char *parent = strdup(path), *slash;

		if (!parent) {
			r = -ENOMEM;
			goto out;
		}
		slash = strrchr(parent, '/');
		if (slash && slash != parent) {
			*slash = '\0';
			r = fs_mkdir_parents(parent);
		} else {
			r = 0;
		}
		free(parent);
		if (r < 0)
			goto out;
	}
	r = fs_private_dir(AT_FDCWD, path, create);
	if (r < 0)
		goto out;
	q->dirfd = r;
	r = fs_private_dir(q->dirfd, "msg", create);
	if (r < 0)
		goto out;
	q->msgfd = r;
	r = fs_private_dir(q->dirfd, "state", create);
	if (r < 0)
		goto out;
	q->statefd = r;
	r = fs_private_dir(q->dirfd, "tmp", create);
	if (r < 0)
		goto out;
	q->tmpfd = r;
	*out = q;
	q = NULL;
	r = 0;
out:
	queue_free(q);
	return r;
}

void
queue_id_new(char id[QUEUE_ID_LEN + 1])
{
	struct timeval tv;
	uint64_t t, rnd = 0;
	int i;

	gettimeofday(&tv, NULL);
	/* 55 bits of microseconds (until the year 3111), then 25 random bits. */
	t = ((uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec) & ((UINT64_C(1) << 55) - 1);
	if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
		rnd = (uint64_t)getpid() * 2654435761u ^ (uint64_t)tv.tv_usec;
	for (i = 10; i >= 0; i--) {		/* 11 characters hold the time */
		id[i] = id_alphabet[t & 31];
		t >>= 5;
	}
	for (i = 11; i < QUEUE_ID_LEN; i++) {
		id[i] = id_alphabet[rnd & 31];
		rnd >>= 5;
	}
	id[QUEUE_ID_LEN] = '\0';
}

/* Exactly QUEUE_ID_LEN characters of the alphabet: no '/', '.', or anything else. */
bool
queue_id_valid(const char *id)
{
	size_t i;

	if (!id)
		return false;
	for (i = 0; i < QUEUE_ID_LEN; i++)
		if (!id[i] || !strchr(id_alphabet, id[i]))
			return false;
	return id[QUEUE_ID_LEN] == '\0';
}

/* A byte below 0x20 or DEL: no envelope value holds one. */
static bool
has_control(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return true;
	return false;
}

/*
 * An envelope address holds no control character: no line break that could
 * add an envelope line, and no tab, which the state file could not keep
 * (a recipient whose state cannot be found again would be sent again).
 */
bool
envelope_value_valid(const char *s)
{
	return s && !has_control(s, strlen(s));
}

void
envelope_clear(struct envelope *env)
{
	size_t i;

	free(env->user);
	free(env->fullname);
	free(env->sender);
	for (i = 0; i < env->n_rcpt; i++)
		free(env->rcpt[i]);
	free(env->rcpt);
	memset(env, 0, sizeof *env);
}

char *
envelope_format(const struct envelope *env, size_t *len)
{
	char *buf = NULL;
	size_t size = 0, i;
	FILE *f;

	f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	fprintf(f, "outbox-queue %d\narrival %" PRId64 "\n", QUEUE_FORMAT, env->arrival);
	if (env->user)
		fprintf(f, "user %s\n", env->user);
	if (env->fullname)
		fprintf(f, "fullname %s\n", env->fullname);
	if (env->sender)
		fprintf(f, "sender %s\n", env->sender);
	for (i = 0; i < env->n_rcpt; i++)
		fprintf(f, "rcpt %s\n", env->rcpt[i]);
	fputc('\n', f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}

static int
strv_push(char ***v, size_t *n, const char *s, size_t len)
{
	char **nv, *copy;

	copy = strndup(s, len);
	if (!copy)
		return -ENOMEM;
	nv = realloc(*v, (*n + 1) * sizeof **v);
	if (!nv) {
		free(copy);
		return -ENOMEM;
	}
	nv[(*n)++] = copy;
	*v = nv;
	return 0;
}

static int
set_str(char **dst, const char *s, size_t len)
{
	char *copy = strndup(s, len);

	if (!copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

/*
 * Parses the envelope at the start of buf. -EBADMSG for a malformed one,
 * -EPROTO for a format newer than this program. *consumed is the offset of
 * the message bytes. Unknown keys are skipped: later versions may add some.
 */
int
envelope_parse(const char *buf, size_t len, struct envelope *env, size_t *consumed)
{
	const char *p = buf, *end = buf + len;
	bool first = true;
	int r;

	memset(env, 0, sizeof *env);
	for (;;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *sp, *val;
		size_t klen, vlen;

		if (!nl) {
			r = -EBADMSG;
			goto fail;
		}
		if (nl == p)
			break;		/* the blank line ends the envelope */
		if (has_control(p, (size_t)(nl - p))) {
			r = -EBADMSG;
			goto fail;
		}
		sp = memchr(p, ' ', (size_t)(nl - p));
		klen = sp ? (size_t)(sp - p) : (size_t)(nl - p);
		val = sp ? sp + 1 : nl;
		vlen = (size_t)(nl - val);
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(p, k, klen) == 0)
		if (first) {
			char num[16], *e;
			long v;

			if (!KEY("outbox-queue") || vlen == 0 || vlen > 9) {
				r = -EBADMSG;
				goto fail;
			}
			/* buf has no NUL, and strtol skips white space, the LF too: a copy */
			memcpy(num, val, vlen);
			num[vlen] = '\0';
			errno = 0;
			v = strtol(num, &e, 10);
			if (*e || v < 1) {
				r = -EBADMSG;
				goto fail;
			}
			if (v > QUEUE_FORMAT) {
				r = -EPROTO;
				goto fail;
			}
			first = false;
		} else if (KEY("arrival")) {
			char num[24], *e;

			if (vlen == 0 || vlen >= sizeof num) {
				r = -EBADMSG;
				goto fail;
			}
			memcpy(num, val, vlen);
			num[vlen] = '\0';
			errno = 0;
			env->arrival = strtoll(num, &e, 10);
			if (*e || errno) {
				r = -EBADMSG;
				goto fail;
			}
		} else if (KEY("user")) {
			r = set_str(&env->user, val, vlen);
			if (r < 0)
				goto fail;
		} else if (KEY("fullname")) {
			r = set_str(&env->fullname, val, vlen);
			if (r < 0)
				goto fail;
		} else if (KEY("sender")) {
			r = set_str(&env->sender, val, vlen);
			if (r < 0)
				goto fail;
		} else if (KEY("rcpt")) {
			if (vlen == 0) {
				r = -EBADMSG;
				goto fail;
			}
			r = strv_push(&env->rcpt, &env->n_rcpt, val, vlen);
			if (r < 0)
				goto fail;
		}
#undef KEY
		p = nl + 1;
	}
	if (first || env->n_rcpt == 0) {
		r = -EBADMSG;
		goto fail;
	}
	*consumed = (size_t)(p + 1 - buf);
	return 0;
fail:
	envelope_clear(env);
	return r;
}

int
queue_writer_new(struct queue *q, const struct envelope *env, struct queue_writer **out)
{
	struct queue_writer *w;
	char *head;
	size_t hlen;
	int r;

	w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->q = q;
	w->fd = -1;
	w->buf = malloc(WRITE_BUF);
	if (!w->buf) {
		free(w);
		return -ENOMEM;
	}
	queue_id_new(w->id);
	w->fd = openat(q->tmpfd, w->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w->fd < 0) {
		r = -errno;
		goto fail;
	}
	head = envelope_format(env, &hlen);
	if (!head) {
		r = -ENOMEM;
		goto fail;
	}
	r = queue_writer_write(w, head, hlen);
	free(head);
	if (r < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	queue_writer_free(w);
	return r;
}

int
queue_writer_write(struct queue_writer *w, const void *buf, size_t len)
{
	int r;

	if (w->len + len <= WRITE_BUF) {
		memcpy(w->buf + w->len, buf, len);
		w->len += len;
		return 0;
	}
	r = fs_write_all(w->fd, w->buf, w->len);
	w->len = 0;
	if (r < 0)
		return r;
	if (len >= WRITE_BUF)
		return fs_write_all(w->fd, buf, len);
	memcpy(w->buf, buf, len);
	w->len = len;
	return 0;
}

/* Makes the message durable and visible; on success the writer is freed. */
int
queue_writer_commit(struct queue_writer *w, char id[QUEUE_ID_LEN + 1])
{
	int r, tries;

	r = fs_write_all(w->fd, w->buf, w->len);
	if (r < 0)
		return r;
	w->len = 0;
	if (fsync(w->fd) < 0)
		return -errno;
	for (tries = 0; ; tries++) {
		char fresh[QUEUE_ID_LEN + 1];

		r = fs_publish(w->q->tmpfd, w->id, w->q->msgfd, w->id);
		if (r != -EEXIST || tries > 8)
			break;
		/* An ID taken in the same microsecond: rename the temporary file. */
		queue_id_new(fresh);
		if (renameat(w->q->tmpfd, w->id, w->q->tmpfd, fresh) < 0)
			return -errno;
		memcpy(w->id, fresh, sizeof fresh);
	}
	if (r < 0)
		return r;
	memcpy(id, w->id, sizeof w->id);
	close(w->fd);
	w->fd = -1;
	w->id[0] = '\0';
	queue_writer_free(w);
	return 0;
}

/* Without a commit, the temporary file goes: nothing half-written stays. */
void
queue_writer_free(struct queue_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->id[0])
		unlinkat(w->q->tmpfd, w->id, 0);
	free(w->buf);
	free(w);
}

static int
id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, QUEUE_ID_LEN);
}

/* The messages in the queue, oldest first. */
int
queue_list(struct queue *q, char (**ids)[QUEUE_ID_LEN + 1], size_t *n)
{
	char (*v)[QUEUE_ID_LEN + 1] = NULL;
	size_t len = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(q->msgfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!queue_id_valid(de->d_name))
			continue;
		if (len == cap) {
			void *nv;

			cap = cap ? cap * 2 : 64;
			nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		memcpy(v[len++], de->d_name, QUEUE_ID_LEN + 1);
	}
	closedir(d);
	if (len)
		qsort(v, len, sizeof *v, id_cmp);
	*ids = v;
	*n = len;
	return 0;
}

/* A unique prefix of an ID, as git takes; -ENOENT none, -EEXIST ambiguous, -EINVAL bad. */
int
queue_resolve_prefix(struct queue *q, const char *prefix, char id[QUEUE_ID_LEN + 1])
{
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n, i, plen = strlen(prefix), found = 0;
	int r;

	if (plen == 0 || plen > QUEUE_ID_LEN)
		return -EINVAL;
	for (i = 0; i < plen; i++)
		if (!strchr(id_alphabet, prefix[i]))
			return -EINVAL;
	r = queue_list(q, &ids, &n);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++)
		if (memcmp(ids[i], prefix, plen) == 0) {
			if (found++ == 0)
				memcpy(id, ids[i], QUEUE_ID_LEN + 1);
		}
	free(ids);
	if (found == 0)
		return -ENOENT;
	return found == 1 ? 0 : -EEXIST;
}

void
queue_msg_free(struct queue_msg *m)
{
	if (!m)
		return;
	if (m->fd >= 0)
		close(m->fd);	/* also drops the lock */
	envelope_clear(&m->env);
	free(m);
}

int
queue_msg_open(struct queue *q, const char *id, struct queue_msg **out)
{
	struct queue_msg *m;
	struct stat st;
	char *buf = NULL;
	size_t cap = 0, len = 0, consumed;
	int r;

	if (!queue_id_valid(id))
		return -EINVAL;
	m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	memcpy(m->id, id, QUEUE_ID_LEN + 1);
	m->fd = openat(q->msgfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (m->fd < 0) {
		r = -errno;
		goto out;
	}
	if (fstat(m->fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	/* Read until the envelope's blank line; it is small but has no fixed size. */
	for (;;) {
		ssize_t n;
		char *nb;

		if (len == cap) {
			if (cap >= ENVELOPE_MAX) {
				r = -EBADMSG;
				goto out;
			}
			cap = cap ? cap * 4 : 4096;
			nb = realloc(buf, cap);
			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		n = pread(m->fd, buf + len, cap - len, (off_t)len);
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0) {
			r = -EBADMSG;
			goto out;
		}
		len += (size_t)n;
		r = envelope_parse(buf, len, &m->env, &consumed);
		if (r == 0)
			break;
		if (r != -EBADMSG || memmem(buf, len, "\n\n", 2))
			goto out;
	}
	m->body_offset = (off_t)consumed;
	m->size = st.st_size - m->body_offset;
	*out = m;
	m = NULL;
	r = 0;
out:
	free(buf);
	queue_msg_free(m);
	return r;
}

/*
 * -EWOULDBLOCK when another process holds the message and wait is false;
 * -ENOENT when it was removed (delivered, deleted) between open and lock.
 */
int
queue_msg_lock(struct queue_msg *m, bool wait)
{
	struct stat st;

	while (flock(m->fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	/* The holder we waited for may have sent and unlinked it: not ours to send again. */
	st.st_nlink = 1;
	if (fstat(m->fd, &st) < 0 || st.st_nlink == 0) {
		int r = st.st_nlink == 0 ? -ENOENT : -errno;

		(void)flock(m->fd, LOCK_UN);
		return r;
	}
	m->locked = true;
	return 0;
}

/* Unlinking msg/ID is the commit point; a state file left by a crash is swept later. */
int
queue_msg_remove(struct queue *q, struct queue_msg *m)
{
	if (!m->locked)
		return -ENOLCK;
	if (unlinkat(q->msgfd, m->id, 0) < 0)
		return -errno;
	if (fsync(q->msgfd) < 0)
		return -errno;
	if (unlinkat(q->statefd, m->id, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static const char *const rcpt_status_names[] = {
	[QUEUE_RCPT_PENDING] = "pending",
	[QUEUE_RCPT_SENT] = "sent",
	[QUEUE_RCPT_DEFERRED] = "deferred",
	[QUEUE_RCPT_FAILED] = "failed",
};

static const char *const status_names[] = {
	[QUEUE_QUEUED] = "queued",
	[QUEUE_DEFERRED] = "deferred",
	[QUEUE_HELD] = "held",
	[QUEUE_FAILED] = "failed",
	[QUEUE_SENT] = "sent",
};

const char *
queue_rcpt_status_name(enum queue_rcpt_status s)
{
	return rcpt_status_names[s];
}

const char *
queue_status_name(enum queue_status s)
{
	return status_names[s];
}

void
queue_state_clear(struct queue_state *st)
{
	size_t i;

	free(st->reply);
	for (i = 0; i < st->n_rcpt; i++) {
		free(st->rcpt[i].addr);
		free(st->rcpt[i].reply);
	}
	free(st->rcpt);
	for (i = 0; i < st->n_log; i++)
		free(st->log[i].text);
	free(st->log);
	memset(st, 0, sizeof *st);
}

/*
 * Addresses compare as the state file keeps them: put_text() writes a tab,
 * CR or LF as a space, so an address holding one (a queue file from before
 * addresses were checked for them) is still found after a reload.
 */
static bool
addr_eq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char x = *a == '\t' || *a == '\r' || *a == '\n' ? ' ' : *a;
		char y = *b == '\t' || *b == '\r' || *b == '\n' ? ' ' : *b;

		if (x != y)
			return false;
	}
	return *a == *b;
}

/* The index of the recipient's entry, or n_rcpt when it has none. */
static size_t
rcpt_index(const struct queue_state *st, const char *addr)
{
	size_t i;

	for (i = 0; i < st->n_rcpt; i++)
		if (addr_eq(st->rcpt[i].addr, addr))
			break;
	return i;
}

/* The recipient's entry, or NULL. */
const struct queue_rcpt_state *
queue_state_find(const struct queue_state *st, const char *addr)
{
	size_t i = rcpt_index(st, addr);

	return i < st->n_rcpt ? &st->rcpt[i] : NULL;
}

/* The recipient's entry, made as pending when it has none; NULL only without memory. */
struct queue_rcpt_state *
queue_state_rcpt(struct queue_state *st, const char *addr)
{
	struct queue_rcpt_state *nv;
	size_t i = rcpt_index(st, addr);

	if (i < st->n_rcpt)
		return &st->rcpt[i];
	nv = realloc(st->rcpt, (st->n_rcpt + 1) * sizeof *nv);
	if (!nv)
		return NULL;
	st->rcpt = nv;
	nv = &st->rcpt[st->n_rcpt];
	memset(nv, 0, sizeof *nv);
	nv->addr = strdup(addr);
	if (!nv->addr)
		return NULL;
	st->n_rcpt++;
	return nv;
}

/* Keeps the last STATE_LOG_KEEP events; the text loses CR, LF and tabs. */
int
queue_state_log(struct queue_state *st, int64_t when, const char *text)
{
	char *copy, *p;

	copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	for (p = copy; *p; p++)
		if (*p == '\r' || *p == '\n' || *p == '\t')
			*p = ' ';
	if (st->n_log == STATE_LOG_KEEP) {
		free(st->log[0].text);
		memmove(st->log, st->log + 1, (st->n_log - 1) * sizeof *st->log);
		st->n_log--;
	} else {
		void *nv = realloc(st->log, (st->n_log + 1) * sizeof *st->log);

		if (!nv) {
			free(copy);
			return -ENOMEM;
		}
		st->log = nv;
	}
	st->log[st->n_log].time = when;
	st->log[st->n_log].text = copy;
	st->n_log++;
	return 0;
}

/* Tab-separated fields; text fields come last and lose CR, LF and tabs on the way in. */
static void
put_text(FILE *f, const char *s)
{
	for (; s && *s; s++)
		fputc(*s == '\t' || *s == '\r' || *s == '\n' ? ' ' : *s, f);
}

char *
queue_state_format(const struct queue_state *st, size_t *len)
{
	char *buf = NULL;
	size_t size = 0, i;
	FILE *f;

	f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	fprintf(f, "outbox-state\t%d\n", QUEUE_FORMAT);
	fprintf(f, "attempts\t%u\n", st->attempts);
	if (st->first)
		fprintf(f, "first\t%" PRId64 "\n", st->first);
	if (st->last)
		fprintf(f, "last\t%" PRId64 "\n", st->last);
	if (st->next)
		fprintf(f, "next\t%" PRId64 "\n", st->next);
	if (st->hold == QUEUE_HOLD_USER)
		fputs("hold\tuser\n", f);
	if (st->reply) {
		fputs("reply\t", f);
		put_text(f, st->reply);
		fputc('\n', f);
	}
	for (i = 0; i < st->n_rcpt; i++) {
		const struct queue_rcpt_state *r = &st->rcpt[i];

		fprintf(f, "rcpt\t%s\t%" PRId64 "\t", rcpt_status_names[r->status], r->time);
		put_text(f, r->addr);
		fputc('\t', f);
		put_text(f, r->reply);
		fputc('\n', f);
	}
	for (i = 0; i < st->n_log; i++) {
		fprintf(f, "log\t%" PRId64 "\t", st->log[i].time);
		put_text(f, st->log[i].text);
		fputc('\n', f);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}

static int
parse_i64(const char *s, size_t len, int64_t *out)
{
	char tmp[24], *e;

	if (len == 0 || len >= sizeof tmp)
		return -EBADMSG;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	errno = 0;
	*out = strtoll(tmp, &e, 10);
	if (*e || errno)
		return -EBADMSG;
	return 0;
}

/* Splits a line into at most max tab-separated fields; the last takes the rest. */
static size_t
split_tabs(const char *p, const char *end, const char **f, size_t *flen, size_t max)
{
	size_t n = 0;

	while (n < max) {
		const char *t = n + 1 < max ? memchr(p, '\t', (size_t)(end - p)) : NULL;

		f[n] = p;
		flen[n] = (size_t)((t ? t : end) - p);
		n++;
		if (!t)
			break;
		p = t + 1;
	}
	return n;
}

int
queue_state_parse(const char *buf, size_t len, struct queue_state *st)
{
	const char *p = buf, *end = buf + len;
	bool first = true;
	int r = 0;

	memset(st, 0, sizeof *st);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *f[5];
		size_t flen[5], n;

		if (!nl) {
			r = -EBADMSG;	/* a state file is replaced whole: a torn line is corruption */
			break;
		}
		/* We never write a NUL or a CR (put_text() replaces them): either is corruption. */
		if (memchr(p, '\0', (size_t)(nl - p)) || memchr(p, '\r', (size_t)(nl - p))) {
			r = -EBADMSG;
			break;
		}
		n = split_tabs(p, nl, f, flen, 5);
#define KEY(k) (flen[0] == sizeof(k) - 1 && memcmp(f[0], k, flen[0]) == 0)
		if (first) {
			int64_t v;

			if (!KEY("outbox-state") || n != 2 || parse_i64(f[1], flen[1], &v) < 0 || v < 1) {
				r = -EBADMSG;
				break;
			}
			if (v > QUEUE_FORMAT) {
				r = -EPROTO;
				break;
			}
			first = false;
		} else if (KEY("attempts") && n == 2) {
			int64_t v;

			r = parse_i64(f[1], flen[1], &v);
			if (r < 0 || v < 0 || v > UINT32_MAX) {
				r = -EBADMSG;
				break;
			}
			st->attempts = (unsigned)v;
		} else if (KEY("first") && n == 2) {
			r = parse_i64(f[1], flen[1], &st->first);
		} else if (KEY("last") && n == 2) {
			r = parse_i64(f[1], flen[1], &st->last);
		} else if (KEY("next") && n == 2) {
			r = parse_i64(f[1], flen[1], &st->next);
		} else if (KEY("hold") && n == 2) {
			st->hold = QUEUE_HOLD_USER;
		} else if (KEY("reply") && n == 2) {
			r = set_str(&st->reply, f[1], flen[1]);
		} else if (KEY("rcpt") && n == 5) {
			struct queue_rcpt_state *rs;
			int64_t when;
			char *addr;
			size_t s;

			r = parse_i64(f[2], flen[2], &when);
			if (r < 0 || flen[3] == 0) {
				r = -EBADMSG;
				break;
			}
			addr = strndup(f[3], flen[3]);
			if (!addr) {
				r = -ENOMEM;
				break;
			}
			rs = queue_state_rcpt(st, addr);
			free(addr);
			if (!rs) {
				r = -ENOMEM;
				break;
			}
			rs->time = when;
			rs->status = QUEUE_RCPT_PENDING;
			for (s = 0; s < sizeof rcpt_status_names / sizeof *rcpt_status_names; s++)
				if (strlen(rcpt_status_names[s]) == flen[1] &&
				    memcmp(rcpt_status_names[s], f[1], flen[1]) == 0)
					rs->status = (enum queue_rcpt_status)s;
			if (flen[4])
				r = set_str(&rs->reply, f[4], flen[4]);
		} else if (KEY("log") && n == 3) {
			int64_t when;
			char *text;

			r = parse_i64(f[1], flen[1], &when);
			if (r < 0)
				break;
			text = strndup(f[2], flen[2]);
			if (!text) {
				r = -ENOMEM;
				break;
			}
			r = queue_state_log(st, when, text);
			free(text);
		}
#undef KEY
		if (r < 0)
			break;
		p = nl + 1;
	}
	if (r == 0 && first)
		r = -EBADMSG;
	if (r < 0)
		queue_state_clear(st);
	return r;
}

/* An absent state file is a message never tried: an empty state. */
int
queue_state_load(struct queue *q, const char *id, struct queue_state *st)
{
	char *buf;
	size_t len;
	int r;

	memset(st, 0, sizeof *st);
	if (!queue_id_valid(id))
		return -EINVAL;
	r = fs_read_file(q->statefd, id, STATE_MAX, &buf, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	r = queue_state_parse(buf, len, st);
	free(buf);
	return r;
}

int
queue_state_save(struct queue *q, const struct queue_msg *m, const struct queue_state *st)
{
	char *buf;
	size_t len;
	int r;

	if (!m->locked)
		return -ENOLCK;
	buf = queue_state_format(st, &len);
	if (!buf)
		return -ENOMEM;
	r = fs_replace(q->statefd, m->id, buf, len);
	free(buf);
	return r;
}

/*
 * Room for the next queue_state_save() of this message, up to len bytes,
 * taken before anything is sent: an acceptance that cannot be recorded
 * would be sent again. -ENOSPC/-EDQUOT: no room. The caller holds the lock.
 */
int
queue_state_reserve(struct queue *q, const struct queue_msg *m, size_t len)
{
	if (!m->locked)
		return -ENOLCK;
	return fs_reserve(q->statefd, m->id, len);
}

/* Gives back what queue_state_reserve() took and no save used. */
void
queue_state_unreserve(struct queue *q, const struct queue_msg *m)
{
	if (m->locked)
		fs_unreserve(q->statefd, m->id);
}

/*
 * What the user sees, given the recipients as they resolve now. A message
 * whose every recipient is done is failed when any of them failed.
 */
enum queue_status
queue_state_status(const struct queue_state *st, char *const *rcpt, size_t n_rcpt, int64_t now)
{
	bool open = false, failed = false;
	size_t i;

	if (st->hold == QUEUE_HOLD_USER)
		return QUEUE_HELD;
	for (i = 0; i < n_rcpt; i++) {
		const struct queue_rcpt_state *r =
			queue_state_find(st, rcpt[i]);

		if (!r || r->status == QUEUE_RCPT_PENDING || r->status == QUEUE_RCPT_DEFERRED)
			open = true;
		else if (r->status == QUEUE_RCPT_FAILED)
			failed = true;
	}
	if (!open)
		return failed ? QUEUE_FAILED : QUEUE_SENT;
	return st->next > now ? QUEUE_DEFERRED : QUEUE_QUEUED;
}

/* The queue-wide hold outboxd sets for a credential problem; NULL when none. */
char *
queue_account_hold(struct queue *q)
{
	char *text;
	size_t len;

	if (fs_read_file(q->dirfd, "account-hold", 4096, &text, &len) < 0)
		return NULL;
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	return text;
}

/*
 * Makes a deferred message due now (outbox flush, sendmail -q); a held or
 * never-tried message is left as it is. The caller holds the message's lock.
 */
int
queue_msg_flush(struct queue *q, struct queue_msg *m)
{
	struct queue_state st;
	int r;

	r = queue_state_load(q, m->id, &st);
	if (r < 0)
		return r;
	if (st.next != 0 && st.hold == QUEUE_HOLD_NONE) {
		st.next = 0;
		r = queue_state_save(q, m, &st);
	}
	queue_state_clear(&st);
	return r;
}

/* Every deferred message due now; messages locked by a delivery in progress are skipped. */
int
queue_flush(struct queue *q)
{
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n, i;
	int r;

	r = queue_list(q, &ids, &n);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		struct queue_msg *m;

		if (queue_msg_open(q, ids[i], &m) < 0)
			continue;
		if (queue_msg_lock(m, false) == 0)
			(void)queue_msg_flush(q, m);
		queue_msg_free(m);
	}
	free(ids);
	return 0;
}
