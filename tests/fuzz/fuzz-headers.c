/* SPDX-License-Identifier: MIT */
/*
 * message.c on a header section from the input: the section's length, the
 * fields, every address list, sendmail -t extraction, Received
 * classification, and the header section as it leaves (message_out_headers)
 * with a fixed account and an alias table. Invariants are checked with
 * assert(), which libFuzzer reports as a crash.
 *
 * What leaves never holds a Bcc or Resent-Bcc field, as the server sees it
 * after the wire encoding, and always ends with the blank line.
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "message.h"

static char *fuzz_addrs[] = { "192.0.2.10", "2001:db8::10" };
static const struct localnames fuzz_ln = {
	.hostname = "myhost",
	.fqdn = "myhost.example.net",
	.addrs = fuzz_addrs,
	.n_addrs = 2,
};

/* "list" has two targets, "team" three, "fail" an error, anything else the account. */
static int
fuzz_alias(void *userdata, const char *local, char ***out, size_t *n)
{
	static const char *const list[] = { "admin@example.org", "ops@example.org" };
	static const char *const team[] = { "a@example.org", "b@example.org", "\"c d\"@example.org" };
	static const char *const account[] = { "alice@gmail.com" };
	const char *const *src = account;
	size_t count = 1, i;

	if (strcmp(local, "fail") == 0)
		return -EIO;
	if (strcmp(local, "list") == 0) {
		src = list;
		count = 2;
	} else if (strcmp(local, "team") == 0) {
		src = team;
		count = 3;
	}
	*out = calloc(count, sizeof **out);
	assert(*out);
	for (i = 0; i < count; i++) {
		(*out)[i] = strdup(src[i]);
		assert((*out)[i]);
	}
	*n = count;
	return 0;
}

static const struct message_out fuzz_out = {
	.id = "0123456789ABCDEF",
	.account = "alice@gmail.com",
	.fullname = "Alice \"Al\" Example",
	.arrival = 1700000000,
	.local = &fuzz_ln,
	.alias = fuzz_alias,
};

static bool
within(const char *p, size_t len, const char *buf, size_t buf_len)
{
	return p >= buf && len <= buf_len && p - buf <= (ptrdiff_t)(buf_len - len);
}

static void
check_addresses(const char *v, size_t len)
{
	struct mailbox *mb = NULL;
	size_t n = 0, i;

	if (message_parse_addresses(v, len, &mb, &n) < 0)
		return;
	for (i = 0; i < n; i++) {
		assert(mb[i].addr && mb[i].addr[0]);
		assert(mb[i].start <= mb[i].end && mb[i].end <= len);
		assert(mb[i].addr_start <= mb[i].addr_end && mb[i].addr_end <= len);
		(void)message_address_sane(mb[i].addr);
		(void)address_is_local(mb[i].addr, &fuzz_ln);
		(void)address_is_local(mb[i].addr, NULL);
	}
	mailboxes_free(mb, n);
}

/* Whether a wire line is the named field ("Bcc :" too, RFC 5322 4.5.3). */
static bool
wire_line_is(const char *p, size_t len, const char *name)
{
	size_t nl = strlen(name), i;

	if (len < nl || strncasecmp(p, name, nl) != 0)
		return false;
	for (i = nl; i < len && (p[i] == ' ' || p[i] == '\t'); i++)
		;
	return i < len && p[i] == ':';
}

/* The header section as the server reads it: CRLF lines up to the first empty one. */
static void
check_wire_header(const char *hdr, size_t len)
{
	char *wire = malloc(2 * len + 5);
	struct wire w;
	size_t n, pos = 0;

	assert(wire);
	wire_init(&w, true);
	n = wire_encode(&w, hdr, len, wire);
	while (pos < n) {
		const char *p = wire + pos;
		const char *e = memmem(p, n - pos, "\r\n", 2);
		size_t line;

		assert(e);	/* the section ends with a line end */
		line = (size_t)(e - p);
		if (line == 0)
			break;
		assert(!wire_line_is(p, line, "Bcc"));
		assert(!wire_line_is(p, line, "Resent-Bcc"));
		pos += line + 2;
	}
	free(wire);
}

static void
check_out_headers(const char *hdr, size_t len)
{
	struct header_field f;
	char *out = NULL;
	size_t out_len = 0, pos = 0;
	int r;

	r = message_out_headers(hdr, len, &fuzz_out, &out, &out_len);
	if (r < 0) {
		assert(r == -EIO || r == -ENOMEM);
		assert(out == NULL);
		return;
	}
	assert(out_len >= 2 && out[out_len - 2] == '\n' && out[out_len - 1] == '\n');
	/* It is a header section of its own: all of it, with no field dropped on the way. */
	assert(message_header_len(out, out_len, false) == (ssize_t)out_len);
	while (message_header_next(out, out_len, &pos, &f)) {
		assert(!header_is(&f, "Bcc"));
		assert(!header_is(&f, "Resent-Bcc"));
	}
	check_wire_header(out, out_len);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct header_field f;
	char **rcpt = NULL;
	size_t n_rcpt = 0, pos = 0, i, k;
	ssize_t h, more;
	int r;

	h = message_header_len(buf, size, true);
	assert(h >= 0 && (size_t)h <= size);
	more = message_header_len(buf, size, false);
	assert(more == -1 || more == h);
	/* Read in pieces, as sendmail and outboxd do: an answer from a prefix is final. */
	for (i = 1; i < size; i *= 3) {
		more = message_header_len(buf, i, false);
		assert(more == -1 || more == h);
	}

	while (message_header_next(buf, (size_t)h, &pos, &f)) {
		assert(pos <= (size_t)h);
		assert(f.name_len > 0 && within(f.name, f.name_len, buf, (size_t)h));
		assert(within(f.raw, f.raw_len, buf, (size_t)h) && f.raw == f.name);
		assert(f.value > f.name && within(f.value, f.value_len, f.raw, f.raw_len));
		assert(f.raw + f.raw_len == buf + pos);
		check_addresses(f.value, f.value_len);
		if (header_is(&f, "Received")) {
			(void)received_is_local(f.value, f.value_len, &fuzz_ln);
			(void)received_is_local(f.value, f.value_len, NULL);
		}
	}

	r = message_extract_rcpts(buf, (size_t)h, &rcpt, &n_rcpt);
	assert(r == 0 || r == -ENOMEM);
	for (i = 0; i < n_rcpt; i++) {
		assert(rcpt[i] && rcpt[i][0]);
		(void)message_address_sane(rcpt[i]);
		for (k = 0; k < i; k++)
			assert(strcmp(rcpt[i], rcpt[k]) != 0);
	}
	if (r == 0) {
		char **res = NULL;
		size_t n_res = 0;

		if (message_resolve_rcpts(rcpt, n_rcpt, &fuzz_out, &res, &n_res) == 0)
			strv_free(res, n_res);
	}
	strv_free(rcpt, n_rcpt);

	check_out_headers(buf, (size_t)h);
	return 0;
}
