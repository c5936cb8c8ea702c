/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Called with each certificate's DER; a negative return stops the walk. */
typedef int pem_cert_fn(const unsigned char *der, size_t len, void *arg);

/* Each CERTIFICATE block of a PEM text, decoded; the number of them, or -1 without memory. */
long pem_each_cert(FILE *f, pem_cert_fn *fn, void *arg);

/* The subject Name of a DER certificate, tag and length included (as gnutls_x509_crt_get_raw_dn). */
bool pem_der_subject(const unsigned char *der, size_t len, const unsigned char **subject, size_t *subject_len);
