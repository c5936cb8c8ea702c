/* SPDX-License-Identifier: MIT */
/*
 * queue.c's file formats: the input is a state file and, separately, the
 * start of a message file (its envelope). A state that parses formats to
 * bytes that parse again to the same format; an envelope that parses
 * formats to one that parses to the same values, with the message bytes
 * where the first said they begin.
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

static bool
str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void
check_state(const char *buf, size_t len)
{
	struct queue_state st, again;
	char *f1, *f2;
	size_t n1, n2, i;
	int r;

	r = queue_state_parse(buf, len, &st);
	if (r < 0) {
		assert(r == -EBADMSG || r == -EPROTO || r == -ENOMEM);
		assert(st.n_rcpt == 0 && st.n_log == 0 && !st.reply);
		return;
	}
	assert(st.n_log <= 20);
	for (i = 0; i < st.n_rcpt; i++) {
		assert(st.rcpt[i].addr && st.rcpt[i].addr[0]);
		assert(queue_rcpt_status_name(st.rcpt[i].status));
		assert(queue_state_find(&st, st.rcpt[i].addr) == &st.rcpt[i]);
	}
	f1 = queue_state_format(&st, &n1);
	assert(f1);
	r = queue_state_parse(f1, n1, &again);
	assert(r == 0);
	f2 = queue_state_format(&again, &n2);
	assert(f2);
	assert(n1 == n2 && memcmp(f1, f2, n1) == 0);
	assert(again.n_rcpt == st.n_rcpt && again.n_log == st.n_log);

	/* What a delivery does next: the status, one more event, one more recipient. */
	for (i = 0; i < st.n_rcpt; i++)
		(void)queue_state_status(&st, &st.rcpt[i].addr, 1, 1700000000);
	assert(queue_status_name(queue_state_status(&st, NULL, 0, 0)));
	assert(queue_state_log(&st, 1700000000, "a\tb\r\nc") == 0);
	assert(queue_state_rcpt(&st, "new@example.org"));
	free(f1);
	free(f2);
	queue_state_clear(&st);
	queue_state_clear(&again);
}

static void
check_envelope(const char *buf, size_t len)
{
	struct envelope env, again;
	size_t consumed, c2, n, i;
	char *f;
	int r;

	r = envelope_parse(buf, len, &env, &consumed);
	if (r < 0) {
		assert(r == -EBADMSG || r == -EPROTO || r == -ENOMEM);
		assert(!env.rcpt && !env.user && !env.sender && !env.fullname);
		return;
	}
	assert(consumed <= len && buf[consumed - 1] == '\n' && buf[consumed - 2] == '\n');
	assert(env.n_rcpt > 0);
	for (i = 0; i < env.n_rcpt; i++)
		assert(env.rcpt[i][0] && envelope_value_valid(env.rcpt[i]));
	f = envelope_format(&env, &n);
	assert(f);
	r = envelope_parse(f, n, &again, &c2);
	assert(r == 0 && c2 == n);
	assert(again.arrival == env.arrival && again.n_rcpt == env.n_rcpt);
	assert(str_eq(again.user, env.user) && str_eq(again.fullname, env.fullname));
	assert(str_eq(again.sender, env.sender));
	for (i = 0; i < env.n_rcpt; i++)
		assert(strcmp(again.rcpt[i], env.rcpt[i]) == 0);
	free(f);
	envelope_clear(&env);
	envelope_clear(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_state((const char *)data, size);
	check_envelope((const char *)data, size);
	return 0;
}
