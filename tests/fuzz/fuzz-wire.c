/* SPDX-License-Identifier: MIT */
/*
 * message.c's byte streams: wire_encode/wire_finish (CRLF and dot-stuffing
 * for DATA, CRLF alone for BDAT) and dotscan (the "." line that ends
 * sendmail's input without -i). The input is the message; where it is cut
 * into pieces derives from its bytes, so every input has its own cuts and
 * reproduces.
 *
 * wire: pieces encode to the same bytes as the whole; every CR is followed
 * by LF and every LF preceded by CR; with dot-stuffing "." alone on a line
 * occurs only as the final terminator; and the server, undoing the encoding,
 * gets back the input's lines.
 * dotscan: pieces, as sendmail reads them, give what the whole gives, which
 * is what a plain line-by-line reading of the rule gives.
 */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

#define MAX_PIECES 8

/* FNV-1a: the input's own choice of cuts. */
static uint64_t
hash(const char *buf, size_t len)
{
	uint64_t h = 0xcbf29ce484222325u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)buf[i]) * 0x100000001b3u;
	return h;
}

static uint64_t
next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Sorted cut points in [0, len]; returns how many. */
static size_t
cuts(const char *buf, size_t len, uint64_t seed, size_t *at)
{
	uint64_t s = seed | 1;
	size_t n = 1 + next(&s) % MAX_PIECES, i, k;
	const char *cr = memchr(buf, '\r', len);

	for (i = 0; i < n; i++)
		at[i] = len ? next(&s) % (len + 1) : 0;
	/* Right after a CR is where the encoder carries state across calls. */
	if (cr && n < MAX_PIECES)
		at[n++] = (size_t)(cr - buf) + 1;
	for (i = 1; i < n; i++)
		for (k = i; k > 0 && at[k - 1] > at[k]; k--) {
			size_t t = at[k];

			at[k] = at[k - 1];
			at[k - 1] = t;
		}
	return n;
}

/* Encodes buf in the pieces the cut points make; the result holds 2 * len + 5 bytes. */
static size_t
encode(const char *buf, size_t len, bool stuff, const size_t *at, size_t n_at, char *out)
{
	struct wire w;
	size_t o = 0, from = 0, i;

	wire_init(&w, stuff);
	for (i = 0; i <= n_at; i++) {
		size_t to = i < n_at ? at[i] : len;
		size_t k = wire_encode(&w, buf + from, to - from, out + o);

		assert(k <= 2 * (to - from));
		o += k;
		from = to;
	}
	o += wire_finish(&w, out + o);
	return o;
}

/* The input's lines, each ended by "\n": LF, CRLF and a lone CR each end one. */
static size_t
normalize(const char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (in[i] == '\r') {
			out[o++] = '\n';
			if (i + 1 < len && in[i + 1] == '\n')
				i++;
		} else {
			out[o++] = in[i];
		}
	}
	if (o && out[o - 1] != '\n')
		out[o++] = '\n';
	return o;
}

static void
check_wire(const char *buf, size_t len, bool stuff, uint64_t seed)
{
	size_t at[MAX_PIECES + 1], n_at = cuts(buf, len, seed, at);
	char *whole = malloc(2 * len + 5), *pieces = malloc(2 * len + 5);
	char *norm = malloc(len + 1), *dec = malloc(2 * len + 5);
	size_t wn, pn, nn, dn = 0, i, pos = 0;

	assert(whole && pieces && norm && dec);
	wn = encode(buf, len, stuff, NULL, 0, whole);
	pn = encode(buf, len, stuff, at, n_at, pieces);
	assert(wn == pn && memcmp(whole, pieces, wn) == 0);

	for (i = 0; i < wn; i++) {
		if (whole[i] == '\r')
			assert(i + 1 < wn && whole[i + 1] == '\n');
		if (whole[i] == '\n')
			assert(i > 0 && whole[i - 1] == '\r');
	}
	if (stuff) {
		/* The end of data is the last line and only there (RFC 5321 4.1.1.4). */
		assert(wn >= 3 && memcmp(whole + wn - 3, ".\r\n", 3) == 0);
		assert(wn == 3 || (wn >= 5 && whole[wn - 5] == '\r' && whole[wn - 4] == '\n'));
		assert(wn == 3 || memcmp(whole, ".\r\n", 3) != 0);
		assert(!memmem(whole, wn - 3, "\r\n.\r\n", 5));
		wn -= 3;
	}
	/* The server's view: CRLF lines, a leading dot removed when stuffed. */
	while (pos < wn) {
		const char *e = memmem(whole + pos, wn - pos, "\r\n", 2);
		size_t line;

		assert(e);
		line = (size_t)(e - (whole + pos));
		if (stuff && line && whole[pos] == '.') {
			assert(line >= 2 && whole[pos + 1] == '.');
			pos++;
			line--;
		}
		memcpy(dec + dn, whole + pos, line);
		dn += line;
		dec[dn++] = '\n';
		pos += line + 2;
	}
	nn = normalize(buf, len, norm);
	assert(dn == nn && memcmp(dec, norm, nn) == 0);
	free(whole);
	free(pieces);
	free(norm);
	free(dec);
}

/* The rule read plainly: the message ends before the first line "." or ".\r". */
static size_t
dot_reference(const char *buf, size_t len, bool *ended)
{
	size_t pos = 0;

	*ended = false;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t line = nl ? (size_t)(nl - (buf + pos)) : len - pos;

		if ((line == 1 && buf[pos] == '.') ||
		    (line == 2 && buf[pos] == '.' && buf[pos + 1] == '\r')) {
			*ended = true;
			return pos;
		}
		pos += line + (nl ? 1 : 0);
	}
	return len;
}

/* sendmail's input loop (input_usable): held-back bytes wait for the next read. */
static void
check_dotscan(const char *buf, size_t len, uint64_t seed)
{
	size_t at[MAX_PIECES + 1], n_at = cuts(buf, len, seed, at);
	size_t pend = 0, from = 0, out = 0, emit, want, i;
	bool at_bol = true, done = false, ended;
	char *pending = malloc(len + 1), *got = malloc(len + 1);

	assert(pending && got);
	for (i = 0; i <= n_at + 1 && !done; i++) {
		size_t to = i < n_at ? at[i] : len;
		bool eof = i == n_at + 1;

		memcpy(pending + pend, buf + from, to - from);
		pend += to - from;
		from = to;
		done = dotscan(pending, pend, &at_bol, eof, &emit);
		assert(emit <= pend);
		memcpy(got + out, pending, emit);
		out += emit;
		memmove(pending, pending + emit, pend - emit);
		pend -= emit;
		if (eof)
			assert(done || pend == 0);
	}
	want = dot_reference(buf, len, &ended);
	assert(done == ended);
	assert(out == want && memcmp(got, buf, want) == 0);

	at_bol = true;
	done = dotscan(buf, len, &at_bol, true, &emit);
	assert(done == ended && emit == want);
	free(pending);
	free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	uint64_t seed = hash(buf, size);

	check_wire(buf, size, true, seed);
	check_wire(buf, size, false, seed);
	check_dotscan(buf, size, seed);
	(void)message_has_8bit(buf, size);
	return 0;
}
