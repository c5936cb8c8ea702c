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

/* The doorbell's socket address; *path (when asked for) is the caller's to free. */
int
doorbell_address(struct sockaddr_un *sa, char **path)
{
	char *p;
	int r;

	r = doorbell_path(&p);
	if (r < 0)
		return r;
	if (strlen(p) >= sizeof sa->sun_path) {
		free(p);
		return -ENAMETOOLONG;
	}
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	strcpy(sa->sun_path, p);
	if (path)
		*path = p;
	else
		free(p);
	return 0;
}

/* Never blocks: a full backlog or a dead socket only means the mail waits. */
int
doorbell_ring(void)
{
	struct sockaddr_un sa;
	int fd, r;

	r = doorbell_address(&sa, NULL);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
		r = -errno;
	close(fd);
	return r;
}
