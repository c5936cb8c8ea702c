/* SPDX-License-Identifier: MIT */
/*
 * outboxd: the delivery service. Started by systemd when sendmail rings the
 * doorbell (socket activation), by outbox.timer at login, or by hand. It
 * delivers what is due, sleeps until the next deferred retry, and exits when
 * nothing is left to do: nothing runs while the queue is empty.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "deliver.h"
#include "doorbell.h"
#include "log.h"
#include "paths.h"
#include "queue.h"

#define KEYRING_RECHECK_MS 30000
#define LINGER_MS 10000

struct daemon {
	struct queue *q;
	struct config *cfg;
	char *cfg_path;
	int listen_fd;
	int sig_fd;
	char *own_socket;	/* bound by us (not socket activation): removed at exit */
	bool once;
	char status[800];
	struct deliver d;	/* one for the daemon's life: its session may outlast a run */
};

static void
set_status(struct daemon *dm, const char *text)
{
	if (strcmp(dm->status, text) == 0)
		return;
	snprintf(dm->status, sizeof dm->status, "%s", text);
	sd_notifyf(0, "STATUS=%s", text);
}

static void
status_cb(void *userdata, const char *text)
{
	set_status(userdata, text);
}

/* Between messages: has SIGTERM or SIGINT arrived? (They are blocked; signalfd has them.) */
static bool
stop_cb(void *userdata)
{
	sigset_t pending;

	(void)userdata;
	return sigpending(&pending) == 0 && (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT));
}

static int
load_config(struct daemon *dm)
{
	struct config *c = NULL;
	char *error = NULL;
	int r;

	r = config_load(dm->cfg_path, &c, &error);
	if (r == -ENOENT) {
		log_error("no configuration at %s: run outbox setup", dm->cfg_path);
		return r;
	}
	if (r < 0) {
		log_error("%s", error);
		free(error);
		return r;
	}
	config_free(dm->cfg);
	dm->cfg = c;
	return 0;
}

/* Without socket activation: bind the doorbell ourselves, unless someone answers there. */
static int
bind_socket(struct daemon *dm)
{
	struct sockaddr_un sa;
	char *path;
	int fd, r;

	r = doorbell_address(&sa, &path);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		free(path);
		return -errno;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		close(fd);
		free(path);
		return -EADDRINUSE;
	}
	(void)unlink(path);	/* a stale socket of a dead outboxd */
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
		r = -errno;
		close(fd);
		free(path);
		return r;
	}
	dm->own_socket = path;
	return fd;
}

static void
drain_doorbell(struct daemon *dm)
{
	int fd;

	while ((fd = accept4(dm->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
		close(fd);
}

static void
describe(struct daemon *dm, const struct deliver_result *res)
{
	char text[700];

	if (res->outcome == DELIVER_HELD_ACCOUNT) {
		snprintf(text, sizeof text, "holding: %s", res->reason);
	} else if (res->outcome == DELIVER_HELD_SECRET) {
		snprintf(text, sizeof text, "holding: %s", res->reason);
	} else if (res->next) {
		char when[32];
		time_t t = (time_t)res->next;
		struct tm tm;

		localtime_r(&t, &tm);
		strftime(when, sizeof when, "%H:%M", &tm);
		snprintf(text, sizeof text, "deferred: next try %s (%u waiting)", when, res->waiting);
	} else {
		snprintf(text, sizeof text, "idle");
	}
	set_status(dm, text);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Deliver, then wait: for the doorbell, a signal, the next deferred retry, a
 * locked keyring's recheck, or the idle exit. After a run the session stays
 * open for LINGER_MS, so a burst of mail (a git send-email series rings once
 * a message) shares one connection and one login.
 */
static int
run(struct daemon *dm)
{
	struct deliver_result res;
	int status = EX_OK;

	if (deliver_init(&dm->d, dm->q, dm->cfg) < 0)
		return EX_OSERR;
	for (;;) {
		int64_t deadline, linger_end = 0;
		bool woken = false;

		dm->d.status = status_cb;
		dm->d.stop = stop_cb;
		dm->d.userdata = dm;
		dm->d.linger = !dm->once;
		if (deliver_run(&dm->d, &res) < 0)
			log_error("cannot read the queue %s", dm->q->path);
		describe(dm, &res);
		if (dm->once) {
			status = res.waiting || res.outcome != DELIVER_IDLE ? EX_TEMPFAIL : EX_OK;
			break;
		}
		if (res.outcome == DELIVER_HELD_SECRET)
			deadline = now_ms() + KEYRING_RECHECK_MS;
		else if (res.next && res.outcome == DELIVER_IDLE)
			deadline = now_ms() + ((res.next - (int64_t)time(NULL)) * 1000);
		else
			deadline = now_ms() + dm->cfg->idle_exit * 1000;
		if (dm->d.conn)
			linger_end = now_ms() + (LINGER_MS < dm->cfg->idle_exit * 1000 ? LINGER_MS
			                                                               : dm->cfg->idle_exit * 1000);
		while (!woken) {
			struct pollfd p[2] = {
				{ .fd = dm->listen_fd, .events = POLLIN },
				{ .fd = dm->sig_fd, .events = POLLIN },
			};
			int64_t until = linger_end && linger_end < deadline ? linger_end : deadline;
			int64_t wait = until - now_ms();
			int n;

			n = poll(p, 2, wait < 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				status = EX_OSERR;
				goto out;
			}
			if (n == 0) {
				if (linger_end && now_ms() >= linger_end) {
					deliver_close(&dm->d);	/* nobody rang: QUIT */
					linger_end = 0;
					continue;
				}
				if (res.outcome == DELIVER_HELD_SECRET || (res.next && res.outcome == DELIVER_IDLE))
					break;	/* time to retry */
				goto out;	/* idle: exit; the socket starts us again */
			}
			if (p[1].revents & POLLIN) {
				struct signalfd_siginfo si;

				if (read(dm->sig_fd, &si, sizeof si) != sizeof si)
					continue;
				if (si.ssi_signo != SIGHUP)
					goto out;
				sd_notify(0, "RELOADING=1");
				if (load_config(dm) == 0) {
					/* A new configuration may name another server: start afresh. */
					deliver_clear(&dm->d);
					if (deliver_init(&dm->d, dm->q, dm->cfg) < 0) {
						status = EX_OSERR;
						goto out;
					}
					linger_end = 0;
					log_info("configuration reloaded from %s", dm->cfg_path);
				}
				sd_notify(0, "READY=1");
			}
			if (p[0].revents & POLLIN) {
				drain_doorbell(dm);
				woken = true;
			}
		}
	}
out:
	deliver_clear(&dm->d);
	return status;
}

static void
usage(FILE *f)
{
	fputs("Usage: outboxd [--once]\n\n"
	      "Delivers the outbox queue. Normally started by systemd (outbox.socket).\n\n"
	      "  --once      deliver what is due now, then exit\n"
	      "              (exit 0: nothing waits; 75: mail is still deferred or held)\n"
	      "  --help      show this help\n"
	      "  --version   show the version\n", f);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "once", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct daemon dm = { .listen_fd = -1, .sig_fd = -1 };
	struct rlimit nocore = { 0, 0 };
	sigset_t mask;
	char *qpath = NULL;
	int c, r, status;

	/* The password passes through this process: no core dumps, no ptrace by the user's other programs. */
	(void)prctl(PR_SET_DUMPABLE, 0);
	(void)setrlimit(RLIMIT_CORE, &nocore);
	umask(077);

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			dm.once = true;
			break;
		case 'h':
			usage(stdout);
			return EX_OK;
		case 'V':
			puts("outboxd " VERSION);
			return EX_OK;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return EX_USAGE;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	dm.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	if (paths_config(&dm.cfg_path) < 0) {
		log_error("cannot find the home directory");
		status = EX_CONFIG;
		goto out;
	}
	if (load_config(&dm) < 0) {
		sd_notifyf(0, "STATUS=configuration error in %s", dm.cfg_path);
		status = EX_CONFIG;
		goto out;
	}
	r = paths_queue(&qpath);
	if (r >= 0)
		r = queue_open(qpath, false, &dm.q);
	if (r == -ENOENT) {
		/* No queue yet: nothing was ever queued, so nothing to do. */
		sd_notify(0, "READY=1\nSTATUS=no queue yet");
		status = EX_OK;
		goto out;
	}
	if (r < 0) {
		log_error("cannot open the queue %s: %s", qpath ? qpath : "?", strerror(-r));
		status = EX_CANTCREAT;
		goto out;
	}
	deliver_sweep(dm.q);

	if (!dm.once) {
		r = sd_listen_fds(1);
		if (r > 1) {
			log_error("expected one socket from systemd, got %d", r);
			status = EX_USAGE;
			goto out;
		}
		if (r == 1) {
			dm.listen_fd = SD_LISTEN_FDS_START;
			(void)fcntl(dm.listen_fd, F_SETFL, fcntl(dm.listen_fd, F_GETFL) | O_NONBLOCK);
		} else {
			r = bind_socket(&dm);
			if (r == -EADDRINUSE) {
				log_info("another outboxd answers the doorbell; leaving it the queue");
				status = EX_OK;
				goto out;
			}
			if (r < 0) {
				log_error("cannot listen on the doorbell socket: %s", strerror(-r));
				status = EX_OSERR;
				goto out;
			}
			dm.listen_fd = r;
		}
		drain_doorbell(&dm);
	}
	sd_notify(0, "READY=1\nSTATUS=starting");
	status = run(&dm);
	sd_notify(0, "STOPPING=1");
out:
	free(qpath);
	if (dm.own_socket) {
		unlink(dm.own_socket);
		free(dm.own_socket);
	}
	config_free(dm.cfg);
	free(dm.cfg_path);
	queue_free(dm.q);
	return status;
}
