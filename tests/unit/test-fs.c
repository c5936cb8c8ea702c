/* SPDX-License-Identifier: MIT */
/*
 * fs.c: whole-file replacement, publishing without replacing, private
 * directories and small-file reads, in a fresh directory under $TMPDIR.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs.h"
#include "test.h"

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static size_t
count_entries(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd)))
		return (size_t)-1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
test_replace_and_read(int dfd)
{
	char *buf = NULL, big[20000];
	size_t len = 0;
	struct stat st;

	CASE("replace: creates the file, 0600, nothing else left");
	CHECK_INT(fs_replace(dfd, "state", "one\n", 4), 0);
	CHECK_INT(count_entries(dfd), 1);
	CHECK_INT(fstatat(dfd, "state", &st, 0), 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(fs_read_file(dfd, "state", 100, &buf, &len), 0);
	CHECK_MEM_LIT(buf, len, "one\n");
	CHECK_INT(buf[len], '\0');
	free(buf);

	CASE("replace: replaces whole");
	CHECK_INT(fs_replace(dfd, "state", "2", 1), 0);
	CHECK_INT(fs_read_file(dfd, "state", 100, &buf, &len), 0);
	CHECK_MEM_LIT(buf, len, "2");
	free(buf);
	CHECK_INT(count_entries(dfd), 1);

	CASE("replace: an empty file");
	CHECK_INT(fs_replace(dfd, "state", "", 0), 0);
	CHECK_INT(fs_read_file(dfd, "state", 100, &buf, &len), 0);
	CHECK_INT(len, 0);
	free(buf);

	CASE("replace: a name too long");
	{
		char name[300];

		memset(name, 'a', sizeof name - 1);
		name[sizeof name - 1] = '\0';
		CHECK_INT(fs_replace(dfd, name, "x", 1), -ENAMETOOLONG);
	}

	CASE("read_file: limits");
	memset(big, 'b', sizeof big);
	CHECK_INT(fs_replace(dfd, "big", big, sizeof big), 0);
	CHECK_INT(fs_read_file(dfd, "big", sizeof big, &buf, &len), 0);
	CHECK_INT(len, sizeof big);
	CHECK(memcmp(buf, big, len) == 0);
	free(buf);
	CHECK_INT(fs_read_file(dfd, "big", sizeof big - 1, &buf, &len), -EFBIG);
	CHECK_INT(fs_read_file(dfd, "big", 100, &buf, &len), -EFBIG);
	CHECK_INT(fs_read_file(dfd, "absent", 100, &buf, &len), -ENOENT);

	CASE("read_file: a symbolic link is not followed");
	CHECK_INT(symlinkat("big", dfd, "link"), 0);
	CHECK_INT(fs_read_file(dfd, "link", 100000, &buf, &len), -ELOOP);
	CHECK_INT(fs_replace(dfd, "link", "x", 1), 0);
	CHECK_INT(fstatat(dfd, "link", &st, AT_SYMLINK_NOFOLLOW), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(fs_read_file(dfd, "big", sizeof big, &buf, &len), 0);
	CHECK_INT(len, sizeof big);
	free(buf);
	test_case_name[0] = '\0';
}

/* Room reserved for a replacement: the temporary sibling, allocated, then written over or given back. */
static void
test_reserve(int dfd)
{
	char name[32], *got = NULL;
	struct stat st;
	size_t len = 0;

	CASE("fs_reserve allocates .NAME.tmp, which fs_tmp_target names");
	CHECK_INT(fs_reserve(dfd, "res", 100000), 0);
	CHECK_INT(fstatat(dfd, ".res.tmp", &st, 0), 0);
	CHECK((uint64_t)st.st_blocks * 512 >= 100000);
	CHECK(fs_tmp_target(".res.tmp", name, sizeof name));
	CHECK_STR(name, "res");
	CHECK(!fs_tmp_target("res", name, sizeof name));
	CHECK(!fs_tmp_target(".res", name, sizeof name));
	CHECK(!fs_tmp_target(".tmp", name, sizeof name));
	CHECK(!fs_tmp_target(".a-much-longer-name-than-fits.tmp", name, 8));

	CASE("fs_replace over a reservation: exactly the new bytes, no temporary left");
	CHECK_INT(fs_replace(dfd, "res", "small", 5), 0);
	CHECK_INT(fs_read_file(dfd, "res", 1024, &got, &len), 0);
	CHECK_MEM(got, len, "small", 5);
	free(got);
	CHECK(fstatat(dfd, ".res.tmp", &st, 0) < 0);

	CASE("fs_unreserve gives the room back");
	CHECK_INT(fs_reserve(dfd, "res2", 4096), 0);
	fs_unreserve(dfd, "res2");
	CHECK(fstatat(dfd, ".res2.tmp", &st, 0) < 0);
	test_case_name[0] = '\0';
}

static void
test_publish(int dfd)
{
	int a, b;
	char *buf;
	size_t len;

	CASE("publish: moves, never replaces");
	CHECK_INT(mkdirat(dfd, "a", 0700), 0);
	CHECK_INT(mkdirat(dfd, "b", 0700), 0);
	a = openat(dfd, "a", O_RDONLY | O_DIRECTORY);
	b = openat(dfd, "b", O_RDONLY | O_DIRECTORY);
	CHECK_INT(fs_replace(a, "m1", "first", 5), 0);
	CHECK_INT(fs_publish(a, "m1", b, "M"), 0);
	CHECK_INT(count_entries(a), 0);
	CHECK_INT(fs_replace(a, "m2", "second", 6), 0);
	CHECK_INT(fs_publish(a, "m2", b, "M"), -EEXIST);
	CHECK_INT(count_entries(a), 1);
	CHECK_INT(fs_read_file(b, "M", 100, &buf, &len), 0);
	CHECK_MEM_LIT(buf, len, "first");
	free(buf);
	CHECK_INT(fs_publish(a, "absent", b, "N"), -ENOENT);
	close(a);
	close(b);
	test_case_name[0] = '\0';
}

static void
test_private_dir(int dfd)
{
	struct stat st;
	int fd;

	CASE("private_dir: create");
	CHECK_INT(fs_private_dir(dfd, "p", false), -ENOENT);
	fd = fs_private_dir(dfd, "p", true);
	CHECK(fd >= 0);
	CHECK_INT(fstat(fd, &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_INT(st.st_mode & 0777, 0700);
	close(fd);
	fd = fs_private_dir(dfd, "p", true);
	CHECK(fd >= 0);
	close(fd);

	CASE("private_dir: tightens group and other permissions");
	CHECK_INT(mkdirat(dfd, "loose", 0700), 0);
	CHECK_INT(fchmodat(dfd, "loose", 0757, 0), 0);
	fd = fs_private_dir(dfd, "loose", false);
	CHECK(fd >= 0);
	CHECK_INT(fstatat(dfd, "loose", &st, 0), 0);
	CHECK_INT(st.st_mode & 0777, 0700);
	close(fd);

	CASE("private_dir: refuses a symbolic link and a file");
	CHECK_INT(symlinkat("p", dfd, "plink"), 0);
	CHECK_INT(fs_private_dir(dfd, "plink", true), -ENOTDIR);
	CHECK_INT(fs_replace(dfd, "afile", "", 0), 0);
	CHECK_INT(fs_private_dir(dfd, "afile", true), -ENOTDIR);
	test_case_name[0] = '\0';
}

static void
test_mkdir_parents(const char *base)
{
	char *path;
	struct stat st;

	CASE("mkdir_parents: nested, 0755, existing fine");
	if (asprintf(&path, "%s/x/y/z", base) < 0)
		exit(99);
	CHECK_INT(fs_mkdir_parents(path), 0);
	CHECK_INT(stat(path, &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_INT(st.st_mode & 0777, 0755);
	CHECK_INT(fs_mkdir_parents(path), 0);
	free(path);

	CASE("mkdir_parents: a file in the way");
	if (asprintf(&path, "%s/afile/sub", base) < 0)
		exit(99);
	CHECK_INT(fs_mkdir_parents(path), -ENOTDIR);
	free(path);
	test_case_name[0] = '\0';
}

static void
test_write_read_all(void)
{
	static char data[200000];
	char *back = xmalloc(sizeof data + 1);
	int p[2];
	size_t i;
	pid_t pid;

	CASE("write_all and read_full through a pipe");
	for (i = 0; i < sizeof data; i++)
		data[i] = (char)(i % 251);
	if (pipe(p) < 0)
		exit(99);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		_exit(fs_write_all(p[1], data, sizeof data) == 0 ? 0 : 1);
	}
	close(p[1]);
	CHECK_INT(fs_read_full(p[0], back, sizeof data + 1), sizeof data);
	CHECK(memcmp(back, data, sizeof data) == 0);
	CHECK_INT(fs_read_full(p[0], back, 10), 0);
	close(p[0]);
	CHECK_INT(fs_write_all(-1, "x", 1), -EBADF);
	CHECK_INT(fs_read_full(-1, back, 1), -EBADF);
	free(back);
	{
		int status;

		waitpid(pid, &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	test_case_name[0] = '\0';
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");
	char *base;
	int dfd;

	umask(022);
	if (asprintf(&base, "%s/outbox-fs-XXXXXX", tmp && tmp[0] ? tmp : "/tmp") < 0 ||
	    !mkdtemp(base)) {
		perror("mkdtemp");
		return 99;
	}
	dfd = open(base, O_RDONLY | O_DIRECTORY);
	test_replace_and_read(dfd);
	test_reserve(dfd);
	test_publish(dfd);
	test_private_dir(dfd);
	test_mkdir_parents(base);
	test_write_read_all();
	close(dfd);
	nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(base);
	return test_exit("test-fs");
}
