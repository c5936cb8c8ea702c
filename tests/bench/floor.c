/* SPDX-License-Identifier: MIT */
/*
 * The durability floor: the least any queueing sendmail must do. Reads
 * stdin into a new file in DIR, fsync()s it, renames it into place and
 * fsync()s the directory. Benchmarks compare outbox's sendmail with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	static char buf[1 << 16];
	char tmp[64], name[64];
	int dfd, fd;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: floor DIR < message\n");
		return 64;
	}
	dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		return 73;
	snprintf(tmp, sizeof tmp, ".tmp.%d", (int)getpid());
	snprintf(name, sizeof name, "msg.%d", (int)getpid());
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return 73;
	while ((n = read(0, buf, sizeof buf)) > 0) {
		char *p = buf;

		while (n > 0) {
			ssize_t w = write(fd, p, (size_t)n);

			if (w < 0)
				return 74;
			p += w;
			n -= w;
		}
	}
	if (n < 0 || fsync(fd) < 0 || close(fd) < 0 || renameat(dfd, tmp, dfd, name) < 0 || fsync(dfd) < 0)
		return 74;
	return 0;
}
