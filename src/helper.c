/* SPDX-License-Identifier: MIT */
/*
 * The programs outboxd runs and waits for: password-command and
 * token-command (through /bin/sh), and outbox-desktop, which holds the
 * keyring lookup and the desktop notification so that outboxd maps neither
 * libsecret nor GIO and never speaks D-Bus itself.
 *
 * A child gets /dev/null as its input, a pipe as its output and our
 * standard error (the journal); the signals outboxd blocks or ignores are
 * unblocked and back to their defaults in it. It is killed when its time is
 * up, and reaped on every path: no zombie is left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helper.h"

static long
elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/*
 * Runs argv[0] (a path, not looked up in PATH) and keeps the first outsize
 * bytes of its output in out (none when out is NULL; the rest is read and
 * dropped, so the child never blocks on a full pipe). 0 with its wait
 * status in *status once it has exited; -ETIMEDOUT when its output did not
 * end within timeout_ms, or -errno when it could not be watched (it was
 * killed); -errno when it could not be run.
 */
int
helper_run(char *const argv[], int timeout_ms, char *out, size_t outsize, size_t *outlen, int *status)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct timespec start;
	sigset_t none, dfl;
	char drop[512];
	size_t len = 0;
	int pipefd[2], r = 0, k;
	pid_t pid;

	*outlen = 0;
	*status = 0;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
	k = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(pipefd[1]);
	if (k != 0) {
		close(pipefd[0]);
		return -k;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
		long waited = elapsed_ms(&start);
		bool keep = out && len < outsize;
		ssize_t n;

		if (waited >= timeout_ms) {
			r = -ETIMEDOUT;
			break;
		}
		k = poll(&p, 1, (int)(timeout_ms - waited));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k == 0 ? -ETIMEDOUT : -errno;
			break;
		}
		n = keep ? read(pipefd[0], out + len, outsize - len) : read(pipefd[0], drop, sizeof drop);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (keep)
			len += (size_t)n;
	}
	close(pipefd[0]);
	if (r < 0)
		kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	explicit_bzero(drop, sizeof drop);	/* it may have held the end of a secret */
	*outlen = len;
	return r;
}
