/*
 * The C half of kiseki-mount/tests/c_fuse.rs: files written through libkiseki must
 * read back identically through a FUSE mount of the same volume, and files written
 * through the mount must read back identically through libkiseki.
 *
 *   fuse_roundtrip write  META_URL   writes the "c/" set, then disconnects
 *   fuse_roundtrip verify META_URL   checks the "f/" set the mount wrote, the changes
 *                                    it made to "c/", and the rest of "c/"
 *
 * The names, sizes and seeds below are repeated in c_fuse.rs; keep them in step.
 * Data is the xorshift stream of check.h (pattern() in the Rust tests).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "kiseki.h"
#include "check.h"

#define MiB (1024 * 1024)

/* Written by C. */
#define C_SMALL "written through libkiseki\n"
#define C_BIG_SEED 11
#define C_BIG_SIZE (9 * MiB + 12345)
#define C_SPARSE_SEED 12
#define C_SPARSE_AT (6 * MiB + 100)
#define C_SPARSE_SIZE (10 * MiB)
#define C_DIR_ENTRIES 10
#define C_MTIME 1234567890

/* Written through the mount by c_fuse.rs. */
#define F_HELLO "written through FUSE\n"
#define F_APPENDED "appended through FUSE\n"
#define F_BIG_SEED 21
#define F_BIG_SIZE (9 * MiB + 777)
#define F_SPARSE_SEED 22
#define F_SPARSE_AT (3 * MiB)
#define F_SPARSE_SIZE (5 * MiB)
#define F_DIR_ENTRIES 20

static kiseki_fs *fs;

static void put(const char *path, const void *data, size_t len)
{
    int fd = (int)REQUIRE_OK(kiseki_open(fs, path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    EXPECT_EQ(kiseki_write(fs, fd, data, len), len);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
}

/* `path` holds exactly `len` bytes equal to `want`. */
static void holds(const char *path, const void *want, size_t len)
{
    int fd = (int)kiseki_open(fs, path, O_RDONLY, 0);
    if (!EXPECT_OK(fd)) {
        fprintf(stderr, "    (opening %s)\n", path);
        return;
    }
    unsigned char *got = malloc(len + 1);
    REQUIRE(got != NULL);
    size_t have = 0;
    ssize_t n;
    while (have <= len && (n = kiseki_read(fs, fd, got + have, len + 1 - have)) > 0) {
        have += (size_t)n;
    }
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    if (!EXPECT(have == len && memcmp(got, want, len) == 0)) {
        fprintf(stderr, "    %s: %zu bytes, expected %zu; first difference at %lld\n", path,
                have, len, first_diff(got, want, have < len ? have : len));
    }
    free(got);
}

static void write_c_set(void)
{
    EXPECT_EQ(kiseki_mkdir(fs, "c", 0755), 0);
    put("c/small.txt", C_SMALL, strlen(C_SMALL));
    EXPECT_EQ(kiseki_setxattr(fs, "c/small.txt", "user.origin", "libkiseki", 9, XATTR_CREATE), 0);
    EXPECT_EQ(kiseki_link(fs, "c/small.txt", "c/hard"), 0);

    /* Multi-block: 9 MiB crosses two 4 MiB block boundaries. */
    unsigned char *big = pattern(C_BIG_SEED, C_BIG_SIZE);
    put("c/big.bin", big, C_BIG_SIZE);
    free(big);

    /* Sparse: data at 0 and in the middle, a hole between and after. */
    unsigned char *blk = pattern(C_SPARSE_SEED, 4096);
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "c/sparse.bin", O_RDWR | O_CREAT | O_EXCL, 0644));
    EXPECT_EQ(kiseki_pwrite(fs, fd, blk, 4096, 0), 4096);
    EXPECT_EQ(kiseki_pwrite(fs, fd, blk, 4096, C_SPARSE_AT), 4096);
    EXPECT_EQ(kiseki_ftruncate(fs, fd, C_SPARSE_SIZE), 0);
    EXPECT_EQ(kiseki_fsync(fs, fd), 0);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    free(blk);

    EXPECT_EQ(kiseki_symlink(fs, "big.bin", "c/link"), 0);

    EXPECT_EQ(kiseki_mkdir(fs, "c/dir", 0755), 0);
    for (int i = 0; i < C_DIR_ENTRIES; i++) {
        char path[64], body[64];
        snprintf(path, sizeof path, "c/dir/e%d", i);
        snprintf(body, sizeof body, "entry %d\n", i);
        put(path, body, strlen(body));
    }

    put("c/mode600", "private\n", 8);
    EXPECT_EQ(kiseki_chmod(fs, "c/mode600", 0600), 0);
    struct timespec t[2] = {{C_MTIME, 0}, {C_MTIME, 0}};
    EXPECT_EQ(kiseki_utimens(fs, "c/mode600", t, 0), 0);
}

/* The names in `dir`, in any order, must be exactly prefix0..prefix(n-1). */
static void dir_has(const char *dir, const char *prefix, int n)
{
    int d = (int)kiseki_opendir(fs, dir);
    if (!EXPECT_OK(d)) {
        return;
    }
    unsigned char seen[64] = {0};
    int count = 0;
    kiseki_dirent e;
    while (kiseki_readdir(fs, d, &e) == 1) {
        if (strcmp(e.d_name, ".") == 0 || strcmp(e.d_name, "..") == 0) {
            continue;
        }
        int i = -1;
        size_t plen = strlen(prefix);
        if (strncmp(e.d_name, prefix, plen) == 0 && sscanf(e.d_name + plen, "%d", &i) == 1 &&
            i >= 0 && i < n && i < 64) {
            seen[i]++;
            EXPECT_EQ(e.d_type, DT_REG);
        } else {
            check_fail(__FILE__, __LINE__, "unexpected entry %s/%s", dir, e.d_name);
        }
        count++;
    }
    EXPECT_EQ(kiseki_closedir(fs, d), 0);
    EXPECT_EQ(count, n);
    for (int i = 0; i < n && i < 64; i++) {
        EXPECT_EQ(seen[i], 1);
    }
}

static void verify_fuse_set(void)
{
    struct stat st;
    char buf[256];

    holds("f/hello.txt", F_HELLO, strlen(F_HELLO));
    EXPECT_EQ(kiseki_getxattr(fs, "f/hello.txt", "user.origin", buf, sizeof buf), 4);
    EXPECT(memcmp(buf, "fuse", 4) == 0);

    unsigned char *big = pattern(F_BIG_SEED, F_BIG_SIZE);
    holds("f/big.bin", big, F_BIG_SIZE);
    free(big);

    unsigned char *sparse = calloc(1, F_SPARSE_SIZE);
    REQUIRE(sparse != NULL);
    prng p = prng_new(F_SPARSE_SEED);
    prng_fill(&p, sparse + F_SPARSE_AT, 4096);
    holds("f/sparse.bin", sparse, F_SPARSE_SIZE);
    free(sparse);

    /* A symlink made by the kernel into the C set. */
    EXPECT_EQ(kiseki_lstat(fs, "f/link", &st), 0);
    EXPECT(S_ISLNK(st.st_mode));
    ssize_t n = kiseki_readlink(fs, "f/link", buf, sizeof buf);
    EXPECT_EQ(n, strlen("../c/big.bin"));
    EXPECT(n > 0 && memcmp(buf, "../c/big.bin", (size_t)n) == 0);
    EXPECT_EQ(kiseki_stat(fs, "f/link", &st), 0);
    EXPECT_EQ(st.st_size, C_BIG_SIZE);

    dir_has("f/dir", "n", F_DIR_ENTRIES);
    EXPECT_EQ(kiseki_stat(fs, "f/dir", &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700);

    /* Changes the mount made to the C set: an append, a rename, a removed xattr. */
    char appended[256];
    snprintf(appended, sizeof appended, "%s%s", C_SMALL, F_APPENDED);
    holds("c/small.txt", appended, strlen(appended));
    holds("c/hard", appended, strlen(appended));
    EXPECT_ERR(kiseki_stat(fs, "c/dir/e0", &st), ENOENT);
    holds("f/moved-e0", "entry 0\n", 8);
    EXPECT_ERR(kiseki_getxattr(fs, "c/small.txt", "user.origin", buf, sizeof buf), ENODATA);
    EXPECT_EQ(kiseki_getxattr(fs, "c/small.txt", "user.by-fuse", buf, sizeof buf), 3);
}

/* The parts of the C set the mount did not change are still as written. */
static void verify_rest_of_c_set(void)
{
    unsigned char *big = pattern(C_BIG_SEED, C_BIG_SIZE);
    holds("c/big.bin", big, C_BIG_SIZE);
    free(big);
    unsigned char *sparse = calloc(1, C_SPARSE_SIZE);
    REQUIRE(sparse != NULL);
    unsigned char *blk = pattern(C_SPARSE_SEED, 4096);
    memcpy(sparse, blk, 4096);
    memcpy(sparse + C_SPARSE_AT, blk, 4096);
    holds("c/sparse.bin", sparse, C_SPARSE_SIZE);
    free(blk);
    free(sparse);
    struct stat st;
    EXPECT_EQ(kiseki_stat(fs, "c/mode600", &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600);
    EXPECT_EQ(st.st_mtime, C_MTIME);
    EXPECT_EQ(kiseki_stat(fs, "c/small.txt", &st), 0);
    EXPECT_EQ(st.st_nlink, 2);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "verify") != 0)) {
        fprintf(stderr, "usage: %s write|verify META_URL\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(022);
    fs = kiseki_connect(argv[2], NULL);
    if (!fs) {
        fprintf(stderr, "kiseki_connect(%s): %s (%s)\n", argv[2], strerror(errno),
                kiseki_last_error());
        return 2;
    }
    if (strcmp(argv[1], "write") == 0) {
        write_c_set();
    } else {
        verify_fuse_set();
        verify_rest_of_c_set();
    }
    /* Disconnect releases the volume so the mount (or the next step) can open it. */
    EXPECT_EQ(kiseki_disconnect(fs), 0);
    return check_exit(argv[1]);
}
