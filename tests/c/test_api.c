/*
 * The libkiseki C API, function by function: every entry point of include/kiseki.h,
 * its documented success behaviour and its error paths (-errno plus a message).
 *
 * Usage: test_api TMPDIR
 * Formats its own volumes under TMPDIR (which must exist and be empty) and never
 * touches the default volume (kiseki_connect(NULL, ...)). Prints one FAIL line per
 * failed check and ends with "test_api: N passed, M failed"; exits 0 only when
 * nothing failed.
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
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "kiseki.h"
#include "check.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define MiB (1024 * 1024)

static char tmpdir[2048];
static char meta_url[4096];
static char bucket[4096];

/* ------------------------------------------------------------------------------ */
/* Helpers                                                                         */
/* ------------------------------------------------------------------------------ */

/* Creates (or replaces) `path` with exactly `len` bytes of `data`. */
static void put(kiseki_fs *fs, const char *path, const void *data, size_t len)
{
    int fd = (int)REQUIRE_OK(kiseki_open(fs, path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    EXPECT_EQ(kiseki_write(fs, fd, data, len), len);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
}

/* Whether `path` holds exactly `len` bytes equal to `want`. */
static int holds(kiseki_fs *fs, const char *path, const void *want, size_t len)
{
    int fd = (int)kiseki_open(fs, path, O_RDONLY, 0);
    if (!EXPECT_OK(fd)) {
        return 0;
    }
    unsigned char *got = malloc(len + 1);
    REQUIRE(got != NULL);
    /* Ask for one byte more than expected so a too long file is noticed. */
    size_t have = 0;
    for (;;) {
        ssize_t n = kiseki_read(fs, fd, got + have, len + 1 - have);
        if (n <= 0) {
            EXPECT_OK(n);
            break;
        }
        have += (size_t)n;
        if (have == len + 1) {
            break;
        }
    }
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    int ok = have == len && memcmp(got, want, len) == 0;
    if (!ok) {
        check_fail(__FILE__, __LINE__, "%s: read %zu bytes, expected %zu (first difference at %lld)",
                   path, have, len, first_diff(got, want, have < len ? have : len));
    }
    free(got);
    return ok;
}

static struct stat must_stat(kiseki_fs *fs, const char *path)
{
    struct stat st;
    memset(&st, 0, sizeof st);
    EXPECT_EQ(kiseki_stat(fs, path, &st), 0);
    return st;
}

static struct stat must_lstat(kiseki_fs *fs, const char *path)
{
    struct stat st;
    memset(&st, 0, sizeof st);
    EXPECT_EQ(kiseki_lstat(fs, path, &st), 0);
    return st;
}

static int is_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

static kiseki_fs *connect_or_die(void)
{
    kiseki_fs *fs = kiseki_connect(meta_url, NULL);
    if (!fs) {
        fprintf(stderr, "kiseki_connect(%s): %s (%s)\n", meta_url, strerror(errno),
                kiseki_last_error());
        exit(2);
    }
    return fs;
}

/* A failed connect returns NULL, sets errno and leaves a message. */
static void expect_connect_fails(const char *url, const char *options, int want_errno)
{
    errno = 0;
    kiseki_fs *fs = kiseki_connect(url, options);
    int e = errno;
    if (!EXPECT(fs == NULL)) {
        kiseki_disconnect(fs);
        return;
    }
    if (!check_eq(__FILE__, __LINE__, "errno after kiseki_connect", -e, -want_errno)) {
        fprintf(stderr, "    (url %s, options %s)\n", url, options ? options : "NULL");
    }
    EXPECT(strlen(kiseki_last_error()) > 0);
}

/* ------------------------------------------------------------------------------ */
/* kiseki_format, kiseki_connect, kiseki_last_error                                */
/* ------------------------------------------------------------------------------ */

static void test_format_and_connect(void)
{
    char opts[4200];
    snprintf(opts, sizeof opts, "storage=fs,bucket=%s,capacity=1G,inodes=100000", bucket);

    /* Nothing is formatted yet: connecting must fail rather than create a volume. */
    char absent[4200];
    snprintf(absent, sizeof absent, "rocksdb://%s/absent", tmpdir);
    expect_connect_fails(absent, NULL, ENOENT);
    EXPECT(access(absent + strlen("rocksdb://"), F_OK) != 0);
    expect_connect_fails(meta_url, NULL, ENOENT);
    expect_connect_fails("nosuch:///tmp/x", NULL, EINVAL);
    expect_connect_fails("rocksdb://relative/path", NULL, EINVAL);

    /* Invalid arguments leave nothing behind: the real format below still works. */
    EXPECT_ERR(kiseki_format(meta_url, "Bad_Name!", opts), EINVAL);
    EXPECT_ERR(kiseki_format(meta_url, "x", opts), EINVAL);
    EXPECT(strlen(kiseki_last_error()) > 0);
    EXPECT_ERR(kiseki_format(meta_url, "api", "storage=fs,nosuch-option=1"), EINVAL);
    EXPECT_ERR(kiseki_format(meta_url, "api", "storage=fs,block-size=huge"), EINVAL);
    EXPECT_ERR(kiseki_format(meta_url, "api", "just-a-word"), EINVAL);
    EXPECT_ERR(kiseki_format(NULL, "api", opts), EFAULT);
    EXPECT_ERR(kiseki_format(meta_url, NULL, opts), EFAULT);
    EXPECT_ERR(kiseki_format("\xff\xfe", "api", opts), EINVAL);

    EXPECT_EQ(kiseki_format(meta_url, "api", opts), 0);
    EXPECT_ERR(kiseki_format(meta_url, "api", opts), EEXIST);
    EXPECT_ERR(kiseki_format(meta_url, "other", opts), EEXIST);
    EXPECT(strstr(kiseki_last_error(), "kiseki_format") != NULL);

    /* Bad options of an existing volume. */
    expect_connect_fails(meta_url, "bogus=1", EINVAL);
    expect_connect_fails(meta_url, "buffer-size=lots", EINVAL);
    expect_connect_fails(meta_url, "cache-dir", EINVAL);
    expect_connect_fails(meta_url, "\xff", EINVAL);

    /* Good options are accepted. */
    kiseki_fs *fs = kiseki_connect(meta_url, "buffer-size=64M,memory-cache-size=32M,name=test-api");
    EXPECT(fs != NULL);
    EXPECT_EQ(kiseki_disconnect(fs), 0);

    /* A read-only connection reads but refuses changes with EROFS. */
    fs = kiseki_connect(meta_url, "read-only");
    if (EXPECT(fs != NULL)) {
        struct stat st;
        EXPECT_EQ(kiseki_stat(fs, "/", &st), 0);
        EXPECT_ERR(kiseki_mkdir(fs, "ro-dir", 0755), EROFS);
        EXPECT_ERR(kiseki_open(fs, "ro-file", O_WRONLY | O_CREAT, 0644), EROFS);
        EXPECT_EQ(kiseki_disconnect(fs), 0);
    }

    /* NULL is a no-op. */
    EXPECT_EQ(kiseki_disconnect(NULL), 0);
}

/* ------------------------------------------------------------------------------ */
/* Descriptors: open/close/read/write/pread/pwrite/fsync/ftruncate/fstat            */
/* ------------------------------------------------------------------------------ */

static void test_file_io(kiseki_fs *fs)
{
    const char *hello = "hello, kiseki\n";
    size_t hlen = strlen(hello);

    int fd = (int)REQUIRE_OK(kiseki_open(fs, "io", O_RDWR | O_CREAT | O_EXCL, 0666));
    EXPECT_EQ(kiseki_write(fs, fd, hello, hlen), hlen);
    /* fstat sees data not flushed yet. */
    struct stat st;
    EXPECT_EQ(kiseki_fstat(fs, fd, &st), 0);
    EXPECT_EQ(st.st_size, hlen);
    EXPECT(S_ISREG(st.st_mode));
    /* The process umask (022, set in main) applies to the created mode. */
    EXPECT_EQ(st.st_mode & 07777, 0644);
    EXPECT_EQ(st.st_nlink, 1);
    EXPECT_EQ(st.st_uid, geteuid());
    EXPECT_EQ(st.st_gid, getegid());
    EXPECT(st.st_ino > 1);
    EXPECT(st.st_blksize > 0);

    /* Position after the write is the end: read returns 0 there. */
    char buf[64];
    EXPECT_EQ(kiseki_read(fs, fd, buf, sizeof buf), 0);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_CUR), hlen);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_SET), 0);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(kiseki_read(fs, fd, buf, 5), 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    EXPECT_EQ(kiseki_read(fs, fd, buf, sizeof buf), hlen - 5);
    EXPECT(memcmp(buf, hello + 5, hlen - 5) == 0);
    /* A zero-length read or write is a no-op, even with a NULL buffer. */
    EXPECT_EQ(kiseki_read(fs, fd, NULL, 0), 0);
    EXPECT_EQ(kiseki_write(fs, fd, NULL, 0), 0);

    /* pread/pwrite do not move the position. */
    EXPECT_EQ(kiseki_lseek(fs, fd, 2, SEEK_SET), 2);
    EXPECT_EQ(kiseki_pwrite(fs, fd, "HELLO", 5, 0), 5);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(kiseki_pread(fs, fd, buf, 5, 0), 5);
    EXPECT(memcmp(buf, "HELLO", 5) == 0);
    EXPECT_EQ(kiseki_pread(fs, fd, buf, 100, 7), hlen - 7);
    EXPECT_EQ(kiseki_pread(fs, fd, buf, 10, 1000), 0);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_CUR), 2);
    EXPECT_EQ(kiseki_read(fs, fd, buf, 3), 3);
    EXPECT(memcmp(buf, "LLO", 3) == 0);

    /* Writing past the end leaves a hole that reads as zeros. */
    EXPECT_EQ(kiseki_pwrite(fs, fd, "tail", 4, 10000), 4);
    EXPECT_EQ(kiseki_fstat(fs, fd, &st), 0);
    EXPECT_EQ(st.st_size, 10004);
    unsigned char hole[10004];
    EXPECT_EQ(kiseki_pread(fs, fd, hole, sizeof hole, 0), sizeof hole);
    EXPECT(is_zero(hole + hlen, 10000 - hlen));
    EXPECT(memcmp(hole + 10000, "tail", 4) == 0);

    /* fsync, then ftruncate shrinks and grows (new bytes are zeros). */
    EXPECT_EQ(kiseki_fsync(fs, fd), 0);
    EXPECT_EQ(kiseki_ftruncate(fs, fd, 5), 0);
    EXPECT_EQ(kiseki_fstat(fs, fd, &st), 0);
    EXPECT_EQ(st.st_size, 5);
    EXPECT_EQ(kiseki_ftruncate(fs, fd, 100), 0);
    memset(buf, 'x', sizeof buf);
    EXPECT_EQ(kiseki_pread(fs, fd, buf, sizeof buf, 0), sizeof buf);
    EXPECT(memcmp(buf, "HELLO", 5) == 0);
    EXPECT(is_zero((unsigned char *)buf + 5, sizeof buf - 5));
    EXPECT_ERR(kiseki_ftruncate(fs, fd, -1), EINVAL);
    EXPECT_ERR(kiseki_pread(fs, fd, buf, 1, -1), EINVAL);
    EXPECT_ERR(kiseki_pwrite(fs, fd, buf, 1, -1), EINVAL);
    EXPECT_EQ(kiseki_close(fs, fd), 0);

    /* Closed: every descriptor call is EBADF, a second close too. */
    EXPECT_ERR(kiseki_close(fs, fd), EBADF);
    EXPECT_ERR(kiseki_read(fs, fd, buf, 1), EBADF);
    EXPECT_ERR(kiseki_write(fs, fd, buf, 1), EBADF);
    EXPECT_ERR(kiseki_pread(fs, fd, buf, 1, 0), EBADF);
    EXPECT_ERR(kiseki_pwrite(fs, fd, buf, 1, 0), EBADF);
    EXPECT_ERR(kiseki_lseek(fs, fd, 0, SEEK_SET), EBADF);
    EXPECT_ERR(kiseki_fsync(fs, fd), EBADF);
    EXPECT_ERR(kiseki_ftruncate(fs, fd, 0), EBADF);
    EXPECT_ERR(kiseki_fstat(fs, fd, &st), EBADF);
    EXPECT(strlen(kiseki_last_error()) > 0);

    /* A reused slot gets a new number: the stale one stays EBADF. */
    int fd2 = (int)REQUIRE_OK(kiseki_open(fs, "io", O_RDONLY, 0));
    if (fd2 == fd) {
        check_fail(__FILE__, __LINE__, "a closed descriptor number %d was handed out again", fd);
    }
    EXPECT_ERR(kiseki_read(fs, fd, buf, 1), EBADF);
    EXPECT_EQ(kiseki_read(fs, fd2, buf, 5), 5);
    /* Access modes: a read-only descriptor cannot write or be truncated. */
    EXPECT_ERR(kiseki_write(fs, fd2, "x", 1), EBADF);
    EXPECT_ERR(kiseki_pwrite(fs, fd2, "x", 1, 0), EBADF);
    EXPECT_ERR(kiseki_ftruncate(fs, fd2, 0), EINVAL);
    EXPECT_EQ(kiseki_close(fs, fd2), 0);
    int wfd = (int)REQUIRE_OK(kiseki_open(fs, "io", O_WRONLY, 0));
    EXPECT_ERR(kiseki_read(fs, wfd, buf, 1), EBADF);
    EXPECT_ERR(kiseki_pread(fs, wfd, buf, 1, 0), EBADF);
    EXPECT_EQ(kiseki_close(fs, wfd), 0);

    /* O_TRUNC empties; O_APPEND writes (and pwrites, as on Linux) at the end. */
    int afd = (int)REQUIRE_OK(kiseki_open(fs, "io", O_WRONLY | O_TRUNC, 0));
    EXPECT_EQ(kiseki_write(fs, afd, "abc", 3), 3);
    EXPECT_EQ(kiseki_close(fs, afd), 0);
    afd = (int)REQUIRE_OK(kiseki_open(fs, "io", O_WRONLY | O_APPEND, 0));
    EXPECT_EQ(kiseki_lseek(fs, afd, 0, SEEK_SET), 0);
    EXPECT_EQ(kiseki_write(fs, afd, "def", 3), 3);
    EXPECT_EQ(kiseki_pwrite(fs, afd, "ghi", 3, 0), 3);
    EXPECT_EQ(kiseki_close(fs, afd), 0);
    holds(fs, "io", "abcdefghi", 9);

    /* O_CREAT on an existing file keeps it; O_EXCL refuses. */
    afd = (int)REQUIRE_OK(kiseki_open(fs, "io", O_RDWR | O_CREAT, 0600));
    EXPECT_EQ(kiseki_fstat(fs, afd, &st), 0);
    EXPECT_EQ(st.st_size, 9);
    EXPECT_EQ(st.st_mode & 07777, 0644);
    EXPECT_EQ(kiseki_close(fs, afd), 0);
    EXPECT_ERR(kiseki_open(fs, "io", O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST);

    /* An unlinked file lives on while a descriptor is open, as in POSIX. */
    int ufd = (int)REQUIRE_OK(kiseki_open(fs, "unlinked", O_RDWR | O_CREAT | O_EXCL, 0644));
    EXPECT_EQ(kiseki_write(fs, ufd, "still here", 10), 10);
    EXPECT_EQ(kiseki_unlink(fs, "unlinked"), 0);
    EXPECT_ERR(kiseki_stat(fs, "unlinked", &st), ENOENT);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(kiseki_pread(fs, ufd, buf, sizeof buf, 0), 10);
    EXPECT(memcmp(buf, "still here", 10) == 0);
    EXPECT_EQ(kiseki_write(fs, ufd, "!", 1), 1);
    EXPECT_EQ(kiseki_fsync(fs, ufd), 0);
    EXPECT_EQ(kiseki_fstat(fs, ufd, &st), 0);
    EXPECT_EQ(st.st_nlink, 0);
    EXPECT_EQ(st.st_size, 11);
    EXPECT_EQ(kiseki_close(fs, ufd), 0);
}

/* SEEK_SET/CUR/END/DATA/HOLE and their errors. */
static void test_seek(kiseki_fs *fs)
{
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "sparse", O_RDWR | O_CREAT | O_TRUNC, 0644));
    unsigned char *blk = pattern(7, 4096);
    /* Data at [0, 4096) and [8 MiB, 8 MiB + 4096): a hole between, across blocks. */
    EXPECT_EQ(kiseki_pwrite(fs, fd, blk, 4096, 0), 4096);
    EXPECT_EQ(kiseki_pwrite(fs, fd, blk, 4096, 8 * MiB), 4096);
    off_t end = 8 * MiB + 4096;

    EXPECT_EQ(kiseki_lseek(fs, fd, 100, SEEK_SET), 100);
    EXPECT_EQ(kiseki_lseek(fs, fd, 50, SEEK_CUR), 150);
    EXPECT_EQ(kiseki_lseek(fs, fd, -50, SEEK_CUR), 100);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_END), end);
    EXPECT_EQ(kiseki_lseek(fs, fd, -10, SEEK_END), end - 10);
    /* Past the end is allowed; before the start is not (position unchanged). */
    EXPECT_EQ(kiseki_lseek(fs, fd, 10, SEEK_END), end + 10);
    EXPECT_ERR(kiseki_lseek(fs, fd, -1, SEEK_SET), EINVAL);
    EXPECT_ERR(kiseki_lseek(fs, fd, -(end + 11), SEEK_CUR), EINVAL);
    EXPECT_ERR(kiseki_lseek(fs, fd, -(end + 1), SEEK_END), EINVAL);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_CUR), end + 10);
    EXPECT_ERR(kiseki_lseek(fs, fd, 0, 99), EINVAL);
    EXPECT_ERR(kiseki_lseek(fs, fd, 0, -1), EINVAL);

    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_DATA), 0);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_HOLE), 4096);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_CUR), 4096);
    EXPECT_EQ(kiseki_lseek(fs, fd, 5000, SEEK_DATA), 8 * MiB);
    EXPECT_EQ(kiseki_lseek(fs, fd, 5000, SEEK_HOLE), 5000);
    EXPECT_EQ(kiseki_lseek(fs, fd, 8 * MiB + 1, SEEK_DATA), 8 * MiB + 1);
    /* The end of the file counts as a hole. */
    EXPECT_EQ(kiseki_lseek(fs, fd, 8 * MiB, SEEK_HOLE), end);
    /* At or past the end there is neither: ENXIO, as lseek(2) says. */
    EXPECT_ERR(kiseki_lseek(fs, fd, end, SEEK_DATA), ENXIO);
    EXPECT_ERR(kiseki_lseek(fs, fd, end, SEEK_HOLE), ENXIO);
    EXPECT_ERR(kiseki_lseek(fs, fd, -1, SEEK_DATA), ENXIO);

    /* The read side agrees: the hole reads as zeros, both data runs intact. */
    unsigned char *got = malloc(4096);
    REQUIRE(got != NULL);
    EXPECT_EQ(kiseki_pread(fs, fd, got, 4096, 4 * MiB), 4096);
    EXPECT(is_zero(got, 4096));
    EXPECT_EQ(kiseki_pread(fs, fd, got, 4096, 8 * MiB), 4096);
    EXPECT(memcmp(got, blk, 4096) == 0);
    EXPECT_EQ(kiseki_close(fs, fd), 0);

    /* After close (everything flushed) the layout is the same. */
    fd = (int)REQUIRE_OK(kiseki_open(fs, "sparse", O_RDONLY, 0));
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_HOLE), 4096);
    EXPECT_EQ(kiseki_lseek(fs, fd, 4096, SEEK_DATA), 8 * MiB);
    EXPECT_EQ(kiseki_close(fs, fd), 0);

    /* An empty file has no data and no hole at 0. */
    fd = (int)REQUIRE_OK(kiseki_open(fs, "empty", O_RDWR | O_CREAT | O_TRUNC, 0644));
    EXPECT_ERR(kiseki_lseek(fs, fd, 0, SEEK_DATA), ENXIO);
    EXPECT_EQ(kiseki_lseek(fs, fd, 0, SEEK_END), 0);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    free(got);
    free(blk);
}

/* open(2) errors and flags that are about the path rather than the data. */
static void test_open_errors(kiseki_fs *fs)
{
    EXPECT_EQ(kiseki_mkdir(fs, "od", 0755), 0);
    put(fs, "od/file", "x", 1);
    EXPECT_EQ(kiseki_symlink(fs, "file", "od/link"), 0);

    EXPECT_ERR(kiseki_open(fs, "od/missing", O_RDONLY, 0), ENOENT);
    EXPECT_ERR(kiseki_open(fs, "nodir/file", O_RDWR | O_CREAT, 0644), ENOENT);
    EXPECT_ERR(kiseki_open(fs, "od/file/x", O_RDONLY, 0), ENOTDIR);
    EXPECT_ERR(kiseki_open(fs, "od/file/x", O_RDWR | O_CREAT, 0644), ENOTDIR);
    EXPECT_ERR(kiseki_open(fs, "od/file/", O_RDONLY, 0), ENOTDIR);
    EXPECT_ERR(kiseki_open(fs, "od", O_WRONLY, 0), EISDIR);
    EXPECT_ERR(kiseki_open(fs, "od", O_RDWR, 0), EISDIR);
    EXPECT_ERR(kiseki_open(fs, "od", O_RDWR | O_CREAT, 0644), EISDIR);
    EXPECT_ERR(kiseki_open(fs, "od/new/", O_RDWR | O_CREAT, 0644), EISDIR);
    EXPECT_ERR(kiseki_open(fs, "od/file", O_RDONLY | O_DIRECTORY, 0), ENOTDIR);
    /* O_CREAT | O_DIRECTORY cannot create a directory: EINVAL as on Linux >= 6.4, and
     * above all no descriptor to a new regular file. */
    struct stat st;
    int creat_dir_fd = kiseki_open(fs, "od/newdir", O_RDONLY | O_CREAT | O_DIRECTORY, 0644);
    if (!EXPECT_EQ(creat_dir_fd, -EINVAL) && creat_dir_fd >= 0) {
        kiseki_close(fs, creat_dir_fd);
    }
    EXPECT_ERR(kiseki_stat(fs, "od/newdir", &st), ENOENT);
    EXPECT_ERR(kiseki_open(fs, "od/link", O_RDONLY | O_NOFOLLOW, 0), ELOOP);
    /* O_ACCMODE == 3 is not an access mode. */
    EXPECT_ERR(kiseki_open(fs, "od/file", O_ACCMODE, 0), EINVAL);
    EXPECT_ERR(kiseki_open(fs, "od/file", O_ACCMODE | O_CREAT, 0644), EINVAL);
    EXPECT(strlen(kiseki_last_error()) > 0);

    /* A directory opens read-only (with or without O_DIRECTORY). */
    int fd = (int)EXPECT_OK(kiseki_open(fs, "od", O_RDONLY | O_DIRECTORY, 0));
    if (fd >= 0) {
        struct stat st;
        EXPECT_EQ(kiseki_fstat(fs, fd, &st), 0);
        EXPECT(S_ISDIR(st.st_mode));
        char c;
        EXPECT_ERR(kiseki_read(fs, fd, &c, 1), EISDIR);
        EXPECT_EQ(kiseki_close(fs, fd), 0);
    }
    /* Through a symlink (followed) the target opens. */
    fd = (int)EXPECT_OK(kiseki_open(fs, "od/link", O_RDONLY, 0));
    if (fd >= 0) {
        char c = 0;
        EXPECT_EQ(kiseki_read(fs, fd, &c, 1), 1);
        EXPECT_EQ(c, 'x');
        EXPECT_EQ(kiseki_close(fs, fd), 0);
    }
    /* O_CREAT through a dangling symlink creates its target. */
    EXPECT_EQ(kiseki_symlink(fs, "created-through-link", "od/dangling"), 0);
    fd = (int)EXPECT_OK(kiseki_open(fs, "od/dangling", O_WRONLY | O_CREAT, 0644));
    if (fd >= 0) {
        EXPECT_EQ(kiseki_close(fs, fd), 0);
    }
    if (EXPECT_EQ(kiseki_lstat(fs, "od/created-through-link", &st), 0)) {
        EXPECT(S_ISREG(st.st_mode));
    }
    /* ... but not with O_EXCL, which never follows. */
    EXPECT_ERR(kiseki_open(fs, "od/link", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
}

/* ------------------------------------------------------------------------------ */
/* Namespace: mkdir/rmdir/unlink/rename/link/symlink/readlink                       */
/* ------------------------------------------------------------------------------ */

static void test_namespace(kiseki_fs *fs)
{
    struct stat st;

    EXPECT_EQ(kiseki_mkdir(fs, "ns", 0750), 0);
    st = must_stat(fs, "ns");
    EXPECT(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0750);
    EXPECT_EQ(st.st_nlink, 2);
    EXPECT_ERR(kiseki_mkdir(fs, "ns", 0755), EEXIST);
    EXPECT_ERR(kiseki_mkdir(fs, "missing/sub", 0755), ENOENT);
    EXPECT_EQ(kiseki_mkdir(fs, "ns/sub", 0755), 0);
    /* Leading and repeated slashes name the same thing. */
    EXPECT_EQ(kiseki_stat(fs, "/ns//sub/", &st), 0);
    EXPECT_EQ(kiseki_stat(fs, "./ns/./sub", &st), 0);
    EXPECT_EQ(must_stat(fs, "ns").st_nlink, 3);
    put(fs, "ns/f", "data", 4);
    EXPECT_ERR(kiseki_mkdir(fs, "ns/f/sub", 0755), ENOTDIR);
    EXPECT_ERR(kiseki_mkdir(fs, "ns/f", 0755), EEXIST);
    /* A file is not a directory, whatever follows it: "f/", "f/." and "f/.." are
     * ENOTDIR as on Linux. */
    EXPECT_ERR(kiseki_stat(fs, "ns/f/", &st), ENOTDIR);
    EXPECT_ERR(kiseki_stat(fs, "ns/f/.", &st), ENOTDIR);
    EXPECT_ERR(kiseki_stat(fs, "ns/f/..", &st), ENOTDIR);
    /* "." cannot be removed. */
    EXPECT_ERR(kiseki_rmdir(fs, "ns/sub/."), EINVAL);

    /* rmdir/unlink errors. */
    EXPECT_ERR(kiseki_rmdir(fs, "ns"), ENOTEMPTY);
    EXPECT_ERR(kiseki_rmdir(fs, "ns/f"), ENOTDIR);
    EXPECT_ERR(kiseki_rmdir(fs, "ns/missing"), ENOENT);
    EXPECT_ERR(kiseki_unlink(fs, "ns/sub"), EISDIR);
    EXPECT_ERR(kiseki_unlink(fs, "ns/missing"), ENOENT);
    EXPECT_ERR(kiseki_unlink(fs, "ns/f/x"), ENOTDIR);

    /* rename: plain move, replacing a file, the flags. */
    put(fs, "ns/a", "AAAA", 4);
    put(fs, "ns/b", "BB", 2);
    EXPECT_EQ(kiseki_rename(fs, "ns/f", "ns/sub/moved", 0), 0);
    EXPECT_ERR(kiseki_stat(fs, "ns/f", &st), ENOENT);
    holds(fs, "ns/sub/moved", "data", 4);
    EXPECT_ERR(kiseki_rename(fs, "ns/a", "ns/b", RENAME_NOREPLACE), EEXIST);
    holds(fs, "ns/a", "AAAA", 4);
    holds(fs, "ns/b", "BB", 2);
    EXPECT_EQ(kiseki_rename(fs, "ns/a", "ns/b", RENAME_EXCHANGE), 0);
    holds(fs, "ns/a", "BB", 2);
    holds(fs, "ns/b", "AAAA", 4);
    EXPECT_ERR(kiseki_rename(fs, "ns/a", "ns/none", RENAME_EXCHANGE), ENOENT);
    EXPECT_ERR(kiseki_rename(fs, "ns/a", "ns/b", RENAME_NOREPLACE | RENAME_EXCHANGE), EINVAL);
    EXPECT_EQ(kiseki_rename(fs, "ns/a", "ns/c", RENAME_NOREPLACE), 0);
    EXPECT_EQ(kiseki_rename(fs, "ns/c", "ns/b", 0), 0); /* replaces b */
    holds(fs, "ns/b", "BB", 2);
    EXPECT_ERR(kiseki_stat(fs, "ns/c", &st), ENOENT);
    EXPECT_ERR(kiseki_rename(fs, "ns/none", "ns/x", 0), ENOENT);
    /* Renaming onto itself, or onto another link of the same inode, changes nothing. */
    EXPECT_EQ(kiseki_rename(fs, "ns/b", "ns/b", 0), 0);
    holds(fs, "ns/b", "BB", 2);
    EXPECT_EQ(kiseki_link(fs, "ns/b", "ns/b-link"), 0);
    EXPECT_EQ(kiseki_rename(fs, "ns/b", "ns/b-link", 0), 0);
    EXPECT_EQ(kiseki_lstat(fs, "ns/b", &st), 0);
    EXPECT_EQ(kiseki_lstat(fs, "ns/b-link", &st), 0);
    EXPECT_EQ(st.st_nlink, 2);
    EXPECT_EQ(kiseki_unlink(fs, "ns/b-link"), 0);
    EXPECT_ERR(kiseki_rename(fs, "ns/b", "ns/sub", 0), EISDIR);
    EXPECT_EQ(kiseki_mkdir(fs, "ns/d2", 0755), 0);
    EXPECT_ERR(kiseki_rename(fs, "ns/d2", "ns/b", 0), ENOTDIR);
    EXPECT_ERR(kiseki_rename(fs, "ns/d2", "ns", 0), ENOTEMPTY);
    /* A directory cannot move into itself. */
    EXPECT_ERR(kiseki_rename(fs, "ns", "ns/d2/inside", 0), EINVAL);
    /* An empty directory can be replaced by a directory. */
    EXPECT_EQ(kiseki_mkdir(fs, "ns/d3", 0755), 0);
    EXPECT_EQ(kiseki_rename(fs, "ns/d3", "ns/d2", 0), 0);
    EXPECT_ERR(kiseki_stat(fs, "ns/d3", &st), ENOENT);
    /* Exchange works between a file and a directory. */
    EXPECT_EQ(kiseki_rename(fs, "ns/b", "ns/d2", RENAME_EXCHANGE), 0);
    EXPECT(S_ISDIR(must_lstat(fs, "ns/b").st_mode));
    EXPECT(S_ISREG(must_lstat(fs, "ns/d2").st_mode));

    /* Hard links share the inode. */
    EXPECT_EQ(kiseki_link(fs, "ns/d2", "ns/hard"), 0);
    struct stat a = must_stat(fs, "ns/d2"), b = must_stat(fs, "ns/hard");
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(b.st_nlink, 2);
    EXPECT_ERR(kiseki_link(fs, "ns/d2", "ns/hard"), EEXIST);
    EXPECT_ERR(kiseki_link(fs, "ns/missing", "ns/x"), ENOENT);
    EXPECT_ERR(kiseki_link(fs, "ns/sub", "ns/dirlink"), EPERM);
    EXPECT_EQ(kiseki_unlink(fs, "ns/d2"), 0);
    EXPECT_EQ(must_stat(fs, "ns/hard").st_nlink, 1);
    holds(fs, "ns/hard", "BB", 2);

    /* Symbolic links: stored as given, followed by stat, not by lstat. */
    EXPECT_EQ(kiseki_symlink(fs, "sub/moved", "ns/sym"), 0);
    EXPECT_ERR(kiseki_symlink(fs, "anything", "ns/sym"), EEXIST);
    EXPECT_ERR(kiseki_symlink(fs, "anything", "ns/missing/sym"), ENOENT);
    st = must_lstat(fs, "ns/sym");
    EXPECT(S_ISLNK(st.st_mode));
    EXPECT_EQ(st.st_size, strlen("sub/moved"));
    st = must_stat(fs, "ns/sym");
    EXPECT(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_size, 4);
    holds(fs, "ns/sym", "data", 4);
    /* A symlink inside a path is followed too; an absolute target starts at the root. */
    EXPECT_EQ(kiseki_symlink(fs, "/ns/sub", "ns/abs"), 0);
    holds(fs, "ns/abs/moved", "data", 4);
    EXPECT_EQ(kiseki_symlink(fs, "nowhere", "ns/dangling"), 0);
    EXPECT_ERR(kiseki_stat(fs, "ns/dangling", &st), ENOENT);
    EXPECT_EQ(kiseki_lstat(fs, "ns/dangling", &st), 0);
    EXPECT_EQ(kiseki_symlink(fs, "loop2", "ns/loop1"), 0);
    EXPECT_EQ(kiseki_symlink(fs, "loop1", "ns/loop2"), 0);
    EXPECT_ERR(kiseki_stat(fs, "ns/loop1", &st), ELOOP);

    /* readlink: no NUL, truncation returns the bytes copied, nothing past them. */
    char buf[64];
    memset(buf, '#', sizeof buf);
    EXPECT_EQ(kiseki_readlink(fs, "ns/sym", buf, sizeof buf), strlen("sub/moved"));
    EXPECT(memcmp(buf, "sub/moved", 9) == 0);
    EXPECT_EQ(buf[9], '#');
    memset(buf, '#', sizeof buf);
    EXPECT_EQ(kiseki_readlink(fs, "ns/sym", buf, 4), 4);
    EXPECT(memcmp(buf, "sub/", 4) == 0);
    EXPECT_EQ(buf[4], '#');
    EXPECT_EQ(kiseki_readlink(fs, "ns/sym", buf, 9), 9);
    EXPECT_ERR(kiseki_readlink(fs, "ns/sym", buf, 0), EINVAL);
    EXPECT_ERR(kiseki_readlink(fs, "ns/hard", buf, sizeof buf), EINVAL);
    EXPECT_ERR(kiseki_readlink(fs, "ns/sub", buf, sizeof buf), EINVAL);
    EXPECT_ERR(kiseki_readlink(fs, "ns/missing", buf, sizeof buf), ENOENT);
    /* A link to a link: readlink reads the last component itself only. */
    EXPECT_EQ(kiseki_symlink(fs, "sym", "ns/sym2"), 0);
    EXPECT_EQ(kiseki_readlink(fs, "ns/sym2", buf, sizeof buf), 3);
    /* unlink removes the link, not its target. */
    EXPECT_EQ(kiseki_unlink(fs, "ns/sym2"), 0);
    EXPECT_EQ(kiseki_lstat(fs, "ns/sym", &st), 0);

    /* Removing everything leaves an empty directory that rmdir accepts. */
    const char *names[] = {"ns/sym",      "ns/abs",   "ns/dangling", "ns/loop1", "ns/loop2",
                           "ns/hard",     "ns/sub/moved"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        EXPECT_EQ(kiseki_unlink(fs, names[i]), 0);
    }
    EXPECT_EQ(kiseki_rmdir(fs, "ns/sub"), 0);
    EXPECT_EQ(kiseki_rmdir(fs, "ns/b"), 0);
    EXPECT_EQ(kiseki_rmdir(fs, "ns"), 0);
    EXPECT_ERR(kiseki_stat(fs, "ns", &st), ENOENT);
    /* The root cannot be removed. */
    EXPECT(kiseki_rmdir(fs, "/") < 0);
}

/* ------------------------------------------------------------------------------ */
/* Attributes: stat/lstat/access/chmod/chown/utimens/truncate/statvfs              */
/* ------------------------------------------------------------------------------ */

static int ts_eq(struct timespec a, time_t sec, long nsec)
{
    return a.tv_sec == sec && a.tv_nsec == nsec;
}

/* t lies in [lo - 1 s, hi + 1 s] (clock granularity and the library's clock). */
static int ts_near(struct timespec t, struct timespec lo, struct timespec hi)
{
    return t.tv_sec >= lo.tv_sec - 1 && t.tv_sec <= hi.tv_sec + 1;
}

static void test_attributes(kiseki_fs *fs)
{
    struct stat st;
    put(fs, "attr", "0123456789", 10);
    EXPECT_EQ(kiseki_symlink(fs, "attr", "attr-link"), 0);

    /* Root directory. */
    st = must_stat(fs, "/");
    EXPECT(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_ino, 1);
    EXPECT_EQ(kiseki_stat(fs, "", &st), -ENOENT);

    /* access. */
    EXPECT_EQ(kiseki_access(fs, "attr", F_OK), 0);
    EXPECT_EQ(kiseki_access(fs, "attr", R_OK | W_OK), 0);
    EXPECT_ERR(kiseki_access(fs, "attr", X_OK), EACCES); /* no x bit: even root */
    EXPECT_ERR(kiseki_access(fs, "missing", F_OK), ENOENT);
    EXPECT_ERR(kiseki_access(fs, "attr", 0x100), EINVAL);
    EXPECT_EQ(kiseki_access(fs, "/", R_OK | W_OK | X_OK), 0);
    EXPECT_EQ(kiseki_access(fs, "attr-link", R_OK), 0);

    /* chmod (follows symlinks). */
    EXPECT_EQ(kiseki_chmod(fs, "attr", 0751), 0);
    EXPECT_EQ(must_stat(fs, "attr").st_mode & 07777, 0751);
    EXPECT_EQ(kiseki_access(fs, "attr", X_OK), 0);
    EXPECT_EQ(kiseki_chmod(fs, "attr-link", 0600), 0);
    EXPECT_EQ(must_stat(fs, "attr").st_mode & 07777, 0600);
    EXPECT(S_ISLNK(must_lstat(fs, "attr-link").st_mode));
    EXPECT_EQ(kiseki_chmod(fs, "attr", 04755), 0);
    EXPECT_EQ(must_stat(fs, "attr").st_mode & 07777, 04755);
    EXPECT_ERR(kiseki_chmod(fs, "missing", 0644), ENOENT);
    EXPECT_EQ(kiseki_chmod(fs, "attr", 0644), 0);
    if (geteuid() != 0) {
        EXPECT_EQ(kiseki_chmod(fs, "attr", 0444), 0);
        EXPECT_ERR(kiseki_access(fs, "attr", W_OK), EACCES);
        EXPECT_EQ(kiseki_chmod(fs, "attr", 0644), 0);
    }

    /* chown: -1 leaves an id unchanged; it follows a final symlink. */
    uid_t uid = geteuid();
    gid_t gid = getegid();
    EXPECT_EQ(kiseki_chown(fs, "attr", (uid_t)-1, (gid_t)-1), 0);
    st = must_stat(fs, "attr");
    EXPECT_EQ(st.st_uid, uid);
    EXPECT_EQ(st.st_gid, gid);
    EXPECT_EQ(kiseki_chown(fs, "attr", uid, gid), 0);
    if (uid == 0) {
        EXPECT_EQ(kiseki_chown(fs, "attr", 1234, (gid_t)-1), 0);
        st = must_stat(fs, "attr");
        EXPECT_EQ(st.st_uid, 1234);
        EXPECT_EQ(st.st_gid, gid);
        EXPECT_EQ(kiseki_chown(fs, "attr", (uid_t)-1, 5678), 0);
        st = must_stat(fs, "attr");
        EXPECT_EQ(st.st_uid, 1234);
        EXPECT_EQ(st.st_gid, 5678);
        EXPECT_EQ(kiseki_chown(fs, "attr-link", 4321, 8765), 0);
        st = must_stat(fs, "attr");
        EXPECT_EQ(st.st_uid, 4321);
        EXPECT_EQ(st.st_gid, 8765);
        st = must_lstat(fs, "attr-link");
        EXPECT_EQ(st.st_uid, uid);
        EXPECT_EQ(kiseki_chown(fs, "attr", uid, gid), 0);
    } else {
        EXPECT_ERR(kiseki_chown(fs, "attr", 0, (gid_t)-1), EPERM);
    }
    EXPECT_ERR(kiseki_chown(fs, "missing", uid, gid), ENOENT);

    /* utimens: explicit times, OMIT, NOW, NULL, and NOFOLLOW on a symlink. */
    struct timespec t[2] = {{1000000000, 123456789}, {1500000000, 5}};
    EXPECT_EQ(kiseki_utimens(fs, "attr", t, 0), 0);
    st = must_stat(fs, "attr");
    EXPECT(ts_eq(st.st_atim, 1000000000, 123456789));
    EXPECT(ts_eq(st.st_mtim, 1500000000, 5));

    struct timespec omit_atime[2] = {{0, UTIME_OMIT}, {1600000000, 0}};
    EXPECT_EQ(kiseki_utimens(fs, "attr", omit_atime, 0), 0);
    st = must_stat(fs, "attr");
    EXPECT(ts_eq(st.st_atim, 1000000000, 123456789));
    EXPECT(ts_eq(st.st_mtim, 1600000000, 0));

    struct timespec before, after;
    clock_gettime(CLOCK_REALTIME, &before);
    struct timespec now_mtime[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    EXPECT_EQ(kiseki_utimens(fs, "attr", now_mtime, 0), 0);
    clock_gettime(CLOCK_REALTIME, &after);
    st = must_stat(fs, "attr");
    EXPECT(ts_eq(st.st_atim, 1000000000, 123456789));
    EXPECT(ts_near(st.st_mtim, before, after));

    EXPECT_EQ(kiseki_utimens(fs, "attr", t, 0), 0);
    clock_gettime(CLOCK_REALTIME, &before);
    EXPECT_EQ(kiseki_utimens(fs, "attr", NULL, 0), 0);
    clock_gettime(CLOCK_REALTIME, &after);
    st = must_stat(fs, "attr");
    EXPECT(ts_near(st.st_atim, before, after));
    EXPECT(ts_near(st.st_mtim, before, after));

    struct timespec both_omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    struct stat prev = must_stat(fs, "attr");
    EXPECT_EQ(kiseki_utimens(fs, "attr", both_omit, 0), 0);
    st = must_stat(fs, "attr");
    EXPECT(ts_eq(st.st_mtim, prev.st_mtim.tv_sec, prev.st_mtim.tv_nsec));

    struct timespec lt[2] = {{1100000000, 0}, {1200000000, 0}};
    struct stat target_before = must_stat(fs, "attr");
    EXPECT_EQ(kiseki_utimens(fs, "attr-link", lt, AT_SYMLINK_NOFOLLOW), 0);
    st = must_lstat(fs, "attr-link");
    EXPECT(ts_eq(st.st_mtim, 1200000000, 0));
    EXPECT(ts_eq(st.st_atim, 1100000000, 0));
    st = must_stat(fs, "attr");
    EXPECT(ts_eq(st.st_mtim, target_before.st_mtim.tv_sec, target_before.st_mtim.tv_nsec));
    /* Without the flag the target changes. */
    EXPECT_EQ(kiseki_utimens(fs, "attr-link", t, 0), 0);
    EXPECT(ts_eq(must_stat(fs, "attr").st_mtim, 1500000000, 5));

    struct timespec bad_nsec[2] = {{0, 1000000000}, {0, 0}};
    EXPECT_ERR(kiseki_utimens(fs, "attr", bad_nsec, 0), EINVAL);
    EXPECT_ERR(kiseki_utimens(fs, "attr", t, 0x4000), EINVAL);
    EXPECT_ERR(kiseki_utimens(fs, "missing", t, 0), ENOENT);

    /* truncate by path. */
    EXPECT_EQ(kiseki_truncate(fs, "attr", 4), 0);
    holds(fs, "attr", "0123", 4);
    EXPECT_EQ(kiseki_truncate(fs, "attr-link", 6), 0);
    holds(fs, "attr", "0123\0\0", 6);
    EXPECT_ERR(kiseki_truncate(fs, "attr", -1), EINVAL);
    EXPECT_ERR(kiseki_truncate(fs, "/", 0), EISDIR);
    EXPECT_ERR(kiseki_truncate(fs, "missing", 0), ENOENT);

    /* statvfs: 4 KiB units; the capacity and inode limit given to kiseki_format. */
    struct statvfs vfs;
    memset(&vfs, 0, sizeof vfs);
    EXPECT_EQ(kiseki_statvfs(fs, "/", &vfs), 0);
    EXPECT_EQ(vfs.f_bsize, 4096);
    EXPECT_EQ(vfs.f_frsize, 4096);
    EXPECT_EQ(vfs.f_namemax, 255);
    EXPECT_EQ(vfs.f_blocks, (1ull << 30) / 4096);
    EXPECT(vfs.f_bfree <= vfs.f_blocks);
    EXPECT(vfs.f_bavail <= vfs.f_bfree);
    EXPECT_EQ(vfs.f_files, 100000);
    EXPECT(vfs.f_ffree < vfs.f_files);
    EXPECT_EQ(kiseki_statvfs(fs, "attr", &vfs), 0);
    EXPECT_ERR(kiseki_statvfs(fs, "missing", &vfs), ENOENT);

    /* kiseki_stats: OpenMetrics text, snprintf-style lengths. The numbers move between
     * calls (other threads count too), so the text may grow a little: room is left. */
    ssize_t need = kiseki_stats(fs, NULL, 0);
    EXPECT(need > 0);
    size_t room = (size_t)need + 4096;
    char *text = malloc(room);
    ssize_t got = kiseki_stats(fs, text, room);
    EXPECT(got > 0 && (size_t)got < room);
    EXPECT_EQ(strlen(text), (size_t)got);
    EXPECT(strstr(text, "kiseki_written_bytes_total ") != NULL);
    EXPECT(strstr(text, "# EOF\n") != NULL);
    char small[16];
    EXPECT((size_t)kiseki_stats(fs, small, sizeof small) >= sizeof small);
    EXPECT_EQ(strlen(small), sizeof small - 1);
    EXPECT_ERR(kiseki_stats(fs, NULL, 8), EFAULT);
    EXPECT_ERR(kiseki_stats(NULL, text, room), EFAULT);
    free(text);

    EXPECT_EQ(kiseki_unlink(fs, "attr-link"), 0);
    EXPECT_EQ(kiseki_unlink(fs, "attr"), 0);
}

/* ------------------------------------------------------------------------------ */
/* Extended attributes                                                              */
/* ------------------------------------------------------------------------------ */

/* Whether the NUL-separated `list` of `len` bytes contains `name`. */
static int list_has(const char *list, size_t len, const char *name)
{
    for (size_t i = 0; i < len; i += strlen(list + i) + 1) {
        if (strcmp(list + i, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_xattr(kiseki_fs *fs)
{
    put(fs, "xa", "x", 1);
    char buf[256];

    EXPECT_EQ(kiseki_listxattr(fs, "xa", NULL, 0), 0);
    EXPECT_EQ(kiseki_setxattr(fs, "xa", "user.greeting", "hello", 5, 0), 0);
    EXPECT_EQ(kiseki_getxattr(fs, "xa", "user.greeting", NULL, 0), 5);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(kiseki_getxattr(fs, "xa", "user.greeting", buf, 5), 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    EXPECT_EQ(kiseki_getxattr(fs, "xa", "user.greeting", buf, sizeof buf), 5);
    EXPECT_ERR(kiseki_getxattr(fs, "xa", "user.greeting", buf, 4), ERANGE);
    EXPECT_ERR(kiseki_getxattr(fs, "xa", "user.missing", buf, sizeof buf), ENODATA);
    EXPECT_ERR(kiseki_getxattr(fs, "xa", "user.missing", NULL, 0), ENODATA);
    EXPECT_ERR(kiseki_getxattr(fs, "missing", "user.greeting", buf, sizeof buf), ENOENT);

    /* Flags: CREATE refuses an existing name, REPLACE a missing one. */
    EXPECT_ERR(kiseki_setxattr(fs, "xa", "user.greeting", "x", 1, XATTR_CREATE), EEXIST);
    EXPECT_ERR(kiseki_setxattr(fs, "xa", "user.other", "x", 1, XATTR_REPLACE), ENODATA);
    EXPECT_EQ(kiseki_setxattr(fs, "xa", "user.greeting", "bonjour", 7, XATTR_REPLACE), 0);
    EXPECT_EQ(kiseki_getxattr(fs, "xa", "user.greeting", buf, sizeof buf), 7);
    EXPECT(memcmp(buf, "bonjour", 7) == 0);
    EXPECT_EQ(kiseki_setxattr(fs, "xa", "user.other", "\0binary\xff", 8, XATTR_CREATE), 0);
    EXPECT_EQ(kiseki_getxattr(fs, "xa", "user.other", buf, sizeof buf), 8);
    EXPECT(memcmp(buf, "\0binary\xff", 8) == 0);
    /* An empty value is a value. */
    EXPECT_EQ(kiseki_setxattr(fs, "xa", "user.empty", NULL, 0, 0), 0);
    EXPECT_EQ(kiseki_getxattr(fs, "xa", "user.empty", buf, sizeof buf), 0);
    EXPECT_ERR(kiseki_setxattr(fs, "xa", "user.bad", "x", 1, 4), EINVAL);
    EXPECT_ERR(kiseki_setxattr(fs, "xa", "user.bad", "x", 1, -1), EINVAL);

    /* listxattr: size 0 asks for the length; names are NUL-terminated. */
    size_t want = strlen("user.greeting") + 1 + strlen("user.other") + 1 + strlen("user.empty") + 1;
    EXPECT_EQ(kiseki_listxattr(fs, "xa", NULL, 0), want);
    memset(buf, 'Z', sizeof buf);
    ssize_t n = kiseki_listxattr(fs, "xa", buf, sizeof buf);
    EXPECT_EQ(n, want);
    if (n > 0) {
        EXPECT_EQ(buf[n - 1], '\0');
        EXPECT(list_has(buf, (size_t)n, "user.greeting"));
        EXPECT(list_has(buf, (size_t)n, "user.other"));
        EXPECT(list_has(buf, (size_t)n, "user.empty"));
    }
    EXPECT_ERR(kiseki_listxattr(fs, "xa", buf, want - 1), ERANGE);
    EXPECT_ERR(kiseki_listxattr(fs, "missing", buf, sizeof buf), ENOENT);

    /* removexattr. */
    EXPECT_EQ(kiseki_removexattr(fs, "xa", "user.other"), 0);
    EXPECT_ERR(kiseki_removexattr(fs, "xa", "user.other"), ENODATA);
    EXPECT_ERR(kiseki_getxattr(fs, "xa", "user.other", buf, sizeof buf), ENODATA);
    EXPECT_EQ(kiseki_listxattr(fs, "xa", NULL, 0), want - strlen("user.other") - 1);
    EXPECT_ERR(kiseki_removexattr(fs, "missing", "user.greeting"), ENOENT);

    /* Attributes of a symlink's target are reached through the link (followed). */
    EXPECT_EQ(kiseki_symlink(fs, "xa", "xa-link"), 0);
    EXPECT_EQ(kiseki_getxattr(fs, "xa-link", "user.greeting", buf, sizeof buf), 7);
    /* Directories carry attributes too. */
    EXPECT_EQ(kiseki_mkdir(fs, "xa-dir", 0755), 0);
    EXPECT_EQ(kiseki_setxattr(fs, "xa-dir", "user.d", "1", 1, 0), 0);
    EXPECT_EQ(kiseki_getxattr(fs, "xa-dir", "user.d", buf, sizeof buf), 1);

    EXPECT_EQ(kiseki_unlink(fs, "xa-link"), 0);
}

/* ------------------------------------------------------------------------------ */
/* Directory streams                                                               */
/* ------------------------------------------------------------------------------ */

#define NFILES 300 /* more than one page of entries (the library reads 256 at a time) */

static void test_readdir(kiseki_fs *fs)
{
    EXPECT_EQ(kiseki_mkdir(fs, "rd", 0755), 0);
    char path[64];
    for (int i = 0; i < NFILES; i++) {
        snprintf(path, sizeof path, "rd/f%03d", i);
        int fd = (int)EXPECT_OK(kiseki_open(fs, path, O_WRONLY | O_CREAT | O_EXCL, 0644));
        if (fd >= 0) {
            EXPECT_EQ(kiseki_close(fs, fd), 0);
        }
    }
    EXPECT_EQ(kiseki_mkdir(fs, "rd/subdir", 0755), 0);
    EXPECT_EQ(kiseki_symlink(fs, "f000", "rd/symlink"), 0);
    struct stat rd = must_stat(fs, "rd");
    struct stat root = must_stat(fs, "/");

    int d = (int)REQUIRE_OK(kiseki_opendir(fs, "rd"));
    for (int pass = 0; pass < 2; pass++) {
        static unsigned char seen[NFILES];
        memset(seen, 0, sizeof seen);
        int count = 0, saw_subdir = 0, saw_symlink = 0, order_ok = 1;
        kiseki_dirent e;
        int r;
        while ((r = kiseki_readdir(fs, d, &e)) == 1) {
            /* The name is NUL-terminated within d_name. */
            if (!EXPECT(memchr(e.d_name, '\0', sizeof e.d_name) != NULL)) {
                break;
            }
            if (count == 0) {
                order_ok &= strcmp(e.d_name, ".") == 0;
                EXPECT_EQ(e.d_type, DT_DIR);
                EXPECT_EQ(e.d_ino, rd.st_ino);
            } else if (count == 1) {
                order_ok &= strcmp(e.d_name, "..") == 0;
                EXPECT_EQ(e.d_type, DT_DIR);
                EXPECT_EQ(e.d_ino, root.st_ino);
            } else if (strcmp(e.d_name, "subdir") == 0) {
                saw_subdir++;
                EXPECT_EQ(e.d_type, DT_DIR);
                EXPECT_EQ(e.d_ino, must_lstat(fs, "rd/subdir").st_ino);
            } else if (strcmp(e.d_name, "symlink") == 0) {
                saw_symlink++;
                EXPECT_EQ(e.d_type, DT_LNK);
                EXPECT_EQ(e.d_ino, must_lstat(fs, "rd/symlink").st_ino);
            } else {
                int i = -1;
                if (sscanf(e.d_name, "f%d", &i) == 1 && i >= 0 && i < NFILES) {
                    seen[i]++;
                    EXPECT_EQ(e.d_type, DT_REG);
                } else {
                    check_fail(__FILE__, __LINE__, "unexpected entry \"%s\"", e.d_name);
                }
            }
            count++;
        }
        EXPECT_EQ(r, 0);
        /* At the end it stays at the end. */
        EXPECT_EQ(kiseki_readdir(fs, d, &e), 0);
        EXPECT(order_ok);
        EXPECT_EQ(count, NFILES + 4);
        EXPECT_EQ(saw_subdir, 1);
        EXPECT_EQ(saw_symlink, 1);
        int all_once = 1;
        for (int i = 0; i < NFILES; i++) {
            all_once &= seen[i] == 1;
        }
        EXPECT(all_once);
        /* The second pass reads the same after a rewind. */
        EXPECT_EQ(kiseki_rewinddir(fs, d), 0);
    }
    /* rewind in the middle starts over at ".". */
    kiseki_dirent e;
    EXPECT_EQ(kiseki_readdir(fs, d, &e), 1);
    EXPECT_EQ(kiseki_readdir(fs, d, &e), 1);
    EXPECT_EQ(kiseki_readdir(fs, d, &e), 1);
    EXPECT_EQ(kiseki_rewinddir(fs, d), 0);
    EXPECT_EQ(kiseki_readdir(fs, d, &e), 1);
    EXPECT_EQ(strcmp(e.d_name, "."), 0);
    EXPECT_EQ(kiseki_closedir(fs, d), 0);
    EXPECT_ERR(kiseki_closedir(fs, d), EBADF);
    EXPECT_ERR(kiseki_readdir(fs, d, &e), EBADF);
    EXPECT_ERR(kiseki_rewinddir(fs, d), EBADF);

    /* An empty directory has only . and .. */
    int empty = (int)REQUIRE_OK(kiseki_opendir(fs, "rd/subdir"));
    EXPECT_EQ(kiseki_readdir(fs, empty, &e), 1);
    EXPECT_EQ(kiseki_readdir(fs, empty, &e), 1);
    EXPECT_EQ(strcmp(e.d_name, ".."), 0);
    EXPECT_EQ(e.d_ino, rd.st_ino);
    EXPECT_EQ(kiseki_readdir(fs, empty, &e), 0);
    EXPECT_ERR(kiseki_readdir(fs, empty, NULL), EFAULT);
    /* A directory stream is not a file. */
    char c;
    EXPECT_ERR(kiseki_read(fs, empty, &c, 1), EISDIR);
    EXPECT_EQ(kiseki_closedir(fs, empty), 0);

    /* opendir errors; through a symlink it opens the target. */
    EXPECT_ERR(kiseki_opendir(fs, "rd/f000"), ENOTDIR);
    EXPECT_ERR(kiseki_opendir(fs, "rd/missing"), ENOENT);
    EXPECT_EQ(kiseki_symlink(fs, "rd", "rd-link"), 0);
    d = (int)EXPECT_OK(kiseki_opendir(fs, "rd-link"));
    if (d >= 0) {
        EXPECT_EQ(kiseki_readdir(fs, d, &e), 1);
        EXPECT_EQ(e.d_ino, rd.st_ino);
        EXPECT_EQ(kiseki_closedir(fs, d), 0);
    }
    /* The root lists what this test made. */
    d = (int)REQUIRE_OK(kiseki_opendir(fs, "/"));
    int found_rd = 0;
    while (kiseki_readdir(fs, d, &e) == 1) {
        found_rd |= strcmp(e.d_name, "rd") == 0 && e.d_type == DT_DIR;
    }
    EXPECT(found_rd);
    EXPECT_EQ(kiseki_closedir(fs, d), 0);

    /* Directory streams and files share the descriptor table but not their calls:
     * readdir/closedir on a file descriptor is not a directory stream (EBADF, as
     * closedir(3) says of an invalid stream), and the file stays open. */
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "rd/f001", O_RDONLY, 0));
    EXPECT_ERR(kiseki_closedir(fs, fd), EBADF);
    EXPECT_ERR(kiseki_readdir(fs, fd, &e), EBADF);
    EXPECT_ERR(kiseki_rewinddir(fs, fd), EBADF);
    EXPECT_EQ(kiseki_read(fs, fd, &c, 1), 0);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    /* close(2) of a directory stream descriptor works like closedir. */
    d = (int)REQUIRE_OK(kiseki_opendir(fs, "rd"));
    EXPECT_EQ(kiseki_close(fs, d), 0);
    EXPECT_ERR(kiseki_closedir(fs, d), EBADF);
}

/* ------------------------------------------------------------------------------ */
/* Bad arguments: EFAULT, EINVAL, ENAMETOOLONG, EBADF                               */
/* ------------------------------------------------------------------------------ */

/* The trash keeps what unlink removed, read-only, until kiseki_restore puts it back. */
static void test_trash(kiseki_fs *fs)
{
    struct stat st;
    put(fs, "trashed", "keep me", 7);
    EXPECT_EQ(kiseki_stat(fs, "trashed", &st), 0);
    char suffix[64];
    snprintf(suffix, sizeof suffix, "-%llu-trashed", (unsigned long long)st.st_ino);
    EXPECT_EQ(kiseki_unlink(fs, "trashed"), 0);
    EXPECT_EQ(kiseki_stat(fs, ".trash", &st), 0);
    EXPECT(S_ISDIR(st.st_mode));
    /* Its entry, named "<parent>-<inode>-trashed", is in an hour directory. */
    char entry[800] = "";
    int top = (int)REQUIRE_OK(kiseki_opendir(fs, ".trash"));
    kiseki_dirent hour;
    while (kiseki_readdir(fs, top, &hour) == 1) {
        if (hour.d_name[0] == '.') {
            continue;
        }
        char dir[300];
        snprintf(dir, sizeof dir, ".trash/%s", hour.d_name);
        int d = (int)REQUIRE_OK(kiseki_opendir(fs, dir));
        kiseki_dirent e;
        while (kiseki_readdir(fs, d, &e) == 1) {
            size_t n = strlen(e.d_name), m = strlen(suffix);
            if (n >= m && strcmp(e.d_name + n - m, suffix) == 0) {
                snprintf(entry, sizeof entry, "%s/%s", dir, e.d_name);
            }
        }
        EXPECT_EQ(kiseki_closedir(fs, d), 0);
    }
    EXPECT_EQ(kiseki_closedir(fs, top), 0);
    if (!EXPECT(entry[0] != '\0')) {
        return;
    }
    holds(fs, entry, "keep me", 7);
    EXPECT_ERR(kiseki_open(fs, entry, O_WRONLY, 0), EPERM);
    uint64_t restored = 0, left = 9;
    EXPECT_EQ(kiseki_restore(fs, entry, &restored, &left), 0);
    EXPECT_EQ(restored, 1);
    EXPECT_EQ(left, 0);
    holds(fs, "trashed", "keep me", 7);
    EXPECT_ERR(kiseki_restore(fs, "trashed", NULL, NULL), EINVAL);
    EXPECT_ERR(kiseki_restore(fs, NULL, NULL, NULL), EFAULT);
}

static void test_clone(kiseki_fs *fs)
{
    EXPECT_EQ(kiseki_mkdir(fs, "csrc", 0755), 0);
    EXPECT_EQ(kiseki_mkdir(fs, "csrc/sub", 0755), 0);
    put(fs, "csrc/one", "first file", 10);
    put(fs, "csrc/sub/two", "second", 6);
    EXPECT_EQ(kiseki_symlink(fs, "one", "csrc/link"), 0);
    uint64_t entries = 0, bytes = 0;
    EXPECT_EQ(kiseki_clone(fs, "csrc", "cdst", 0, &entries, &bytes), 0);
    EXPECT_EQ(entries, 5);
    EXPECT_EQ(bytes, 16);
    holds(fs, "cdst/one", "first file", 10);
    holds(fs, "cdst/sub/two", "second", 6);
    holds(fs, "cdst/link", "first file", 10);
    /* The sides are independent: a write to the clone leaves the source. */
    put(fs, "cdst/one", "changed", 7);
    holds(fs, "csrc/one", "first file", 10);
    EXPECT_EQ(kiseki_clone(fs, "csrc/one", "single", KISEKI_CLONE_PRESERVE, NULL, NULL), 0);
    holds(fs, "single", "first file", 10);
    EXPECT_ERR(kiseki_clone(fs, "csrc", "cdst", 0, NULL, NULL), EEXIST);
    EXPECT_ERR(kiseki_clone(fs, "csrc", "csrc/sub/in", 0, NULL, NULL), EINVAL);
    EXPECT_ERR(kiseki_clone(fs, "missing", "x", 0, NULL, NULL), ENOENT);
    EXPECT_ERR(kiseki_clone(fs, "csrc", "y", 0x80, NULL, NULL), EINVAL);
    EXPECT_ERR(kiseki_clone(fs, NULL, "x", 0, NULL, NULL), EFAULT);
    EXPECT_ERR(kiseki_clone(fs, "csrc", NULL, 0, NULL, NULL), EFAULT);
}

static void test_bad_arguments(kiseki_fs *fs)
{
    struct stat st;
    char buf[16];
    kiseki_dirent e;
    struct statvfs vfs;
    put(fs, "args", "0123456789", 10);
    EXPECT_EQ(kiseki_symlink(fs, "args", "args-link"), 0);
    EXPECT_EQ(kiseki_setxattr(fs, "args", "user.v", "12345", 5, 0), 0);
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "args", O_RDWR, 0));
    int d = (int)REQUIRE_OK(kiseki_opendir(fs, "/"));

    /* EFAULT: NULL where a value is required. */
    EXPECT_ERR(kiseki_open(fs, NULL, O_RDONLY, 0), EFAULT);
    EXPECT_ERR(kiseki_stat(fs, NULL, &st), EFAULT);
    EXPECT_ERR(kiseki_stat(fs, "args", NULL), EFAULT);
    EXPECT_ERR(kiseki_lstat(fs, "args", NULL), EFAULT);
    EXPECT_ERR(kiseki_lstat(fs, NULL, &st), EFAULT);
    EXPECT_ERR(kiseki_fstat(fs, fd, NULL), EFAULT);
    EXPECT_ERR(kiseki_read(fs, fd, NULL, 10), EFAULT);
    EXPECT_ERR(kiseki_write(fs, fd, NULL, 10), EFAULT);
    EXPECT_ERR(kiseki_pread(fs, fd, NULL, 10, 0), EFAULT);
    EXPECT_ERR(kiseki_pwrite(fs, fd, NULL, 10, 0), EFAULT);
    EXPECT_ERR(kiseki_access(fs, NULL, F_OK), EFAULT);
    EXPECT_ERR(kiseki_mkdir(fs, NULL, 0755), EFAULT);
    EXPECT_ERR(kiseki_rmdir(fs, NULL), EFAULT);
    EXPECT_ERR(kiseki_unlink(fs, NULL), EFAULT);
    EXPECT_ERR(kiseki_rename(fs, NULL, "x", 0), EFAULT);
    EXPECT_ERR(kiseki_rename(fs, "args", NULL, 0), EFAULT);
    EXPECT_ERR(kiseki_link(fs, NULL, "x"), EFAULT);
    EXPECT_ERR(kiseki_link(fs, "args", NULL), EFAULT);
    EXPECT_ERR(kiseki_symlink(fs, NULL, "x"), EFAULT);
    EXPECT_ERR(kiseki_symlink(fs, "args", NULL), EFAULT);
    EXPECT_ERR(kiseki_readlink(fs, NULL, buf, sizeof buf), EFAULT);
    EXPECT_ERR(kiseki_readlink(fs, "args-link", NULL, sizeof buf), EFAULT);
    EXPECT_ERR(kiseki_chmod(fs, NULL, 0644), EFAULT);
    EXPECT_ERR(kiseki_chown(fs, NULL, (uid_t)-1, (gid_t)-1), EFAULT);
    EXPECT_ERR(kiseki_utimens(fs, NULL, NULL, 0), EFAULT);
    EXPECT_ERR(kiseki_truncate(fs, NULL, 0), EFAULT);
    EXPECT_ERR(kiseki_statvfs(fs, NULL, &vfs), EFAULT);
    EXPECT_ERR(kiseki_statvfs(fs, "/", NULL), EFAULT);
    EXPECT_ERR(kiseki_getxattr(fs, NULL, "user.v", buf, sizeof buf), EFAULT);
    EXPECT_ERR(kiseki_getxattr(fs, "args", NULL, buf, sizeof buf), EFAULT);
    EXPECT_ERR(kiseki_getxattr(fs, "args", "user.v", NULL, sizeof buf), EFAULT);
    EXPECT_ERR(kiseki_setxattr(fs, NULL, "user.v", "1", 1, 0), EFAULT);
    EXPECT_ERR(kiseki_setxattr(fs, "args", NULL, "1", 1, 0), EFAULT);
    EXPECT_ERR(kiseki_setxattr(fs, "args", "user.v", NULL, 1, 0), EFAULT);
    EXPECT_ERR(kiseki_listxattr(fs, NULL, buf, sizeof buf), EFAULT);
    EXPECT_ERR(kiseki_listxattr(fs, "args", NULL, sizeof buf), EFAULT);
    EXPECT_ERR(kiseki_removexattr(fs, NULL, "user.v"), EFAULT);
    EXPECT_ERR(kiseki_removexattr(fs, "args", NULL), EFAULT);
    EXPECT_ERR(kiseki_opendir(fs, NULL), EFAULT);
    EXPECT_ERR(kiseki_readdir(fs, d, NULL), EFAULT);
    /* A NULL connection. */
    EXPECT_ERR(kiseki_open(NULL, "args", O_RDONLY, 0), EFAULT);
    EXPECT_ERR(kiseki_stat(NULL, "args", &st), EFAULT);
    EXPECT_ERR(kiseki_close(NULL, fd), EFAULT);
    EXPECT_ERR(kiseki_read(NULL, fd, buf, 1), EFAULT);
    EXPECT_ERR(kiseki_readdir(NULL, d, &e), EFAULT);
    EXPECT_ERR(kiseki_closedir(NULL, d), EFAULT);
    EXPECT(strstr(kiseki_last_error(), "NULL") != NULL);
    /* None of that disturbed the data. */
    holds(fs, "args", "0123456789", 10);

    /* EINVAL: paths and names must be UTF-8. */
    EXPECT_ERR(kiseki_stat(fs, "bad\xff\xfe", &st), EINVAL);
    EXPECT_ERR(kiseki_open(fs, "bad\xc3", O_RDWR | O_CREAT, 0644), EINVAL);
    EXPECT_ERR(kiseki_mkdir(fs, "\x80", 0755), EINVAL);
    EXPECT_ERR(kiseki_rename(fs, "args", "\xff", 0), EINVAL);
    EXPECT_ERR(kiseki_symlink(fs, "\xff", "bad-target"), EINVAL);
    EXPECT_ERR(kiseki_getxattr(fs, "args", "user.\xff", buf, sizeof buf), EINVAL);
    EXPECT_ERR(kiseki_rename(fs, "args", "args2", 4), EINVAL);
    /* A valid multi-byte UTF-8 name works. */
    put(fs, "\xe8\xa9\xa6\xe9\xa8\x93-\xc3\xa9t\xc3\xa9", "u", 1);
    holds(fs, "\xe8\xa9\xa6\xe9\xa8\x93-\xc3\xa9t\xc3\xa9", "u", 1);

    /* ENAMETOOLONG: a component over 255 bytes, a path over 4096 bytes. */
    char name255[256], name256[257];
    memset(name255, 'n', 255);
    name255[255] = '\0';
    memset(name256, 'n', 256);
    name256[256] = '\0';
    put(fs, name255, "ok", 2);
    EXPECT_EQ(kiseki_stat(fs, name255, &st), 0);
    EXPECT_EQ(st.st_size, 2);
    EXPECT_EQ(kiseki_unlink(fs, name255), 0);
    EXPECT_ERR(kiseki_open(fs, name256, O_RDWR | O_CREAT, 0644), ENAMETOOLONG);
    EXPECT_ERR(kiseki_mkdir(fs, name256, 0755), ENAMETOOLONG);
    EXPECT_ERR(kiseki_symlink(fs, "args", name256), ENAMETOOLONG);
    EXPECT_ERR(kiseki_rename(fs, "args", name256, 0), ENAMETOOLONG);
    EXPECT_ERR(kiseki_link(fs, "args", name256), ENAMETOOLONG);
    EXPECT_ERR(kiseki_stat(fs, name256, &st), ENAMETOOLONG);
    EXPECT_ERR(kiseki_open(fs, name256, O_RDONLY, 0), ENAMETOOLONG);
    EXPECT_ERR(kiseki_unlink(fs, name256), ENAMETOOLONG);
    char longpath[5001];
    /* "a/a/a/..." : short components, 4097 bytes in all. */
    for (int i = 0; i < 4097; i++) {
        longpath[i] = i % 2 ? '/' : 'a';
    }
    longpath[4097] = '\0';
    EXPECT_ERR(kiseki_stat(fs, longpath, &st), ENAMETOOLONG);
    EXPECT_ERR(kiseki_open(fs, longpath, O_RDWR | O_CREAT, 0644), ENAMETOOLONG);
    memset(longpath, 'b', 5000);
    longpath[5000] = '\0';
    EXPECT_ERR(kiseki_mkdir(fs, longpath, 0755), ENAMETOOLONG);

    /* EBADF: never opened, negative, huge, and (above) closed descriptors. */
    int bogus[] = {-1, -12345, 4242, 0x7fffffff, fd + 1000};
    for (size_t i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
        int b = bogus[i];
        EXPECT_ERR(kiseki_read(fs, b, buf, 1), EBADF);
        EXPECT_ERR(kiseki_write(fs, b, buf, 1), EBADF);
        EXPECT_ERR(kiseki_close(fs, b), EBADF);
        EXPECT_ERR(kiseki_lseek(fs, b, 0, SEEK_SET), EBADF);
        EXPECT_ERR(kiseki_fstat(fs, b, &st), EBADF);
        EXPECT_ERR(kiseki_readdir(fs, b, &e), EBADF);
        EXPECT_ERR(kiseki_closedir(fs, b), EBADF);
    }
    /* A failed call does not close or move anything. */
    EXPECT_EQ(kiseki_read(fs, fd, buf, 4), 4);
    EXPECT(memcmp(buf, "0123", 4) == 0);

    EXPECT_EQ(kiseki_close(fs, fd), 0);
    EXPECT_EQ(kiseki_closedir(fs, d), 0);
    EXPECT_EQ(kiseki_unlink(fs, "args-link"), 0);
    EXPECT_EQ(kiseki_unlink(fs, "args"), 0);
}

/* ------------------------------------------------------------------------------ */
/* Large data                                                                      */
/* ------------------------------------------------------------------------------ */

#define LARGE (20 * MiB + 12345)

/* 20 MiB of pseudo-random data in odd-sized writes, read back in other odd sizes: the
 * block size is 4 MiB, so writes and reads straddle block boundaries. */
static void test_large(kiseki_fs *fs)
{
    unsigned char *data = pattern(42, LARGE);
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "large", O_WRONLY | O_CREAT | O_TRUNC, 0644));
    size_t chunk = MiB + 7;
    for (size_t off = 0; off < LARGE; off += chunk) {
        size_t n = LARGE - off < chunk ? LARGE - off : chunk;
        if (!EXPECT_EQ(kiseki_write(fs, fd, data + off, n), n)) {
            break;
        }
    }
    EXPECT_EQ(kiseki_fsync(fs, fd), 0);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    EXPECT_EQ(must_stat(fs, "large").st_size, LARGE);

    unsigned char *back = malloc(LARGE);
    REQUIRE(back != NULL);
    fd = (int)REQUIRE_OK(kiseki_open(fs, "large", O_RDONLY, 0));
    size_t have = 0, rchunk = 3 * MiB - 1;
    while (have < LARGE) {
        size_t want = LARGE - have < rchunk ? LARGE - have : rchunk;
        ssize_t n = kiseki_read(fs, fd, back + have, want);
        if (n <= 0) {
            EXPECT_OK(n);
            break;
        }
        have += (size_t)n;
    }
    EXPECT_EQ(have, LARGE);
    EXPECT_EQ(first_diff(back, data, LARGE), -1);
    /* Reads across each block boundary. */
    for (size_t b = 1; b <= 5; b++) {
        off_t at = (off_t)(b * 4 * MiB) - 100;
        unsigned char small[200];
        EXPECT_EQ(kiseki_pread(fs, fd, small, sizeof small, at), sizeof small);
        EXPECT(memcmp(small, data + at, sizeof small) == 0);
    }
    /* Overwrite a range spanning a block boundary in place, then verify it all. */
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    fd = (int)REQUIRE_OK(kiseki_open(fs, "large", O_RDWR, 0));
    unsigned char *patch = pattern(43, MiB);
    EXPECT_EQ(kiseki_pwrite(fs, fd, patch, MiB, 8 * MiB - MiB / 2), MiB);
    memcpy(data + 8 * MiB - MiB / 2, patch, MiB);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    holds(fs, "large", data, LARGE);
    free(patch);
    free(back);
    free(data);
}

/* ------------------------------------------------------------------------------ */
/* Connections: disconnect, reconnect, durability, stale handles, fork              */
/* ------------------------------------------------------------------------------ */

static kiseki_fs *test_durability(kiseki_fs *fs)
{
    /* Closed files are durable; a file still open at disconnect is flushed by it. */
    unsigned char *closed = pattern(100, 5 * MiB + 3);
    /* 6 MiB + 1 written now, one more byte after the fork below. */
    unsigned char *open_at_end = pattern(101, 6 * MiB + 2);
    put(fs, "durable-closed", closed, 5 * MiB + 3);
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "durable-open", O_WRONLY | O_CREAT | O_TRUNC, 0640));
    EXPECT_EQ(kiseki_write(fs, fd, open_at_end, 6 * MiB + 1), 6 * MiB + 1);
    int d = (int)REQUIRE_OK(kiseki_opendir(fs, "/"));
    EXPECT_EQ(kiseki_mkdir(fs, "durable-dir", 0700), 0);
    EXPECT_EQ(kiseki_setxattr(fs, "durable-dir", "user.k", "v", 1, 0), 0);

    /* A forked child cannot use the parent's connection: EBADF, no hang, no crash. */
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        struct stat st;
        int ok = kiseki_stat(fs, "/", &st) == -EBADF && kiseki_fstat(fs, fd, &st) == -EBADF &&
                 kiseki_open(fs, "durable-closed", O_RDONLY, 0) == -EBADF;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* ... and the parent's connection is unaffected. */
    EXPECT_EQ(kiseki_write(fs, fd, "!", 1), 1);
    open_at_end[6 * MiB + 1] = '!';

    EXPECT_EQ(kiseki_disconnect(fs), 0);

    /* The handle, its descriptors and its streams are dead: EBADF, not a crash. */
    struct stat st;
    char buf[4];
    EXPECT_ERR(kiseki_stat(fs, "/", &st), EBADF);
    EXPECT_ERR(kiseki_open(fs, "durable-closed", O_RDONLY, 0), EBADF);
    EXPECT_ERR(kiseki_read(fs, fd, buf, 1), EBADF);
    EXPECT_ERR(kiseki_close(fs, fd), EBADF);
    EXPECT_ERR(kiseki_readdir(fs, d, NULL), EBADF);
    EXPECT_ERR(kiseki_closedir(fs, d), EBADF);
    EXPECT_ERR(kiseki_mkdir(fs, "after", 0755), EBADF);
    EXPECT_ERR(kiseki_disconnect(fs), EBADF);

    /* The volume is released: connect again and find everything. */
    kiseki_fs *old = fs;
    fs = connect_or_die();
    holds(fs, "durable-closed", closed, 5 * MiB + 3);
    holds(fs, "durable-open", open_at_end, 6 * MiB + 2);
    EXPECT_EQ(must_stat(fs, "durable-open").st_mode & 07777, 0640);
    EXPECT(S_ISDIR(must_stat(fs, "durable-dir").st_mode));
    EXPECT_EQ(kiseki_getxattr(fs, "durable-dir", "user.k", buf, sizeof buf), 1);
    EXPECT_ERR(kiseki_stat(fs, "after", &st), ENOENT);
    /* Earlier sections' files survived too. */
    EXPECT_EQ(must_stat(fs, "large").st_size, LARGE);
    EXPECT_EQ(must_stat(fs, "sparse").st_size, 8 * MiB + 4096);

    /* The old pointer stays dead even though a new connection exists (the allocator
     * may well have handed the new one the same address). */
    if (old == fs) {
        fprintf(stderr, "note: the new connection reuses the old kiseki_fs address\n");
    }
    EXPECT_ERR(kiseki_disconnect(old), EBADF);
    EXPECT_EQ(kiseki_stat(fs, "/", &st), 0);

    /* The same volume cannot be connected twice at once (RocksDB has one opener). */
    errno = 0;
    kiseki_fs *twice = kiseki_connect(meta_url, NULL);
    int e = errno;
    if (!EXPECT(twice == NULL)) {
        kiseki_disconnect(twice);
    } else {
        EXPECT_EQ(e, EBUSY);
        EXPECT(strlen(kiseki_last_error()) > 0);
    }

    /* Another volume can be connected alongside; descriptors belong to their fs. */
    char meta2[4200], opts2[4300], bucket2[4200];
    snprintf(meta2, sizeof meta2, "rocksdb://%s/meta2", tmpdir);
    snprintf(bucket2, sizeof bucket2, "%s/data2", tmpdir);
    REQUIRE(mkdir(bucket2, 0755) == 0);
    snprintf(opts2, sizeof opts2, "storage=fs,bucket=%s,block-size=1M", bucket2);
    EXPECT_EQ(kiseki_format(meta2, "second", opts2), 0);
    kiseki_fs *fs2 = kiseki_connect(meta2, NULL);
    if (EXPECT(fs2 != NULL)) {
        int a = (int)REQUIRE_OK(kiseki_open(fs, "durable-closed", O_RDONLY, 0));
        /* fs2 has nothing open, so fs's descriptor means nothing there. */
        EXPECT_ERR(kiseki_read(fs2, a, buf, 1), EBADF);
        EXPECT_ERR(kiseki_close(fs2, a), EBADF);
        EXPECT_ERR(kiseki_stat(fs2, "durable-closed", &st), ENOENT);
        put(fs2, "only-in-two", "2", 1);
        EXPECT_ERR(kiseki_stat(fs, "only-in-two", &st), ENOENT);
        EXPECT_EQ(kiseki_read(fs, a, buf, 1), 1);
        EXPECT_EQ(kiseki_close(fs, a), 0);
        EXPECT_EQ(kiseki_disconnect(fs2), 0);
    }
    free(closed);
    free(open_at_end);
    return fs;
}

/* ------------------------------------------------------------------------------ */
/* Attributes after every operation show writes not yet flushed                     */
/* ------------------------------------------------------------------------------ */

static void expect_size(kiseki_fs *fs, const char *path, const char *what)
{
    struct stat st;
    EXPECT_EQ(kiseki_stat(fs, path, &st), 0);
    if (st.st_size != 1 << 20) {
        printf("FAIL freshness after %s: %s has %lld bytes\n", what, path, (long long)st.st_size);
        atomic_fetch_add(&check_failed, 1);
    }
    int fd = kiseki_open(fs, path, O_RDONLY, 0);
    EXPECT_OK(fd);
    static char back[1 << 20];
    EXPECT_EQ(kiseki_pread(fs, fd, back, sizeof back, 0), (ssize_t)sizeof back);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
}

static void test_freshness(kiseki_fs *fs)
{
    static char data[1 << 20];
    memset(data, 'k', sizeof data);
    EXPECT_EQ(kiseki_mkdir(fs, "/fresh", 0755), 0);
    int fd = kiseki_open(fs, "/fresh/f", O_WRONLY | O_CREAT, 0644);
    EXPECT_OK(fd);
    EXPECT_EQ(kiseki_write(fs, fd, data, sizeof data), (ssize_t)sizeof data);
    /* Nothing is flushed yet: every call below must see the written size. */
    EXPECT_EQ(kiseki_link(fs, "/fresh/f", "/fresh/g"), 0);
    expect_size(fs, "/fresh/g", "link");
    EXPECT_EQ(kiseki_rename(fs, "/fresh/g", "/fresh/h", 0), 0);
    expect_size(fs, "/fresh/h", "rename");
    EXPECT_EQ(kiseki_chmod(fs, "/fresh/f", 0600), 0);
    expect_size(fs, "/fresh/f", "chmod");
    EXPECT_EQ(kiseki_chown(fs, "/fresh/f", 1, 1), 0);
    expect_size(fs, "/fresh/f", "chown");
    struct timespec times[2] = {{1, 0}, {1, 0}};
    EXPECT_EQ(kiseki_utimens(fs, "/fresh/f", times, 0), 0);
    expect_size(fs, "/fresh/f", "utimens");
    EXPECT_EQ(kiseki_setxattr(fs, "/fresh/f", "user.k", "v", 1, 0), 0);
    expect_size(fs, "/fresh/f", "setxattr");
    EXPECT_EQ(kiseki_symlink(fs, "f", "/fresh/s"), 0);
    expect_size(fs, "/fresh/s", "symlink");
    int again = kiseki_open(fs, "/fresh/f", O_WRONLY | O_CREAT, 0644);
    EXPECT_OK(again);
    expect_size(fs, "/fresh/f", "create of the existing name");
    EXPECT_EQ(kiseki_close(fs, again), 0);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
}

/* ------------------------------------------------------------------------------ */
/* fsck from C                                                                      */
/* ------------------------------------------------------------------------------ */

static void test_fsck(void)
{
    char report[4096];
    EXPECT_EQ(kiseki_fsck(meta_url, KISEKI_FSCK_LIST, report, sizeof report), 0);
    EXPECT_EQ(kiseki_fsck(meta_url, KISEKI_FSCK_READ, report, sizeof report), 0);
    EXPECT_EQ(kiseki_fsck(meta_url, 0, NULL, 0), 0);
    EXPECT_ERR(kiseki_fsck(meta_url, 3, report, sizeof report), EINVAL);

    /* A flipped byte in a stored block: reading it is EIO, never the wrong byte, and
     * fsck that reads the objects names the block. */
    kiseki_fs *fs = connect_or_die();
    static char data[300000];
    memset(data, 'A', sizeof data);
    int fd = kiseki_open(fs, "/corrupt-me", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT_OK(fd);
    EXPECT_EQ(kiseki_write(fs, fd, data, sizeof data), (ssize_t)sizeof data);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    EXPECT_EQ(kiseki_disconnect(fs), 0);
    char cmd[4400];
    snprintf(cmd, sizeof cmd,
             "f=$(find '%s' -type f -path '*chunks*' -name '*_0_300000') && "
             "[ $(echo \"$f\" | wc -l) = 1 ] && "
             "printf Z | dd of=\"$f\" bs=1 seek=200000 conv=notrunc status=none",
             bucket);
    EXPECT_EQ(system(cmd), 0);
    fs = connect_or_die();
    fd = kiseki_open(fs, "/corrupt-me", O_RDONLY, 0);
    EXPECT_OK(fd);
    char got[4096];
    /* The first sector is intact; the sector with the flipped byte is not. */
    EXPECT_EQ(kiseki_pread(fs, fd, got, sizeof got, 0), (ssize_t)sizeof got);
    EXPECT_ERR(kiseki_pread(fs, fd, got, sizeof got, 199000), EIO);
    EXPECT(strstr(kiseki_last_error(), "_0_300000") != NULL);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    EXPECT_EQ(kiseki_disconnect(fs), 0);
    EXPECT_EQ(kiseki_fsck(meta_url, KISEKI_FSCK_LIST, report, sizeof report), 0);
    int problems = kiseki_fsck(meta_url, KISEKI_FSCK_READ, report, sizeof report);
    EXPECT_EQ(problems, 1);
    EXPECT(strstr(report, "corrupt block") != NULL && strstr(report, "_0_300000") != NULL);

    /* A block object lost from the bucket is data loss: fsck names it. */
    snprintf(cmd, sizeof cmd, "find '%s' -type f -path '*chunks*' | head -n 1 | xargs rm -f", bucket);
    EXPECT_EQ(system(cmd), 0);
    problems = kiseki_fsck(meta_url, KISEKI_FSCK_LIST, report, sizeof report);
    EXPECT(problems > 0);
    EXPECT(strstr(report, "missing block") != NULL);
    EXPECT_ERR(kiseki_fsck("nosuch:///x", 1, report, sizeof report), EINVAL);
}

/* ------------------------------------------------------------------------------ */
/* A caller identity (uid=, gid=, groups=, umask=): the rules a mount applies         */
/* ------------------------------------------------------------------------------ */

static void test_caller_identity(void)
{
    if (geteuid() != 0) {
        printf("skipping test_caller_identity: needs root\n");
        return;
    }
    kiseki_fs *root = kiseki_connect(meta_url, "uid=0,gid=0,groups=");
    REQUIRE(root != NULL);
    EXPECT_EQ(kiseki_mkdir(root, "/ident", 0755), 0);
    EXPECT_EQ(kiseki_chown(root, "/ident", 65534, 65534), 0);
    int fd = kiseki_open(root, "/ident/suid", O_WRONLY | O_CREAT, 0777);
    EXPECT_OK(fd);
    EXPECT_EQ(kiseki_close(root, fd), 0);
    EXPECT_EQ(kiseki_chmod(root, "/ident/suid", 06777), 0);
    EXPECT_EQ(kiseki_disconnect(root), 0);

    kiseki_fs *nobody = kiseki_connect(meta_url, "uid=65534,gid=65534,groups=,umask=077");
    REQUIRE(nobody != NULL);
    fd = kiseki_open(nobody, "/ident/mine", O_WRONLY | O_CREAT, 0666);
    EXPECT_OK(fd);
    struct stat st;
    EXPECT_EQ(kiseki_fstat(nobody, fd, &st), 0);
    EXPECT_EQ(st.st_uid, 65534);
    EXPECT_EQ(st.st_mode & 07777, 0600);
    EXPECT_EQ(kiseki_close(nobody, fd), 0);
    /* A non-owner's write clears setuid/setgid, visible to the writer at once. */
    fd = kiseki_open(nobody, "/ident/suid", O_WRONLY, 0);
    EXPECT_OK(fd);
    EXPECT_EQ(kiseki_write(nobody, fd, "x", 1), 1);
    EXPECT_EQ(kiseki_fstat(nobody, fd, &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0777);
    EXPECT_EQ(kiseki_close(nobody, fd), 0);
    EXPECT_ERR(kiseki_chmod(nobody, "/ident/suid", 04777), EPERM);
    EXPECT_ERR(kiseki_chown(nobody, "/ident/mine", 0, 0), EPERM);
    EXPECT_ERR(kiseki_mkdir(nobody, "/not-mine", 0755), EACCES);
    EXPECT_EQ(kiseki_disconnect(nobody), 0);
    expect_connect_fails(meta_url, "uid=nobody", EINVAL);
    expect_connect_fails(meta_url, "groups=1:x", EINVAL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TMPDIR\n", argv[0]);
        return 2;
    }
    /* Line-buffered output keeps FAIL lines and the summary in order under a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The library applies the process umask when creating; make it known. */
    umask(022);
    snprintf(tmpdir, sizeof tmpdir, "%s", argv[1]);
    snprintf(meta_url, sizeof meta_url, "rocksdb://%s/meta", tmpdir);
    snprintf(bucket, sizeof bucket, "%s/data", tmpdir);
    if (mkdir(bucket, 0755) != 0) {
        perror(bucket);
        return 2;
    }

    test_format_and_connect();
    kiseki_fs *fs = connect_or_die();
    test_file_io(fs);
    test_seek(fs);
    test_open_errors(fs);
    test_namespace(fs);
    test_attributes(fs);
    test_xattr(fs);
    test_readdir(fs);
    test_trash(fs);
    test_clone(fs);
    test_bad_arguments(fs);
    test_large(fs);
    test_freshness(fs);
    fs = test_durability(fs);
    EXPECT_EQ(kiseki_disconnect(fs), 0);
    test_caller_identity();
    test_fsck();
    return check_exit("test_api");
}
