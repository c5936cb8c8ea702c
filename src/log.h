/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <syslog.h>

void log_stderr(bool on);
void log_event(int priority, const char *id, const char *rcpt, const char *status,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define log_info(...) log_event(LOG_INFO, NULL, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_event(LOG_WARNING, NULL, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_event(LOG_ERR, NULL, NULL, NULL, __VA_ARGS__)
