/* SPDX-License-Identifier: MIT */
/*
 * The connection to the relay. TCP to each address of the host in turn, with
 * TCP_NODELAY so that no command waits on Nagle or a delayed ACK; then TLS
 * through GnuTLS: the system trust store plus ca-file, SNI, the host name
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
#include <time.h>
#include <unistd.h>

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
connect_one(const struct addrinfo *ai, int timeout_ms, void (**hook)(void *), void *arg)
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
		/* Work that needs no network (loading the trust store) overlaps the handshake's round trip. */
		if (*hook) {
			(*hook)(arg);
			*hook = NULL;
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
conn_open(const char *host, unsigned port, int timeout_ms, void (*while_connecting)(void *), void *arg,
          struct conn **out, char *err, size_t errlen)
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
		r = connect_one(ai, timeout_ms, &while_connecting, arg);
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

/*
 * TLS on the connection (from the first byte for port 465, after STARTTLS
 * on 587). The certificate must chain to the system store or ca-file and
 * name the host; otherwise -E_TLS_VERIFY and nothing is sent.
 */
/* The system trust store plus ca-file, loaded once and shared by the connections that use it. */
int
tls_trust_load(gnutls_certificate_credentials_t *out, const char *ca_file, char *err, size_t errlen)
{
	gnutls_certificate_credentials_t cred;
	int g;

	g = gnutls_certificate_allocate_credentials(&cred);
	if (g < 0) {
		snprintf(err, errlen, "TLS setup: %s", gnutls_strerror(g));
		return -E_TLS;
	}
	g = gnutls_certificate_set_x509_system_trust(cred);
	if (g < 0 && !ca_file) {
		snprintf(err, errlen, "TLS setup: the system trust store: %s", gnutls_strerror(g));
		gnutls_certificate_free_credentials(cred);
		return -E_TLS;
	}
	if (ca_file) {
		g = gnutls_certificate_set_x509_trust_file(cred, ca_file, GNUTLS_X509_FMT_PEM);
		if (g <= 0) {
			snprintf(err, errlen, "ca-file %s: %s", ca_file, g == 0 ? "no certificates" : gnutls_strerror(g));
			gnutls_certificate_free_credentials(cred);
			return -E_TLS;
		}
	}
	*out = cred;
	return 0;
}

int
conn_starttls(struct conn *c, gnutls_certificate_credentials_t trust, char *err, size_t errlen)
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
	g = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, trust);
	if (g < 0)
		goto tls_error;
	/* RFC 6066 3: SNI carries host names only, never an address literal. */
	if (!is_ip_literal(c->host)) {
		g = gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, c->host, strlen(c->host));
		if (g < 0)
			goto tls_error;
	}
	gnutls_session_set_verify_cert(c->tls, c->host, 0);
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
			unsigned status = gnutls_session_get_verify_cert_status(c->tls);
			gnutls_datum_t text = { 0 };

			gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
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
