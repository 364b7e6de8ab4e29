/*
 * A libkiseki client driven line by line from stdin, for the Rust fault tests
 * (kiseki-mount/tests/faults.rs): they keep one connection open while they take the
 * object store or a disk away and bring it back, and ask it to write and read files.
 * Each command runs in a thread of its own, so several can wait on the same outage.
 *
 *   usage: driver META_URL [OPTIONS]
 *   stdin, one command per line, each with a caller-chosen ID:
 *     ID write PATH LEN SEED   creates or truncates PATH, writes LEN bytes of pattern
 *                              SEED in 1 MiB calls, closes
 *     ID read PATH LEN SEED    reads PATH whole; it must be LEN bytes of pattern SEED
 *     quit                     waits for every command, disconnects
 *   stdout, one line per command as it finishes: "ID ok", or "ID err ERRNO MESSAGE"
 *   (the first failing call, with kiseki_last_error()), or "ID mismatch OFFSET".
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread unsigned long current_id;

/* One whole line per result, so lines of concurrent commands never interleave. */
static void reply(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&out_lock);
    printf("%lu %s\n", current_id, msg);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

static void fail(const char *call, long long rc)
{
    reply("err %lld %s: %s", -rc, call, kiseki_last_error());
}

static void do_write(kiseki_fs *fs, const char *path, size_t len, uint64_t seed)
{
    unsigned char *data = pattern(seed, len);
    int fd = kiseki_open(fs, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fail("open", fd);
        free(data);
        return;
    }
    for (size_t done = 0; done < len;) {
        size_t n = len - done < (1 << 20) ? len - done : (1 << 20);
        ssize_t w = kiseki_write(fs, fd, data + done, n);
        if (w < 0) {
            fail("write", w);
            kiseki_close(fs, fd);
            free(data);
            return;
        }
        done += (size_t)w;
    }
    free(data);
    int rc = kiseki_close(fs, fd);
    if (rc < 0) {
        fail("close", rc);
        return;
    }
    reply("ok");
}

static void do_read(kiseki_fs *fs, const char *path, size_t len, uint64_t seed)
{
    unsigned char *want = pattern(seed, len);
    unsigned char *got = malloc(len + 1);
    int fd = kiseki_open(fs, path, O_RDONLY, 0);
    if (fd < 0) {
        fail("open", fd);
        goto out;
    }
    size_t done = 0;
    for (;;) {
        ssize_t r = kiseki_read(fs, fd, got + done, len + 1 - done);
        if (r < 0) {
            fail("read", r);
            kiseki_close(fs, fd);
            goto out;
        }
        if (r == 0 || done + (size_t)r > len) {
            done += (size_t)r;
            break;
        }
        done += (size_t)r;
    }
    kiseki_close(fs, fd);
    long long at = done == len ? first_diff(got, want, len) : (long long)done;
    if (at >= 0) {
        reply("mismatch %lld", at);
    } else {
        reply("ok");
    }
out:
    free(want);
    free(got);
}

struct command {
    kiseki_fs *fs;
    unsigned long id;
    int write;
    char path[4096];
    unsigned long long len, seed;
};

static void *run(void *arg)
{
    struct command *c = arg;
    current_id = c->id;
    if (c->write) {
        do_write(c->fs, c->path, (size_t)c->len, c->seed);
    } else {
        do_read(c->fs, c->path, (size_t)c->len, c->seed);
    }
    free(c);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s META_URL [OPTIONS]\n", argv[0]);
        return 2;
    }
    kiseki_fs *fs = kiseki_connect(argv[1], argc > 2 ? argv[2] : NULL);
    if (!fs) {
        printf("err %d connect: %s\n", errno, kiseki_last_error());
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    pthread_t threads[256];
    size_t started = 0;
    char line[4200], op[16];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "quit", 4) == 0) {
            break;
        }
        struct command *c = calloc(1, sizeof *c);
        c->fs = fs;
        if (sscanf(line, "%lu %15s %4095s %llu %llu", &c->id, op, c->path, &c->len, &c->seed) != 5 ||
            (strcmp(op, "write") != 0 && strcmp(op, "read") != 0) || started == 256) {
            current_id = c->id;
            reply("err %d bad command: %.100s", EINVAL, line);
            free(c);
            continue;
        }
        c->write = strcmp(op, "write") == 0;
        if (pthread_create(&threads[started], NULL, run, c) != 0) {
            current_id = c->id;
            reply("err %d pthread_create", EAGAIN);
            free(c);
            continue;
        }
        started++;
    }
    for (size_t i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    int rc = kiseki_disconnect(fs);
    if (rc < 0) {
        fprintf(stderr, "disconnect: %s\n", kiseki_last_error());
        return 1;
    }
    return 0;
}
