/* SPDX-License-Identifier: MIT */
#pragma once

int doorbell_path(char **out);
int doorbell_ring(void);
