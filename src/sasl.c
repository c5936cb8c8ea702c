/* SPDX-License-Identifier: MIT */
/*
 * SMTP AUTH (RFC 4954) through libgsasl: the best mechanism both sides
 * support (SCRAM-SHA-256, PLAIN, LOGIN), one gsasl_step64() loop.
 * XOAUTH2, which this libgsasl lacks, is one message and built here.
 * Every buffer that held a credential is wiped before it is freed.
 */
#include <errno.h>
#include <gsasl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sasl.h"

static bool
offered_has(const char *offered, const char *mech)
{
	size_t len = strlen(mech);
	const char *p = offered;

	while ((p = strcasestr(p, mech))) {
		if ((p == offered || p[-1] == ' ') && (p[len] == '\0' || p[len] == ' '))
			return true;
		p += len;
	}
	return false;
}

static void
wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		gsasl_free(s);
	}
}

static int
xoauth2(const char *user, const struct secret *token, sasl_send_fn send, void *userdata,
        struct smtp_reply *final, char *err, size_t errlen)
{
	char *raw = NULL, *b64 = NULL, *line = NULL;
	size_t rawlen, b64len;
	int r;

	/* https://developers.google.com/gmail/imap/xoauth2-protocol */
	rawlen = strlen(user) + token->len + 20;
	raw = malloc(rawlen + 1);
	if (!raw)
		return -ENOMEM;
	rawlen = (size_t)snprintf(raw, rawlen + 1, "user=%s\001auth=Bearer %s\001\001", user, token->value);
	r = gsasl_base64_to(raw, rawlen, &b64, &b64len);
	explicit_bzero(raw, rawlen);
	free(raw);
	if (r != GSASL_OK)
		return -ENOMEM;
	if (asprintf(&line, "AUTH XOAUTH2 %s", b64) < 0)
		line = NULL;
	wipe_free(b64);
	if (!line)
		return -ENOMEM;
	r = send(userdata, line, final);
	explicit_bzero(line, strlen(line));
	free(line);
	if (r < 0)
		return r;
	if (final->code == 334) {
		/* An error in JSON; an empty line ends the exchange with the real reply. */
		smtp_reply_clear(final);
		r = send(userdata, "", final);
	}
	(void)err;
	(void)errlen;
	return r;
}

int
sasl_authenticate(const char *offered, const char *user, const struct secret *secret, bool token,
                  sasl_send_fn send, void *userdata, struct smtp_reply *final,
                  char *mech, size_t mechlen, char *err, size_t errlen)
{
	static const char *const preference[] = { "SCRAM-SHA-256", "PLAIN", "LOGIN", NULL };
	Gsasl *ctx = NULL;
	Gsasl_session *s = NULL;
	const char *const *m;
	char *out = NULL, *line = NULL;
	int r, g;

	memset(final, 0, sizeof *final);
	if (token) {
		if (!offered_has(offered, "XOAUTH2")) {
			snprintf(err, errlen, "the server does not offer XOAUTH2 (it offers: %s)", offered);
			return -ENOTSUP;
		}
		snprintf(mech, mechlen, "XOAUTH2");
		return xoauth2(user, secret, send, userdata, final, err, errlen);
	}
	if (gsasl_init(&ctx) != GSASL_OK)
		return -ENOMEM;
	for (m = preference; *m; m++)
		if (offered_has(offered, *m) && gsasl_client_support_p(ctx, *m))
			break;
	if (!*m) {
		snprintf(err, errlen, "no common authentication mechanism (the server offers: %s)",
		         offered[0] ? offered : "none");
		r = -ENOTSUP;
		goto out;
	}
	snprintf(mech, mechlen, "%s", *m);
	g = gsasl_client_start(ctx, *m, &s);
	if (g != GSASL_OK) {
		snprintf(err, errlen, "SASL %s: %s", *m, gsasl_strerror(g));
		r = -EINVAL;
		goto out;
	}
	gsasl_property_set(s, GSASL_AUTHID, user);
	gsasl_property_set_raw(s, GSASL_PASSWORD, secret->value, secret->len);

	/* The initial response goes with AUTH (RFC 4954 4), where the mechanism has one. */
	g = gsasl_step64(s, "", &out);
	if (g != GSASL_OK && g != GSASL_NEEDS_MORE) {
		snprintf(err, errlen, "SASL %s: %s", *m, gsasl_strerror(g));
		r = -EINVAL;
		goto out;
	}
	if (asprintf(&line, out && out[0] ? "AUTH %s %s" : "AUTH %s", *m, out) < 0) {
		line = NULL;
		r = -ENOMEM;
		goto out;
	}
	wipe_free(out);
	out = NULL;
	for (;;) {
		r = send(userdata, line, final);
		explicit_bzero(line, strlen(line));
		free(line);
		line = NULL;
		if (r < 0 || final->code != 334)
			break;
		/* 334 challenge: "334 <base64>" */
		g = gsasl_step64(s, final->n_lines ? final->lines[0] : "", &out);
		smtp_reply_clear(final);
		if (g != GSASL_OK && g != GSASL_NEEDS_MORE) {
			snprintf(err, errlen, "SASL %s: %s", *m, gsasl_strerror(g));
			/* RFC 4954 4: "*" cancels the exchange. */
			r = send(userdata, "*", final);
			if (r >= 0)
				r = -EPROTO;
			break;
		}
		line = strdup(out ? out : "");
		wipe_free(out);
		out = NULL;
		if (!line) {
			r = -ENOMEM;
			break;
		}
	}
out:
	wipe_free(out);
	if (line) {
		explicit_bzero(line, strlen(line));
		free(line);
	}
	if (s)
		gsasl_finish(s);
	if (ctx)
		gsasl_done(ctx);
	return r;
}
