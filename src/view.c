/* SPDX-License-Identifier: MIT */
/*
 * The queue as the user sees it, for mailq and the outbox command: each
 * message's envelope resolved through the configuration as delivery would
 * resolve it, and its derived state. Reads need no lock: message files are
 * immutable and state files are replaced whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "view.h"

void
view_out(struct message_out *o, const struct config *c, const struct localnames *ln)
{
	memset(o, 0, sizeof *o);
	o->local = ln;
	if (c) {
		o->account = c->address;
		o->alias = config_alias;
		o->alias_data = (void *)c;
	}
}

static void
view_msg_clear(struct view_msg *m)
{
	envelope_clear(&m->env);
	queue_state_clear(&m->st);
	free(m->sender);
	strv_free(m->rcpt, m->n_rcpt);
}

void
view_clear(struct view *v)
{
	size_t i;

	for (i = 0; i < v->n_msg; i++)
		view_msg_clear(&v->msg[i]);
	free(v->msg);
	free(v->account_hold);
	memset(v, 0, sizeof *v);
}

int
view_load(struct queue *q, const struct config *c, const struct localnames *ln, struct view *v)
{
	char (*ids)[QUEUE_ID_LEN + 1];
	struct message_out o;
	size_t n, i;
	int r;

	memset(v, 0, sizeof *v);
	view_out(&o, c, ln);
	r = queue_list(q, &ids, &n);
	if (r < 0)
		return r;
	v->msg = calloc(n ? n : 1, sizeof *v->msg);
	if (!v->msg) {
		free(ids);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		struct view_msg *m = &v->msg[v->n_msg];
		struct queue_msg *qm;

		r = queue_msg_open(q, ids[i], &qm);
		if (r == -ENOENT)
			continue;	/* delivered or deleted meanwhile */
		if (r == -EBADMSG || r == -EPROTO || r == -EACCES) {
			/* One bad file must not hide the rest of the queue. */
			fprintf(stderr, "outbox: message %s is unreadable (%s); left alone\n", ids[i],
			        r == -EPROTO ? "written by a newer outbox" : strerror(-r));
			r = 0;
			continue;
		}
		if (r < 0)
			break;
		memcpy(m->id, qm->id, sizeof m->id);
		m->env = qm->env;
		memset(&qm->env, 0, sizeof qm->env);
		m->size = (long long)qm->size;
		/* Whoever holds the lock is delivering or changing it. */
		if (flock(qm->fd, LOCK_SH | LOCK_NB) < 0)
			m->active = true;
		queue_msg_free(qm);
		r = queue_state_load(q, m->id, &m->st);
		if (r == -EBADMSG || r == -EPROTO) {
			fprintf(stderr, "outbox: the delivery state of %s is unreadable; shown as never tried\n",
			        m->id);
			memset(&m->st, 0, sizeof m->st);
		} else if (r < 0) {
			envelope_clear(&m->env);
			break;
		}
		if (c) {
			r = message_resolve_sender(m->env.sender, &o, &m->sender);
			if (r >= 0)
				r = message_resolve_rcpts(m->env.rcpt, m->env.n_rcpt, &o, &m->rcpt, &m->n_rcpt);
		} else {
			m->sender = strdup(m->env.sender ? m->env.sender : "");
			r = m->sender ? message_resolve_rcpts(m->env.rcpt, m->env.n_rcpt, &o, &m->rcpt,
			                                      &m->n_rcpt) : -ENOMEM;
		}
		if (r < 0) {
			view_msg_clear(m);
			break;
		}
		m->status = queue_state_status(&m->st, m->rcpt, m->n_rcpt, (int64_t)time(NULL));
		v->n_msg++;
		r = 0;
	}
	free(ids);
	v->account_hold = queue_account_hold(q);
	if (r < 0)
		view_clear(v);
	return r;
}

/* Postfix's mailq layout: ID (* active, ! held), size, arrival, sender; reasons in parentheses. */
void
view_print_mailq(const struct view *v, FILE *f)
{
	long long total = 0;
	size_t i, k;

	if (v->n_msg == 0) {
		fputs("Mail queue is empty\n", f);
		return;
	}
	if (v->account_hold)
		fprintf(f, "Queue held: %s\n", v->account_hold);
	fputs("-Queue ID-------- --Size-- ----Arrival Time---- -Sender/Recipient-------\n", f);
	for (i = 0; i < v->n_msg; i++) {
		const struct view_msg *m = &v->msg[i];
		char when[32];
		time_t t = (time_t)m->env.arrival;
		struct tm tm;
		char mark = m->active ? '*' : m->status == QUEUE_HELD ? '!' : ' ';

		localtime_r(&t, &tm);
		strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
		fprintf(f, "%s%c %8lld %s  %s\n", m->id, mark, m->size, when,
		        m->sender[0] ? m->sender : "MAILER-DAEMON");
		if (m->status == QUEUE_HELD)
			fprintf(f, "%47s(held by the user: outbox release %s)\n", "", m->id);
		else if (m->status == QUEUE_DEFERRED && m->st.next) {
			char next[32];
			time_t nt = (time_t)m->st.next;

			localtime_r(&nt, &tm);
			strftime(next, sizeof next, "%a %b %e %H:%M", &tm);
			fprintf(f, "%47s(deferred, next try %s)\n", "", next);
		}
		for (k = 0; k < m->n_rcpt; k++) {
			const struct queue_rcpt_state *rs =
				queue_state_find(&m->st, m->rcpt[k]);

			if (rs && rs->status == QUEUE_RCPT_SENT)
				continue;	/* Postfix lists only recipients still to do */
			if (rs && rs->reply)
				fprintf(f, "%47s(%s: %s)\n", "", queue_rcpt_status_name(rs->status), rs->reply);
			fprintf(f, "%47s%s\n", "", m->rcpt[k]);
		}
		fputc('\n', f);
		total += m->size;
	}
	fprintf(f, "-- %lld Kbytes in %zu Request%s.\n", (total + 1023) / 1024, v->n_msg,
	        v->n_msg == 1 ? "" : "s");
}
