/* SPDX-License-Identifier: MIT */
/*
 * Runs commands alternately, each with stdin from a file, and reports
 * min/median/max wall time and peak RSS per command, and the ratio of each
 * median to the first command's. Alternating spreads the machine's noise
 * evenly over the contenders.
 *
 *   runbench ROUNDS INPUT NAME 'ARGV...' [NAME 'ARGV...']...
 *
 * ARGV is split at spaces (no quoting); a command must exit 0.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS 8

struct cmd {
	const char *name;
	char *argv[64];
	double *ms;
	long maxrss_kb;
};

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
run(struct cmd *c, const char *input, long *rss)
{
	struct timespec t0, t1;
	struct rusage ru;
	int status;
	pid_t pid;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = fork();
	if (pid == 0) {
		int fd = open(input, O_RDONLY);

		if (fd < 0 || dup2(fd, 0) < 0)
			_exit(127);
		execv(c->argv[0], c->argv);
		_exit(127);
	}
	if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) {
		perror("runbench");
		exit(1);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "runbench: %s exited with %d\n", c->name, WEXITSTATUS(status));
		exit(1);
	}
	*rss = ru.ru_maxrss;
	return (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
}

int
main(int argc, char **argv)
{
	struct cmd cmds[MAX_CMDS];
	int rounds, n = 0, i, r;
	const char *input;

	if (argc < 5 || (argc - 3) % 2 != 0 || (argc - 3) / 2 > MAX_CMDS) {
		fprintf(stderr, "usage: runbench ROUNDS INPUT NAME 'ARGV' [NAME 'ARGV']...\n");
		return 64;
	}
	rounds = atoi(argv[1]);
	input = argv[2];
	for (i = 3; i < argc; i += 2, n++) {
		char *s = strdup(argv[i + 1]), *save = NULL, *tok;
		int k = 0;

		cmds[n].name = argv[i];
		for (tok = strtok_r(s, " ", &save); tok && k < 63; tok = strtok_r(NULL, " ", &save))
			cmds[n].argv[k++] = tok;
		cmds[n].argv[k] = NULL;
		cmds[n].ms = calloc((size_t)rounds, sizeof(double));
		cmds[n].maxrss_kb = 0;
	}
	/* One warm-up round: page cache, dynamic linker. */
	for (i = 0; i < n; i++) {
		long rss;

		run(&cmds[i], input, &rss);
	}
	for (r = 0; r < rounds; r++)
		for (i = 0; i < n; i++) {
			long rss;

			cmds[i].ms[r] = run(&cmds[i], input, &rss);
			if (rss > cmds[i].maxrss_kb)
				cmds[i].maxrss_kb = rss;
		}
	printf("%-22s %9s %9s %9s %10s %7s\n", "command", "min ms", "median", "max ms", "peak RSS", "ratio");
	for (i = 0; i < n; i++) {
		double med, base;

		qsort(cmds[i].ms, (size_t)rounds, sizeof(double), cmp);
		med = cmds[i].ms[rounds / 2];
		base = cmds[0].ms[rounds / 2];
		printf("%-22s %9.3f %9.3f %9.3f %7ld KB %7.2f\n", cmds[i].name, cmds[i].ms[0], med,
		       cmds[i].ms[rounds - 1], cmds[i].maxrss_kb, med / base);
	}
	return 0;
}
