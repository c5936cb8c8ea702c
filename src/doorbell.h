/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/un.h>

int doorbell_path(char **out);
int doorbell_address(struct sockaddr_un *sa, char **path);
int doorbell_ring(void);
