/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct header_field {
	const char *name;
	size_t name_len;
	const char *value;	/* after the colon, folding kept, line end excluded */
	size_t value_len;
	const char *raw;	/* the whole field with its line ends */
	size_t raw_len;
};

struct mailbox {
	char *addr;		/* the addr-spec, as RCPT TO wants it */
	size_t start, end;	/* the mailbox within the field value */
	size_t addr_start, addr_end;	/* the addr-spec within the field value */
	bool angle;		/* the addr-spec stood in <> */
};

/* The names this host answers to, for local addresses and Received fields. */
struct localnames {
	char *hostname;		/* short name */
	char *fqdn;		/* may equal hostname */
	char **addrs;		/* interface addresses, printed */
	size_t n_addrs;
};

/* Resolves one local part to one or more addresses (aliases, else the account). */
typedef int (*message_alias_fn)(void *userdata, const char *local, char ***out, size_t *n);

struct message_out {
	const char *id;		/* the queue ID, for Message-ID */
	const char *account;	/* the account address: From: and local senders */
	const char *fullname;	/* for a From: we add, or NULL */
	int64_t arrival;	/* for a Date: we add */
	const struct localnames *local;
	message_alias_fn alias;
	void *alias_data;
};

struct wire {
	bool at_bol;		/* the next byte out starts a line */
	bool cr;		/* the last byte in was a CR: an LF next belongs to it */
	bool stuff;		/* dot-stuff (DATA); BDAT does not */
};

ssize_t message_header_len(const char *buf, size_t len, bool eof);
bool message_header_next(const char *buf, size_t len, size_t *pos, struct header_field *f);
bool header_is(const struct header_field *f, const char *name);

int message_parse_addresses(const char *value, size_t len, struct mailbox **out, size_t *n);
void mailboxes_free(struct mailbox *m, size_t n);
int message_extract_rcpts(const char *hdr, size_t len, char ***rcpt, size_t *n);

bool dotscan(const char *buf, size_t len, bool *at_bol, bool eof, size_t *emit);

int localnames_init(struct localnames *ln);
void localnames_clear(struct localnames *ln);
bool address_is_local(const char *addr, const struct localnames *ln);
bool received_is_local(const char *value, size_t len, const struct localnames *ln);

int message_out_headers(const char *hdr, size_t len, const struct message_out *o,
                        char **out, size_t *out_len);
int message_resolve_sender(const char *sender, const struct message_out *o, char **out);

void wire_init(struct wire *w, bool stuff);
size_t wire_encode(struct wire *w, const char *in, size_t len, char *out);
size_t wire_finish(struct wire *w, char *out);
bool message_has_8bit(const char *buf, size_t len);
void message_format_date(int64_t when, char *buf, size_t len);
int message_resolve_rcpts(char *const *rcpt, size_t n, const struct message_out *o, char ***out,
                          size_t *n_out);
bool message_address_sane(const char *addr);
void strv_free(char **v, size_t n);
