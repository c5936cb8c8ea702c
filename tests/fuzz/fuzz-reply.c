/* SPDX-License-Identifier: MIT */
/*
 * smtp.c on what a server says: the input is a server's output, cut into
 * lines at LF (a CR before it dropped, as the client's reader does), added
 * to a reply line by line. Each complete reply goes through
 * smtp_reply_text, smtp_reply_dsn, smtp_caps_parse and smtp_classify for
 * every stage; a line that is refused starts a new reply.
 *
 * The text is one line without control characters, starting with the code;
 * the capabilities' AUTH list stays within its array; every verdict has a
 * name.
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

static void
check_reply(const struct smtp_reply *r)
{
	struct smtp_caps caps;
	char dsn[32], *text;
	unsigned i;
	int st;

	assert(r->done && r->n_lines > 0 && r->code >= 200 && r->code <= 599);
	assert(memchr(r->enh, '\0', sizeof r->enh));
	text = smtp_reply_text(r);
	assert(text);
	assert(text[0] == '0' + r->code / 100 && strlen(text) >= 3);
	for (i = 0; text[i]; i++)
		assert((unsigned char)text[i] >= 0x20 && text[i] != 0x7f);
	free(text);

	smtp_reply_dsn(r, dsn, sizeof dsn);
	assert(dsn[0] == '2' || dsn[0] == '4' || dsn[0] == '5' || dsn[0] == '3');

	smtp_caps_parse(r, &caps);
	assert(memchr(caps.auth, '\0', sizeof caps.auth));

	for (st = SMTP_GREETING; st <= SMTP_RSET; st++) {
		enum smtp_verdict v = smtp_classify(r, (enum smtp_stage)st);

		assert(v >= SMTP_OK && v <= SMTP_TOO_MANY);
		assert(smtp_verdict_name(v));
		if (r->code < 400)
			assert(v == SMTP_OK);
		else
			assert(v != SMTP_OK);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct smtp_reply r = { 0 };
	size_t pos = 0;

	while (pos < size) {
		const char *nl = memchr(buf + pos, '\n', size - pos);
		size_t line = nl ? (size_t)(nl - (buf + pos)) : size - pos;
		size_t len = line;
		int k;

		if (len && buf[pos + len - 1] == '\r')
			len--;
		k = smtp_reply_add(&r, buf + pos, len);
		assert(k == 0 || k == 1 || k == -EBADMSG || k == -E2BIG || k == -ENOMEM);
		assert(r.n_lines <= SMTP_REPLY_MAX_LINES && r.bytes <= SMTP_REPLY_MAX_BYTES);
		if (k == 1)
			check_reply(&r);
		if (k != 0)
			smtp_reply_clear(&r);
		pos += line + (nl ? 1 : 0);
	}
	/* A reply cut short: what a dropped connection leaves. */
	if (r.n_lines)
		(void)smtp_classify(&r, SMTP_DATA_END);
	smtp_reply_clear(&r);
	assert(smtp_backoff(size) >= 300 && smtp_backoff(size) <= 3600);
	return 0;
}
