/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the delivery benchmark.
 *
 *   benchtool run [-i IN] [-o OUT] [-l LOG -p TEXT -n N] [-m] [-t SECS] -- CMD [ARG...]
 *       Runs CMD (stdin from IN, stdout and stderr to OUT; default /dev/null)
 *       and prints one line:
 *         exit_ms=E done_ms=D status=S peak_pss_kb=P peak_uss_kb=U peak_anon_kb=A peak_rss_kb=R start_ms=T
 *       E: when CMD exited; D: when the N-th line of LOG containing TEXT
 *       appeared (the test server logs "STORED" when it accepts a message),
 *       or E without -l; both from the moment CMD was started. With -m the
 *       proportional set size of CMD is sampled every 2 ms from
 *       /proc/PID/smaps_rollup: P, U and A are the largest samples of the
 *       proportional set size, of the private pages (unique set size) and of
 *       the anonymous part of P; R is the peak RSS from wait4(). Waits for both events, at most SECS (default 300)
 *       seconds: then CMD is killed and the exit status is 2. T: CLOCK_MONOTONIC
 *       in ms when CMD was started (to match tundelay's trace).
 *
 *   benchtool listen ADDR PORT N
 *       Accepts N TCP connections on ADDR:PORT and closes them (at most 30 s).
 *       Prints "READY" once listening.
 *
 *   benchtool connect ADDR PORT N
 *       Times N TCP connects (SYN to SYN-ACK: one round trip) and prints
 *       "min_ms=... median_ms=... max_ms=...".
 *
 *   benchtool pss PID...
 *       Prints the summed proportional set size (KB) of the processes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct mem {
	long pss, uss, anon;	/* KB: proportional, private (clean + dirty), anonymous proportional */
};

static long
field_kb(const char *buf, const char *name)
{
	const char *p = strstr(buf, name);

	return p ? strtol(p + strlen(name), NULL, 10) : 0;
}

static int
mem_of(pid_t pid, struct mem *m)
{
	char path[64], buf[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if (!strstr(buf, "\nPss:"))
		return -1;
	m->pss = field_kb(buf, "\nPss:");
	m->uss = field_kb(buf, "\nPrivate_Clean:") + field_kb(buf, "\nPrivate_Dirty:");
	m->anon = field_kb(buf, "\nPss_Anon:");
	return 0;
}

static long
pss_kb(pid_t pid)
{
	struct mem m;

	return mem_of(pid, &m) < 0 ? -1 : m.pss;
}

struct logwatch {
	int fd;
	const char *text;
	long want, seen;
	char part[8192];
	size_t part_len;
};

/* Reads what was appended to the log; counts complete lines containing the text. */
static void
log_scan(struct logwatch *w)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(w->fd, buf, sizeof buf)) > 0) {
		ssize_t i;

		for (i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				w->part[w->part_len] = '\0';
				if (strstr(w->part, w->text))
					w->seen++;
				w->part_len = 0;
			} else if (w->part_len < sizeof w->part - 1) {
				w->part[w->part_len++] = buf[i];
			}
		}
	}
}

static int
cmd_run(int argc, char **argv)
{
	const char *in = "/dev/null", *out = "/dev/null", *logpath = NULL, *text = "STORED";
	struct logwatch w = { .fd = -1 };
	double timeout_s = 300, t0, exit_ms = -1, done_ms = -1;
	bool sample = false, exited = false;
	struct mem peak = { -1, -1, -1 };
	long want = 1;
	struct rusage ru = { 0 };
	int c, status = 0, pidfd, ino = -1;
	pid_t pid;

	while ((c = getopt(argc, argv, "i:o:l:p:n:mt:")) != -1) {
		switch (c) {
		case 'i': in = optarg; break;
		case 'o': out = optarg; break;
		case 'l': logpath = optarg; break;
		case 'p': text = optarg; break;
		case 'n': want = atol(optarg); break;
		case 'm': sample = true; break;
		case 't': timeout_s = atof(optarg); break;
		default: return 64;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "benchtool run: no command\n");
		return 64;
	}
	if (logpath) {
		w.fd = open(logpath, O_RDONLY | O_CLOEXEC);
		if (w.fd < 0) {
			fprintf(stderr, "benchtool run: %s: %s\n", logpath, strerror(errno));
			return 1;
		}
		w.text = text;
		w.want = want;
		ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (ino < 0 || inotify_add_watch(ino, logpath, IN_MODIFY) < 0) {
			perror("benchtool run: inotify");
			return 1;
		}
		log_scan(&w);
	}

	t0 = now_ms();
	pid = fork();
	if (pid < 0) {
		perror("benchtool run: fork");
		return 1;
	}
	if (pid == 0) {
		int fi = open(in, O_RDONLY), fo = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fi < 0 || fo < 0 || dup2(fi, 0) < 0 || dup2(fo, 1) < 0 || dup2(fo, 2) < 0)
			_exit(127);
		execvp(argv[optind], argv + optind);
		_exit(127);
	}
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		perror("benchtool run: pidfd_open");
		return 1;
	}
	if (logpath && w.seen >= w.want)
		done_ms = 0;
	for (;;) {
		struct pollfd p[2] = { { .fd = exited ? -1 : pidfd, .events = POLLIN },
		                       { .fd = ino, .events = POLLIN } };
		double t = now_ms() - t0;
		int to;

		if (exited && (!logpath || done_ms >= 0))
			break;
		if (t > timeout_s * 1e3) {
			fprintf(stderr, "benchtool run: timed out after %.0f s (%ld of %ld \"%s\" seen)\n",
			        timeout_s, w.seen, w.want, text);
			if (!exited) {
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
			}
			printf("exit_ms=%.1f done_ms=-1 status=2 peak_pss_kb=%ld peak_uss_kb=%ld "
			       "peak_anon_kb=%ld peak_rss_kb=0\n", exit_ms, peak.pss, peak.uss, peak.anon);
			return 2;
		}
		to = (int)(timeout_s * 1e3 - t) + 1;
		if (sample && !exited)
			to = 2;
		if (poll(p, ino >= 0 ? 2 : 1, to) < 0 && errno != EINTR) {
			perror("benchtool run: poll");
			return 1;
		}
		if (sample && !exited) {
			struct mem m;

			if (mem_of(pid, &m) == 0) {
				if (m.pss > peak.pss)
					peak.pss = m.pss;
				if (m.uss > peak.uss)
					peak.uss = m.uss;
				if (m.anon > peak.anon)
					peak.anon = m.anon;
			}
		}
		if (logpath && done_ms < 0 && (p[1].revents & POLLIN)) {
			char evbuf[4096];

			while (read(ino, evbuf, sizeof evbuf) > 0)
				;
			log_scan(&w);
			if (w.seen >= w.want)
				done_ms = now_ms() - t0;
		}
		if (!exited && (p[0].revents & POLLIN)) {
			if (wait4(pid, &status, 0, &ru) == pid) {
				exit_ms = now_ms() - t0;
				exited = true;
			}
		}
	}
	if (!logpath)
		done_ms = exit_ms;
	printf("exit_ms=%.1f done_ms=%.1f status=%d peak_pss_kb=%ld peak_uss_kb=%ld peak_anon_kb=%ld "
	       "peak_rss_kb=%ld start_ms=%.3f\n", exit_ms, done_ms,
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), peak.pss, peak.uss, peak.anon,
	       ru.ru_maxrss, t0);
	return 0;
}

static int
sockaddr_of(const char *addr, const char *port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)atoi(port));
	if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1) {
		fprintf(stderr, "benchtool: not an IPv4 address: %s\n", addr);
		return -1;
	}
	return 0;
}

static int
cmd_listen(int argc, char **argv)
{
	struct sockaddr_in sa;
	int fd, one = 1, n, i;

	if (argc != 4 || sockaddr_of(argv[1], argv[2], &sa) < 0)
		return 64;
	n = atoi(argv[3]);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) {
		perror("benchtool listen");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	alarm(30);
	for (i = 0; i < n; i++) {
		int c = accept(fd, NULL, NULL);

		if (c >= 0)
			close(c);
	}
	return 0;
}

static int
cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
cmd_connect(int argc, char **argv)
{
	struct sockaddr_in sa;
	double ms[100];
	int n, i;

	if (argc != 4 || sockaddr_of(argv[1], argv[2], &sa) < 0)
		return 64;
	n = atoi(argv[3]);
	if (n < 1 || n > 100)
		return 64;
	for (i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		double t = now_ms();

		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
			perror("benchtool connect");
			return 1;
		}
		ms[i] = now_ms() - t;
		close(fd);
		usleep(20000);
	}
	qsort(ms, (size_t)n, sizeof *ms, cmpd);
	printf("min_ms=%.2f median_ms=%.2f max_ms=%.2f\n", ms[0], ms[n / 2], ms[n - 1]);
	return 0;
}

static int
cmd_pss(int argc, char **argv)
{
	long sum = 0;
	int i;

	for (i = 1; i < argc; i++) {
		long p = pss_kb((pid_t)atoi(argv[i]));

		if (p > 0)
			sum += p;
	}
	printf("%ld\n", sum);
	return 0;
}

int
main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "listen") == 0)
		return cmd_listen(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "connect") == 0)
		return cmd_connect(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "pss") == 0)
		return cmd_pss(argc - 1, argv + 1);
	fprintf(stderr, "usage: benchtool run|listen|connect|pss ...\n");
	return 64;
}
