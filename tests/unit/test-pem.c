/* SPDX-License-Identifier: MIT */
/*
 * pem.c: picking certificates out of a CA bundle. Against GnuTLS on the
 * system's bundle (every certificate GnuTLS finds, with the same DER and the
 * same subject bytes that GnuTLS's trust list looks issuers up by), then the
 * odd bundles: CRLF, comments, damaged blocks, a block cut short.
 */
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pem.h"
#include "test.h"

#define BUNDLE "/etc/ssl/certs/ca-certificates.crt"

struct seen {
	unsigned n;
	unsigned char *der[512];
	size_t len[512];
};

static int
collect(const unsigned char *der, size_t len, void *arg)
{
	struct seen *s = arg;

	if (s->n < 512) {
		s->der[s->n] = xmalloc(len);
		memcpy(s->der[s->n], der, len);
		s->len[s->n++] = len;
	}
	return 0;
}

static void
seen_free(struct seen *s)
{
	while (s->n > 0)
		free(s->der[--s->n]);
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n;

	*len = 0;
	if (!f)
		return NULL;
	do {
		cap += 65536;
		buf = xrealloc(buf, cap);
		n = fread(buf + *len, 1, cap - *len, f);
		*len += n;
	} while (n > 0);
	fclose(f);
	return buf;
}

static long
scan_mem(const char *buf, size_t len, struct seen *s)
{
	FILE *f = fmemopen((void *)buf, len, "r");
	long n;

	if (!f)
		return -2;
	n = pem_each_cert(f, collect, s);
	fclose(f);
	return n;
}

/* The system bundle: what GnuTLS reads from it, we read too, byte for byte. */
static void
test_system_bundle(void)
{
	gnutls_x509_crt_t *crts = NULL;
	unsigned n_crts = 0, i;
	struct seen s = { 0 };
	gnutls_datum_t pem = { 0 };
	size_t len;
	char *buf;
	long n;

	CASE("the system bundle " BUNDLE);
	buf = read_file(BUNDLE, &len);
	if (!CHECK(buf && len > 0))
		return;
	pem.data = (unsigned char *)buf;
	pem.size = (unsigned)len;
	CHECK_INT(gnutls_x509_crt_list_import2(&crts, &n_crts, &pem, GNUTLS_X509_FMT_PEM, 0), 0);
	n = scan_mem(buf, len, &s);
	CHECK_INT(n, n_crts);
	CHECK(n_crts > 50);
	for (i = 0; i < n_crts && i < s.n; i++) {
		gnutls_datum_t der = { 0 }, dn = { 0 };
		const unsigned char *subj = NULL;
		size_t subj_len = 0;

		CASE("the system bundle, certificate %u", i);
		CHECK_INT(gnutls_x509_crt_export2(crts[i], GNUTLS_X509_FMT_DER, &der), 0);
		CHECK_MEM((char *)s.der[i], s.len[i], (char *)der.data, der.size);
		CHECK(pem_der_subject(s.der[i], s.len[i], &subj, &subj_len));
		CHECK_INT(gnutls_x509_crt_get_raw_dn(crts[i], &dn), 0);
		CHECK_MEM((const char *)subj, subj_len, (char *)dn.data, dn.size);
		gnutls_free(der.data);
		gnutls_free(dn.data);
		gnutls_x509_crt_deinit(crts[i]);
	}
	gnutls_free(crts);
	seen_free(&s);
	free(buf);
}

/* One real certificate as PEM lines, for building odd bundles around it. */
static char *
first_block(const char *buf, size_t len)
{
	const char *b = memmem(buf, len, "-----BEGIN CERTIFICATE-----", 27);
	const char *e = b ? memmem(b, len - (size_t)(b - buf), "-----END CERTIFICATE-----\n", 26) : NULL;

	return e ? strndup(b, (size_t)(e + 26 - b)) : NULL;
}

static void
test_odd_bundles(void)
{
	struct seen s = { 0 }, ref = { 0 };
	char *buf, *block, *text, *crlf, *p;
	size_t len, i;
	const unsigned char *subj;
	size_t subj_len;

	buf = read_file(BUNDLE, &len);
	block = buf ? first_block(buf, len) : NULL;
	CHECK(block);
	if (!block)
		goto out;
	CHECK_INT(scan_mem(block, strlen(block), &ref), 1);

	CASE("comments and blank lines between blocks, as Fedora's bundle has");
	if (asprintf(&text, "# Subject: something\n\n%s\n# another\n%s", block, block) > 0) {
		CHECK_INT(scan_mem(text, strlen(text), &s), 2);
		CHECK(s.n == 2 && s.len[1] == ref.len[0] && memcmp(s.der[1], ref.der[0], ref.len[0]) == 0);
		seen_free(&s);
		free(text);
	}

	CASE("CRLF line endings");
	crlf = xmalloc(strlen(block) * 2 + 1);
	for (p = crlf, i = 0; block[i]; i++) {
		if (block[i] == '\n')
			*p++ = '\r';
		*p++ = block[i];
	}
	*p = '\0';
	CHECK_INT(scan_mem(crlf, strlen(crlf), &s), 1);
	CHECK(s.n == 1 && s.len[0] == ref.len[0] && memcmp(s.der[0], ref.der[0], ref.len[0]) == 0);
	seen_free(&s);
	free(crlf);

	CASE("a damaged block is skipped, the next one found");
	if (asprintf(&text, "-----BEGIN CERTIFICATE-----\nMII*notbase64\n-----END CERTIFICATE-----\n%s",
	             block) > 0) {
		CHECK_INT(scan_mem(text, strlen(text), &s), 1);
		seen_free(&s);
		free(text);
	}

	CASE("a block cut short at the end of the file is not a certificate");
	text = strndup(block, strlen(block) - 30);
	CHECK_INT(scan_mem(text, strlen(text), &s), 0);
	seen_free(&s);
	free(text);

	CASE("other PEM types are not certificates");
	text = strdup(block);
	memcpy(text + 11, "PRIVATE KEY", 11);	/* "-----BEGIN PRIVATE KEY-----" */
	CHECK_INT(scan_mem(text, strlen(text), &s), 0);
	free(text);

	CASE("an empty file");
	CHECK_INT(scan_mem("", 0, &s), 0);

	CASE("DER cut short anywhere: no subject, no read past the end");
	for (i = 0; i < ref.len[0]; i++) {
		unsigned char *copy = xmalloc(i ? i : 1);	/* exactly i bytes: ASan sees a read past */
		bool ok;

		memcpy(copy, ref.der[0], i);
		ok = pem_der_subject(copy, i, &subj, &subj_len);
		/* The outer lengths no longer fit: nothing is found in a truncated certificate. */
		CHECK(!ok);
		free(copy);
	}

	CASE("a non-minimal DER length is refused");
	{
		static const unsigned char bad[] = { 0x30, 0x81, 0x03, 0x30, 0x01, 0x00 };

		CHECK(!pem_der_subject(bad, sizeof bad, &subj, &subj_len));
	}
out:
	seen_free(&ref);
	free(block);
	free(buf);
}

int
main(void)
{
	test_system_bundle();
	test_odd_bundles();
	return test_exit("test-pem");
}
