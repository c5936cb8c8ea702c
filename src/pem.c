/* SPDX-License-Identifier: MIT */
/*
 * Just enough PEM and DER to pick certificates out of a CA bundle by their
 * subject, without parsing the other hundred and forty: the base64 of each
 * "CERTIFICATE" block, and a walk to the subject field of the DER
 * (RFC 5280 4.1). What is picked is then parsed and verified by GnuTLS; a
 * mistake here can only make a certificate look absent, never trusted.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pem.h"

/* One DER TLV at *p: its tag, the contents, and *p moved past it. */
static bool
der_next(const unsigned char **p, const unsigned char *end, unsigned char *tag, const unsigned char **val,
         size_t *len)
{
	const unsigned char *q = *p;
	size_t n;

	if (end - q < 2)
		return false;
	*tag = q[0];
	if ((*tag & 0x1f) == 0x1f)	/* high tag numbers: none in the fields we walk */
		return false;
	n = q[1];
	q += 2;
	if (n & 0x80) {
		size_t k = n & 0x7f;

		/* DER: the shortest form, at most 4 length bytes here (certificates are small). */
		if (k == 0 || k > 4 || (size_t)(end - q) < k || q[0] == 0)
			return false;
		for (n = 0; k > 0; k--)
			n = (n << 8) | *q++;
		if (n < 0x80)
			return false;
	}
	if ((size_t)(end - q) < n)
		return false;
	*val = q;
	*len = n;
	*p = q + n;
	return true;
}

bool
pem_der_subject(const unsigned char *der, size_t len, const unsigned char **subject, size_t *subject_len)
{
	const unsigned char *p = der, *end = der + len, *v, *start;
	unsigned char tag;
	size_t n;
	int field;

	/* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { ... } ... } */
	if (!der_next(&p, end, &tag, &v, &n) || tag != 0x30)
		return false;
	p = v;
	end = v + n;
	if (!der_next(&p, end, &tag, &v, &n) || tag != 0x30)
		return false;
	p = v;
	end = v + n;
	/* [0] version (optional), then serialNumber, signature, issuer, validity, subject */
	start = p;
	if (!der_next(&p, end, &tag, &v, &n))
		return false;
	if (tag == 0xa0)
		start = p;
	else
		p = start;
	for (field = 0; field < 5; field++) {
		start = p;
		if (!der_next(&p, end, &tag, &v, &n))
			return false;
	}
	if (tag != 0x30)
		return false;
	*subject = start;
	*subject_len = (size_t)(p - start);
	return true;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Base64 with line breaks and trailing '=' into out (room for len * 3 / 4); the bytes, or -1. */
static long
b64_decode(const char *s, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0, pad = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int v;

		if (c == '\n' || c == '\r' || c == ' ' || c == '\t')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		v = b64_value(c);
		if (v < 0 || pad)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (pad > 2 || bits >= 6)
		return -1;
	return (long)o;
}

static bool
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

long
pem_each_cert(FILE *f, pem_cert_fn *fn, void *arg)
{
	char *line = NULL, *b64 = NULL;
	unsigned char *der = NULL;
	size_t line_cap = 0, b64_len = 0, b64_cap = 0;
	bool inside = false;
	long count = 0;
	ssize_t n;

	/* A line at a time: a bundle of any size costs a line and one certificate. */
	while ((n = getline(&line, &line_cap, f)) > 0) {
		if (!inside) {
			inside = starts_with(line, "-----BEGIN CERTIFICATE-----") ||
			         starts_with(line, "-----BEGIN X509 CERTIFICATE-----");
			b64_len = 0;
			continue;
		}
		if (starts_with(line, "-----END ")) {
			unsigned char *nd;
			long k;

			inside = false;
			nd = realloc(der, b64_len / 4 * 3 + 3);
			if (!nd) {
				count = -1;
				break;
			}
			der = nd;
			k = b64_decode(b64, b64_len, der);
			if (k <= 0)
				continue;	/* damaged: skipped, as GnuTLS would refuse it */
			count++;
			if (fn && fn(der, (size_t)k, arg) < 0)
				break;
			continue;
		}
		if (b64_len + (size_t)n > b64_cap) {
			char *nb = realloc(b64, (b64_len + (size_t)n) * 2);

			if (!nb) {
				count = -1;
				break;
			}
			b64 = nb;
			b64_cap = (b64_len + (size_t)n) * 2;
		}
		memcpy(b64 + b64_len, line, (size_t)n);
		b64_len += (size_t)n;
	}
	free(line);
	free(b64);
	free(der);
	return count;
}
