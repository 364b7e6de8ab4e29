/*
 * Open file description (OFD) lock lifetime, in the three shapes of xfstests
 * generic/478 (src/t_ofd_locks.c), written afresh and made to fail instead of hang.
 *
 *   ofd_locks DIR      (DIR on the filesystem under test; exits non-zero on failure)
 *
 * In every case a setter process opens DIR/ofd_locks.testfile and takes an
 * F_OFD_SETLKW write lock on bytes 0-9, then:
 *   plain        clone() (no CLONE_FILES) a child that closes its copy of the fd;
 *                the parent's reference keeps the description, and so the lock.
 *   clone_files  clone(CLONE_FILES) a child that closes the shared fd: that drops
 *                the last reference to the description, which releases its lock.
 *   dup_close    dup() the fd and close the duplicate: the description lives on,
 *                and an OFD lock (unlike a classic POSIX lock) survives.
 * It then tells a getter process (pipe) to ask F_OFD_GETLK for a write lock on 0-9
 * from its own description, and waits for it (second pipe) before exiting. ext4:
 * plain and dup_close see F_WRLCK 0-9, l_pid -1; clone_files sees F_UNLCK.
 * Once both have exited nothing is open, so no lock may be left: checked too. The
 * cases run in a row on one file, as in generic/478, so a leaked lock blocks the
 * next setter's F_OFD_SETLKW; an alarm(20) watchdog in every process turns that
 * hang into "setter: F_OFD_SETLKW: still blocked after 20 s".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLKW 38
#endif

enum shape { PLAIN, CLONE_FILES_CLOSE, DUP_CLOSE };

static char path[4096];
static char child_stack[64 * 1024] __attribute__((aligned(16)));

static void on_alarm(int sig) { (void)sig; }

/* SIGALRM in 20 s; no SA_RESTART, so a call still blocked then fails with EINTR. */
static void watchdog(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	alarm(20);
}

/* One line to the runner; a single write(2) of < PIPE_BUF bytes is atomic. */
static void report(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(fd, line, n) < 0)
		_exit(3);
}

static const char *why(int e) { return e == EINTR ? "still blocked after 20 s" : strerror(e); }

static struct flock bytes(short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fl; /* l_pid stays 0, as the OFD commands require */
}

static int open_or_exit(const char *who, int rep)
{
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		report(rep, "%s: open: %s", who, strerror(errno));
		_exit(1);
	}
	return fd;
}

static int close_fd(void *arg) { return close(*(int *)arg), 0; }

static void setter(enum shape shape, int go, int finished, int rep)
{
	watchdog();
	int fd = open_or_exit("setter", rep);
	struct flock fl = bytes(F_WRLCK, 0, 10);
	if (fcntl(fd, F_OFD_SETLKW, &fl) != 0) {
		report(rep, "setter: F_OFD_SETLKW: %s", why(errno));
		_exit(1);
	}
	if (shape == DUP_CLOSE) {
		int dup_fd = dup(fd);
		if (dup_fd < 0 || close(dup_fd) != 0) {
			report(rep, "setter: dup/close: %s", strerror(errno));
			_exit(1);
		}
	} else {
		int flags = SIGCHLD | (shape == CLONE_FILES_CLOSE ? CLONE_FILES : 0);
		pid_t child = clone(close_fd, child_stack + sizeof(child_stack), flags, &fd);
		if (child < 0 || waitpid(child, NULL, 0) != child) {
			report(rep, "setter: clone/wait: %s", why(errno));
			_exit(1);
		}
	}
	char c = 'g';
	if (write(go, &c, 1) != 1)
		_exit(1);
	ssize_t n = read(finished, &c, 1);
	if (n != 1) {
		report(rep, "setter: getter %s", n == 0 ? "died" : "not done after 20 s");
		_exit(1);
	}
	close(fd); /* EBADF after clone_files: the child closed it for us both */
	_exit(0);
}

static void getter(int go, int finished, int rep)
{
	watchdog();
	int fd = open_or_exit("getter", rep);
	char c;
	ssize_t n = read(go, &c, 1);
	if (n != 1) {
		report(rep, "getter: setter %s", n == 0 ? "died before it was ready"
							 : "not ready after 20 s");
		_exit(1);
	}
	struct flock fl = bytes(F_WRLCK, 0, 10);
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
		report(rep, "getter: F_OFD_GETLK: %s", why(errno));
		_exit(1);
	}
	report(rep, "got %d %lld %lld %d", fl.l_type, (long long)fl.l_start,
	       (long long)fl.l_len, (int)fl.l_pid);
	c = 'd';
	if (write(finished, &c, 1) != 1)
		_exit(1);
	close(fd);
	_exit(0);
}

/* A lock still on the file with nothing open? Asked from two descriptions, since a
 * lock whose owner id was recycled for one of them would be invisible to that one.
 * ext4 answers at once; a little grace covers a FUSE RELEASE still being handled. */
static int leftover_lock(void)
{
	int a = open(path, O_RDWR), b = open(path, O_RDWR);
	int held = 1;
	for (int i = 0; i < 20 && held && a >= 0 && b >= 0; i++) {
		struct flock x = bytes(F_WRLCK, 0, 0), y = bytes(F_WRLCK, 0, 0);
		held = fcntl(a, F_OFD_GETLK, &x) != 0 || fcntl(b, F_OFD_GETLK, &y) != 0 ||
		       x.l_type != F_UNLCK || y.l_type != F_UNLCK;
		if (held)
			usleep(100 * 1000);
	}
	close(a), close(b);
	return held;
}

static int run_case(const char *name, enum shape shape, short want)
{
	int go[2], finished[2], rep[2];
	if (pipe(go) || pipe(finished) || pipe(rep)) {
		perror("pipe");
		exit(2);
	}
	pid_t set = fork();
	if (set == 0) {
		close(go[0]), close(finished[1]), close(rep[0]);
		setter(shape, go[1], finished[0], rep[1]);
	}
	pid_t get = fork();
	if (get == 0) {
		close(go[1]), close(finished[0]), close(rep[0]);
		getter(go[0], finished[1], rep[1]);
	}
	close(go[0]), close(go[1]), close(finished[0]), close(finished[1]), close(rep[1]);

	/* Read reports until both have exited. Their own watchdogs fire first and say
	 * where they were stuck; ours gives them 5 s more before killing them. */
	char buf[1024] = "", fail[300] = "";
	size_t len = 0;
	ssize_t n;
	int alarms = 0;
	watchdog();
	while ((n = read(rep[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (n > 0)
			len += n;
		else if (errno == EINTR && alarms++ == 0)
			alarm(5);
		else
			break;
	}
	if (n < 0) {
		snprintf(fail, sizeof(fail), "setter and getter still running after 25 s");
		kill(set, SIGKILL), kill(get, SIGKILL);
	}
	alarm(0);
	close(rep[0]);
	waitpid(set, NULL, 0), waitpid(get, NULL, 0);
	buf[len] = '\0';

	/* "got ..." from the getter, or complaints (the setter's explains the rest). */
	int type = -1, pid = 0;
	long long start = -1, length = -1;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (sscanf(line, "got %d %lld %lld %d", &type, &start, &length, &pid) == 4)
			continue;
		if (!fail[0] || strncmp(line, "setter:", 7) == 0)
			snprintf(fail, sizeof(fail), "%s", line);
	}
	if (!fail[0] && type == -1)
		snprintf(fail, sizeof(fail), "getter reported nothing");
	else if (!fail[0] && type != want)
		snprintf(fail, sizeof(fail), "F_OFD_GETLK saw %s, ext4 sees %s",
			 type == F_UNLCK ? "F_UNLCK" : type == F_WRLCK ? "F_WRLCK" : "F_RDLCK",
			 want == F_UNLCK ? "F_UNLCK" : "F_WRLCK");
	else if (!fail[0] && want == F_WRLCK && (start != 0 || length != 10 || pid != -1))
		snprintf(fail, sizeof(fail),
			 "F_OFD_GETLK saw start %lld len %lld pid %d, ext4 sees 0 10 -1",
			 start, length, pid);
	if (!fail[0] && leftover_lock())
		snprintf(fail, sizeof(fail),
			 "a lock outlived every descriptor of the file (still there 2 s on)");
	printf("case %s: %s%s\n", name, fail[0] ? "FAIL " : "ok", fail);
	fflush(stdout);
	return fail[0] != 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/ofd_locks.testfile", argv[1]);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 4096) != 0) {
		perror(path);
		return 2;
	}
	close(fd);
	int failed = 0;
	failed += run_case("plain", PLAIN, F_WRLCK);
	failed += run_case("clone_files", CLONE_FILES_CLOSE, F_UNLCK);
	failed += run_case("dup_close", DUP_CLOSE, F_WRLCK);
	unlink(path);
	return failed ? 1 : 0;
}
