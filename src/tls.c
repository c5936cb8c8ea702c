/* SPDX-License-Identifier: MIT */
/*
 * The connection to the relay. TCP to each address of the host in turn, with
 * TCP_NODELAY so that no command waits on Nagle or a delayed ACK; then TLS
 * through GnuTLS: the system CA bundle plus ca-file, SNI, the host name
 * checked against the certificate during the handshake, TLS 1.2 or newer.
 * There is no way to turn verification off. Every wait has a timeout.
 *
 * Writes collect in a flight buffer and leave with conn_flush(), one TLS
 * send for a whole pipelined flight.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/x509.h>

#include "pem.h"
#include "tls.h"

/* Errors of our own beyond errno: */
#define E_TLS_VERIFY 10001
#define E_TLS 10002
#define E_CLOSED 10003
#define E_LINE 10004

const char *
conn_error(int r)
{
	switch (-r) {
	case E_TLS_VERIFY:
		return "TLS certificate verification failed";
	case E_TLS:
		return "TLS error";
	case E_CLOSED:
		return "connection closed by the server";
	case E_LINE:
		return "reply line too long";
	case ETIMEDOUT:
		return "timed out";
	default:
		return strerror(-r);
	}
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	return 0;
}

static int
connect_one(const struct addrinfo *ai, int timeout_ms)
{
	int fd, one = 1, err = 0;
	socklen_t len = sizeof err;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int r;

		if (errno != EINPROGRESS) {
			r = -errno;
			close(fd);
			return r;
		}
		r = wait_fd(fd, POLLOUT, timeout_ms);
		if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			r = -errno;
		if (r == 0 && err)
			r = -err;
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	return fd;
}

void
conn_free(struct conn *c)
{
	if (!c)
		return;
	if (c->tls) {
		gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c->tls);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c->host);
	if (c->out)
		explicit_bzero(c->out, c->out_len);	/* an unsent AUTH line, after an error */
	free(c->out);
	free(c);
}

/* TCP to host:port, trying each address (IPv6 and IPv4) until one answers. */
int
conn_open(const char *host, unsigned port, int timeout_ms, struct conn **out, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res, *ai;
	char service[8];
	struct conn *c;
	int r, g;

	snprintf(service, sizeof service, "%u", port);
	g = getaddrinfo(host, service, &hints, &res);
	if (g != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
		return g == EAI_NONAME ? -EHOSTUNREACH : -EAGAIN;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		freeaddrinfo(res);
		return -ENOMEM;
	}
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	c->host = strdup(host);
	r = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		const void *a = ai->ai_family == AF_INET6
			? (const void *)&((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr
			: (const void *)&((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;

		inet_ntop(ai->ai_family, a, c->peer, sizeof c->peer);
		r = connect_one(ai, timeout_ms);
		if (r >= 0) {
			c->fd = r;
			break;
		}
		snprintf(err, errlen, "connect to %s[%s]:%u: %s", host, c->peer, port, conn_error(r));
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		conn_free(c);
		return r;
	}
	*out = c;
	return 0;
}

static bool
is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Waits for what GnuTLS wants after GNUTLS_E_AGAIN. */
static int
tls_wait(struct conn *c, int64_t deadline)
{
	int left = (int)(deadline - now_ms());

	if (left <= 0)
		return -ETIMEDOUT;
	return wait_fd(c->fd, gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN, left);
}

struct tls_client {
	gnutls_certificate_credentials_t cred;	/* the CAs picked so far */
	const char *files[2];			/* the bundles to pick from: system, ca-file */
	size_t n_files;
	char *ca_file;
};

/* Where distributions keep the bundle of CAs trusted for TLS servers (what GnuTLS's own store reads). */
static const char *const system_bundles[] = {
	"/etc/ssl/certs/ca-certificates.crt",	/* Debian, Ubuntu, Arch, Gentoo */
	"/etc/pki/tls/certs/ca-bundle.crt",	/* Fedora, RHEL */
	"/etc/ssl/ca-bundle.pem",		/* openSUSE */
	"/etc/ssl/cert.pem",			/* Alpine */
};

static const char *
system_bundle(void)
{
	size_t i;

	for (i = 0; i < sizeof system_bundles / sizeof *system_bundles; i++)
		if (access(system_bundles[i], R_OK) == 0)
			return system_bundles[i];
	return NULL;
}

void
tls_client_free(struct tls_client *t)
{
	if (!t)
		return;
	if (t->cred)
		gnutls_certificate_free_credentials(t->cred);
	free(t->ca_file);
	free(t);
}

struct pick {
	gnutls_certificate_credentials_t cred;
	const gnutls_datum_t *want;	/* subject names wanted */
	size_t n_want;
	unsigned added;
};

static int
pick_cert(const unsigned char *der, size_t len, void *arg)
{
	struct pick *pk = arg;
	const unsigned char *subj;
	size_t subj_len, i;

	if (!pem_der_subject(der, len, &subj, &subj_len))
		return 0;
	for (i = 0; i < pk->n_want; i++) {
		if (pk->want[i].size == subj_len && memcmp(pk->want[i].data, subj, subj_len) == 0) {
			gnutls_datum_t d = { .data = (unsigned char *)der, .size = (unsigned)len };

			if (gnutls_certificate_set_x509_trust_mem(pk->cred, &d, GNUTLS_X509_FMT_DER) > 0)
				pk->added++;
			break;
		}
	}
	return 0;
}

/* Adds the certificates of path whose subject is one of want; how many (without want: all), or -errno. */
static long
trust_pick(struct tls_client *t, const char *path, const gnutls_datum_t *want, size_t n_want)
{
	struct pick pk = { .cred = t->cred, .want = want, .n_want = n_want };
	struct stat st;
	FILE *f;
	long n;

	f = fopen(path, "rbe");
	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return -EINVAL;
	}
	n = pem_each_cert(f, want ? pick_cert : NULL, &pk);
	if (n >= 0 && ferror(f))
		n = -EIO;
	fclose(f);
	if (n == -1)
		return -ENOMEM;
	if (n < 0)
		return n;
	return want ? (long)pk.added : n;
}

/*
 * The trust for every connection of this process. Only ca-file is read now
 * (a file without a certificate is an error worth reporting at once); the
 * bundles are searched during each handshake that needs an issuer not yet
 * picked. Without a known bundle, GnuTLS's own system store is loaded whole.
 */
int
tls_client_new(struct tls_client **out, const char *ca_file, char *err, size_t errlen)
{
	struct tls_client *t;
	const char *bundle = system_bundle();
	int g;

	t = calloc(1, sizeof *t);
	if (!t) {
		snprintf(err, errlen, "TLS setup: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	g = gnutls_certificate_allocate_credentials(&t->cred);
	if (g < 0) {
		snprintf(err, errlen, "TLS setup: %s", gnutls_strerror(g));
		free(t);
		return -E_TLS;
	}
	if (bundle) {
		t->files[t->n_files++] = bundle;
	} else {
		g = gnutls_certificate_set_x509_system_trust(t->cred);
		if (g < 0 && !ca_file) {
			snprintf(err, errlen, "TLS setup: the system trust store: %s", gnutls_strerror(g));
			tls_client_free(t);
			return -E_TLS;
		}
	}
	if (ca_file) {
		long n = trust_pick(t, ca_file, NULL, 0);

		if (n <= 0) {
			snprintf(err, errlen, "ca-file %s: %s", ca_file,
			         n == 0 ? "no certificates" : strerror((int)-n));
			tls_client_free(t);
			return -E_TLS;
		}
		t->ca_file = strdup(ca_file);
		if (!t->ca_file) {
			snprintf(err, errlen, "TLS setup: %s", strerror(ENOMEM));
			tls_client_free(t);
			return -ENOMEM;
		}
		t->files[t->n_files++] = t->ca_file;
	}
	*out = t;
	return 0;
}

#define CHAIN_MAX 16

/*
 * The subject names a chain may need as trust anchors: the issuer of each
 * certificate, and each certificate's own subject (a chain that carries its
 * root, or a cross-signed CA that is itself trusted). GnuTLS looks anchors
 * up by these exact bytes; so a bundle's certificate can matter to the
 * verification only if its subject is among them.
 */
static long
trust_add_issuers(struct tls_client *t, gnutls_session_t s)
{
	const gnutls_datum_t *peers;
	gnutls_x509_crt_t crt[CHAIN_MAX];
	gnutls_datum_t want[2 * CHAIN_MAX];
	unsigned n = 0, i, n_want = 0;
	long added = 0;
	size_t f;

	peers = gnutls_certificate_get_peers(s, &n);
	if (!peers || n == 0)
		return 0;
	if (n > CHAIN_MAX)
		n = CHAIN_MAX;
	for (i = 0; i < n; i++) {
		crt[i] = NULL;
		if (gnutls_x509_crt_init(&crt[i]) < 0 ||
		    gnutls_x509_crt_import(crt[i], &peers[i], GNUTLS_X509_FMT_DER) < 0)
			continue;
		if (gnutls_x509_crt_get_raw_issuer_dn(crt[i], &want[n_want]) == 0)
			n_want++;
		if (gnutls_x509_crt_get_raw_dn(crt[i], &want[n_want]) == 0)
			n_want++;
	}
	for (f = 0; f < t->n_files && n_want > 0; f++) {
		long k = trust_pick(t, t->files[f], want, n_want);

		if (k > 0)
			added += k;
	}
	for (i = 0; i < n_want; i++)
		gnutls_free(want[i].data);
	for (i = 0; i < n; i++)
		if (crt[i])
			gnutls_x509_crt_deinit(crt[i]);
	return added;
}

/*
 * GnuTLS's own verification (chain, validity, the host name, the profile's
 * key sizes, a stapled OCSP answer), with the issuers the chain needs
 * fetched from the bundles the first time they are missing.
 */
static int
verify_peer(gnutls_session_t s)
{
	struct conn *c = gnutls_session_get_ptr(s);
	gnutls_typed_vdata_st host = { .type = GNUTLS_DT_DNS_HOSTNAME, .data = (unsigned char *)c->host };
	unsigned status = 0;

	if (gnutls_certificate_verify_peers(s, &host, 1, &status) < 0)
		return GNUTLS_E_CERTIFICATE_ERROR;
	if ((status & GNUTLS_CERT_SIGNER_NOT_FOUND) && trust_add_issuers(c->client, s) > 0 &&
	    gnutls_certificate_verify_peers(s, &host, 1, &status) < 0)
		return GNUTLS_E_CERTIFICATE_ERROR;
	c->verify_status = status;
	return status ? GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR : 0;
}

/*
 * TLS on the connection (from the first byte for port 465, after STARTTLS
 * on 587). The certificate must chain to the system store or ca-file and
 * name the host; otherwise -E_TLS_VERIFY and nothing is sent.
 */
int
conn_starttls(struct conn *c, struct tls_client *client, char *err, size_t errlen)
{
	const char *errpos = NULL;
	int64_t deadline;
	int g;

	g = gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
	if (g < 0)
		goto tls_error;
	/* %PROFILE_MEDIUM: keys and signatures of at least 112-bit strength (no 1024-bit RSA). */
	g = gnutls_priority_set_direct(c->tls, "NORMAL:%PROFILE_MEDIUM:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
	                               &errpos);
	if (g < 0)
		goto tls_error;
	g = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, client->cred);
	if (g < 0)
		goto tls_error;
	/* RFC 6066 3: SNI carries host names only, never an address literal. */
	if (!is_ip_literal(c->host)) {
		g = gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, c->host, strlen(c->host));
		if (g < 0)
			goto tls_error;
	}
	/* The certificate is verified as soon as it arrives: a bad one ends the handshake. */
	c->client = client;
	c->verify_status = GNUTLS_CERT_INVALID;
	gnutls_session_set_ptr(c->tls, c);
	gnutls_session_set_verify_function(c->tls, verify_peer);
	gnutls_transport_set_int(c->tls, c->fd);
	gnutls_handshake_set_timeout(c->tls, 0);

	deadline = now_ms() + c->timeout_ms;
	for (;;) {
		int r;

		g = gnutls_handshake(c->tls);
		if (g == GNUTLS_E_SUCCESS)
			break;
		if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED) {
			r = tls_wait(c, deadline);
			if (r < 0) {
				snprintf(err, errlen, "TLS handshake with %s[%s]: timed out", c->host, c->peer);
				return r;
			}
			continue;
		}
		if (!gnutls_error_is_fatal(g))
			continue;
		if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || g == GNUTLS_E_CERTIFICATE_ERROR) {
			gnutls_datum_t text = { 0 };

			gnutls_certificate_verification_status_print(c->verify_status, GNUTLS_CRT_X509, &text, 0);
			snprintf(err, errlen, "TLS certificate of %s[%s] not trusted: %s", c->host, c->peer,
			         text.data ? (char *)text.data : gnutls_strerror(g));
			gnutls_free(text.data);
			return -E_TLS_VERIFY;
		}
		snprintf(err, errlen, "TLS handshake with %s[%s]: %s", c->host, c->peer, gnutls_strerror(g));
		return -E_TLS;
	}
	return 0;
tls_error:
	snprintf(err, errlen, "TLS setup: %s", gnutls_strerror(g));
	return -E_TLS;
}

char *
conn_tls_description(struct conn *c)
{
	char *s = NULL;

	if (!c->tls)
		return strdup("no TLS");
	if (asprintf(&s, "%s with cipher %s", gnutls_protocol_get_name(gnutls_protocol_get_version(c->tls)),
	             gnutls_cipher_get_name(gnutls_cipher_get(c->tls))) < 0)
		return NULL;
	return s;
}

int
conn_write(struct conn *c, const void *buf, size_t len)
{
	if (c->out_len + len > c->out_cap) {
		size_t cap = (c->out_len + len) * 2;
		char *nb = realloc(c->out, cap);

		if (!nb)
			return -ENOMEM;
		c->out = nb;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	return 0;
}

int
conn_printf(struct conn *c, const char *fmt, ...)
{
	char *s;
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	r = conn_write(c, s, (size_t)n);
	explicit_bzero(s, (size_t)n);	/* it may have been an AUTH line */
	free(s);
	return r;
}

/* Sends the flight. A plain connection exists only before STARTTLS, for EHLO and STARTTLS. */
int
conn_flush(struct conn *c)
{
	int64_t deadline = now_ms() + c->timeout_ms;
	size_t off = 0;

	while (off < c->out_len) {
		ssize_t n;

		if (c->tls) {
			n = gnutls_record_send(c->tls, c->out + off, c->out_len - off);
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
				int r = tls_wait(c, deadline);

				if (r < 0)
					return r;
				continue;
			}
			if (n < 0)
				return -E_TLS;
		} else {
			n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
			if (n < 0) {
				int r;

				if (errno != EAGAIN && errno != EINTR)
					return -errno;
				r = wait_fd(c->fd, POLLOUT, (int)(deadline - now_ms()));
				if (r < 0)
					return r;
				continue;
			}
		}
		off += (size_t)n;
		/* Progress resets the clock: a slow link is no dead link. */
		deadline = now_ms() + c->timeout_ms;
	}
	c->bytes_out += c->out_len;
	/* What went out may have held credentials (AUTH): nothing of it stays behind. */
	explicit_bzero(c->out, c->out_len);
	c->out_len = 0;
	if (c->out_cap > (1u << 20)) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	return 0;
}

static int
fill(struct conn *c)
{
	int64_t deadline = now_ms() + c->timeout_ms;

	for (;;) {
		ssize_t n;

		if (c->tls) {
			n = gnutls_record_recv(c->tls, c->in, sizeof c->in);
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
				int r = tls_wait(c, deadline);

				if (r < 0)
					return r;
				continue;
			}
			if (n == GNUTLS_E_PREMATURE_TERMINATION)
				return -E_CLOSED;
			if (n < 0)
				return gnutls_error_is_fatal((int)n) ? -E_TLS : -EAGAIN;
		} else {
			n = recv(c->fd, c->in, sizeof c->in, 0);
			if (n < 0) {
				int r;

				if (errno != EAGAIN && errno != EINTR)
					return -errno;
				r = wait_fd(c->fd, POLLIN, (int)(deadline - now_ms()));
				if (r < 0)
					return r;
				continue;
			}
		}
		if (n == 0)
			return -E_CLOSED;
		c->in_pos = 0;
		c->in_len = (size_t)n;
		return 0;
	}
}

bool
conn_has_input(struct conn *c)
{
	return c->in_pos < c->in_len || (c->tls && gnutls_record_check_pending(c->tls) > 0);
}

/* One reply line without its CRLF, NUL-terminated; a longer one than max is an error. */
int
conn_read_line(struct conn *c, char *line, size_t max, size_t *len)
{
	size_t n = 0;

	for (;;) {
		char *nl;
		size_t take;
		int r;

		if (c->in_pos == c->in_len) {
			r = fill(c);
			if (r < 0)
				return r;
		}
		nl = memchr(c->in + c->in_pos, '\n', c->in_len - c->in_pos);
		take = nl ? (size_t)(nl - (c->in + c->in_pos)) + 1 : c->in_len - c->in_pos;
		if (n + take > max - 1)
			return -E_LINE;
		memcpy(line + n, c->in + c->in_pos, take);
		n += take;
		c->in_pos += take;
		if (nl)
			break;
	}
	n--;			/* the LF */
	if (n && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	*len = n;
	return 0;
}
