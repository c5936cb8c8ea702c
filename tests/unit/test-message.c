/* SPDX-License-Identifier: MIT */
/*
 * message.c: the header section, address lists, -t recipients, the "."
 * terminator, local names and Received fields, the header changes made on
 * the way out, and the wire encoding. Times are formatted in UTC (main sets
 * TZ) unless a case sets another zone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "message.h"
#include "test.h"

#define S(lit) lit, sizeof(lit) - 1

/* The host the Received and address cases run on. */
static char *test_addrs[] = { "192.0.2.10", "2001:db8::10" };
static const struct localnames test_ln = {
	.hostname = "myhost",
	.fqdn = "myhost.example.net",
	.addrs = test_addrs,
	.n_addrs = 2,
};

static void
test_header_len(void)
{
	static const struct {
		const char *name;
		const char *hdr;	/* the header section */
		const char *rest;	/* what follows it */
		bool eof;
		bool more;		/* -1 expected: more input needed */
	} cases[] = {
		{ "blank line", "To: a@b.c\nSubject: x\n\n", "body\n", false, false },
		{ "CRLF blank line", "To: a@b.c\r\nSubject: x\r\n\r\n", "body\r\n", false, false },
		{ "only the blank line", "\n", "body\n", false, false },
		{ "only a CRLF blank line", "\r\n", "body\n", false, false },
		{ "no separator at eof", "To: a@b.c\nSubject: x\n", "", true, false },
		{ "no separator, no line end, eof", "To: a@b.c\nSubject: x", "", true, false },
		{ "no separator, not eof", "To: a@b.c\nSubject: x\n", "", false, true },
		{ "incomplete line, not eof", "To: a@b.c\nSubj", "", false, true },
		{ "incomplete field line could still be a field", "To: a\nhello", "", false, true },
		{ "empty input, not eof", "", "", false, true },
		{ "empty input at eof", "", "", true, false },
		{ "first non-header line is body", "To: a@b.c\n", "hello world\n\nmore\n", false, false },
		{ "non-header line with a late colon", "To: a@b.c\n", "hello world: x\n", false, false },
		{ "non-header line at eof without newline", "To: a@b.c\n", "hello", true, false },
		{ "continuation lines", "Subject: a\n b\n\tc\nTo: x@y.z\n\n", "body", false, false },
		{ "CRLF continuation lines", "Subject: a\r\n b\r\nTo: x@y.z\r\n\r\n", "body", false,
		  false },
		{ "mbox From line", "From alice@example.com Mon Jan  1 00:00:00 2024\nTo: a@b.c\n\n",
		  "body\n", false, false },
		{ "mbox From line alone at eof", "From alice Mon Jan  1 00:00:00 2024\n", "", true,
		  false },
		{ "From line later is body", "To: a@b.c\n", "From bob Mon\n\n", false, false },
		{ "continuation as first line", "", " x: y\n\n", false, false },
		{ "obsolete space before colon", "Subject : x\nTo\t: y\n\n", "b", false, false },
		{ "empty field name", "To: a\n", ": x\n\n", false, false },
		{ "8-bit in a field name is no field", "To: a\n", "T\xc3\xb6: x\n\n", false, false },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char buf[512];
		size_t hl = strlen(cases[i].hdr), rl = strlen(cases[i].rest);
		ssize_t got;

		CASE("header_len: %s", cases[i].name);
		memcpy(buf, cases[i].hdr, hl);
		memcpy(buf + hl, cases[i].rest, rl);
		got = message_header_len(buf, hl + rl, cases[i].eof);
		CHECK_INT(got, cases[i].more ? -1 : (ssize_t)hl);
	}
	test_case_name[0] = '\0';
}

/* " \n" after a field is a continuation line holding only white space: it stays header. */
static void
test_header_len_whitespace_continuation(void)
{
	CASE("header_len: whitespace-only continuation");
	CHECK_INT(message_header_len(S("To: a\n \n\nbody"), false), 9);
}

static void
test_header_next(void)
{
	static const char hdr[] =
		"From alice Mon Jan  1 00:00:00 2024\n"
		"Subject: one\n two\r\n\tthree\n"
		"To : x@y.z\r\n"
		"X-Empty:\n"
		"Last: no line end";
	static const struct {
		const char *name, *value, *raw;
	} want[] = {
		{ "Subject", " one\n two\r\n\tthree", "Subject: one\n two\r\n\tthree\n" },
		{ "To", " x@y.z", "To : x@y.z\r\n" },
		{ "X-Empty", "", "X-Empty:\n" },
		{ "Last", " no line end", "Last: no line end" },
	};
	struct header_field f;
	size_t pos = 0, i = 0;

	CASE("header_next: iteration with folding and an mbox line");
	while (message_header_next(hdr, sizeof hdr - 1, &pos, &f)) {
		if (!CHECK(i < sizeof want / sizeof *want))
			break;
		CHECK_MEM(f.name, f.name_len, want[i].name, strlen(want[i].name));
		CHECK_MEM(f.value, f.value_len, want[i].value, strlen(want[i].value));
		CHECK_MEM(f.raw, f.raw_len, want[i].raw, strlen(want[i].raw));
		CHECK(header_is(&f, want[i].name));
		i++;
	}
	CHECK_INT(i, sizeof want / sizeof *want);
	CHECK_INT(pos, sizeof hdr - 1);

	CASE("header_next: stops at the blank line");
	pos = 0;
	i = 0;
	while (message_header_next(S("A: 1\r\nB: 2\r\n\r\nC: 3\r\n"), &pos, &f))
		i++;
	CHECK_INT(i, 2);
	CHECK_INT(pos, 12);

	CASE("header_is: case-insensitive, whole name");
	pos = 0;
	CHECK(message_header_next(S("message-id: <x@y>\n"), &pos, &f));
	CHECK(header_is(&f, "Message-ID"));
	CHECK(!header_is(&f, "Message"));
	CHECK(!header_is(&f, "Message-IDs"));
	test_case_name[0] = '\0';
}

static void
test_parse_addresses(void)
{
	static const struct {
		const char *name;
		const char *value;
		const char *want[4];
	} cases[] = {
		{ "bare", " alice@example.com", { "alice@example.com" } },
		{ "display name", " Alice Smith <alice@example.com>", { "alice@example.com" } },
		{ "quoted display name", " \"Alice\" <alice@example.com>", { "alice@example.com" } },
		{ "quoted name with comma", " \"Smith, John\" <j@x.example>, b@y.example",
		  { "j@x.example", "b@y.example" } },
		{ "quoted name with > and <", " \"a>b <evil@x.example>\" <c@d.example>",
		  { "c@d.example" } },
		{ "list", " a@x.example, b@y.example ,c@z.example",
		  { "a@x.example", "b@y.example", "c@z.example" } },
		{ "nested comments", " a@b.example (c (nested, with comma) <x@y.example>)",
		  { "a@b.example" } },
		{ "comment before bare", " (Alice) alice@example.com", { "alice@example.com" } },
		{ "bare with trailing comment", " root@example.com (Cron Daemon)",
		  { "root@example.com" } },
		{ "comments around angle", " (x) Alice (y) <alice@example.com> (z)",
		  { "alice@example.com" } },
		{ "comment inside angle", " <alice(c)@example.com>", { "alice@example.com" } },
		{ "group", " friends: a@x.example, Bob <b@y.example>;, c@z.example",
		  { "a@x.example", "b@y.example", "c@z.example" } },
		{ "empty group", " undisclosed-recipients:;", { NULL } },
		{ "empty group then address", " undisclosed-recipients:;, a@x.example",
		  { "a@x.example" } },
		{ "quoted group name with colon", " \"a:b\": c@d.example;", { "c@d.example" } },
		{ "obs-route", " <@a.example,@b.example:x@y.example>", { "x@y.example" } },
		{ "obs-route with name", " Joe <@relay.example:joe@y.example>, k@l.example",
		  { "joe@y.example", "k@l.example" } },
		{ "encoded word display name", " =?UTF-8?B?w4lsaXNl?= <elise@example.com>",
		  { "elise@example.com" } },
		{ "encoded word Q", " =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <j@x.example>",
		  { "j@x.example" } },
		{ "folding between addresses", " a@x.example,\r\n b@y.example,\n\tc@z.example",
		  { "a@x.example", "b@y.example", "c@z.example" } },
		{ "folding in quoted local part", " \"john\r\n doe\"@example.com",
		  { "\"john doe\"@example.com" } },
		{ "folding in quoted display name", " \"Very\r\n Long\" <v@example.com>",
		  { "v@example.com" } },
		{ "quoted local part", " \"a b\"@example.com", { "\"a b\"@example.com" } },
		{ "quoted local part with >", " <\"a>b\"@example.com>", { "\"a>b\"@example.com" } },
		{ "local only", " root", { "root" } },
		{ "empty", "", { NULL } },
		{ "only white space", "  \r\n ", { NULL } },
		{ "empty angle", " <>", { NULL } },
		{ "empty elements", " ,, a@x.example,,", { "a@x.example" } },
		{ "domain literal", " a@[127.0.0.1]", { "a@[127.0.0.1]" } },
		{ "IPv6 domain literal", " a@[IPv6:::1], b@x.example",
		  { "a@[IPv6:::1]", "b@x.example" } },
		{ "IPv6 domain literal in angle", " A <a@[IPv6:::1]>", { "a@[IPv6:::1]" } },
	};
	size_t i, k;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct mailbox *mb = NULL;
		size_t n = 99, nwant = 0;
		int r;

		CASE("parse_addresses: %s", cases[i].name);
		while (nwant < 4 && cases[i].want[nwant])
			nwant++;
		r = message_parse_addresses(cases[i].value, strlen(cases[i].value), &mb, &n);
		CHECK_INT(r, 0);
		if (r < 0)
			continue;
		CHECK_INT(n, nwant);
		for (k = 0; k < n && k < nwant; k++) {
			CHECK_STR(mb[k].addr, cases[i].want[k]);
			CHECK(mb[k].start <= mb[k].addr_start && mb[k].addr_end <= mb[k].end);
			CHECK(mb[k].end <= strlen(cases[i].value));
		}
		mailboxes_free(mb, n);
	}
	test_case_name[0] = '\0';
}

/* The spans that message_out_headers rewrites through. */
static void
test_parse_addresses_spans(void)
{
	static const char v[] = " Alice <a@b.example>, bob@c.example (Bob)";
	struct mailbox *mb;
	size_t n;

	CASE("parse_addresses: spans");
	CHECK_INT(message_parse_addresses(v, sizeof v - 1, &mb, &n), 0);
	if (!CHECK_INT(n, 2))
		return;
	CHECK(mb[0].angle);
	CHECK_MEM_LIT(v + mb[0].start, mb[0].end - mb[0].start, "Alice <a@b.example>");
	CHECK_MEM_LIT(v + mb[0].addr_start, mb[0].addr_end - mb[0].addr_start, "a@b.example");
	CHECK(!mb[1].angle);
	CHECK_MEM_LIT(v + mb[1].start, mb[1].end - mb[1].start, "bob@c.example (Bob)");
	CHECK_MEM_LIT(v + mb[1].addr_start, mb[1].addr_end - mb[1].addr_start, "bob@c.example");
	mailboxes_free(mb, n);
	test_case_name[0] = '\0';
}

static void
test_extract_rcpts(void)
{
	static const struct {
		const char *name;
		const char *hdr;
		const char *want[6];
	} cases[] = {
		{ "To, Cc, Bcc",
		  "From: me@x.example\nTo: a@x.example\nCc: B <b@x.example>\nBcc: c@x.example\n"
		  "Subject: to: d@x.example\n\n",
		  { "a@x.example", "b@x.example", "c@x.example" } },
		{ "folded and CRLF", "To: a@x.example,\r\n b@x.example\r\ncc: c@x.example\r\n\r\n",
		  { "a@x.example", "b@x.example", "c@x.example" } },
		{ "duplicates once", "To: a@x.example, a@x.example\nCc: a@x.example\nBcc: <a@x.example>\n",
		  { "a@x.example" } },
		{ "Resent-* takes precedence",
		  "To: a@x.example\nCc: b@x.example\nResent-To: r@x.example\nResent-Cc: s@x.example\n"
		  "Resent-Bcc: t@x.example\n\n",
		  { "r@x.example", "s@x.example", "t@x.example" } },
		{ "Resent-* after To", "Resent-Date: x\nResent-To: r@x.example\nTo: a@x.example\n",
		  { "r@x.example" } },
		{ "any Resent- field switches", "Resent-From: f@x.example\nTo: a@x.example\n", { NULL } },
		{ "no recipients", "Subject: x\n\n", { NULL } },
		{ "empty group", "To: undisclosed-recipients:;\nBcc: b@x.example\n",
		  { "b@x.example" } },
		{ "mbox line skipped", "From x@y Mon\nTo: a@x.example\n\n", { "a@x.example" } },
		{ "stops at the blank line", "To: a@x.example\n\nCc: b@x.example\n",
		  { "a@x.example" } },
		{ "local names", "To: root, alice@localhost\n", { "root", "alice@localhost" } },
	};
	size_t i, k;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char **rcpt = NULL;
		size_t n = 0, nwant = 0;

		CASE("extract_rcpts: %s", cases[i].name);
		while (nwant < 6 && cases[i].want[nwant])
			nwant++;
		CHECK_INT(message_extract_rcpts(cases[i].hdr, strlen(cases[i].hdr), &rcpt, &n), 0);
		CHECK_INT(n, nwant);
		for (k = 0; k < n && k < nwant; k++)
			CHECK_STR(rcpt[k], cases[i].want[k]);
		strv_free(rcpt, n);
	}

	/* Command line recipients come first; -t adds to them without repeating. */
	{
		char **rcpt = xmalloc(sizeof *rcpt);
		size_t n = 1;

		CASE("extract_rcpts: appends to a list");
		rcpt[0] = strdup("a@x.example");
		CHECK_INT(message_extract_rcpts(S("To: a@x.example, b@x.example\n"), &rcpt, &n), 0);
		if (CHECK_INT(n, 2))
			CHECK_STR(rcpt[1], "b@x.example");
		strv_free(rcpt, n);
	}
	test_case_name[0] = '\0';
}

static void
test_dotscan(void)
{
	static const struct {
		const char *name;
		const char *in;
		size_t len;		/* 0: strlen */
		bool at_bol, eof;
		bool done;
		size_t emit;
		bool at_bol_after;	/* checked when !done */
	} cases[] = {
		{ "terminator at start", ".\n", 0, true, false, true, 0, false },
		{ "CRLF terminator at start", ".\r\n", 0, true, false, true, 0, false },
		{ "terminator mid-buffer", "abc\n.\nrest\n", 0, true, false, true, 4, false },
		{ "CRLF terminator mid-buffer", "abc\r\n.\r\nrest", 0, true, false, true, 5, false },
		{ "double dot is no terminator", "..\n", 0, true, false, false, 3, true },
		{ "dot line with text", ".x\n", 0, true, false, false, 3, true },
		{ "dot not at line start", "a.\n", 0, true, false, false, 3, true },
		{ "space then dot", " .\n", 0, true, false, false, 3, true },
		{ "dot after mid-line start", ".\nx", 0, false, false, false, 3, false },
		{ "dot CR x", ".\rx\n", 0, true, false, false, 4, true },
		{ "hold back a dot", "abc\n.", 0, true, false, false, 4, true },
		{ "hold back dot CR", "abc\n.\r", 0, true, false, false, 4, true },
		{ "hold back dot at start", ".", 0, true, false, false, 0, true },
		{ "final dot at eof", "abc\n.", 0, true, true, true, 4, false },
		{ "final dot CR at eof", "abc\n.\r", 0, true, true, true, 4, false },
		{ "eof without terminator", "abc\ndef", 0, true, true, false, 7, false },
		{ "eof mid-line dot", "abc.", 0, true, true, false, 4, false },
		{ "NUL bytes", "a\0b\n.\n", 6, true, false, true, 4, false },
		{ "empty", "", 0, true, false, false, 0, true },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in), emit = 999;
		bool at_bol = cases[i].at_bol, done;

		CASE("dotscan: %s", cases[i].name);
		done = dotscan(cases[i].in, len, &at_bol, cases[i].eof, &emit);
		CHECK_INT(done, cases[i].done);
		CHECK_INT(emit, cases[i].emit);
		if (!cases[i].done)
			CHECK_INT(at_bol, cases[i].at_bol_after);
	}
	test_case_name[0] = '\0';
}

/*
 * Runs dotscan the way sendmail reads stdin: bytes arrive in pieces, what
 * is emitted is passed on, what is held back is scanned again with the next
 * piece. Returns the message bytes and whether the terminator was seen.
 */
static size_t
dotscan_stream(const char *in, size_t len, const size_t *cuts, size_t n_cuts, char *out,
               bool *done)
{
	char buf[256];
	size_t have = 0, from = 0, out_len = 0, fed = 0, c;
	bool at_bol = true;

	*done = false;
	for (c = 0; c <= n_cuts && !*done; c++) {
		size_t upto = c < n_cuts ? cuts[c] : len, emit;
		bool eof = c == n_cuts;

		memcpy(buf + have, in + fed, upto - fed);
		have += upto - fed;
		fed = upto;
		*done = dotscan(buf + from, have - from, &at_bol, eof, &emit);
		memcpy(out + out_len, buf + from, emit);
		out_len += emit;
		from += emit;
		if (!*done && eof)
			break;
	}
	return out_len;
}

static void
test_dotscan_chunks(void)
{
	static const char *const inputs[] = {
		"line one\n.\nafter\n",
		"a\r\n..\r\n.\r\nafter",
		"a\n.x\n.\r\rb\n.",
		"no terminator\n.",
		"no terminator at all\n",
		".\r",
		"..\n.\r\n",
	};
	size_t i, cut, cut2;

	for (i = 0; i < sizeof inputs / sizeof *inputs; i++) {
		size_t len = strlen(inputs[i]), want_len;
		char want[256], got[256];
		bool want_done, done;

		CASE("dotscan: chunk boundaries in %zu", i);
		want_len = dotscan_stream(inputs[i], len, NULL, 0, want, &want_done);
		for (cut = 0; cut <= len; cut++) {
			size_t len1;

			len1 = dotscan_stream(inputs[i], len, &cut, 1, got, &done);
			if (!CHECK_MEM(got, len1, want, want_len) || !CHECK_INT(done, want_done))
				fprintf(stderr, "\tcut at %zu\n", cut);
			for (cut2 = cut; cut2 <= len; cut2++) {
				size_t cuts[2] = { cut, cut2 };

				len1 = dotscan_stream(inputs[i], len, cuts, 2, got, &done);
				if (!CHECK_MEM(got, len1, want, want_len) || !CHECK_INT(done, want_done))
					fprintf(stderr, "\tcuts at %zu, %zu\n", cut, cut2);
			}
		}
		/* Byte by byte. */
		{
			size_t cuts[256], k, got_len;

			for (k = 0; k < len; k++)
				cuts[k] = k + 1;
			got_len = dotscan_stream(inputs[i], len, cuts, len, got, &done);
			CHECK_MEM(got, got_len, want, want_len);
			CHECK_INT(done, want_done);
		}
	}

	CASE("dotscan: the expected bytes");
	{
		char got[64];
		bool done;
		size_t n = dotscan_stream(S("a\r\n..\r\n.\r\nafter"), NULL, 0, got, &done);

		CHECK(done);
		CHECK_MEM_LIT(got, n, "a\r\n..\r\n");
		n = dotscan_stream(S("no terminator\n."), NULL, 0, got, &done);
		CHECK(done);
		CHECK_MEM_LIT(got, n, "no terminator\n");
		n = dotscan_stream(S("a\n.x\n.\r\rb\n."), NULL, 0, got, &done);
		CHECK(done);
		CHECK_MEM_LIT(got, n, "a\n.x\n.\r\rb\n");
	}
	test_case_name[0] = '\0';
}

static void
test_received(void)
{
	static const struct {
		const char *name;
		const char *value;
		bool local;
	} cases[] = {
		{ "localhost to myhost",
		  " from localhost (localhost [127.0.0.1])\n\tby myhost (Postfix) with ESMTP id 4F1\n"
		  "\tfor <alice@myhost>; Mon, 1 Jan 2024 10:00:00 +0100",
		  true },
		{ "external from is kept",
		  " from mail.example.com (mail.example.com [198.51.100.7])\n\tby myhost with ESMTP;"
		  " Mon, 1 Jan 2024 10:00:00 +0100",
		  false },
		{ "pickup, by localdomain",
		  " by host.localdomain (Postfix, from userid 1000)\n\tid 4F1; Mon, 1 Jan 2024 10:00:00 +0100",
		  true },
		{ "::1", " from localhost (localhost [::1]) by myhost.example.net; date", true },
		{ "IPv6:::1", " from localhost (localhost [IPv6:::1]) by myhost; date", true },
		{ "literal from", " from [127.0.0.1] by localhost; date", true },
		{ "literal IPv6 from", " from [IPv6:::1] by myhost; date", true },
		{ "127/8", " from localhost (localhost [127.1.2.3]) by myhost; date", true },
		{ "v4-mapped loopback", " from localhost (localhost [::ffff:127.0.0.1]) by myhost; d", true },
		{ "external by is kept",
		  " from localhost (localhost [127.0.0.1]) by mx.example.com with ESMTP; date", false },
		{ "only external by", " by mx.google.com with SMTP id x; date", false },
		{ "external address in TCP-info",
		  " from evil.example (localhost [203.0.113.5]) by myhost; date", false },
		{ "external name in TCP-info",
		  " from localhost (evil.example [127.0.0.1]) by myhost; date", false },
		{ "host's own address", " from myhost (myhost [192.0.2.10]) by myhost; date", true },
		{ "host's own IPv6 address", " from myhost ([IPv6:2001:db8::10]) by myhost; date", true },
		{ "helo in TCP-info", " from localhost (helo=localhost) by myhost.example.net; date",
		  true },
		{ "fqdn, trailing dot, case", " FROM LOCALHOST BY MyHost.Example.Net.; date", true },
		{ "localhost subdomain", " from a.localhost by b.localdomain; date", true },
		{ "names that only end alike", " from notmyhost by myhost; date", false },
		{ "by in the date is ignored", " from localhost by myhost; Mon, by mx.example.com",
		  true },
		{ "qmail local injection", " (qmail 1234 invoked by uid 1000); Mon, 1 Jan 2024", true },
		{ "qmail from network is kept", " (qmail 99 invoked from network); Mon, 1 Jan 2024", false },
		{ "exim local submission", " from alice by myhost with local (Exim 4.96)\n\t(envelope-from"
		  " <alice@myhost>) id 1r; Mon, 1 Jan 2024", true },
		{ "exim local-esmtp", " from alice by myhost.example.net with local-esmtp (Exim 4.96); d", true },
		{ "exim local, external by is kept", " from alice by mx.example.com with local; d", false },
		{ "user-like from without local protocol", " from alice by myhost with ESMTP; d", false },
		{ "empty", "", false },
		{ "from without host", " from (comment) by myhost; date", false },
		{ "from at the end", " from", false },
		{ "a lone [ ends the TCP-info", " from localhost (localhost [", false },
		{ "a literal cut short in the TCP-info", " from localhost (localhost [127.0.0.1", true },
		{ "a literal cut short as from", " from [127.0.0.1", true },
		{ "found by fuzzing", " z:(Pos[tfix) wi: from [IPv6:::1] ((hel\\: Pos[tfix) wi: from [I", false },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		/* Exactly its bytes on the heap, no NUL after: a read past the field is caught. */
		size_t len = strlen(cases[i].value);
		char *v = xmalloc(len);

		memcpy(v, cases[i].value, len);
		CASE("received_is_local: %s", cases[i].name);
		CHECK_INT(received_is_local(v, len, &test_ln), cases[i].local);
		free(v);
	}

	CASE("received_is_local: no local names");
	CHECK(received_is_local(S(" from localhost ([127.0.0.1]) by localhost; d"), NULL));
	CHECK(!received_is_local(S(" from localhost by myhost; d"), NULL));
	test_case_name[0] = '\0';
}

static void
test_address_is_local(void)
{
	static const struct {
		const char *addr;
		bool local;
	} cases[] = {
		{ "root", true },
		{ "root@localhost", true },
		{ "root@LOCALHOST.", true },
		{ "a@myhost", true },
		{ "a@MyHost.Example.Net", true },
		{ "a@x.localdomain", true },
		{ "a@sub.localhost", true },
		{ "a@[127.0.0.1]", true },
		{ "a@[IPv6:::1]", true },
		{ "a@[192.0.2.10]", true },
		{ "a@[IPv6:2001:db8::10]", true },
		{ "a@[198.51.100.1]", false },
		{ "a@[127.0.0.1", false },
		{ "a@example.com", false },
		{ "a@myhost.evil.example", false },
		{ "a@localhost.evil.example", false },
		{ "a@evillocaldomain", false },
		{ "\"x@localhost\"@example.com", false },
		{ "a@", false },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		CASE("address_is_local: %s", cases[i].addr);
		CHECK_INT(address_is_local(cases[i].addr, &test_ln), cases[i].local);
	}
	test_case_name[0] = '\0';
}

/* Aliases for the cases: root has two targets, postmaster one, the rest go to the account. */
static int
test_alias(void *userdata, const char *local, char ***out, size_t *n)
{
	const char *account = userdata;
	char **v = calloc(2, sizeof *v);

	if (!v)
		return -ENOMEM;
	if (strcmp(local, "root") == 0) {
		v[0] = strdup("admin@example.org");
		v[1] = strdup("ops@example.org");
		*n = 2;
	} else if (strcmp(local, "postmaster") == 0) {
		v[0] = strdup("pm@example.org");
		*n = 1;
	} else if (strcmp(local, "fail") == 0) {
		free(v);
		return -EIO;
	} else {
		v[0] = strdup(account);
		*n = 1;
	}
	*out = v;
	return 0;
}

#define ID "0123456789ABCDEF"
#define PRESENT "Date: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m@x.example>\n"

static void
test_out_headers(void)
{
	static const struct {
		const char *name;
		const char *in, *want;
		const char *fullname;
	} cases[] = {
		{ "Bcc and Resent-Bcc dropped",
		  "From: a@x.example\nTo: b@x.example\nBcc: c@x.example,\n d@x.example\n"
		  "Resent-Bcc: e@x.example\nbcc: f@x.example\n" PRESENT "Subject: s\n\n",
		  "From: a@x.example\nTo: b@x.example\n" PRESENT "Subject: s\n\n" },
		{ "local Received dropped, external kept",
		  "Received: from mail.example.com (mail.example.com [198.51.100.7])\n"
		  "\tby mx.example.org with ESMTPS id x; Mon, 1 Jan 2024 00:00:00 +0000\n"
		  "Received: from localhost (localhost [127.0.0.1])\n\tby myhost (Postfix) with ESMTP;"
		  " Mon, 1 Jan 2024 00:00:00 +0000\n"
		  "Received: by myhost.localdomain (Postfix, from userid 1000) id 1; date\n"
		  "From: a@x.example\n" PRESENT "\n",
		  "Received: from mail.example.com (mail.example.com [198.51.100.7])\n"
		  "\tby mx.example.org with ESMTPS id x; Mon, 1 Jan 2024 00:00:00 +0000\n"
		  "From: a@x.example\n" PRESENT "\n" },
		{ "Date, Message-ID and From added", "Subject: s\n\n",
		  "Subject: s\nDate: Thu, 1 Jan 1970 00:16:40 +0000\n"
		  "Message-ID: <" ID "@gmail.com>\nFrom: alice@gmail.com\n\n" },
		{ "only Message-ID missing", "From: a@x.example\ndate: d\n\n",
		  "From: a@x.example\ndate: d\nMessage-ID: <" ID "@gmail.com>\n\n" },
		{ "only Date missing", "from: a@x.example\nMESSAGE-ID: <q@x>\n\n",
		  "from: a@x.example\nMESSAGE-ID: <q@x>\nDate: Thu, 1 Jan 1970 00:16:40 +0000\n\n" },
		{ "From with -F name quoted and escaped", PRESENT "\n",
		  PRESENT "From: \"Jo \\\"The\\\" \\\\ Dev\" <alice@gmail.com>\n\n",
		  "Jo \"The\" \\ Dev" },
		{ "From with -F name without line ends", PRESENT "\n",
		  PRESENT "From: \"CronBcc: x@y\" <alice@gmail.com>\n\n", "Cron\r\nBcc: x@y" },
		{ "From with an empty -F name", PRESENT "\n", PRESENT "From: alice@gmail.com\n\n", "" },
		{ "local To through a two-target alias, bare", "From: a@x.example\n" PRESENT "To: root\n\n",
		  "From: a@x.example\n" PRESENT "To: admin@example.org, ops@example.org\n\n" },
		{ "local To through a two-target alias, in <>",
		  "From: a@x.example\n" PRESENT "To: Root <root@localhost>, b@x.example\n\n",
		  "From: a@x.example\n" PRESENT
		  "To: admin@example.org, ops@example.org, b@x.example\n\n" },
		{ "local To through a one-target alias keeps the name",
		  "From: a@x.example\n" PRESENT "To: The Postmaster <postmaster@myhost>\n\n",
		  "From: a@x.example\n" PRESENT "To: The Postmaster <pm@example.org>\n\n" },
		{ "local To unlisted goes to the account",
		  "From: a@x.example\n" PRESENT "To: x@example.com,\n bob (Bob)\nCc: ROOT@MyHost\n\n",
		  "From: a@x.example\n" PRESENT "To: x@example.com,\n alice@gmail.com (Bob)\n"
		  "Cc: admin@example.org, ops@example.org\n\n" },
		{ "local From rewritten to the account",
		  PRESENT "From: Cron Daemon <root@localhost>\nSender: root\nReply-To: b@x.example\n\n",
		  PRESENT "From: Cron Daemon <alice@gmail.com>\nSender: alice@gmail.com\n"
		  "Reply-To: b@x.example\n\n" },
		{ "local From with a comment", PRESENT "From: root (Cron Daemon)\n\n",
		  PRESENT "From: alice@gmail.com (Cron Daemon)\n\n" },
		{ "unchanged fields byte-identical",
		  "From: Bob <bob@example.com>\r\nTo:  a@x.example ,\r\n\tb@x.example\r\n"
		  "Subject: =?UTF-8?B?w4k=?=\r\n\tcontinued\r\nX-Odd :  v \r\nMessage-ID:<a@b>\r\n"
		  "Date: d\r\n\r\n",
		  "From: Bob <bob@example.com>\r\nTo:  a@x.example ,\r\n\tb@x.example\r\n"
		  "Subject: =?UTF-8?B?w4k=?=\r\n\tcontinued\r\nX-Odd :  v \r\nMessage-ID:<a@b>\r\n"
		  "Date: d\r\n\n" },
		{ "rewritten CRLF field keeps its line end",
		  "From: root\r\nMessage-ID: <a@b>\r\nDate: d\r\n\r\n",
		  "From: alice@gmail.com\r\nMessage-ID: <a@b>\r\nDate: d\r\n\n" },
		{ "no separator input gets one", "From: b@x.example\n" PRESENT "Subject: s",
		  "From: b@x.example\n" PRESENT "Subject: s\n\n" },
		{ "no separator after a rewritten field", PRESENT "From: b@x.example\nTo: root",
		  PRESENT "From: b@x.example\nTo: admin@example.org, ops@example.org\n\n" },
		{ "mbox From line dropped", "From alice Mon Jan  1 00:00:00 2024\nFrom: b@x.example\n"
		  PRESENT "\n",
		  "From: b@x.example\n" PRESENT "\n" },
		{ "empty header", "", "Date: Thu, 1 Jan 1970 00:16:40 +0000\n"
		  "Message-ID: <" ID "@gmail.com>\nFrom: alice@gmail.com\n\n" },
	};
	struct message_out o = {
		.id = ID,
		.account = "alice@gmail.com",
		.arrival = 1000,
		.local = &test_ln,
		.alias = test_alias,
		.alias_data = "alice@gmail.com",
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *out = NULL;
		size_t out_len = 0;
		int r;

		CASE("out_headers: %s", cases[i].name);
		o.fullname = cases[i].fullname;
		r = message_out_headers(cases[i].in, strlen(cases[i].in), &o, &out, &out_len);
		CHECK_INT(r, 0);
		if (r == 0)
			CHECK_MEM(out, out_len, cases[i].want, strlen(cases[i].want));
		free(out);
	}

	CASE("out_headers: an alias error is passed on");
	{
		char *out = NULL;
		size_t out_len;

		o.fullname = NULL;
		CHECK_INT(message_out_headers(S("To: fail\n\n"), &o, &out, &out_len), -EIO);
		CHECK(out == NULL);
	}
	test_case_name[0] = '\0';
}

static void
test_resolve_sender(void)
{
	static const struct {
		const char *sender, *want;
	} cases[] = {
		{ NULL, "alice@gmail.com" },
		{ "", "" },
		{ "root", "alice@gmail.com" },
		{ "root@localhost", "alice@gmail.com" },
		{ "bob@example.com", "bob@example.com" },
	};
	struct message_out o = { .account = "alice@gmail.com", .local = &test_ln };
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *s = NULL;

		CASE("resolve_sender: %s", cases[i].sender ? cases[i].sender : "(null)");
		CHECK_INT(message_resolve_sender(cases[i].sender, &o, &s), 0);
		CHECK_STR(s, cases[i].want);
		free(s);
	}
	test_case_name[0] = '\0';
}

/* Encodes in pieces of chunk bytes (0: one go) and finishes. */
static size_t
wire_all(const char *in, size_t len, bool stuff, size_t chunk, char *out)
{
	struct wire w;
	size_t o = 0, pos = 0;

	wire_init(&w, stuff);
	if (!chunk)
		chunk = len ? len : 1;
	while (pos < len) {
		size_t n = len - pos < chunk ? len - pos : chunk, got;

		got = wire_encode(&w, in + pos, n, out + o);
		CHECK(got <= 2 * n);
		o += got;
		pos += n;
	}
	return o + wire_finish(&w, out + o);
}

/* Every CR is followed by LF and every LF preceded by CR. */
static bool
lines_are_crlf(const char *b, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (b[i] == '\r' && (i + 1 == len || b[i + 1] != '\n'))
			return false;
		if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r'))
			return false;
	}
	return true;
}

/* The end of data ("\r\n.\r\n", the DATA line's own CRLF counted) is only at the end. */
static bool
terminator_only_at_end(const char *b, size_t len)
{
	char buf[1024];
	const char *t;

	memcpy(buf, "\r\n", 2);
	memcpy(buf + 2, b, len);
	t = memmem(buf, len + 2, "\r\n.\r\n", 5);
	return t && (size_t)(t - buf) == len + 2 - 5;
}

static void
test_wire(void)
{
	static const struct {
		const char *name;
		const char *in;
		size_t len;		/* 0: strlen */
		bool stuff;
		const char *want;
		size_t want_len;	/* 0: strlen */
	} cases[] = {
		{ "LF to CRLF", "a\nb\n", 0, true, "a\r\nb\r\n.\r\n" },
		{ "CRLF kept", "a\r\nb\r\n", 0, true, "a\r\nb\r\n.\r\n" },
		{ "bare CR to CRLF", "a\rb", 0, true, "a\r\nb\r\n.\r\n" },
		{ "CR CR LF", "a\r\r\nb\n", 0, true, "a\r\n\r\nb\r\n.\r\n" },
		{ "LF CR", "a\n\rb", 0, true, "a\r\n\r\nb\r\n.\r\n" },
		{ "leading dot doubled", ".x\n..y\nz.\n", 0, true, "..x\r\n...y\r\nz.\r\n.\r\n" },
		{ "leading dot kept without stuffing", ".x\n..y\n", 0, false, ".x\r\n..y\r\n" },
		{ "first byte dot", ".", 0, true, "..\r\n.\r\n" },
		{ "LF dot LF", "a\n.\nb\n", 0, true, "a\r\n..\r\nb\r\n.\r\n" },
		{ "CR dot LF", "a\r.\nb\n", 0, true, "a\r\n..\r\nb\r\n.\r\n" },
		{ "LF dot CR LF", "a\n.\r\nb", 0, true, "a\r\n..\r\nb\r\n.\r\n" },
		{ "CR dot CR", "a\r.\rb", 0, true, "a\r\n..\r\nb\r\n.\r\n" },
		{ "NUL bytes pass", "a\0b\n\0", 5, true, "a\0b\r\n\0\r\n.\r\n", 11 },
		{ "no trailing newline", "abc", 0, true, "abc\r\n.\r\n" },
		{ "no trailing newline, no stuffing", "abc", 0, false, "abc\r\n" },
		{ "trailing CR", "abc\r", 0, true, "abc\r\n.\r\n" },
		{ "empty", "", 0, true, ".\r\n" },
		{ "empty without stuffing", "", 0, false, "" },
		{ "blank lines", "\n\n", 0, true, "\r\n\r\n.\r\n" },
		{ "8-bit", "\xc3\xa9\n", 0, true, "\xc3\xa9\r\n.\r\n" },
	};
	size_t i, chunk;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		size_t want_len = cases[i].want_len ? cases[i].want_len : strlen(cases[i].want);
		char out[256], got[256];
		size_t n, n2;

		CASE("wire: %s", cases[i].name);
		n = wire_all(cases[i].in, len, cases[i].stuff, 0, out);
		CHECK_MEM(out, n, cases[i].want, want_len);
		CHECK(lines_are_crlf(out, n));
		if (cases[i].stuff)
			CHECK(terminator_only_at_end(out, n));
		for (chunk = 1; chunk <= len; chunk++) {
			n2 = wire_all(cases[i].in, len, cases[i].stuff, chunk, got);
			if (!CHECK_MEM(got, n2, out, n))
				fprintf(stderr, "\tchunk size %zu\n", chunk);
		}
	}
	test_case_name[0] = '\0';
}

/* What a server makes of DATA: lines, a leading dot removed, up to the "." line. */
static size_t
wire_decode(const char *b, size_t len, char *out, bool *terminated)
{
	size_t pos = 0, o = 0;

	*terminated = false;
	while (pos < len) {
		const char *e = memmem(b + pos, len - pos, "\r\n", 2);
		size_t ll = e ? (size_t)(e - (b + pos)) : len - pos;

		if (ll == 1 && b[pos] == '.') {
			*terminated = pos + 3 == len;
			return o;
		}
		if (b[pos] == '.') {
			pos++;
			ll--;
		}
		memcpy(out + o, b + pos, ll);
		o += ll;
		memcpy(out + o, "\r\n", 2);
		o += 2;
		pos += ll + 2;
	}
	return o;
}

/* Line ends made CRLF, and a last line ended: what the server should get back. */
static size_t
normalize(const char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (in[i] == '\r' || in[i] == '\n') {
			if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
		} else {
			out[o++] = in[i];
		}
	}
	if (o && out[o - 1] != '\n')
		out[o++] = '\r', out[o++] = '\n';
	return o;
}

/* Random bodies from the bytes that matter: the server gets back exactly the lines. */
static void
test_wire_random(void)
{
	static const char alphabet[] = { '\r', '\n', '.', 'a', '\0' };
	unsigned seed = 12345;
	int round;

	CASE("wire: random bodies round trip and never end early");
	for (round = 0; round < 20000; round++) {
		char in[40], out[160], chunked[160], dec[160], norm[160];
		size_t len, n, n2, dn, nn, k, chunk;
		bool terminated;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof in;
		for (k = 0; k < len; k++) {
			seed = seed * 1103515245u + 12345u;
			in[k] = alphabet[(seed >> 16) % sizeof alphabet];
		}
		seed = seed * 1103515245u + 12345u;
		chunk = 1 + (seed >> 16) % 7;
		n = wire_all(in, len, true, 0, out);
		n2 = wire_all(in, len, true, chunk, chunked);
		dn = wire_decode(out, n, dec, &terminated);
		nn = normalize(in, len, norm);
		if (!CHECK_MEM(chunked, n2, out, n) || !CHECK(lines_are_crlf(out, n)) ||
		    !CHECK(terminator_only_at_end(out, n)) || !CHECK(terminated) ||
		    !CHECK_MEM(dec, dn, norm, nn)) {
			fputs("\tinput: ", stderr);
			test_print_bytes(in, len);
			fprintf(stderr, ", chunk %zu\n", chunk);
			break;
		}
	}
	test_case_name[0] = '\0';
}

/* Encoding a real message byte by byte and in one go gives the same wire bytes. */
static void
test_wire_message(void)
{
	static const char msg[] =
		"From: alice@gmail.com\r\nTo: bob@example.com\r\nSubject: dots\r\n\r\n"
		"Hello\n.\n..\r\n.\r.\r\n\r.\rlast line without end";
	char one[512], bytes[512];
	size_t n1, n2;

	CASE("wire: a message byte by byte and in one go");
	n1 = wire_all(msg, sizeof msg - 1, true, 0, one);
	n2 = wire_all(msg, sizeof msg - 1, true, 1, bytes);
	CHECK_MEM(bytes, n2, one, n1);
	CHECK(lines_are_crlf(one, n1));
	CHECK(terminator_only_at_end(one, n1));
	test_case_name[0] = '\0';
}

static void
test_resolve_rcpts(void)
{
	char *rcpt[] = { "root", "bob@example.com", "Root@LocalHost", "postmaster@myhost",
		         "Bob@example.com", "bob@example.com", "carol", "admin@example.org" };
	static const char *const want_alias[] = { "admin@example.org", "ops@example.org",
		                                  "bob@example.com", "pm@example.org",
		                                  "Bob@example.com", "alice@gmail.com" };
	static const char *const want_plain[] = { "root", "bob@example.com", "Root@LocalHost",
		                                  "postmaster@myhost", "Bob@example.com", "carol",
		                                  "admin@example.org" };
	struct message_out o = {
		.account = "alice@gmail.com",
		.local = &test_ln,
		.alias = test_alias,
		.alias_data = "alice@gmail.com",
	};
	char **out = NULL;
	size_t n = 0, i;

	CASE("resolve_rcpts: through the aliases, each once");
	CHECK_INT(message_resolve_rcpts(rcpt, 8, &o, &out, &n), 0);
	if (CHECK_INT(n, 6))
		for (i = 0; i < n; i++)
			CHECK_STR(out[i], want_alias[i]);
	strv_free(out, n);

	CASE("resolve_rcpts: without an alias function, as they are");
	o.alias = NULL;
	CHECK_INT(message_resolve_rcpts(rcpt, 8, &o, &out, &n), 0);
	if (CHECK_INT(n, 7))
		for (i = 0; i < n; i++)
			CHECK_STR(out[i], want_plain[i]);
	strv_free(out, n);

	CASE("resolve_rcpts: an alias error is passed on");
	{
		char *bad[] = { "a@x.example", "fail" };

		o.alias = test_alias;
		out = NULL;
		n = 0;
		CHECK_INT(message_resolve_rcpts(bad, 2, &o, &out, &n), -EIO);
	}

	CASE("resolve_rcpts: none");
	CHECK_INT(message_resolve_rcpts(NULL, 0, &o, &out, &n), 0);
	CHECK_INT(n, 0);
	strv_free(out, n);
	test_case_name[0] = '\0';
}

static void
test_address_sane(void)
{
	static const struct {
		const char *addr;
		bool sane;
	} cases[] = {
		{ "a@b.example", true },
		{ "", true },
		{ "root", true },
		{ "a@[127.0.0.1]", true },
		{ "\"a b\"@example.com", true },
		{ "\"a>b\"@example.com", true },
		{ "\"a\\\"b\"@example.com", true },
		{ "a b@example.com", false },
		{ "a@b.example>", false },
		{ "<a@b.example", false },
		{ "a@b.example SIZE=1", false },
		{ "a@b.example\r\nRCPT TO:<x@y>", false },
		{ "a@b.example\n", false },
		{ "a@b\tc", false },
		{ "a,b@example.com", false },
		{ "a(b)@example.com", false },
		{ "a@b\x7f", false },
		{ "\"unterminated@example.com", false },
		{ "\"a\\\"@example.com", false },
		{ "\"a\rb\"@example.com", false },
		{ "\xc3\xa9@example.com", true },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		CASE("address_sane: %zu", i);
		if (!CHECK_INT(message_address_sane(cases[i].addr), cases[i].sane)) {
			fputs("\taddress: ", stderr);
			test_print_bytes(cases[i].addr, strlen(cases[i].addr));
			fputc('\n', stderr);
		}
	}
	test_case_name[0] = '\0';
}

static void
test_format_date(void)
{
	static const struct {
		const char *tz;
		int64_t when;
		const char *want;
	} cases[] = {
		{ "UTC", 0, "Thu, 1 Jan 1970 00:00:00 +0000" },
		{ "UTC", 1709251199, "Thu, 29 Feb 2024 23:59:59 +0000" },
		{ "EST5", 0, "Wed, 31 Dec 1969 19:00:00 -0500" },
		{ "IST-5:30", 0, "Thu, 1 Jan 1970 05:30:00 +0530" },
		{ "NST3:30", 0, "Wed, 31 Dec 1969 20:30:00 -0330" },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		char buf[64];

		CASE("format_date: %s %" PRId64, cases[i].tz, cases[i].when);
		setenv("TZ", cases[i].tz, 1);
		tzset();
		message_format_date(cases[i].when, buf, sizeof buf);
		CHECK_STR(buf, cases[i].want);
	}
	setenv("TZ", "UTC", 1);
	tzset();
	test_case_name[0] = '\0';
}

static void
test_has_8bit(void)
{
	CASE("has_8bit");
	CHECK(!message_has_8bit(S("plain\r\n\0ascii")));
	CHECK(message_has_8bit(S("caf\xc3\xa9")));
	CHECK(message_has_8bit(S("\x80")));
	CHECK(!message_has_8bit("", 0));
	test_case_name[0] = '\0';
}

static void
test_localnames_init(void)
{
	struct localnames ln;

	CASE("localnames_init: this host");
	if (!CHECK_INT(localnames_init(&ln), 0))
		return;
	CHECK(ln.hostname != NULL);
	CHECK(ln.fqdn != NULL);
	CHECK(address_is_local("root@localhost", &ln));
	if (ln.hostname && ln.hostname[0]) {
		char addr[300];

		snprintf(addr, sizeof addr, "root@%s", ln.hostname);
		CHECK(address_is_local(addr, &ln));
	}
	localnames_clear(&ln);
	CHECK(ln.hostname == NULL && ln.n_addrs == 0);
	test_case_name[0] = '\0';
}

int
main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	test_header_len();
	test_header_len_whitespace_continuation();
	test_header_next();
	test_parse_addresses();
	test_parse_addresses_spans();
	test_extract_rcpts();
	test_dotscan();
	test_dotscan_chunks();
	test_received();
	test_address_is_local();
	test_out_headers();
	test_resolve_sender();
	test_wire();
	test_wire_random();
	test_wire_message();
	test_resolve_rcpts();
	test_address_sane();
	test_format_date();
	test_has_8bit();
	test_localnames_init();
	return test_exit("test-message");
}
