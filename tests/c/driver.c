/*
 * A libkiseki client driven line by line from stdin, for the Rust fault tests
 * (kiseki-mount/tests/faults.rs): they keep one connection open while they take the
 * object store or a disk away and bring it back, and ask it to write and read files.
 *
 *   usage: driver META_URL [OPTIONS]
 *   stdin, one command per line:
 *     write PATH LEN SEED   creates or truncates PATH, writes LEN bytes of pattern SEED
 *                           in 1 MiB calls, closes
 *     read PATH LEN SEED    reads PATH whole; it must be LEN bytes of pattern SEED
 *     quit
 *   stdout, one line per command: "ok", or "err ERRNO MESSAGE" (the first failing
 *   call, with kiseki_last_error()), or "mismatch OFFSET".
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void fail(const char *call, long long rc)
{
    printf("err %lld %s: %s\n", -rc, call, kiseki_last_error());
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
    printf("ok\n");
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
        printf("mismatch %lld\n", at);
    } else {
        printf("ok\n");
    }
out:
    free(want);
    free(got);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s META_URL [OPTIONS]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    kiseki_fs *fs = kiseki_connect(argv[1], argc > 2 ? argv[2] : NULL);
    if (!fs) {
        printf("err %d connect: %s\n", errno, kiseki_last_error());
        return 1;
    }
    printf("ready\n");
    char line[4096], path[4096];
    while (fgets(line, sizeof line, stdin)) {
        unsigned long long len, seed;
        if (sscanf(line, "write %4095s %llu %llu", path, &len, &seed) == 3) {
            do_write(fs, path, (size_t)len, seed);
        } else if (sscanf(line, "read %4095s %llu %llu", path, &len, &seed) == 3) {
            do_read(fs, path, (size_t)len, seed);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("err %d unknown command: %s", EINVAL, line);
        }
    }
    int rc = kiseki_disconnect(fs);
    if (rc < 0) {
        fprintf(stderr, "disconnect: %s\n", kiseki_last_error());
        return 1;
    }
    return 0;
}
