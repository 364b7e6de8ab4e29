/*
 * kcp: copy a local file into a Kiseki volume with libkiseki, then read it back and
 * check that every byte survived.
 *
 *   kcp META_URL LOCAL_FILE KISEKI_PATH
 *   kcp rocksdb:///var/lib/kiseki/meta ./photo.jpg /backup/photo.jpg
 *
 * Build (from the repository root, after `cargo build --release -p kiseki-ffi`; L is
 * $CARGO_TARGET_DIR/release, /var/cache/kiseki/target/release with the scripts):
 *   cc -std=c11 -Wall -Wextra -O2 -I include examples/c/kcp.c \
 *      -L "$L" -lkiseki -Wl,-rpath,"$L" -o kcp
 *
 * No FUSE mount is involved: the program talks to the volume's metadata and object
 * storage directly. Only one process may have a RocksDB volume open read-write, so
 * unmount it (or stop other libkiseki programs) first.
 *
 * Every libkiseki call returns a negative errno on failure and kiseki_last_error()
 * explains it; kcp prints both and exits 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiseki.h"

/* Large buffers mean few calls; 1 MiB is plenty for the library to batch into
 * whole blocks. */
#define BUF_SIZE (1 << 20)

static int fail(const char *what, long long rc)
{
    /* rc is -errno; kiseki_last_error() says which call failed and why. */
    fprintf(stderr, "kcp: %s: %s (%s)\n", what, strerror((int)-rc), kiseki_last_error());
    return 1;
}

/* Writes all of `len` bytes: a short write is not an error for write(2) in general,
 * so loop as one would with any POSIX-like API. */
static ssize_t write_all(kiseki_fs *fs, int fd, const char *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = kiseki_write(fs, fd, buf + done, len - done);
        if (n < 0) {
            return n;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* Copies the local file `in` into `path` on the volume. Returns 0 or -errno. */
static long long copy_in(kiseki_fs *fs, FILE *in, const char *path, char *buf,
                         unsigned long long *total)
{
    int fd = kiseki_open(fs, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return fd;
    }
    long long rc = 0;
    size_t n;
    while ((n = fread(buf, 1, BUF_SIZE, in)) > 0) {
        ssize_t w = write_all(fs, fd, buf, n);
        if (w < 0) {
            rc = w;
            break;
        }
        *total += n;
    }
    if (rc == 0 && ferror(in)) {
        rc = -EIO;
    }
    /* fsync makes the data durable (objects stored, metadata committed) before we
     * claim success; close would too, but an explicit fsync shows where errors go. */
    if (rc == 0) {
        rc = kiseki_fsync(fs, fd);
    }
    /* Always close, even after an error, so the descriptor is not leaked; report the
     * first error. */
    int c = kiseki_close(fs, fd);
    return rc < 0 ? rc : c;
}

/* Reads `path` back and compares it with the local file `in` from its start.
 * Returns 0 when identical, 1 when different (with *where set), or -errno. */
static long long compare(kiseki_fs *fs, FILE *in, const char *path, char *ours, char *theirs,
                         unsigned long long *where)
{
    int fd = kiseki_open(fs, path, O_RDONLY, 0);
    if (fd < 0) {
        return fd;
    }
    rewind(in);
    long long rc = 0;
    unsigned long long off = 0;
    for (;;) {
        size_t want = fread(ours, 1, BUF_SIZE, in);
        /* kiseki_read may return fewer bytes than asked; fill the buffer. */
        size_t got = 0;
        while (got < want) {
            ssize_t n = kiseki_read(fs, fd, theirs + got, want - got);
            if (n < 0) {
                rc = n;
                goto out;
            }
            if (n == 0) {
                break; /* the copy is shorter than the original */
            }
            got += (size_t)n;
        }
        if (got != want || memcmp(ours, theirs, want) != 0) {
            size_t i = 0;
            while (i < got && ours[i] == theirs[i]) {
                i++;
            }
            *where = off + i;
            rc = 1;
            goto out;
        }
        off += want;
        if (want < BUF_SIZE) {
            break;
        }
    }
    /* The original is exhausted: the copy must be too. */
    char extra;
    ssize_t n = kiseki_read(fs, fd, &extra, 1);
    if (n < 0) {
        rc = n;
    } else if (n > 0) {
        *where = off;
        rc = 1;
    }
out:
    kiseki_close(fs, fd);
    return rc;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s META_URL LOCAL_FILE KISEKI_PATH\n", argv[0]);
        return 2;
    }
    const char *meta_url = argv[1], *local = argv[2], *path = argv[3];

    FILE *in = fopen(local, "rb");
    if (!in) {
        fprintf(stderr, "kcp: %s: %s\n", local, strerror(errno));
        return 1;
    }
    char *ours = malloc(BUF_SIZE), *theirs = malloc(BUF_SIZE);
    if (!ours || !theirs) {
        fprintf(stderr, "kcp: out of memory\n");
        return 1;
    }

    /* NULL options: default buffer and cache sizes. kiseki_connect is the one call
     * that reports failure with NULL and errno rather than -errno. */
    kiseki_fs *fs = kiseki_connect(meta_url, NULL);
    if (!fs) {
        return fail("connect", -errno);
    }

    int status = 0;
    unsigned long long bytes = 0, where = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long long rc = copy_in(fs, in, path, ours, &bytes);
    double write_s = seconds_since(&t0);
    if (rc < 0) {
        status = fail("copying in", rc);
        goto done;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = compare(fs, in, path, ours, theirs, &where);
    double read_s = seconds_since(&t0);
    if (rc < 0) {
        status = fail("reading back", rc);
        goto done;
    }
    if (rc > 0) {
        fprintf(stderr, "kcp: %s differs from %s at byte %llu\n", path, local, where);
        status = 1;
        goto done;
    }
    printf("kcp: copied %llu bytes from %s to %s and verified them (write %.2f s, read %.2f s)\n",
           bytes, local, path, write_s, read_s);

done:
    /* Disconnect flushes anything still open and releases the volume for the next
     * process; its failure means data may not have been stored. */
    rc = kiseki_disconnect(fs);
    if (rc < 0 && status == 0) {
        status = fail("disconnect", rc);
    }
    fclose(in);
    free(ours);
    free(theirs);
    return status;
}
