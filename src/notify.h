/* SPDX-License-Identifier: MIT */
#pragma once

void notify_desktop(const char *summary, const char *body);
