/* SPDX-License-Identifier: MIT */
/*
 * A delay line between two TUN devices: every packet read from one is
 * written to the other after a fixed delay, in order. With each device in
 * its own network namespace, the two namespaces are joined by a link with a
 * round trip of twice the delay, and the kernels at both ends keep their
 * real TCP (handshake, slow start, Nagle, delayed ACKs). There is no
 * bandwidth limit and no loss unless a queue overflows (then the packet is
 * dropped, as a router would).
 *
 *   tundelay NAME_A NAME_B DELAY_US [TRACE_FILE]
 *
 * Creates the devices NAME_A and NAME_B in the current namespace (the
 * caller moves them where they belong and configures them), prints
 * "READY" on stdout and forwards until SIGTERM or SIGINT. At exit it prints
 * the packets and bytes forwarded and dropped each way on stderr.
 *
 * With TRACE_FILE, every TCP segment is written there as it enters the
 * line: CLOCK_MONOTONIC in milliseconds, direction (> from A to B, < back), ports,
 * flags (S F R P A) and payload bytes. That shows the flights of a
 * conversation: a round trip is a gap of DELAY_US * 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 8192		/* packets in flight per direction */
#define MAXPKT 65536

struct pkt {
	int64_t due_ns;
	uint32_t len;
	unsigned char *data;
};

struct dir {
	int in, out;
	struct pkt q[SLOTS];
	unsigned head, tail;	/* head: next to send; tail: next free */
	uint64_t packets, bytes, drops;
};

static volatile sig_atomic_t stop;
static FILE *trace;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
tun_open(const char *name)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		perror("tundelay: /dev/net/tun");
		exit(1);
	}
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "tundelay: TUNSETIFF %s: %s\n", name, strerror(errno));
		exit(1);
	}
	return fd;
}

static struct dir *dir_a;	/* the A to B direction, for the trace */

static void
trace_packet(const struct dir *d, const unsigned char *p, size_t n)
{
	size_t ihl, doff, tot;
	char flags[6];
	int k = 0;

	if (n < 20 || (p[0] >> 4) != 4 || p[9] != 6)
		return;
	ihl = (size_t)(p[0] & 15) * 4;
	tot = (size_t)p[2] << 8 | p[3];
	if (n < ihl + 20 || tot > n)
		return;
	doff = (size_t)(p[ihl + 12] >> 4) * 4;
	if (p[ihl + 13] & 0x02) flags[k++] = 'S';
	if (p[ihl + 13] & 0x01) flags[k++] = 'F';
	if (p[ihl + 13] & 0x04) flags[k++] = 'R';
	if (p[ihl + 13] & 0x08) flags[k++] = 'P';
	if (p[ihl + 13] & 0x10) flags[k++] = 'A';
	flags[k] = '\0';
	fprintf(trace, "%.3f %c %u>%u %s %zu\n", (double)now_ns() / 1e6, d == dir_a ? '>' : '<',
	        (unsigned)(p[ihl] << 8 | p[ihl + 1]), (unsigned)(p[ihl + 2] << 8 | p[ihl + 3]), flags,
	        tot - ihl - doff);
}

/* Reads every packet waiting on d->in into the queue, stamped with its departure time. */
static void
take(struct dir *d, int64_t delay_ns, unsigned char *scratch)
{
	for (;;) {
		ssize_t n = read(d->in, scratch, MAXPKT);
		struct pkt *p;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				perror("tundelay: read");
			return;
		}
		if (d->tail - d->head == SLOTS) {
			d->drops++;
			continue;
		}
		p = &d->q[d->tail % SLOTS];
		p->data = realloc(p->data, (size_t)n);
		if (!p->data) {
			perror("tundelay");
			exit(1);
		}
		memcpy(p->data, scratch, (size_t)n);
		if (trace)
			trace_packet(d, scratch, (size_t)n);
		p->len = (uint32_t)n;
		p->due_ns = now_ns() + delay_ns;
		d->tail++;
	}
}

/* Writes every packet whose time has come; returns the time the next one is due, or -1. */
static int64_t
give(struct dir *d, int64_t now)
{
	while (d->head != d->tail) {
		struct pkt *p = &d->q[d->head % SLOTS];

		if (p->due_ns > now)
			return p->due_ns;
		if (write(d->out, p->data, p->len) < 0 && errno != EAGAIN && errno != EIO)
			perror("tundelay: write");
		d->packets++;
		d->bytes += p->len;
		d->head++;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	static struct dir ab, ba;
	static unsigned char scratch[MAXPKT];
	struct sigaction sa = { .sa_handler = on_signal };
	int64_t delay_ns;
	int a, b;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: tundelay NAME_A NAME_B DELAY_US [TRACE_FILE]\n");
		return 64;
	}
	if (argc == 5) {
		trace = fopen(argv[4], "w");
		if (!trace) {
			perror(argv[4]);
			return 1;
		}
	}
	dir_a = &ab;
	delay_ns = strtoll(argv[3], NULL, 10) * 1000;
	a = tun_open(argv[1]);
	b = tun_open(argv[2]);
	ab.in = a;
	ab.out = b;
	ba.in = b;
	ba.out = a;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("READY\n");
	fflush(stdout);

	while (!stop) {
		struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
		int64_t now = now_ns(), n1, n2, next;
		struct timespec ts, *tp = NULL;

		n1 = give(&ab, now);
		n2 = give(&ba, now);
		next = n1 < 0 ? n2 : n2 < 0 ? n1 : (n1 < n2 ? n1 : n2);
		if (next >= 0) {
			int64_t wait = next - now;

			ts.tv_sec = wait / 1000000000;
			ts.tv_nsec = wait % 1000000000;
			tp = &ts;
		}
		if (ppoll(p, 2, tp, NULL) < 0) {
			if (errno == EINTR)
				continue;
			perror("tundelay: ppoll");
			return 1;
		}
		if (p[0].revents & POLLIN)
			take(&ab, delay_ns, scratch);
		if (p[1].revents & POLLIN)
			take(&ba, delay_ns, scratch);
	}
	if (trace)
		fclose(trace);
	fprintf(stderr, "tundelay: %s->%s %llu packets %llu bytes %llu dropped; %s->%s %llu packets %llu bytes %llu dropped\n",
	        argv[1], argv[2], (unsigned long long)ab.packets, (unsigned long long)ab.bytes,
	        (unsigned long long)ab.drops, argv[2], argv[1], (unsigned long long)ba.packets,
	        (unsigned long long)ba.bytes, (unsigned long long)ba.drops);
	return 0;
}
