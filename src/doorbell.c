/* SPDX-License-Identifier: MIT */
/*
 * The doorbell: a connection to $XDG_RUNTIME_DIR/outbox.sock (under cron,
 * without that variable, /run/user/UID/outbox.sock) tells outboxd that mail
 * is due. systemd starts the service on it; nobody answering is no error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "doorbell.h"

int
doorbell_path(char **out)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	int n;

	if (rt && rt[0] == '/')
		n = asprintf(out, "%s/outbox.sock", rt);
	else
		n = asprintf(out, "/run/user/%u/outbox.sock", (unsigned)getuid());
	return n < 0 ? -ENOMEM : 0;
}

/* Never blocks: a full backlog or a dead socket only means the mail waits. */
int
doorbell_ring(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *path;
	int fd, r = 0;

	r = doorbell_path(&path);
	if (r < 0)
		return r;
	if (strlen(path) >= sizeof sa.sun_path) {
		free(path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	free(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
		r = -errno;
	close(fd);
	return r;
}
