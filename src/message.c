/* SPDX-License-Identifier: MIT */
/*
 * Message handling that needs no socket and no configuration: the header
 * section, address lists, local names, Received fields, the header changes
 * made on the way out, and the wire encoding (CRLF, dot-stuffing).
 *
 * Bytes stay bytes: nothing here has a line length limit, NUL bytes pass,
 * and only the header section is ever held in memory.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <netdb.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "message.h"

/* RFC 5322 3.6.8: ftext is printable US-ASCII but the colon. */
static bool
is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* Length of a field name ending in a colon at p, or 0 when the line is no field. */
static size_t
field_name_len(const char *p, size_t len)
{
	size_t i = 0;

	while (i < len && is_ftext((unsigned char)p[i]))
		i++;
	/* Be lenient about "Name :" as RFC 5322 4.5.3 (obsolete syntax) allows. */
	size_t j = i;
	while (j < len && (p[j] == ' ' || p[j] == '\t'))
		j++;
	if (i == 0 || j >= len || p[j] != ':')
		return 0;
	return i;
}

static bool
is_mbox_from(const char *p, size_t len)
{
	return len >= 5 && memcmp(p, "From ", 5) == 0;
}

/*
 * How many bytes the header section takes, including the blank line that
 * ends it; -1 when more input is needed to tell. A line that is neither a
 * field nor a continuation ends the section without a blank line: that line
 * is body. A leading mbox "From " line counts as header (it is dropped on the
 * way out).
 */
ssize_t
message_header_len(const char *buf, size_t len, bool eof)
{
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t line = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		const char *p = buf + pos;

		if (!nl && !eof)
			return -1;
		if (line == 0 || (line == 1 && p[0] == '\r'))
			return (ssize_t)(pos + line + (nl ? 1 : 0));
		if (pos == 0 && is_mbox_from(p, line)) {
			/* mbox separator */
		} else if (p[0] == ' ' || p[0] == '\t') {
			if (pos == 0)
				return 0;
		} else if (!field_name_len(p, line)) {
			return (ssize_t)pos;
		}
		pos += line + (nl ? 1 : 0);
	}
	return eof ? (ssize_t)pos : -1;
}

/* Iterates over the fields of a complete header section; skips an mbox "From " line. */
bool
message_header_next(const char *buf, size_t len, size_t *pos, struct header_field *f)
{
	size_t p = *pos, start, nlen;

	for (;;) {
		const char *nl;
		size_t line;

		if (p >= len)
			return false;
		nl = memchr(buf + p, '\n', len - p);
		line = nl ? (size_t)(nl - (buf + p)) : len - p;
		if (line == 0 || (line == 1 && buf[p] == '\r'))
			return false;
		if (p == 0 && is_mbox_from(buf, line)) {
			p += line + (nl ? 1 : 0);
			continue;
		}
		nlen = field_name_len(buf + p, line);
		if (nlen)
			break;
		if (buf[p] != ' ' && buf[p] != '\t')
			return false;
		p += line + (nl ? 1 : 0);	/* a stray continuation line: skip it */
	}
	start = p;
	f->name = buf + p;
	f->name_len = nlen;
	f->value = memchr(buf + p, ':', len - p) + 1;
	/* The field runs until a line that does not begin with white space. */
	for (;;) {
		const char *nl = memchr(buf + p, '\n', len - p);

		if (!nl) {
			p = len;
			break;
		}
		p = (size_t)(nl - buf) + 1;
		if (p >= len || (buf[p] != ' ' && buf[p] != '\t'))
			break;
	}
	f->raw = buf + start;
	f->raw_len = p - start;
	f->value_len = (size_t)(buf + p - f->value);
	while (f->value_len && (f->value[f->value_len - 1] == '\n' || f->value[f->value_len - 1] == '\r'))
		f->value_len--;
	*pos = p;
	return true;
}

bool
header_is(const struct header_field *f, const char *name)
{
	return strlen(name) == f->name_len && strncasecmp(f->name, name, f->name_len) == 0;
}

void
mailboxes_free(struct mailbox *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(m[i].addr);
	free(m);
}

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips a comment starting at v[i] == '('; comments nest (RFC 5322 3.2.2). */
static size_t
skip_comment(const char *v, size_t len, size_t i)
{
	int depth = 0;

	for (; i < len; i++) {
		if (v[i] == '\\' && i + 1 < len)
			i++;
		else if (v[i] == '(')
			depth++;
		else if (v[i] == ')' && --depth == 0)
			return i + 1;
	}
	return len;
}

static size_t
skip_quoted(const char *v, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (v[i] == '\\' && i + 1 < len)
			i++;
		else if (v[i] == '"')
			return i + 1;
	}
	return len;
}

/* The addr-spec in v[s, e) without comments and folding white space. */
static char *
clean_addr(const char *v, size_t s, size_t e)
{
	char *out = malloc(e - s + 1), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = s; i < e; ) {
		if (v[i] == '(') {
			i = skip_comment(v, e, i);
		} else if (v[i] == '"') {
			size_t q = skip_quoted(v, e, i);

			/* unfold: CR and LF inside a quoted string are folding, not content */
			for (; i < q; i++)
				if (v[i] != '\r' && v[i] != '\n')
					*o++ = v[i];
		} else if (is_wsp(v[i])) {
			i++;
		} else {
			*o++ = v[i++];
		}
	}
	*o = '\0';
	return out;
}

static int
push_mailbox(struct mailbox **v, size_t *n, const char *val, size_t ms, size_t me,
             size_t as, size_t ae, bool angle)
{
	struct mailbox *nv, *m;
	char *addr;

	/* Trim the spans of white space and, for a bare address, of comments. */
	while (ms < me && is_wsp(val[ms]))
		ms++;
	while (me > ms && is_wsp(val[me - 1]))
		me--;
	if (!angle) {
		while (as < ae && (is_wsp(val[as]) || val[as] == '(')) {
			if (val[as] == '(')
				as = skip_comment(val, ae, as);
			else
				as++;
		}
		/* A trailing comment: the address ends at the last token before it. */
		size_t i = as, last = as;
		while (i < ae) {
			if (val[i] == '(') {
				i = skip_comment(val, ae, i);
			} else if (val[i] == '"') {
				i = skip_quoted(val, ae, i);
				last = i;
			} else if (is_wsp(val[i])) {
				i++;
			} else {
				last = ++i;
			}
		}
		ae = last;
	}
	addr = clean_addr(val, as, ae);
	if (!addr)
		return -ENOMEM;
	if (!addr[0]) {
		free(addr);
		return 0;
	}
	nv = realloc(*v, (*n + 1) * sizeof *nv);
	if (!nv) {
		free(addr);
		return -ENOMEM;
	}
	*v = nv;
	m = &nv[(*n)++];
	m->addr = addr;
	m->start = ms;
	m->end = me;
	m->addr_start = as;
	m->addr_end = ae;
	m->angle = angle;
	return 0;
}

/*
 * An RFC 5322 address-list, leniently: display names, quoted strings,
 * nested comments, groups, obsolete routes (<@a,@b:x@y> gives x@y), folding.
 * Encoded words stay as they are (they only occur in display names).
 */
int
message_parse_addresses(const char *v, size_t len, struct mailbox **out, size_t *n)
{
	struct mailbox *list = NULL;
	size_t count = 0, i = 0, start = 0, as = 0, ae = 0;
	bool angle = false;
	int r;

	while (i <= len) {
		char c = i < len ? v[i] : ',';

		if (c == '"') {
			i = skip_quoted(v, len, i);
			continue;
		}
		if (c == '(') {
			i = skip_comment(v, len, i);
			continue;
		}
		if (c == '[') {
			/* a domain literal: "[IPv6:::1]" holds colons that start no group */
			const char *e = memchr(v + i, ']', len - i);

			i = e ? (size_t)(e - v) + 1 : len;
			continue;
		}
		if (c == '<') {
			size_t e = i + 1, colon;

			while (e < len && v[e] != '>') {
				if (v[e] == '"')
					e = skip_quoted(v, len, e);
				else
					e++;
			}
			as = i + 1;
			ae = e;
			/* obs-route: "@a,@b:" before the address */
			for (colon = as; colon < ae && v[as] == '@'; colon++)
				if (v[colon] == ':') {
					as = colon + 1;
					break;
				}
			angle = true;
			i = e < len ? e + 1 : len;
			continue;
		}
		if (c == ':' && !angle) {
			/* "group-name:" — the mailboxes follow; the name is no address */
			start = i + 1;
			i++;
			continue;
		}
		if (c == ',' || c == ';') {
			if (angle)
				r = push_mailbox(&list, &count, v, start, i, as, ae, true);
			else
				r = push_mailbox(&list, &count, v, start, i, start, i, false);
			if (r < 0) {
				mailboxes_free(list, count);
				return r;
			}
			angle = false;
			start = i + 1;
		}
		i++;
	}
	*out = list;
	*n = count;
	return 0;
}

static int
strv_add(char ***v, size_t *n, const char *s)
{
	char **nv;
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp((*v)[i], s) == 0)
			return 0;	/* each recipient once */
	nv = realloc(*v, (*n + 1) * sizeof **v);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strdup(s);
	if (!nv[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

/*
 * sendmail -t: recipients from To, Cc and Bcc, or from Resent-To, Resent-Cc
 * and Resent-Bcc when the message has any Resent- field (RFC 5322 3.6.6).
 */
int
message_extract_rcpts(const char *hdr, size_t len, char ***rcpt, size_t *n)
{
	static const char *const plain[] = { "To", "Cc", "Bcc", NULL };
	static const char *const resent[] = { "Resent-To", "Resent-Cc", "Resent-Bcc", NULL };
	const char *const *names = plain;
	struct header_field f;
	size_t pos = 0;
	int r = 0;

	while (message_header_next(hdr, len, &pos, &f))
		if (f.name_len > 7 && strncasecmp(f.name, "Resent-", 7) == 0)
			names = resent;
	pos = 0;
	while (r >= 0 && message_header_next(hdr, len, &pos, &f)) {
		const char *const *nm;
		struct mailbox *mb;
		size_t nmb, i;

		for (nm = names; *nm && !header_is(&f, *nm); nm++)
			;
		if (!*nm)
			continue;
		r = message_parse_addresses(f.value, f.value_len, &mb, &nmb);
		if (r < 0)
			break;
		for (i = 0; i < nmb && r >= 0; i++)
			r = strv_add(rcpt, n, mb[i].addr);
		mailboxes_free(mb, nmb);
	}
	return r;
}

/*
 * Without -i a line holding a single "." ends the message. Scans buf, which
 * starts at a line start when *at_bol: returns true when the terminator line
 * is in buf, *emit being the bytes before it; otherwise *emit is what may be
 * passed on now. Held back is at most a line start that could still become
 * the terminator (".", ".\r"); at eof a final "." line ends the message too.
 */
bool
dotscan(const char *buf, size_t len, bool *at_bol, bool eof, size_t *emit)
{
	size_t pos = 0;

	while (pos < len) {
		if (*at_bol) {
			size_t rest = len - pos;
			const char *p = buf + pos;

			if (p[0] == '.') {
				if ((rest >= 2 && p[1] == '\n') || (rest >= 3 && p[1] == '\r' && p[2] == '\n') ||
				    (eof && (rest == 1 || (rest == 2 && p[1] == '\r')))) {
					*emit = pos;
					return true;
				}
				if (rest == 1 || (rest == 2 && p[1] == '\r')) {
					*emit = pos;	/* wait for more */
					return false;
				}
			}
		}
		const char *nl = memchr(buf + pos, '\n', len - pos);

		if (!nl) {
			*at_bol = false;
			break;
		}
		pos = (size_t)(nl - buf) + 1;
		*at_bol = true;
	}
	*emit = len;
	return false;
}

void
localnames_clear(struct localnames *ln)
{
	size_t i;

	free(ln->hostname);
	free(ln->fqdn);
	for (i = 0; i < ln->n_addrs; i++)
		free(ln->addrs[i]);
	free(ln->addrs);
	memset(ln, 0, sizeof *ln);
}

/* The host's names and interface addresses; resolving the FQDN may consult /etc/hosts or DNS. */
int
localnames_init(struct localnames *ln)
{
	struct addrinfo hints = { .ai_flags = AI_CANONNAME, .ai_socktype = SOCK_STREAM }, *ai;
	struct ifaddrs *ifa, *i;
	char host[256] = "";

	memset(ln, 0, sizeof *ln);
	if (gethostname(host, sizeof host - 1) < 0)
		host[0] = '\0';
	ln->hostname = strdup(host);
	if (!ln->hostname)
		return -ENOMEM;
	if (host[0] && getaddrinfo(host, NULL, &hints, &ai) == 0) {
		if (ai->ai_canonname && strchr(ai->ai_canonname, '.'))
			ln->fqdn = strdup(ai->ai_canonname);
		freeaddrinfo(ai);
	}
	if (!ln->fqdn)
		ln->fqdn = strdup(host);
	if (!ln->fqdn)
		return -ENOMEM;
	if (getifaddrs(&ifa) == 0) {
		for (i = ifa; i; i = i->ifa_next) {
			char buf[INET6_ADDRSTRLEN];
			const void *a;
			char **nv;

			if (!i->ifa_addr)
				continue;
			if (i->ifa_addr->sa_family == AF_INET)
				a = &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr;
			else if (i->ifa_addr->sa_family == AF_INET6)
				a = &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
			else
				continue;
			if (!inet_ntop(i->ifa_addr->sa_family, a, buf, sizeof buf))
				continue;
			nv = realloc(ln->addrs, (ln->n_addrs + 1) * sizeof *nv);
			if (!nv)
				break;
			ln->addrs = nv;
			nv[ln->n_addrs] = strdup(buf);
			if (nv[ln->n_addrs])
				ln->n_addrs++;
		}
		freeifaddrs(ifa);
	}
	return 0;
}

static bool
ends_with_ci(const char *s, size_t len, const char *suffix)
{
	size_t sl = strlen(suffix);

	return len >= sl && strncasecmp(s + len - sl, suffix, sl) == 0;
}

static bool
name_is_local(const char *s, size_t len, const struct localnames *ln)
{
	while (len && s[len - 1] == '.')
		len--;
	if (len == 0)
		return false;
	if ((len == 9 && strncasecmp(s, "localhost", 9) == 0) ||
	    ends_with_ci(s, len, ".localhost") || ends_with_ci(s, len, ".localdomain"))
		return true;
	if (ln && ln->hostname && ln->hostname[0] && strlen(ln->hostname) == len &&
	    strncasecmp(s, ln->hostname, len) == 0)
		return true;
	if (ln && ln->fqdn && ln->fqdn[0] && strlen(ln->fqdn) == len && strncasecmp(s, ln->fqdn, len) == 0)
		return true;
	return false;
}

/* An address literal's text, "127.0.0.1", "IPv6:::1" or "::1". */
static bool
literal_is_local(const char *s, size_t len, const struct localnames *ln)
{
	char buf[INET6_ADDRSTRLEN + 8];
	struct in6_addr a6;
	struct in_addr a4;
	size_t i;

	if (len >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
		s += 5;
		len -= 5;
	}
	if (len == 0 || len >= sizeof buf)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		if ((ntohl(a4.s_addr) >> 24) == 127)
			return true;
	} else if (inet_pton(AF_INET6, buf, &a6) == 1) {
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127)
			return true;
	} else {
		return false;
	}
	for (i = 0; ln && i < ln->n_addrs; i++)
		if (strcasecmp(buf, ln->addrs[i]) == 0)
			return true;
	return false;
}

/* No domain, localhost, *.localdomain, or one of this host's names. */
bool
address_is_local(const char *addr, const struct localnames *ln)
{
	const char *at = strrchr(addr, '@'), *d;

	if (!at)
		return true;
	d = at + 1;
	if (d[0] == '[') {
		const char *e = strchr(d, ']');

		return e && literal_is_local(d + 1, (size_t)(e - d - 1), ln);
	}
	return name_is_local(d, strlen(d), ln);
}

/* Next token of a Received value: a word, a [literal], or a (comment); skips white space. */
static bool
rtoken(const char *v, size_t len, size_t *i, size_t *s, size_t *e)
{
	while (*i < len && is_wsp(v[*i]))
		(*i)++;
	if (*i >= len)
		return false;
	*s = *i;
	if (v[*i] == '(') {
		*i = skip_comment(v, len, *i);
	} else if (v[*i] == '[') {
		const char *c = memchr(v + *i, ']', len - *i);

		*i = c ? (size_t)(c - v) + 1 : len;
	} else if (v[*i] == ';') {
		(*i)++;
	} else {
		while (*i < len && !is_wsp(v[*i]) && v[*i] != '(' && v[*i] != ';')
			(*i)++;
	}
	*e = *i;
	return true;
}

/*
 * A "[literal]" token (t[0] is '['): the text inside; one cut short by the
 * end of the field runs to it.
 */
static bool
literal_token_is_local(const char *t, size_t len, const struct localnames *ln)
{
	size_t n = len - 1;

	if (n > 0 && t[len - 1] == ']')
		n--;
	return literal_is_local(t + 1, n, ln);
}

static bool
host_token_is_local(const char *t, size_t len, const struct localnames *ln)
{
	if (len >= 1 && t[0] == '[')
		return literal_token_is_local(t, len, ln);
	return name_is_local(t, len, ln);
}

/*
 * A Received field describes local handling when every host it names — the
 * "from" host, the host and address in the comment after it, and the "by"
 * host — is this machine (localhost, 127.0.0.0/8, ::1, the host's names or
 * addresses, *.localdomain), and it names at least one. Anything else is a
 * real hop and stays. Local submissions that name a user instead (Exim's
 * "with local", qmail's "invoked by uid") are local too.
 */
bool
received_is_local(const char *v, size_t len, const struct localnames *ln)
{
	size_t i = 0, s, e;
	int hosts = 0;
	bool with_local = false;

	/* qmail's local injection names no host: "(qmail 123 invoked by uid 1000)". */
	if (memmem(v, len, "invoked by uid", 14) || memmem(v, len, "invoked by alias", 16))
		return true;
	/* Exim's "from alice by myhost with local": the from is a user, not a host. */
	while (rtoken(v, len, &i, &s, &e))
		if (e - s == 4 && strncasecmp(v + s, "with", 4) == 0 && rtoken(v, len, &i, &s, &e) &&
		    e - s >= 5 && strncasecmp(v + s, "local", 5) == 0)
			with_local = true;
	i = 0;
	while (rtoken(v, len, &i, &s, &e)) {
		size_t hl = e - s;
		bool from = hl == 4 && strncasecmp(v + s, "from", 4) == 0;
		bool by = hl == 2 && strncasecmp(v + s, "by", 2) == 0;

		if (v[s] == ';')
			break;		/* the date follows */
		if (!from && !by)
			continue;
		if (!rtoken(v, len, &i, &s, &e) || v[s] == '(' || v[s] == ';')
			return false;
		if (!host_token_is_local(v + s, e - s, ln) &&
		    !(from && with_local && v[s] != '[' && !memchr(v + s, '.', e - s)))
			return false;
		hosts++;
		if (!from)
			continue;
		/* TCP-info: "(name [addr])" after the from host */
		size_t save = i;
		if (rtoken(v, len, &i, &s, &e) && v[s] == '(') {
			/* inside the parentheses; a comment cut short by the end of the field runs to it */
			size_t ci = s + 1, cend = e > ci && v[e - 1] == ')' ? e - 1 : e, ts, te;
			bool firstword = true;

			while (rtoken(v, cend, &ci, &ts, &te)) {
				if (v[ts] == '[') {
					if (!literal_token_is_local(v + ts, te - ts, ln))
						return false;
				} else if (firstword && v[ts] != '(' &&
				           !(te - ts > 5 && strncasecmp(v + ts, "helo=", 5) == 0) &&
				           !(te - ts == 4 && strncasecmp(v + ts, "HELO", 4) == 0)) {
					if (!name_is_local(v + ts, te - ts, ln) && !literal_is_local(v + ts, te - ts, ln))
						return false;
				}
				firstword = false;
			}
		} else {
			i = save;
		}
	}
	return hosts > 0;
}

void
message_format_date(int64_t when, char *buf, size_t len)
{
	static const char days[][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)when;
	struct tm tm;
	long off;

	localtime_r(&t, &tm);
	off = tm.tm_gmtoff / 60;
	/* RFC 5322 3.3, in English whatever the locale */
	snprintf(buf, len, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday], tm.tm_mday,
	         months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

static const char *
domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : addr;
}

/* The envelope sender: given and not local, or the account. "" (null sender) stays. */
int
message_resolve_sender(const char *sender, const struct message_out *o, char **out)
{
	const char *s = sender && (!sender[0] || !address_is_local(sender, o->local)) ? sender : o->account;

	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static bool
is_sender_field(const struct header_field *f)
{
	return header_is(f, "From") || header_is(f, "Sender") || header_is(f, "Reply-To") ||
	       header_is(f, "Resent-From") || header_is(f, "Resent-Sender");
}

static bool
is_rcpt_field(const struct header_field *f)
{
	return header_is(f, "To") || header_is(f, "Cc") || header_is(f, "Resent-To") ||
	       header_is(f, "Resent-Cc");
}

/* The local part of a local address, lower-cased, for the alias table. */
static char *
local_part(const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t len = at ? (size_t)(at - addr) : strlen(addr), i;
	char *lp = strndup(addr, len);

	for (i = 0; lp && lp[i]; i++)
		lp[i] = (char)tolower((unsigned char)lp[i]);
	return lp;
}

/* Writes a field with its local addresses rewritten; unchanged fields are copied byte for byte. */
static int
rewrite_field(FILE *f, const struct header_field *h, bool sender, const struct message_out *o)
{
	struct mailbox *mb;
	size_t n, i, at;
	bool any = false;
	int r;

	r = message_parse_addresses(h->value, h->value_len, &mb, &n);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++)
		if (address_is_local(mb[i].addr, o->local))
			any = true;
	if (!any) {
		fwrite(h->raw, 1, h->raw_len, f);
		mailboxes_free(mb, n);
		return 0;
	}
	fwrite(h->name, 1, h->name_len, f);
	fputc(':', f);
	at = 0;
	for (i = 0; i < n && r >= 0; i++) {
		char **to = NULL;
		size_t nto = 0, k;
		char *lp;

		if (!address_is_local(mb[i].addr, o->local))
			continue;
		if (sender) {
			fwrite(h->value + at, 1, mb[i].addr_start - at, f);
			fputs(o->account, f);
			at = mb[i].addr_end;
			continue;
		}
		lp = local_part(mb[i].addr);
		r = lp ? o->alias(o->alias_data, lp, &to, &nto) : -ENOMEM;
		free(lp);
		if (r < 0)
			break;
		if (nto == 1 || (nto > 1 && !mb[i].angle)) {
			fwrite(h->value + at, 1, mb[i].addr_start - at, f);
			at = mb[i].addr_end;
		} else if (nto > 1) {
			/* Several targets cannot share one <>: the whole mailbox becomes the list. */
			fwrite(h->value + at, 1, mb[i].start - at, f);
			at = mb[i].end;
		}
		for (k = 0; k < nto; k++) {
			fprintf(f, "%s%s", k ? ", " : "", to[k]);
			free(to[k]);
		}
		free(to);
	}
	fwrite(h->value + at, 1, h->value_len - at, f);
	/* the field's own line end, if any: the caller adds one where it is missing */
	fwrite(h->value + h->value_len, 1, (size_t)(h->raw + h->raw_len - (h->value + h->value_len)), f);
	mailboxes_free(mb, n);
	return r;
}

/*
 * The header section as it leaves: Bcc and Resent-Bcc dropped, local
 * Received fields dropped, local addresses rewritten (senders to the
 * account, recipients through the aliases), Date, Message-ID and From added
 * when missing; always ends with the blank line. Other fields are copied
 * byte for byte, but for a bare CR. Line ends may be LF or CRLF;
 * wire_encode makes them CRLF.
 */
int
message_out_headers(const char *hdr, size_t len, const struct message_out *o, char **out, size_t *out_len)
{
	bool has_date = false, has_msgid = false, has_from = false;
	struct header_field h;
	char *buf = NULL;
	size_t size = 0, pos = 0, i;
	FILE *f;
	int r = 0;

	f = open_memstream(&buf, &size);
	if (!f)
		return -ENOMEM;
	while (r >= 0 && message_header_next(hdr, len, &pos, &h)) {
		if (header_is(&h, "Bcc") || header_is(&h, "Resent-Bcc"))
			continue;
		if (header_is(&h, "Received") && received_is_local(h.value, h.value_len, o->local))
			continue;
		if (header_is(&h, "Date"))
			has_date = true;
		else if (header_is(&h, "Message-ID"))
			has_msgid = true;
		else if (header_is(&h, "From"))
			has_from = true;
		if (is_sender_field(&h))
			r = rewrite_field(f, &h, true, o);
		else if (is_rcpt_field(&h))
			r = rewrite_field(f, &h, false, o);
		else
			fwrite(h.raw, 1, h.raw_len, f);
		/* A last field without a line end gets one. */
		if (h.raw[h.raw_len - 1] != '\n')
			fputc('\n', f);
	}
	if (!has_date) {
		char date[64];

		message_format_date(o->arrival, date, sizeof date);
		fprintf(f, "Date: %s\n", date);
	}
	if (!has_msgid)
		fprintf(f, "Message-ID: <%s@%s>\n", o->id, domain_of(o->account));
	if (!has_from) {
		if (o->fullname && o->fullname[0]) {
			const char *c;

			/* RFC 5322 quoted-string, so that any name is safe as a display name */
			fputs("From: \"", f);
			for (c = o->fullname; *c; c++) {
				if (*c == '"' || *c == '\\')
					fputc('\\', f);
				if (*c != '\r' && *c != '\n')
					fputc(*c, f);
			}
			fprintf(f, "\" <%s>\n", o->account);
		} else {
			fprintf(f, "From: %s\n", o->account);
		}
	}
	fputc('\n', f);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	if (r < 0) {
		free(buf);
		return r;
	}
	/*
	 * RFC 5322 2.2: CR only in CRLF. wire_encode ends a line at a bare CR, so
	 * one left here would start a field the server sees and we did not (a
	 * "Bcc:" after it would leave): it becomes a space.
	 */
	for (i = 0; i + 1 < size; i++)
		if (buf[i] == '\r' && buf[i + 1] != '\n')
			buf[i] = ' ';
	*out = buf;
	*out_len = size;
	return 0;
}

void
wire_init(struct wire *w, bool stuff)
{
	w->at_bol = true;
	w->cr = false;
	w->stuff = stuff;
}

/*
 * Message bytes to SMTP wire bytes. Every line ends in CRLF: LF, CRLF and a
 * bare CR each end one line, so no "\r.\n" or "\n.\r\n" in a body can look
 * like the end of DATA to any server (SMTP smuggling). RFC 5321 4.5.2: a
 * line starting with "." gets another. out must hold 2 * len bytes.
 */
size_t
wire_encode(struct wire *w, const char *in, size_t len, char *out)
{
	char *o = out;
	size_t i;

	for (i = 0; i < len; i++) {
		char c = in[i];

		if (w->cr) {
			w->cr = false;
			if (c == '\n')
				continue;	/* the LF of a CRLF already placed */
		}
		if (c == '\r' || c == '\n') {
			/* A CR ends its line at once, so no call puts out more than 2 * len. */
			*o++ = '\r';
			*o++ = '\n';
			w->at_bol = true;
			w->cr = c == '\r';
			continue;
		}
		if (w->at_bol && c == '.' && w->stuff)
			*o++ = '.';
		w->at_bol = false;
		/* Copy the rest of the line in one go. */
		size_t j = i + 1;
		while (j < len && in[j] != '\n' && in[j] != '\r')
			j++;
		*o++ = c;
		memcpy(o, in + i + 1, j - i - 1);
		o += j - i - 1;
		i = j - 1;
	}
	return (size_t)(o - out);
}

/* Ends the last line; with dot-stuffing, also the end-of-data line. out holds 5 bytes. */
size_t
wire_finish(struct wire *w, char *out)
{
	char *o = out;

	if (!w->at_bol) {
		*o++ = '\r';
		*o++ = '\n';
	}
	w->cr = false;
	w->at_bol = true;
	if (w->stuff) {
		memcpy(o, ".\r\n", 3);
		o += 3;
	}
	return (size_t)(o - out);
}

bool
message_has_8bit(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)buf[i] & 0x80)
			return true;
	return false;
}

void
strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * The envelope recipients as they go to the server: local ones through the
 * aliases (no alias function: as they are), each address once.
 */
int
message_resolve_rcpts(char *const *rcpt, size_t n, const struct message_out *o, char ***out, size_t *n_out)
{
	char **v = NULL;
	size_t nv = 0, i, k;
	int r = 0;

	for (i = 0; i < n && r >= 0; i++) {
		char **to = NULL, *lp;
		size_t nto = 0;

		if (!o->alias || !address_is_local(rcpt[i], o->local)) {
			r = strv_add(&v, &nv, rcpt[i]);
			continue;
		}
		lp = local_part(rcpt[i]);
		r = lp ? o->alias(o->alias_data, lp, &to, &nto) : -ENOMEM;
		free(lp);
		for (k = 0; k < nto; k++)
			if (r >= 0)
				r = strv_add(&v, &nv, to[k]);
		strv_free(to, nto);
	}
	if (r < 0) {
		strv_free(v, nv);
		return r;
	}
	*out = v;
	*n_out = nv;
	return 0;
}

/*
 * An address we may put between < and > on the wire: no control characters,
 * no white space, brackets or commas outside a quoted local part. Anything
 * else could smuggle a parameter or a command into the session.
 */
bool
message_address_sane(const char *a)
{
	bool quoted = false;

	for (; *a; a++) {
		unsigned char c = (unsigned char)*a;

		if (c < 0x20 || c == 0x7f)
			return false;
		if (quoted) {
			if (c == '\\' && a[1])
				a++;
			else if (c == '"')
				quoted = false;
			continue;
		}
		if (c == '"')
			quoted = true;
		else if (c == ' ' || c == '<' || c == '>' || c == ',' || c == '(' || c == ')')
			return false;
	}
	return !quoted;
}
