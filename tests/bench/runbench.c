/* SPDX-License-Identifier: MIT */
/*
 * Runs commands alternately, each with stdin from a file, and reports
 * min/median/max wall time and peak RSS per command, and the ratio of each
 * median to the first command's. Alternating spreads the machine's noise
 * evenly over the contenders.
 *
 *   runbench [-w 'ARGV...'] [-b NAME] ROUNDS INPUT NAME 'ARGV...' [NAME 'ARGV...']...
 *
 * ARGV is split at spaces (no quoting); a command must exit 0.
 * -w: a command run, untimed, after every timed run, to wait until work a
 *     contender left in the background (a queue manager picking the message
 *     up) is done, so that it does not slow down the next contender.
 * -b: a second ratio column, each median over NAME's.
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
	struct cmd cmds[MAX_CMDS], settle = { .name = "settle" };
	int rounds, n = 0, i, r, c, base2 = -1;
	const char *input, *settle_cmd = NULL, *base2_name = NULL;

	while ((c = getopt(argc, argv, "+w:b:")) != -1) {
		switch (c) {
		case 'w':
			settle_cmd = optarg;
			break;
		case 'b':
			base2_name = optarg;
			break;
		default:
			return 64;
		}
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (argc < 5 || (argc - 3) % 2 != 0 || (argc - 3) / 2 > MAX_CMDS) {
		fprintf(stderr, "usage: runbench [-w 'ARGV'] [-b NAME] ROUNDS INPUT NAME 'ARGV' [NAME 'ARGV']...\n");
		return 64;
	}
	if (settle_cmd) {
		char *s = strdup(settle_cmd), *save = NULL, *tok;
		int k = 0;

		for (tok = strtok_r(s, " ", &save); tok && k < 63; tok = strtok_r(NULL, " ", &save))
			settle.argv[k++] = tok;
		settle.argv[k] = NULL;
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
		if (base2_name && strcmp(base2_name, cmds[n].name) == 0)
			base2 = n;
	}
	/* One warm-up round: page cache, dynamic linker. */
	for (i = 0; i < n; i++) {
		long rss;

		run(&cmds[i], input, &rss);
		if (settle_cmd)
			run(&settle, "/dev/null", &rss);
	}
	for (r = 0; r < rounds; r++)
		for (i = 0; i < n; i++) {
			long rss;

			cmds[i].ms[r] = run(&cmds[i], input, &rss);
			if (rss > cmds[i].maxrss_kb)
				cmds[i].maxrss_kb = rss;
			if (settle_cmd)
				run(&settle, "/dev/null", &rss);
		}
	for (i = 0; i < n; i++)
		qsort(cmds[i].ms, (size_t)rounds, sizeof(double), cmp);
	printf("%-22s %9s %9s %9s %10s %9s", "command", "min ms", "median", "max ms", "peak RSS", "/ first");
	if (base2 >= 0)
		printf("  / %s", cmds[base2].name);
	printf("\n");
	for (i = 0; i < n; i++) {
		double med, base;

		med = cmds[i].ms[rounds / 2];
		base = cmds[0].ms[rounds / 2];
		printf("%-22s %9.3f %9.3f %9.3f %7ld KB %9.2f", cmds[i].name, cmds[i].ms[0], med,
		       cmds[i].ms[rounds - 1], cmds[i].maxrss_kb, med / base);
		if (base2 >= 0)
			printf("  %*.2f", (int)strlen(cmds[base2].name) + 2, med / cmds[base2].ms[rounds / 2]);
		printf("\n");
	}
	return 0;
}
