/*
 * kbench: the big-file, small-file and metadata workloads of the benchmark suite, in C,
 * through either plain POSIX calls on a directory (a local filesystem or any mount) or
 * libkiseki on a volume with no mount. The same code drives both back ends through one
 * table of function pointers, so the library path and the kernel path are compared like
 * for like.
 *
 * One run does one phase and prints one JSON object per measurement on stdout:
 *   {"workload": "big write", "value": 812.5, "unit": "MiB/s"}
 * Phases are separate processes so that bench/run.sh can drop the page cache (and, for
 * mounts, remount) between a write phase and its cold read phase; for the library a new
 * process is a new connection, so its caches are cold as well.
 *
 *   kbench (--root DIR | --meta URL [--options OPTS]) --phase PHASE [sizes]
 *   PHASE: big-write big-read small-write small-read meta
 *   sizes: --big-mib N (1024) --io-kib N (1024) --small-count N (1000) --small-kib N (128)
 *          --meta-dirs N (100) --meta-files N (100 per directory)
 *
 * Built by bench/run.sh:
 *   cc -O2 -I include bench/c/kbench.c -L $TARGET/release -lkiseki -Wl,-rpath,$TARGET/release
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <kiseki.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- back ends: every call returns >= 0 or -errno, as libkiseki does ---------------- */

struct backend {
    int (*open)(const char *path, int flags, mode_t mode);
    ssize_t (*write)(int fd, const void *buf, size_t n);
    ssize_t (*read)(int fd, void *buf, size_t n);
    int (*fsync)(int fd);
    int (*close)(int fd);
    int (*mkdir)(const char *path, mode_t mode);
    int (*stat)(const char *path, struct stat *st);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*rmdir)(const char *path);
};

static const char *g_root;  /* POSIX back end: the directory workloads run in */
static kiseki_fs *g_fs;     /* libkiseki back end: the connection */

/* Paths are given relative ("big.dat"); the POSIX back end prefixes the root. A few
 * rotating buffers let a call take two paths (rename). */
static const char *posix_path(const char *rel) {
    static char bufs[2][4096];
    static int next;
    char *b = bufs[next++ & 1];
    snprintf(b, sizeof bufs[0], "%s/%s", g_root, rel);
    return b;
}
static int neg(long r) { return r < 0 ? -errno : (int)r; }
static int p_open(const char *p, int f, mode_t m) { return neg(open(posix_path(p), f, m)); }
static ssize_t p_write(int fd, const void *b, size_t n) { ssize_t r = write(fd, b, n); return r < 0 ? -errno : r; }
static ssize_t p_read(int fd, void *b, size_t n) { ssize_t r = read(fd, b, n); return r < 0 ? -errno : r; }
static int p_fsync(int fd) { return neg(fsync(fd)); }
static int p_close(int fd) { return neg(close(fd)); }
static int p_mkdir(const char *p, mode_t m) { return neg(mkdir(posix_path(p), m)); }
static int p_stat(const char *p, struct stat *st) { return neg(stat(posix_path(p), st)); }
static int p_rename(const char *a, const char *b) { return neg(rename(posix_path(a), posix_path(b))); }
static int p_unlink(const char *p) { return neg(unlink(posix_path(p))); }
static int p_rmdir(const char *p) { return neg(rmdir(posix_path(p))); }

static const struct backend posix_backend = {
    p_open, p_write, p_read, p_fsync, p_close, p_mkdir, p_stat, p_rename, p_unlink, p_rmdir,
};

static int k_open(const char *p, int f, mode_t m) { return kiseki_open(g_fs, p, f, m); }
static ssize_t k_write(int fd, const void *b, size_t n) { return kiseki_write(g_fs, fd, b, n); }
static ssize_t k_read(int fd, void *b, size_t n) { return kiseki_read(g_fs, fd, b, n); }
static int k_fsync(int fd) { return kiseki_fsync(g_fs, fd); }
static int k_close(int fd) { return kiseki_close(g_fs, fd); }
static int k_mkdir(const char *p, mode_t m) { return kiseki_mkdir(g_fs, p, m); }
static int k_stat(const char *p, struct stat *st) { return kiseki_stat(g_fs, p, st); }
static int k_rename(const char *a, const char *b) { return kiseki_rename(g_fs, a, b, 0); }
static int k_unlink(const char *p) { return kiseki_unlink(g_fs, p); }
static int k_rmdir(const char *p) { return kiseki_rmdir(g_fs, p); }

static const struct backend kiseki_backend = {
    k_open, k_write, k_read, k_fsync, k_close, k_mkdir, k_stat, k_rename, k_unlink, k_rmdir,
};

static const struct backend *B;

/* ---- helpers --------------------------------------------------------------------------- */

/* Any failure ends the run with the call, the path and the error: the benchmark reports
 * it as this workload's failure instead of a number. */
static void check(long r, const char *what, const char *path) {
    if (r >= 0) return;
    fprintf(stderr, "kbench: %s %s: %s", what, path, strerror((int)-r));
    if (g_fs) fprintf(stderr, " (%s)", kiseki_last_error());
    fputc('\n', stderr);
    exit(1);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("kbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void report(const char *workload, double value, const char *unit) {
    printf("{\"workload\": \"%s\", \"value\": %.3f, \"unit\": \"%s\"}\n", workload, value, unit);
}

/* Incompressible bytes (xorshift), so no layer can cheat by compressing zeros. */
static void fill(unsigned char *buf, size_t n) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
}

static void write_all(int fd, const unsigned char *buf, size_t n, const char *path) {
    while (n > 0) {
        ssize_t w = B->write(fd, buf, n);
        check(w, "write", path);
        if (w == 0) die("write %s: wrote nothing", path);
        buf += w, n -= (size_t)w;
    }
}

/* Reads the whole file in `io`-sized calls; returns the bytes read. */
static size_t read_all(int fd, unsigned char *buf, size_t io, const char *path) {
    size_t total = 0;
    for (;;) {
        ssize_t r = B->read(fd, buf, io);
        check(r, "read", path);
        if (r == 0) return total;
        total += (size_t)r;
    }
}

/* ---- workloads ------------------------------------------------------------------------- */

struct sizes {
    long big_mib, io_kib, small_count, small_kib, meta_dirs, meta_files;
};

static void big_write(const struct sizes *s) {
    size_t io = (size_t)s->io_kib << 10;
    unsigned char *buf = malloc(io);
    if (!buf) die("out of memory");
    fill(buf, io);
    long calls = (s->big_mib << 20) / (long)io;
    double t0 = now();
    int fd = B->open("big.dat", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(fd, "open", "big.dat");
    for (long i = 0; i < calls; i++) write_all(fd, buf, io, "big.dat");
    /* fsync and close are part of the write: the data is durable when the clock stops. */
    check(B->fsync(fd), "fsync", "big.dat");
    check(B->close(fd), "close", "big.dat");
    report("big write", (double)s->big_mib / (now() - t0), "MiB/s");
    free(buf);
}

static void big_read(const struct sizes *s) {
    size_t io = (size_t)s->io_kib << 10;
    unsigned char *buf = malloc(io);
    if (!buf) die("out of memory");
    double t0 = now();
    int fd = B->open("big.dat", O_RDONLY, 0);
    check(fd, "open", "big.dat");
    size_t got = read_all(fd, buf, io, "big.dat");
    check(B->close(fd), "close", "big.dat");
    double dt = now() - t0;
    if (got != (size_t)s->big_mib << 20) die("big.dat: read %zu bytes, expected %ld MiB", got, s->big_mib);
    report("big read", (double)s->big_mib / dt, "MiB/s");
    free(buf);
}

static void small_write(const struct sizes *s) {
    size_t n = (size_t)s->small_kib << 10;
    unsigned char *buf = malloc(n);
    if (!buf) die("out of memory");
    fill(buf, n);
    check(B->mkdir("small", 0755), "mkdir", "small");
    char path[64];
    double t0 = now();
    for (long i = 0; i < s->small_count; i++) {
        snprintf(path, sizeof path, "small/f%06ld", i);
        int fd = B->open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        check(fd, "open", path);
        write_all(fd, buf, n, path);
        check(B->close(fd), "close", path);
    }
    report("small write", s->small_count / (now() - t0), "files/s");
    free(buf);
}

static void small_read(const struct sizes *s) {
    size_t n = (size_t)s->small_kib << 10;
    unsigned char *buf = malloc(n);
    if (!buf) die("out of memory");
    char path[64];
    double t0 = now();
    for (long i = 0; i < s->small_count; i++) {
        snprintf(path, sizeof path, "small/f%06ld", i);
        int fd = B->open(path, O_RDONLY, 0);
        check(fd, "open", path);
        size_t got = read_all(fd, buf, n, path);
        check(B->close(fd), "close", path);
        if (got != n) die("%s: read %zu bytes, expected %zu", path, got, n);
    }
    report("small read", s->small_count / (now() - t0), "files/s");
    free(buf);
}

/* Empty files in nested directories: meta/dNNNN/fNNNNNN. Directory creation and removal
 * are set-up, not measured; each measured phase touches every file once. */
static void meta(const struct sizes *s) {
    long total = s->meta_dirs * s->meta_files;
    char a[64], b[64];
    struct stat st;
    check(B->mkdir("meta", 0755), "mkdir", "meta");
    for (long d = 0; d < s->meta_dirs; d++) {
        snprintf(a, sizeof a, "meta/d%04ld", d);
        check(B->mkdir(a, 0755), "mkdir", a);
    }
#define EACH_FILE for (long d = 0; d < s->meta_dirs; d++) for (long f = 0; f < s->meta_files; f++)
    double t0 = now();
    EACH_FILE {
        snprintf(a, sizeof a, "meta/d%04ld/f%06ld", d, f);
        int fd = B->open(a, O_WRONLY | O_CREAT | O_EXCL, 0644);
        check(fd, "create", a);
        check(B->close(fd), "close", a);
    }
    report("meta create", total / (now() - t0), "ops/s");
    t0 = now();
    EACH_FILE {
        snprintf(a, sizeof a, "meta/d%04ld/f%06ld", d, f);
        check(B->stat(a, &st), "stat", a);
    }
    report("meta stat", total / (now() - t0), "ops/s");
    t0 = now();
    EACH_FILE {
        snprintf(a, sizeof a, "meta/d%04ld/f%06ld", d, f);
        snprintf(b, sizeof b, "meta/d%04ld/g%06ld", d, f);
        check(B->rename(a, b), "rename", a);
    }
    report("meta rename", total / (now() - t0), "ops/s");
    t0 = now();
    EACH_FILE {
        snprintf(b, sizeof b, "meta/d%04ld/g%06ld", d, f);
        check(B->unlink(b), "unlink", b);
    }
    report("meta unlink", total / (now() - t0), "ops/s");
#undef EACH_FILE
    for (long d = 0; d < s->meta_dirs; d++) {
        snprintf(a, sizeof a, "meta/d%04ld", d);
        check(B->rmdir(a), "rmdir", a);
    }
    check(B->rmdir("meta"), "rmdir", "meta");
}

/* ---- main ------------------------------------------------------------------------------ */

static long num(const char *flag, const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n <= 0) die("%s wants a positive integer, not '%s'", flag, v);
    return n;
}

int main(int argc, char **argv) {
    const char *meta_url = NULL, *options = NULL, *phase = NULL;
    struct sizes s = {1024, 1024, 1000, 128, 100, 100};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc) die("%s wants a value", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--root")) g_root = v;
        else if (!strcmp(f, "--meta")) meta_url = v;
        else if (!strcmp(f, "--options")) options = v;
        else if (!strcmp(f, "--phase")) phase = v;
        else if (!strcmp(f, "--big-mib")) s.big_mib = num(f, v);
        else if (!strcmp(f, "--io-kib")) s.io_kib = num(f, v);
        else if (!strcmp(f, "--small-count")) s.small_count = num(f, v);
        else if (!strcmp(f, "--small-kib")) s.small_kib = num(f, v);
        else if (!strcmp(f, "--meta-dirs")) s.meta_dirs = num(f, v);
        else if (!strcmp(f, "--meta-files")) s.meta_files = num(f, v);
        else die("unknown flag %s", f);
    }
    if (!phase || (!g_root) == (!meta_url)) die("usage: kbench (--root DIR | --meta URL [--options OPTS]) --phase PHASE");
    if ((s.big_mib << 20) % (s.io_kib << 10) != 0) die("--big-mib must be a multiple of --io-kib");

    if (meta_url) {
        g_fs = kiseki_connect(meta_url, options);
        if (!g_fs) die("kiseki_connect %s: %s", meta_url, kiseki_last_error());
        B = &kiseki_backend;
    } else {
        B = &posix_backend;
    }

    if (!strcmp(phase, "big-write")) big_write(&s);
    else if (!strcmp(phase, "big-read")) big_read(&s);
    else if (!strcmp(phase, "small-write")) small_write(&s);
    else if (!strcmp(phase, "small-read")) small_read(&s);
    else if (!strcmp(phase, "meta")) meta(&s);
    else die("unknown phase %s", phase);

    if (g_fs) {
        int r = kiseki_disconnect(g_fs);
        g_fs = NULL;
        check(r, "disconnect", meta_url);
    }
    return 0;
}
