/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

int fs_write_all(int fd, const void *buf, size_t len);
ssize_t fs_read_full(int fd, void *buf, size_t len);
int fs_read_file(int dirfd, const char *name, size_t max, char **out, size_t *out_len);
int fs_replace(int dirfd, const char *name, const void *data, size_t len);
int fs_reserve(int dirfd, const char *name, size_t len);
void fs_unreserve(int dirfd, const char *name);
bool fs_tmp_target(const char *tmp, char *name, size_t len);
int fs_publish(int fromfd, const char *from, int tofd, const char *to);
int fs_private_dir(int dirfd, const char *name, bool create);
int fs_mkdir_parents(const char *path);
