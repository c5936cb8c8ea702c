/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <gnutls/gnutls.h>

/*
 * What the connections of one process share: the certificates trusted, the
 * system CA bundle plus ca-file, read when a server's chain asks for them;
 * only the issuers that chain names are parsed and kept (a whole bundle
 * parsed costs megabytes).
 */
struct tls_client;

/* One connection to the relay: TCP, then TLS that is verified before any SMTP is sent. */
struct conn {
	int fd;
	gnutls_session_t tls;
	int timeout_ms;		/* for each wait on the network */
	char peer[64];		/* the address connected to, printed */
	char *host;
	char in[16384];
	size_t in_pos, in_len;
	char *out;		/* one flight, sent with conn_flush() */
	size_t out_len, out_cap;
	size_t bytes_out;
	struct tls_client *client;	/* once TLS is started */
	unsigned verify_status;	/* GnuTLS's verdict on the last certificate, 0 if trusted */
};

int tls_client_new(struct tls_client **out, const char *ca_file, char *err, size_t errlen);
void tls_client_free(struct tls_client *t);
int conn_open(const char *host, unsigned port, int timeout_ms, struct conn **out, char *err, size_t errlen);
int conn_starttls(struct conn *c, struct tls_client *client, char *err, size_t errlen);
void conn_free(struct conn *c);
int conn_write(struct conn *c, const void *buf, size_t len);
int conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int conn_flush(struct conn *c);
int conn_read_line(struct conn *c, char *line, size_t max, size_t *len);
char *conn_tls_description(struct conn *c);
bool conn_has_input(struct conn *c);
const char *conn_error(int r);
