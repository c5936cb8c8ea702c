/* SPDX-License-Identifier: MIT */
/*
 * Durability lives here. A file that other programs may read is made whole
 * under a temporary name, fsync()ed, renamed into place and its directory
 * fsync()ed: a reader sees the old file or the new one, never a half one,
 * and once a function here returns 0 the change survives a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

int
fs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads until len bytes or end of file; returns the count or -errno. */
ssize_t
fs_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Reads a whole small file, NUL-terminated; -EFBIG past max bytes. */
int
fs_read_file(int dirfd, const char *name, size_t max, char **out, size_t *out_len)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, r = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (cap - len < 4096) {
			char *nbuf;

			if (cap > max) {
				r = -EFBIG;
				goto out;
			}
			cap = cap ? cap * 2 : 8192;
			nbuf = realloc(buf, cap + 1);
			if (!nbuf) {
				r = -ENOMEM;
				goto out;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		r = -EFBIG;
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

/* The temporary sibling of name that fs_replace() writes and fs_reserve() allocates. */
static int
tmp_name(char tmp[static NAME_MAX + 1], const char *name)
{
	return (size_t)snprintf(tmp, NAME_MAX + 1, ".%s.tmp", name) > NAME_MAX ? -ENAMETOOLONG : 0;
}

/* The name whose temporary sibling tmp is (".NAME.tmp"), in name; false for any other file. */
bool
fs_tmp_target(const char *tmp, char *name, size_t len)
{
	size_t n = strlen(tmp);

	if (n < 6 || tmp[0] != '.' || strcmp(tmp + n - 4, ".tmp") != 0 || n - 5 >= len)
		return false;
	memcpy(name, tmp + 1, n - 5);
	name[n - 5] = '\0';
	return true;
}

/*
 * The temporary file is not truncated before the write but cut to length
 * after it: the blocks fs_reserve() allocated for it are written over, so a
 * full file system cannot fail a replacement that was reserved.
 */
int
fs_replace(int dirfd, const char *name, const void *data, size_t len)
{
	char tmp[NAME_MAX + 1];
	int fd, r;

	r = tmp_name(tmp, name);
	if (r < 0)
		return r;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	r = fs_write_all(fd, data, len);
	if (r < 0)
		goto out;
	if (ftruncate(fd, (off_t)len) < 0 || fsync(fd) < 0 || renameat(dirfd, tmp, dirfd, name) < 0 ||
	    fsync(dirfd) < 0)
		r = -errno;
	else
		tmp[0] = '\0';		/* renamed: nothing to remove */
out:
	close(fd);
	if (tmp[0])
		unlinkat(dirfd, tmp, 0);
	return r;
}

/*
 * Makes sure a later fs_replace(dirfd, name, ...) of up to len bytes finds
 * its blocks allocated (its temporary file, allocated now): -ENOSPC or
 * -EDQUOT when there is no room. Only those two errors mean anything: a
 * file system that cannot allocate ahead is not refused. fs_unreserve()
 * gives the blocks back when no replacement came.
 */
int
fs_reserve(int dirfd, const char *name, size_t len)
{
	char tmp[NAME_MAX + 1];
	int fd, r;

	r = tmp_name(tmp, name);
	if (r < 0)
		return r;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return errno == ENOSPC || errno == EDQUOT ? -errno : 0;
	r = posix_fallocate(fd, 0, (off_t)len);
	close(fd);
	if (r == ENOSPC || r == EDQUOT) {
		unlinkat(dirfd, tmp, 0);
		return -r;
	}
	return 0;
}

void
fs_unreserve(int dirfd, const char *name)
{
	char tmp[NAME_MAX + 1];

	if (tmp_name(tmp, name) == 0)
		(void)unlinkat(dirfd, tmp, 0);
}

/*
 * Moves a finished file to its public name, never replacing one that is
 * there (-EEXIST), and makes the new name durable. Both directories are on
 * one file system; the target directory is fsync()ed.
 */
int
fs_publish(int fromfd, const char *from, int tofd, const char *to)
{
	if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		/* File systems without RENAME_NOREPLACE: link() never replaces either. */
		if (linkat(fromfd, from, tofd, to, 0) < 0)
			return -errno;
		(void)unlinkat(fromfd, from, 0);
	}
	/*
	 * Only the new name needs to be durable. The old one is not fsync()ed
	 * away: after a crash it can at worst come back as a leftover in the
	 * source directory (tmp/), which nothing lists and the sweep removes.
	 */
	if (fsync(tofd) < 0)
		return -errno;
	return 0;
}

/*
 * Opens (and with create, makes) a directory that only its owner may use.
 * A directory owned by someone else, or a symbolic link, is refused; one
 * with group or other permissions is tightened to 0700.
 */
int
fs_private_dir(int dirfd, const char *name, bool create)
{
	struct stat st;
	int fd;

	if (create && mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	if (fstat(fd, &st) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	if (st.st_uid != geteuid()) {
		close(fd);
		return -EPERM;
	}
	if ((st.st_mode & 077) && fchmod(fd, 0700) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* mkdir -p for the parents of the queue (~/.local/share): mode 0755 as XDG expects. */
int
fs_mkdir_parents(const char *path)
{
	char *p, *s;
	int r = 0;

	p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;

		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			r = -errno;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return r;
}
