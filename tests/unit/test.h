/* SPDX-License-Identifier: MIT */
/*
 * The few checks the unit tests share. A failed check prints file:line, the
 * expression and both values, and the test goes on; main() returns
 * test_exit() so that one run shows every failure. No framework: each test
 * program is a main() calling its test functions.
 */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned test_checks, test_failures, test_cases;
static char test_case_name[256];

/* Prints buf with control bytes and non-ASCII escaped, so that CR, LF and NUL show. */
static inline void
test_print_bytes(const char *buf, size_t len)
{
	size_t i;

	if (!buf) {
		fputs("(null)", stderr);
		return;
	}
	fputc('"', stderr);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\n')
			fputs("\\n", stderr);
		else if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\t')
			fputs("\\t", stderr);
		else if (c == '"' || c == '\\')
			fprintf(stderr, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fputc('"', stderr);
}

static inline bool
test_fail_head(const char *file, int line, const char *what)
{
	test_failures++;
	fprintf(stderr, "%s:%d: FAIL: %s\n", file, line, what);
	if (test_case_name[0])
		fprintf(stderr, "\tcase: %s\n", test_case_name);
	return false;
}

static inline bool
test_check(bool ok, const char *file, int line, const char *expr)
{
	test_checks++;
	if (!ok)
		return test_fail_head(file, line, expr);
	return true;
}

static inline bool
test_check_int(intmax_t got, intmax_t want, const char *file, int line, const char *expr)
{
	test_checks++;
	if (got == want)
		return true;
	test_fail_head(file, line, expr);
	fprintf(stderr, "\tgot:  %jd\n\twant: %jd\n", got, want);
	return false;
}

/* Bytes: a NULL pointer with no bytes equals an empty buffer. */
static inline bool
test_check_mem(const char *got, size_t got_len, const char *want, size_t want_len,
               const char *file, int line, const char *expr)
{
	test_checks++;
	if (got_len == want_len && (got_len == 0 || (got && want && memcmp(got, want, got_len) == 0)))
		return true;
	test_fail_head(file, line, expr);
	fputs("\tgot:  ", stderr);
	test_print_bytes(got, got_len);
	fprintf(stderr, " (%zu bytes)\n\twant: ", got_len);
	test_print_bytes(want, want_len);
	fprintf(stderr, " (%zu bytes)\n", want_len);
	return false;
}

/* Strings: NULL equals only NULL. */
static inline bool
test_check_str(const char *got, const char *want, const char *file, int line, const char *expr)
{
	if ((!got) != (!want)) {
		test_checks++;
		test_fail_head(file, line, expr);
		fprintf(stderr, "\tgot:  %s%s%s\n\twant: %s%s%s\n", got ? "\"" : "",
		        got ? got : "(null)", got ? "\"" : "", want ? "\"" : "", want ? want : "(null)",
		        want ? "\"" : "");
		return false;
	}
	return test_check_mem(got, got ? strlen(got) : 0, want, want ? strlen(want) : 0, file, line,
	                      expr);
}

#define CHECK(cond) test_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_INT(got, want) \
	test_check_int((intmax_t)(got), (intmax_t)(want), __FILE__, __LINE__, #got " == " #want)
#define CHECK_MEM(got, got_len, want, want_len) \
	test_check_mem((got), (got_len), (want), (want_len), __FILE__, __LINE__, #got " == " #want)
#define CHECK_STR(got, want) test_check_str((got), (want), __FILE__, __LINE__, #got " == " #want)
/* Against a string literal: its length, not strlen, so that NUL bytes count. */
#define CHECK_MEM_LIT(got, got_len, lit) \
	test_check_mem((got), (got_len), (lit), sizeof(lit) - 1, __FILE__, __LINE__, #got " == " #lit)

/* A table row or scenario: counted, and named in the failures that follow it. */
#define CASE(...)                                                             \
	do {                                                                  \
		test_cases++;                                                 \
		snprintf(test_case_name, sizeof test_case_name, __VA_ARGS__); \
	} while (0)

/* Memory for the tests themselves: none is a hard error (exit 99, as meson reads it). */
static inline void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (!p) {
		fputs("out of memory\n", stderr);
		exit(99);
	}
	return p;
}

static inline void *
xrealloc(void *p, size_t size)
{
	p = realloc(p, size ? size : 1);
	if (!p) {
		fputs("out of memory\n", stderr);
		exit(99);
	}
	return p;
}

static inline int
test_exit(const char *name)
{
	printf("%s: %u cases, %u checks, %u failed\n", name, test_cases, test_checks, test_failures);
	return test_failures ? 1 : 0;
}
