/* SPDX-License-Identifier: MIT */
/*
 * queue.c: IDs, the envelope and state formats, and the queue directory
 * itself (writers, listing, prefixes, locks, removal) in a fresh directory
 * under $TMPDIR that is removed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "queue.h"
#include "test.h"

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (asprintf(&path, "%s/outbox-test-XXXXXX", base && base[0] ? base : "/tmp") < 0 ||
	    !mkdtemp(path)) {
		perror("mkdtemp");
		exit(99);
	}
	return path;
}

/* Entries of a directory other than "." and "..". */
static size_t
count_entries(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd)))
		return (size_t)-1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Creates or replaces dir/name with the given bytes. */
static void
write_at(int dirfd, const char *name, const char *buf, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		perror(name);
		exit(99);
	}
	close(fd);
}

static mode_t
mode_at(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return (mode_t)-1;
	return st.st_mode & 07777;
}

static int
cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, QUEUE_ID_LEN);
}

static void
test_ids(void)
{
	enum { N = 100000 };
	char (*ids)[QUEUE_ID_LEN + 1] = xmalloc(N * sizeof *ids);
	struct timeval before, after;
	uint64_t t = 0, lo, hi;
	size_t i, k, bad_alpha = 0, bad_len = 0, dups = 0, unsorted = 0;

	CASE("ids: length, alphabet, validity");
	gettimeofday(&before, NULL);
	for (i = 0; i < N; i++) {
		queue_id_new(ids[i]);
		if (strlen(ids[i]) != QUEUE_ID_LEN)
			bad_len++;
		for (k = 0; k < QUEUE_ID_LEN; k++)
			if (!ids[i][k] || !strchr(alphabet, ids[i][k]))
				bad_alpha++;
		if (!queue_id_valid(ids[i]))
			bad_alpha++;
		/* The time part never goes backwards within one run. */
		if (i && memcmp(ids[i - 1], ids[i], 11) > 0)
			unsorted++;
	}
	gettimeofday(&after, NULL);
	CHECK_INT(bad_len, 0);
	CHECK_INT(bad_alpha, 0);
	CHECK_INT(unsorted, 0);

	CASE("ids: the first 11 characters are the microseconds since the epoch");
	for (k = 0; k < 11; k++)
		t = t << 5 | (uint64_t)(strchr(alphabet, ids[0][k]) - alphabet);
	lo = (uint64_t)before.tv_sec * 1000000u + (uint64_t)before.tv_usec;
	hi = (uint64_t)after.tv_sec * 1000000u + (uint64_t)after.tv_usec;
	if (!CHECK(t >= lo && t <= hi))
		fprintf(stderr, "\tdecoded %" PRIu64 ", now %" PRIu64 "\n", t, lo);

	CASE("ids: unique over %d", N);
	qsort(ids, N, sizeof *ids, cmp_id);
	for (i = 1; i < N; i++)
		if (memcmp(ids[i - 1], ids[i], QUEUE_ID_LEN) == 0)
			dups++;
	CHECK_INT(dups, 0);
	free(ids);

	CASE("ids: sortable by time");
	{
		char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1];

		queue_id_new(a);
		usleep(2000);
		queue_id_new(b);
		CHECK(strcmp(a, b) < 0);
	}
	test_case_name[0] = '\0';
}

static void
test_id_valid(void)
{
	static const struct {
		const char *id;
		bool valid;
	} cases[] = {
		{ "0123456789ABCDEF", true },
		{ "ZZZZZZZZZZZZZZZZ", true },
		{ "../x", false },
		{ "", false },
		{ "0123456789ABCDE", false },
		{ "0123456789ABCDEFG", false },
		{ "0123456789abcdef", false },
		{ "0123456789ABCDE/", false },
		{ "/123456789ABCDEF", false },
		{ "..3456789ABCDEFG", false },
		{ "0123456789ABCDEI", false },
		{ "0123456789ABCDEL", false },
		{ "0123456789ABCDEO", false },
		{ "0123456789ABCDEU", false },
		{ "0123456789ABCDE ", false },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		CASE("id_valid: \"%s\"", cases[i].id);
		CHECK_INT(queue_id_valid(cases[i].id), cases[i].valid);
	}
	CASE("id_valid: NULL");
	CHECK(!queue_id_valid(NULL));
	CASE("id_valid: NUL inside");
	CHECK(!queue_id_valid("0123456\0" "89ABCDEF"));
	test_case_name[0] = '\0';
}

static void
check_envelope_equal(const struct envelope *a, const struct envelope *b)
{
	size_t i;

	CHECK_INT(a->arrival, b->arrival);
	CHECK_STR(a->user, b->user);
	CHECK_STR(a->fullname, b->fullname);
	CHECK_STR(a->sender, b->sender);
	if (CHECK_INT(a->n_rcpt, b->n_rcpt))
		for (i = 0; i < a->n_rcpt; i++)
			CHECK_STR(a->rcpt[i], b->rcpt[i]);
}

static void
test_envelope(void)
{
	static char *rcpt[] = { "bob@example.com", "root", "\"a b\"@example.com" };
	static const struct {
		const char *name;
		struct envelope env;
	} cases[] = {
		{ "everything", { 1700000000, "alice", "Alice Liddell", "alice@example.com", rcpt, 3 } },
		{ "null sender", { 1, "cron", NULL, "", rcpt, 1 } },
		{ "account sender", { 0, NULL, NULL, NULL, rcpt + 1, 2 } },
		{ "negative arrival", { -5, "u", "F: x y", NULL, rcpt, 1 } },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct envelope got;
		size_t len, consumed = 0;
		char *buf, *withbody;
		int r;

		CASE("envelope: round trip, %s", cases[i].name);
		buf = envelope_format(&cases[i].env, &len);
		if (!CHECK(buf != NULL))
			continue;
		r = envelope_parse(buf, len, &got, &consumed);
		CHECK_INT(r, 0);
		CHECK_INT(consumed, len);
		if (r == 0) {
			check_envelope_equal(&got, &cases[i].env);
			envelope_clear(&got);
		}
		/* The message bytes follow; the envelope ends at its blank line. */
		withbody = xmalloc(len + 12);
		memcpy(withbody, buf, len);
		memcpy(withbody + len, "\nbody\n\nx\n", 10);
		r = envelope_parse(withbody, len + 10, &got, &consumed);
		CHECK_INT(r, 0);
		CHECK_INT(consumed, len);
		if (r == 0)
			envelope_clear(&got);
		free(withbody);
		free(buf);
	}
	test_case_name[0] = '\0';
}

static void
test_envelope_garbage(void)
{
	static const struct {
		const char *name;
		const char *buf;
		size_t len;		/* 0: strlen */
		int want;
	} cases[] = {
		{ "empty", "", 0, -EBADMSG },
		{ "not an envelope", "From: a@b\n\nbody\n", 0, -EBADMSG },
		{ "no blank line", "outbox-queue 1\nrcpt a@b\n", 0, -EBADMSG },
		{ "no line end", "outbox-queue 1\nrcpt a@b", 0, -EBADMSG },
		{ "no recipient", "outbox-queue 1\narrival 5\n\n", 0, -EBADMSG },
		{ "only the blank line", "\n", 0, -EBADMSG },
		{ "version 0", "outbox-queue 0\nrcpt a@b\n\n", 0, -EBADMSG },
		{ "version missing", "outbox-queue\nrcpt a@b\n\n", 0, -EBADMSG },
		{ "version not a number", "outbox-queue 1x\nrcpt a@b\n\n", 0, -EBADMSG },
		{ "version negative", "outbox-queue -1\nrcpt a@b\n\n", 0, -EBADMSG },
		{ "version too long", "outbox-queue 1234567890\nrcpt a@b\n\n", 0, -EBADMSG },
		{ "newer version", "outbox-queue 2\nrcpt a@b\nnewkey x\n\n", 0, -EPROTO },
		{ "much newer version", "outbox-queue 999\n\n", 0, -EPROTO },
		{ "bad arrival", "outbox-queue 1\narrival soon\nrcpt a@b\n\n", 0, -EBADMSG },
		{ "empty arrival", "outbox-queue 1\narrival \nrcpt a@b\n\n", 0, -EBADMSG },
		{ "empty rcpt", "outbox-queue 1\nrcpt \n\n", 0, -EBADMSG },
		{ "rcpt without value", "outbox-queue 1\nrcpt\n\n", 0, -EBADMSG },
		{ "CR in a line", "outbox-queue 1\nrcpt a@b\r\n\n", 0, -EBADMSG },
		{ "NUL in a line", "outbox-queue 1\nrcpt a\0b\n\n", 26, -EBADMSG },
		{ "CRLF envelope", "outbox-queue 1\r\nrcpt a@b\r\n\r\n", 0, -EBADMSG },
		{ "unknown keys are skipped", "outbox-queue 1\nfuture thing\nrcpt a@b\n\n", 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].buf), consumed = 0;
		struct envelope env;
		int r;

		CASE("envelope: %s", cases[i].name);
		memset(&env, 0x55, sizeof env);
		r = envelope_parse(cases[i].buf, len, &env, &consumed);
		CHECK_INT(r, cases[i].want);
		if (r < 0)
			CHECK(env.rcpt == NULL && env.n_rcpt == 0 && env.user == NULL);
		else
			envelope_clear(&env);
	}

	CASE("envelope_value_valid");
	CHECK(envelope_value_valid("a@b c"));
	CHECK(envelope_value_valid(""));
	CHECK(!envelope_value_valid("a\nrcpt evil@x"));
	CHECK(!envelope_value_valid("a\r"));
	CHECK(!envelope_value_valid(NULL));
	test_case_name[0] = '\0';
}

static void
test_open(const char *base)
{
	struct queue *q = NULL;
	char *path;
	int fd;

	CASE("open: creates the queue and its parents, 0700");
	if (asprintf(&path, "%s/share/deep/outbox", base) < 0)
		exit(99);
	CHECK_INT(queue_open(path, false, &q), -ENOENT);
	CHECK_INT(queue_open(path, true, &q), 0);
	if (q) {
		CHECK_INT(mode_at(AT_FDCWD, path), 0700);
		CHECK_INT(mode_at(q->dirfd, "msg"), 0700);
		CHECK_INT(mode_at(q->dirfd, "state"), 0700);
		CHECK_INT(mode_at(q->dirfd, "tmp"), 0700);
		queue_free(q);
		q = NULL;
	}
	CHECK_INT(queue_open(path, false, &q), 0);
	queue_free(q);
	q = NULL;
	free(path);

	CASE("open: tightens a 0755 queue and subdirectory");
	if (asprintf(&path, "%s/loose", base) < 0)
		exit(99);
	CHECK_INT(mkdir(path, 0755), 0);
	chmod(path, 0755);
	fd = open(path, O_RDONLY | O_DIRECTORY);
	CHECK_INT(mkdirat(fd, "msg", 0777), 0);
	fchmodat(fd, "msg", 0777, 0);
	CHECK_INT(queue_open(path, true, &q), 0);
	CHECK_INT(mode_at(AT_FDCWD, path), 0700);
	CHECK_INT(mode_at(fd, "msg"), 0700);
	close(fd);
	queue_free(q);
	q = NULL;
	free(path);

	CASE("open: a symbolic link is refused");
	if (asprintf(&path, "%s/link", base) < 0)
		exit(99);
	CHECK_INT(symlink("loose", path), 0);
	CHECK_INT(queue_open(path, true, &q), -ENOTDIR);
	free(path);

	CASE("open: a file is refused");
	if (asprintf(&path, "%s/file", base) < 0)
		exit(99);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	close(fd);
	CHECK_INT(queue_open(path, true, &q), -ENOTDIR);
	free(path);
	test_case_name[0] = '\0';
}

static char *rcpt_one[] = { "bob@example.com" };

/* Commits one message; returns 0 or -errno. */
static int
put(struct queue *q, const char *body, char id[QUEUE_ID_LEN + 1])
{
	struct envelope env = { .arrival = 42, .user = "alice", .rcpt = rcpt_one, .n_rcpt = 1 };
	struct queue_writer *w;
	int r;

	r = queue_writer_new(q, &env, &w);
	if (r < 0)
		return r;
	r = queue_writer_write(w, body, strlen(body));
	if (r == 0)
		r = queue_writer_commit(w, id);
	if (r < 0)
		queue_writer_free(w);
	return r;
}

static void
test_writer(struct queue *q)
{
	char *rcpt[] = { "bob@example.com", "carol@example.com" };
	struct envelope env = { 1700000000, "alice", "Alice", "", rcpt, 2 };
	struct queue_writer *w = NULL;
	struct queue_msg *m = NULL;
	char id[QUEUE_ID_LEN + 1] = "", *big, *head;
	size_t big_len = 300000, body_len, head_len, i;
	struct stat st;
	int r;

	CASE("writer: commit makes msg/ID visible and leaves tmp/ empty");
	big = xmalloc(big_len + 200);
	for (i = 0; i < big_len; i++)
		big[i] = (char)(i * 7 + i / 991);
	CHECK_INT(queue_writer_new(q, &env, &w), 0);
	CHECK_INT(count_entries(q->tmpfd), 1);
	CHECK_INT(count_entries(q->msgfd), 0);
	/* Small writes, one larger than the buffer, small writes again. */
	CHECK_INT(queue_writer_write(w, big, 100), 0);
	CHECK_INT(queue_writer_write(w, big + 100, 200000), 0);
	CHECK_INT(queue_writer_write(w, big + 200100, 50), 0);
	for (i = 200150; i < big_len; i += 1000)
		CHECK_INT(queue_writer_write(w, big + i, i + 1000 <= big_len ? 1000 : big_len - i), 0);
	CHECK_INT(queue_writer_write(w, "", 0), 0);
	body_len = big_len;
	CHECK_INT(queue_writer_commit(w, id), 0);
	CHECK(queue_id_valid(id));
	CHECK_INT(count_entries(q->tmpfd), 0);
	CHECK_INT(count_entries(q->msgfd), 1);
	CHECK_INT(fstatat(q->msgfd, id, &st, 0), 0);
	CHECK_INT(st.st_mode & 0777, 0600);

	CASE("msg_open: envelope, body_offset and size");
	head = envelope_format(&env, &head_len);
	r = queue_msg_open(q, id, &m);
	CHECK_INT(r, 0);
	if (r == 0) {
		char *back = xmalloc(body_len + 1);

		check_envelope_equal(&m->env, &env);
		CHECK_STR(m->id, id);
		CHECK_INT(m->body_offset, head_len);
		CHECK_INT(m->size, body_len);
		CHECK(!m->locked);
		CHECK_INT(pread(m->fd, back, body_len + 1, m->body_offset), body_len);
		CHECK(memcmp(back, big, body_len) == 0);
		free(back);
		queue_msg_free(m);
	}
	free(head);

	CASE("writer: an empty message");
	CHECK_INT(put(q, "", id), 0);
	CHECK_INT(queue_msg_open(q, id, &m), 0);
	if (m) {
		CHECK_INT(m->size, 0);
		queue_msg_free(m);
		m = NULL;
	}

	CASE("writer: free without commit leaves nothing");
	{
		size_t before = count_entries(q->msgfd);

		CHECK_INT(queue_writer_new(q, &env, &w), 0);
		CHECK_INT(queue_writer_write(w, big, 150000), 0);
		queue_writer_free(w);
		CHECK_INT(count_entries(q->tmpfd), 0);
		CHECK_INT(count_entries(q->msgfd), before);
		queue_writer_free(NULL);
	}

	CASE("writer: an ID already taken is replaced at commit");
	{
		DIR *d;
		struct dirent *de;
		char taken[QUEUE_ID_LEN + 1] = "";
		int dfd;

		CHECK_INT(queue_writer_new(q, &env, &w), 0);
		dfd = openat(q->tmpfd, ".", O_RDONLY | O_DIRECTORY);
		d = fdopendir(dfd);
		while ((de = readdir(d)))
			if (queue_id_valid(de->d_name))
				memcpy(taken, de->d_name, sizeof taken);
		closedir(d);
		CHECK(queue_id_valid(taken));
		write_at(q->msgfd, taken, "someone else's", 14);
		CHECK_INT(queue_writer_write(w, "mine\n", 5), 0);
		CHECK_INT(queue_writer_commit(w, id), 0);
		CHECK(queue_id_valid(id));
		CHECK(strcmp(id, taken) != 0);
		CHECK_INT(count_entries(q->tmpfd), 0);
		CHECK_INT(fstatat(q->msgfd, taken, &st, 0), 0);
		CHECK_INT(st.st_size, 14);
		unlinkat(q->msgfd, taken, 0);
	}
	free(big);
	test_case_name[0] = '\0';
}

static void
test_list_and_prefix(const char *base)
{
	char (*ids)[QUEUE_ID_LEN + 1] = NULL, made[5][QUEUE_ID_LEN + 1], got[QUEUE_ID_LEN + 1];
	size_t n = 0, i, common;
	struct queue *q = NULL;
	char *path;

	CASE("list: an empty queue");
	if (asprintf(&path, "%s/list", base) < 0 || queue_open(path, true, &q) < 0)
		exit(99);
	free(path);
	CHECK_INT(queue_list(q, &ids, &n), 0);
	CHECK_INT(n, 0);
	free(ids);
	ids = NULL;

	CASE("list: oldest first, other files ignored");
	for (i = 0; i < 5; i++) {
		CHECK_INT(put(q, "x\n", made[i]), 0);
		usleep(50);
	}
	write_at(q->msgfd, ".hidden.tmp", "", 0);
	write_at(q->msgfd, "0123456789abcdef", "", 0);
	CHECK_INT(mkdirat(q->msgfd, "ZZZZZZZZZZZZZZZ", 0700), 0);
	CHECK_INT(queue_list(q, &ids, &n), 0);
	if (CHECK_INT(n, 5))
		for (i = 0; i < 5; i++)
			CHECK_STR(ids[i], made[i]);
	for (i = 1; i < n; i++)
		CHECK(strcmp(ids[i - 1], ids[i]) < 0);
	free(ids);

	CASE("resolve_prefix: unique");
	for (common = 0; made[0][common] == made[1][common]; common++)
		;
	CHECK_INT(queue_resolve_prefix(q, made[0], got), 0);
	CHECK_STR(got, made[0]);
	{
		char p[QUEUE_ID_LEN + 1];

		/* The shortest prefix that tells the last from the others. */
		for (i = 1; i <= QUEUE_ID_LEN; i++) {
			size_t k, matches = 0;

			for (k = 0; k < 5; k++)
				if (memcmp(made[k], made[4], i) == 0)
					matches++;
			if (matches == 1)
				break;
		}
		memcpy(p, made[4], i);
		p[i] = '\0';
		memset(got, 0, sizeof got);
		CHECK_INT(queue_resolve_prefix(q, p, got), 0);
		CHECK_STR(got, made[4]);

		CASE("resolve_prefix: ambiguous");
		CHECK(common > 0);
		memcpy(p, made[0], common);
		p[common] = '\0';
		CHECK_INT(queue_resolve_prefix(q, p, got), -EEXIST);
	}

	CASE("resolve_prefix: none");
	CHECK_INT(queue_resolve_prefix(q, "ZZZZZZ", got), -ENOENT);
	CHECK_INT(queue_resolve_prefix(q, "ZZZZZZZZZZZZZZZZ", got), -ENOENT);

	CASE("resolve_prefix: invalid");
	CHECK_INT(queue_resolve_prefix(q, "", got), -EINVAL);
	CHECK_INT(queue_resolve_prefix(q, "../x", got), -EINVAL);
	CHECK_INT(queue_resolve_prefix(q, "0123456789ABCDEFG", got), -EINVAL);
	CHECK_INT(queue_resolve_prefix(q, "abc", got), -EINVAL);
	CHECK_INT(queue_resolve_prefix(q, "0/", got), -EINVAL);

	queue_free(q);
	test_case_name[0] = '\0';
}

static void
test_msg_open_errors(struct queue *q)
{
	struct queue_msg *m = NULL;

	CASE("msg_open: invalid IDs");
	CHECK_INT(queue_msg_open(q, "../msg/x", &m), -EINVAL);
	CHECK_INT(queue_msg_open(q, "", &m), -EINVAL);
	CHECK_INT(queue_msg_open(q, "0123456789abcdef", &m), -EINVAL);

	CASE("msg_open: absent");
	CHECK_INT(queue_msg_open(q, "ZZZZZZZZZZZZZZZZ", &m), -ENOENT);

	CASE("msg_open: a file without an envelope");
	write_at(q->msgfd, "YYYYYYYYYYYYYYYY", "From: x\n\nbody\n", 14);
	CHECK_INT(queue_msg_open(q, "YYYYYYYYYYYYYYYY", &m), -EBADMSG);
	unlinkat(q->msgfd, "YYYYYYYYYYYYYYYY", 0);

	CASE("msg_open: a truncated envelope");
	write_at(q->msgfd, "YYYYYYYYYYYYYYYY", "outbox-queue 1\nrcpt a@b\n", 24);
	CHECK_INT(queue_msg_open(q, "YYYYYYYYYYYYYYYY", &m), -EBADMSG);
	unlinkat(q->msgfd, "YYYYYYYYYYYYYYYY", 0);

	CASE("msg_open: a newer format");
	write_at(q->msgfd, "YYYYYYYYYYYYYYYY", "outbox-queue 7\nrcpt a@b\n\nbody", 29);
	CHECK_INT(queue_msg_open(q, "YYYYYYYYYYYYYYYY", &m), -EPROTO);
	unlinkat(q->msgfd, "YYYYYYYYYYYYYYYY", 0);

	CASE("msg_open: an envelope longer than one read");
	{
		struct envelope env = { .arrival = 1 };
		char **many = calloc(2000, sizeof *many);
		char id[QUEUE_ID_LEN + 1];
		struct queue_writer *w;
		size_t i;

		for (i = 0; i < 2000; i++)
			if (asprintf(&many[i], "recipient-number-%zu@example.com", i) < 0)
				exit(99);
		env.rcpt = many;
		env.n_rcpt = 2000;
		CHECK_INT(queue_writer_new(q, &env, &w), 0);
		CHECK_INT(queue_writer_write(w, "body\n", 5), 0);
		CHECK_INT(queue_writer_commit(w, id), 0);
		CHECK_INT(queue_msg_open(q, id, &m), 0);
		if (m) {
			CHECK_INT(m->env.n_rcpt, 2000);
			CHECK_STR(m->env.rcpt[1999], "recipient-number-1999@example.com");
			CHECK_INT(m->size, 5);
			CHECK_INT(queue_msg_lock(m, false), 0);
			CHECK_INT(queue_msg_remove(q, m), 0);
			queue_msg_free(m);
			m = NULL;
		}
		for (i = 0; i < 2000; i++)
			free(many[i]);
		free(many);
	}
	queue_msg_free(NULL);
	test_case_name[0] = '\0';
}

static void
test_lock(struct queue *q)
{
	struct queue_msg *a = NULL, *b = NULL;
	char id[QUEUE_ID_LEN + 1];

	CASE("lock: exclusive across two opens");
	CHECK_INT(put(q, "lock me\n", id), 0);
	CHECK_INT(queue_msg_open(q, id, &a), 0);
	CHECK_INT(queue_msg_open(q, id, &b), 0);
	if (!a || !b)
		return;
	CHECK_INT(queue_msg_lock(a, false), 0);
	CHECK(a->locked);
	CHECK_INT(queue_msg_lock(b, false), -EWOULDBLOCK);
	CHECK(!b->locked);

	CASE("lock: state_save and remove need the lock");
	{
		struct queue_state st = { .attempts = 1 };

		CHECK_INT(queue_state_save(q, b, &st), -ENOLCK);
		CHECK_INT(queue_msg_remove(q, b), -ENOLCK);
	}

	CASE("lock: released when the holder is freed");
	queue_msg_free(a);
	CHECK_INT(queue_msg_lock(b, false), 0);
	CHECK_INT(queue_msg_lock(b, true), 0);
	CHECK_INT(queue_msg_remove(q, b), 0);
	queue_msg_free(b);
	test_case_name[0] = '\0';
}

static void
fill_state(struct queue_state *st)
{
	struct queue_rcpt_state *r;

	memset(st, 0, sizeof *st);
	st->attempts = 3;
	st->first = 1700000000;
	st->last = 1700000600;
	st->next = 1700001200;
	st->hold = QUEUE_HOLD_USER;
	st->reply = strdup("421 4.7.0 Try again\tlater\r\nplease");
	r = queue_state_rcpt(st, "bob@example.com");
	r->status = QUEUE_RCPT_SENT;
	r->time = 1700000600;
	r->reply = strdup("250 2.0.0 OK");
	r = queue_state_rcpt(st, "carol@example.com");
	r->status = QUEUE_RCPT_DEFERRED;
	r->time = 1700000601;
	r->reply = strdup("450 4.2.1 busy\nsecond line");
	r = queue_state_rcpt(st, "dave@example.com");
	r->status = QUEUE_RCPT_FAILED;
	r->time = -1;
	r = queue_state_rcpt(st, "eve@example.com");
	queue_state_log(st, 1700000000, "first attempt");
	queue_state_log(st, 1700000600, "deferred:\t421\nmore");
}

static void
test_state_format(void)
{
	struct queue_state st, got;
	char *buf;
	size_t len;
	int r;

	CASE("state: format and parse round trip, text sanitized");
	fill_state(&st);
	CHECK_STR(st.log[1].text, "deferred: 421 more");
	buf = queue_state_format(&st, &len);
	if (!CHECK(buf != NULL))
		return;
	CHECK_INT(strlen(buf), len);
	r = queue_state_parse(buf, len, &got);
	CHECK_INT(r, 0);
	if (r == 0) {
		CHECK_INT(got.attempts, 3);
		CHECK_INT(got.first, 1700000000);
		CHECK_INT(got.last, 1700000600);
		CHECK_INT(got.next, 1700001200);
		CHECK_INT(got.hold, QUEUE_HOLD_USER);
		CHECK_STR(got.reply, "421 4.7.0 Try again later  please");
		if (CHECK_INT(got.n_rcpt, 4)) {
			CHECK_STR(got.rcpt[0].addr, "bob@example.com");
			CHECK_INT(got.rcpt[0].status, QUEUE_RCPT_SENT);
			CHECK_INT(got.rcpt[0].time, 1700000600);
			CHECK_STR(got.rcpt[0].reply, "250 2.0.0 OK");
			CHECK_STR(got.rcpt[1].addr, "carol@example.com");
			CHECK_INT(got.rcpt[1].status, QUEUE_RCPT_DEFERRED);
			CHECK_STR(got.rcpt[1].reply, "450 4.2.1 busy second line");
			CHECK_INT(got.rcpt[2].status, QUEUE_RCPT_FAILED);
			CHECK_INT(got.rcpt[2].time, -1);
			CHECK(got.rcpt[2].reply == NULL);
			CHECK_STR(got.rcpt[3].addr, "eve@example.com");
			CHECK_INT(got.rcpt[3].status, QUEUE_RCPT_PENDING);
		}
		if (CHECK_INT(got.n_log, 2)) {
			CHECK_INT(got.log[0].time, 1700000000);
			CHECK_STR(got.log[0].text, "first attempt");
			CHECK_STR(got.log[1].text, "deferred: 421 more");
		}
		/* Formatting again gives the same bytes. */
		{
			size_t len2;
			char *buf2 = queue_state_format(&got, &len2);

			CHECK_MEM(buf2, len2, buf, len);
			free(buf2);
		}
		queue_state_clear(&got);
	}
	free(buf);
	queue_state_clear(&st);

	CASE("state: an empty state");
	memset(&st, 0, sizeof st);
	buf = queue_state_format(&st, &len);
	CHECK_STR(buf, "outbox-state\t1\nattempts\t0\n");
	CHECK_INT(queue_state_parse(buf, len, &got), 0);
	CHECK_INT(got.n_rcpt, 0);
	CHECK_INT(got.hold, QUEUE_HOLD_NONE);
	queue_state_clear(&got);
	free(buf);

	CASE("state: log capped at 20, oldest dropped");
	{
		char text[32];
		int i;

		memset(&st, 0, sizeof st);
		for (i = 0; i < 25; i++) {
			snprintf(text, sizeof text, "event %d", i);
			CHECK_INT(queue_state_log(&st, i, text), 0);
		}
		CHECK_INT(st.n_log, 20);
		CHECK_STR(st.log[0].text, "event 5");
		CHECK_INT(st.log[0].time, 5);
		CHECK_STR(st.log[19].text, "event 24");
		buf = queue_state_format(&st, &len);
		CHECK_INT(queue_state_parse(buf, len, &got), 0);
		CHECK_INT(got.n_log, 20);
		queue_state_clear(&got);
		free(buf);
		queue_state_clear(&st);
	}

	CASE("state: rcpt lookup");
	memset(&st, 0, sizeof st);
	CHECK(queue_state_find(&st, "a@b") == NULL);
	CHECK(queue_state_rcpt(&st, "a@b") != NULL);
	CHECK(queue_state_rcpt(&st, "a@b") == queue_state_find(&st, "a@b"));
	CHECK_INT(st.n_rcpt, 1);
	queue_state_clear(&st);
	test_case_name[0] = '\0';
}

static void
test_state_garbage(void)
{
	static const struct {
		const char *name;
		const char *buf;
		size_t len;
		int want;
	} cases[] = {
		{ "empty", "", 0, -EBADMSG },
		{ "not a state", "attempts\t1\n", 0, -EBADMSG },
		{ "version 0", "outbox-state\t0\n", 0, -EBADMSG },
		{ "newer version", "outbox-state\t2\nattempts\t1\n", 0, -EPROTO },
		{ "torn last line", "outbox-state\t1\nattempts\t1", 0, -EBADMSG },
		{ "bad attempts", "outbox-state\t1\nattempts\tmany\n", 0, -EBADMSG },
		{ "negative attempts", "outbox-state\t1\nattempts\t-1\n", 0, -EBADMSG },
		{ "bad next", "outbox-state\t1\nnext\tsoon\n", 0, -EBADMSG },
		{ "bad rcpt time", "outbox-state\t1\nrcpt\tsent\tx\ta@b\t\n", 0, -EBADMSG },
		{ "empty rcpt address", "outbox-state\t1\nrcpt\tsent\t1\t\t\n", 0, -EBADMSG },
		{ "bad log time", "outbox-state\t1\nlog\tx\ttext\n", 0, -EBADMSG },
		{ "NUL", "outbox-state\t1\nreply\ta\0b\n", 22, -EBADMSG },
		{ "unknown keys are skipped", "outbox-state\t1\nfuture\tx\ty\n", 0, 0 },
		{ "short rcpt lines are skipped", "outbox-state\t1\nrcpt\tsent\n", 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].buf);
		struct queue_state st;
		int r;

		CASE("state: %s", cases[i].name);
		r = queue_state_parse(cases[i].buf, len, &st);
		CHECK_INT(r, cases[i].want);
		if (r < 0)
			CHECK(st.rcpt == NULL && st.log == NULL && st.reply == NULL);
		queue_state_clear(&st);
	}
	test_case_name[0] = '\0';
}

static void
test_state_status(void)
{
	char *rcpt[] = { "a@x.example", "b@x.example" };
	static const struct {
		const char *name;
		enum queue_hold hold;
		int a, b;		/* -1: no entry */
		int64_t next;
		enum queue_status want;
	} cases[] = {
		{ "never tried", QUEUE_HOLD_NONE, -1, -1, 0, QUEUE_QUEUED },
		{ "held", QUEUE_HOLD_USER, -1, -1, 0, QUEUE_HELD },
		{ "held even when done", QUEUE_HOLD_USER, QUEUE_RCPT_SENT, QUEUE_RCPT_SENT, 0,
		  QUEUE_HELD },
		{ "all sent", QUEUE_HOLD_NONE, QUEUE_RCPT_SENT, QUEUE_RCPT_SENT, 0, QUEUE_SENT },
		{ "one failed, one sent", QUEUE_HOLD_NONE, QUEUE_RCPT_FAILED, QUEUE_RCPT_SENT, 0,
		  QUEUE_FAILED },
		{ "all failed", QUEUE_HOLD_NONE, QUEUE_RCPT_FAILED, QUEUE_RCPT_FAILED, 9999,
		  QUEUE_FAILED },
		{ "one failed, one pending", QUEUE_HOLD_NONE, QUEUE_RCPT_FAILED, QUEUE_RCPT_PENDING, 0,
		  QUEUE_QUEUED },
		{ "deferred until later", QUEUE_HOLD_NONE, QUEUE_RCPT_SENT, QUEUE_RCPT_DEFERRED, 2000,
		  QUEUE_DEFERRED },
		{ "deferred, due now", QUEUE_HOLD_NONE, QUEUE_RCPT_SENT, QUEUE_RCPT_DEFERRED, 1000,
		  QUEUE_QUEUED },
		{ "deferred, overdue", QUEUE_HOLD_NONE, QUEUE_RCPT_DEFERRED, -1, 10, QUEUE_QUEUED },
		{ "a recipient without entry is open", QUEUE_HOLD_NONE, QUEUE_RCPT_SENT, -1, 2000,
		  QUEUE_DEFERRED },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct queue_state st = { .hold = cases[i].hold, .next = cases[i].next };

		CASE("status: %s", cases[i].name);
		if (cases[i].a >= 0)
			queue_state_rcpt(&st, rcpt[0])->status = (enum queue_rcpt_status)cases[i].a;
		if (cases[i].b >= 0)
			queue_state_rcpt(&st, rcpt[1])->status = (enum queue_rcpt_status)cases[i].b;
		/* An entry for an address no longer resolved is not counted. */
		queue_state_rcpt(&st, "old@x.example")->status = QUEUE_RCPT_FAILED;
		CHECK_STR(queue_status_name(queue_state_status(&st, rcpt, 2, 1000)),
		          queue_status_name(cases[i].want));
		queue_state_clear(&st);
	}

	CASE("status names");
	CHECK_STR(queue_status_name(QUEUE_QUEUED), "queued");
	CHECK_STR(queue_status_name(QUEUE_DEFERRED), "deferred");
	CHECK_STR(queue_status_name(QUEUE_HELD), "held");
	CHECK_STR(queue_status_name(QUEUE_FAILED), "failed");
	CHECK_STR(queue_status_name(QUEUE_SENT), "sent");
	CHECK_STR(queue_rcpt_status_name(QUEUE_RCPT_PENDING), "pending");
	CHECK_STR(queue_rcpt_status_name(QUEUE_RCPT_SENT), "sent");
	CHECK_STR(queue_rcpt_status_name(QUEUE_RCPT_DEFERRED), "deferred");
	CHECK_STR(queue_rcpt_status_name(QUEUE_RCPT_FAILED), "failed");
	test_case_name[0] = '\0';
}

static void
test_state_files_and_remove(struct queue *q)
{
	struct queue_msg *m = NULL;
	struct queue_state st, got;
	char id[QUEUE_ID_LEN + 1];
	struct stat sb;

	CASE("state_load: absent is an empty state");
	CHECK_INT(put(q, "state me\n", id), 0);
	memset(&got, 0x55, sizeof got);
	CHECK_INT(queue_state_load(q, id, &got), 0);
	CHECK_INT(got.attempts, 0);
	CHECK_INT(got.n_rcpt, 0);
	CHECK(got.reply == NULL);
	CHECK_INT(queue_state_load(q, "../state/x", &got), -EINVAL);

	CASE("state_save and state_load");
	CHECK_INT(queue_msg_open(q, id, &m), 0);
	if (!m)
		return;
	CHECK_INT(queue_msg_lock(m, true), 0);
	fill_state(&st);
	CHECK_INT(queue_state_save(q, m, &st), 0);
	CHECK_INT(fstatat(q->statefd, id, &sb, 0), 0);
	CHECK_INT(sb.st_mode & 0777, 0600);
	CHECK_INT(count_entries(q->statefd), 1);
	CHECK_INT(queue_state_load(q, id, &got), 0);
	CHECK_INT(got.attempts, 3);
	CHECK_INT(got.n_rcpt, 4);
	queue_state_clear(&got);
	st.attempts = 4;
	CHECK_INT(queue_state_save(q, m, &st), 0);
	CHECK_INT(count_entries(q->statefd), 1);
	CHECK_INT(queue_state_load(q, id, &got), 0);
	CHECK_INT(got.attempts, 4);
	queue_state_clear(&got);
	queue_state_clear(&st);

	CASE("state_load: a corrupt state file");
	write_at(q->statefd, id, "garbage", 7);
	CHECK_INT(queue_state_load(q, id, &got), -EBADMSG);

	CASE("msg_remove: message and state go");
	CHECK_INT(queue_msg_remove(q, m), 0);
	CHECK_INT(fstatat(q->msgfd, id, &sb, 0), -1);
	CHECK_INT(errno, ENOENT);
	CHECK_INT(fstatat(q->statefd, id, &sb, 0), -1);
	queue_msg_free(m);
	m = NULL;

	CASE("msg_remove: without a state file");
	CHECK_INT(put(q, "no state\n", id), 0);
	CHECK_INT(queue_msg_open(q, id, &m), 0);
	if (m) {
		CHECK_INT(queue_msg_lock(m, false), 0);
		CHECK_INT(queue_msg_remove(q, m), 0);
		CHECK_INT(queue_msg_remove(q, m), -ENOENT);
		queue_msg_free(m);
	}
	test_case_name[0] = '\0';
}

int
main(void)
{
	struct queue *q = NULL;
	char *base = make_tmpdir(), *path;

	umask(022);
	test_ids();
	test_id_valid();
	test_envelope();
	test_envelope_garbage();
	test_open(base);
	test_state_format();
	test_state_garbage();
	test_state_status();

	if (asprintf(&path, "%s/outbox", base) < 0 || queue_open(path, true, &q) < 0) {
		fprintf(stderr, "cannot open a queue in %s\n", base);
		return 99;
	}
	test_writer(q);
	test_list_and_prefix(base);
	test_msg_open_errors(q);
	test_lock(q);
	test_state_files_and_remove(q);
	queue_free(q);
	free(path);
	rm_rf(base);
	free(base);
	return test_exit("test-queue");
}
