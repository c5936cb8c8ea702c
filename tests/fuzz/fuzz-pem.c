/* SPDX-License-Identifier: MIT */
/*
 * pem.c on any bundle: each certificate it decodes lies within what was
 * decoded, and a subject found lies within its certificate and is itself
 * one DER SEQUENCE. The first byte chooses between the input as a PEM text
 * and as one DER certificate.
 */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pem.h"

static void
check_der(const unsigned char *der, size_t len)
{
	const unsigned char *subj;
	size_t subj_len;

	if (!pem_der_subject(der, len, &subj, &subj_len))
		return;
	assert(subj >= der && subj_len >= 2 && subj + subj_len <= der + len);
	assert(subj[0] == 0x30);
}

static int
each(const unsigned char *der, size_t len, void *arg)
{
	size_t *total = arg;

	assert(len > 0);
	*total += len;
	check_der(der, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t total = 0;
	FILE *f;
	long n;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		check_der(data + 1, size - 1);
		return 0;
	}
	f = fmemopen((void *)(data + 1), size - 1, "r");
	if (!f)
		return 0;
	n = pem_each_cert(f, each, &total);
	fclose(f);
	assert(n >= 0);
	/* base64: at most three bytes out for four in */
	assert(total <= size / 4 * 3 + 3);
	return 0;
}
