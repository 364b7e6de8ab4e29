/*
 * libkiseki from many threads on ONE kiseki_fs: the header promises that every call
 * is thread safe and that a closed descriptor is -EBADF, never undefined behaviour.
 *
 * Usage: test_threads TMPDIR
 *
 * Phase 1, all at once:
 *  - 8 workers, each writing its own multi-MiB file of pseudo-random data (per-thread
 *    seed), reading it back, pwrite-ing its own disjoint region of one shared file
 *    through its own descriptor, making a directory of files and listing it, and
 *    reading the root directory and stat-ing while the others change it;
 *  - a churn thread opening and closing descriptors and directory streams all the
 *    time, so the shared descriptor table changes under the workers.
 * Phase 2: several readers on one descriptor while another thread closes it: every
 * read either returns the right bytes or -EBADF.
 * Then every region of the shared file is verified, and again after a reconnect.
 * Meant to run under AddressSanitizer as well.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiseki.h"
#include "check.h"

#define MiB (1024 * 1024)
#define NWORKERS 8
/* Not a multiple of anything: regions and writes straddle the 4 MiB blocks and each
 * other's first and last blocks. */
#define REGION (MiB + 4099)
#define OWN_SIZE(id) ((size_t)(3 * MiB + 7919 * ((id) + 1)))
#define OWN_SEED(id) (1000u + (unsigned)(id))
#define REGION_SEED(id) (2000u + (unsigned)(id))
#define DIR_FILES 40
#define RACE_READERS 4
#define RACE_SIZE (256 * 1024)

static kiseki_fs *fs;
static char meta_url[4096];
static pthread_barrier_t start;
static atomic_int workers_done;

/* Reads all of `path` and compares it with `want`. */
static void verify_file(const char *path, const unsigned char *want, size_t len)
{
    int fd = (int)kiseki_open(fs, path, O_RDONLY, 0);
    if (!EXPECT_OK(fd)) {
        return;
    }
    struct stat st;
    EXPECT_EQ(kiseki_fstat(fs, fd, &st), 0);
    EXPECT_EQ(st.st_size, len);
    unsigned char *got = malloc(len);
    REQUIRE(got != NULL);
    size_t have = 0;
    while (have < len) {
        ssize_t n = kiseki_read(fs, fd, got + have, len - have);
        if (n <= 0) {
            EXPECT_OK(n);
            break;
        }
        have += (size_t)n;
    }
    EXPECT_EQ(have, len);
    long long diff = first_diff(got, want, have);
    if (!EXPECT_EQ(diff, -1)) {
        fprintf(stderr, "    %s differs at byte %lld\n", path, diff);
    }
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    free(got);
}

/* Lists `path` and returns the number of entries; "." and ".." must come first. */
static int count_entries(const char *path)
{
    int d = (int)kiseki_opendir(fs, path);
    if (!EXPECT_OK(d)) {
        return -1;
    }
    kiseki_dirent e;
    int n = 0, r;
    while ((r = kiseki_readdir(fs, d, &e)) == 1) {
        if (n == 0) {
            EXPECT_EQ(strcmp(e.d_name, "."), 0);
        } else if (n == 1) {
            EXPECT_EQ(strcmp(e.d_name, ".."), 0);
        }
        n++;
    }
    EXPECT_EQ(r, 0);
    EXPECT_EQ(kiseki_closedir(fs, d), 0);
    return n;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    char path[64], name[64];

    /* A thread that has not failed yet has an empty message. */
    EXPECT_EQ(strcmp(kiseki_last_error(), ""), 0);
    pthread_barrier_wait(&start);

    /* 1. Its own file: sequential writes in odd-sized pieces, with stat, fstat and
     *    root listings in between while the other threads create entries there. */
    size_t own = OWN_SIZE(id);
    unsigned char *data = pattern(OWN_SEED(id), own);
    snprintf(path, sizeof path, "own-%d", id);
    int fd = (int)REQUIRE_OK(kiseki_open(fs, path, O_RDWR | O_CREAT | O_EXCL, 0644));
    size_t chunk = 256 * 1024 + 17 * (size_t)id + 1;
    int step = 0;
    for (size_t off = 0; off < own; off += chunk, step++) {
        size_t n = own - off < chunk ? own - off : chunk;
        if (!EXPECT_EQ(kiseki_write(fs, fd, data + off, n), n)) {
            break;
        }
        struct stat st;
        EXPECT_EQ(kiseki_fstat(fs, fd, &st), 0);
        EXPECT_EQ(st.st_size, off + n);
        if (step % 4 == 0) {
            EXPECT(count_entries("/") >= 2);
            EXPECT_EQ(kiseki_stat(fs, path, &st), 0);
        }
    }
    EXPECT_EQ(kiseki_fsync(fs, fd), 0);
    /* Read back through the same descriptor with pread in other odd sizes. */
    unsigned char *back = malloc(own);
    REQUIRE(back != NULL);
    size_t rchunk = 300 * 1000 + (size_t)id;
    for (size_t off = 0; off < own; off += rchunk) {
        size_t n = own - off < rchunk ? own - off : rchunk;
        EXPECT_EQ(kiseki_pread(fs, fd, back + off, n, (off_t)off), n);
    }
    EXPECT_EQ(first_diff(back, data, own), -1);
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    verify_file(path, data, own);
    free(back);
    free(data);

    /* 2. Its region of the shared file, through its own descriptor, back to front so
     *    that neighbours' writes to a shared block arrive in mixed order. */
    unsigned char *region = pattern(REGION_SEED(id), REGION);
    fd = (int)REQUIRE_OK(kiseki_open(fs, "shared", O_WRONLY, 0));
    size_t piece = 64 * 1024 + 3 * (size_t)id + 1;
    size_t npieces = (REGION + piece - 1) / piece;
    for (size_t i = npieces; i-- > 0;) {
        size_t off = i * piece;
        size_t n = REGION - off < piece ? REGION - off : piece;
        off_t at = (off_t)id * REGION + (off_t)off;
        if (!EXPECT_EQ(kiseki_pwrite(fs, fd, region + off, n, at), n)) {
            break;
        }
    }
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    free(region);

    /* 3. A directory of its own, filled and listed while the root changes. */
    snprintf(path, sizeof path, "dir-%d", id);
    EXPECT_EQ(kiseki_mkdir(fs, path, 0755), 0);
    for (int i = 0; i < DIR_FILES; i++) {
        snprintf(name, sizeof name, "dir-%d/f%d", id, i);
        int f = (int)EXPECT_OK(kiseki_open(fs, name, O_WRONLY | O_CREAT | O_EXCL, 0644));
        if (f >= 0) {
            EXPECT_EQ(kiseki_write(fs, f, name, strlen(name)), strlen(name));
            EXPECT_EQ(kiseki_close(fs, f), 0);
        }
    }
    EXPECT_EQ(count_entries(path), DIR_FILES + 2);
    struct statvfs vfs;
    EXPECT_EQ(kiseki_statvfs(fs, path, &vfs), 0);

    /* 4. Error messages are per thread: this thread's failure is the one it sees,
     *    whatever the others fail at meanwhile. */
    snprintf(name, sizeof name, "missing-in-thread-%d", id);
    struct stat st;
    EXPECT_ERR(kiseki_stat(fs, name, &st), ENOENT);
    for (int i = 0; i < 50; i++) {
        sched_yield();
    }
    EXPECT(strstr(kiseki_last_error(), name) != NULL);

    atomic_fetch_add(&workers_done, 1);
    return NULL;
}

/* Opens and closes descriptors and directory streams until the workers finish: the
 * workers' descriptors must be unaffected, and each closed one must stay dead. */
static void *churn(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    long rounds = 0;
    while (atomic_load(&workers_done) < NWORKERS) {
        int fd = (int)REQUIRE_OK(kiseki_open(fs, "churn", O_RDONLY, 0));
        char buf[8];
        EXPECT_EQ(kiseki_pread(fs, fd, buf, 5, 0), 5);
        EXPECT(memcmp(buf, "churn", 5) == 0);
        int d = (int)REQUIRE_OK(kiseki_opendir(fs, "/"));
        kiseki_dirent e;
        EXPECT_EQ(kiseki_readdir(fs, d, &e), 1);
        EXPECT_EQ(kiseki_close(fs, fd), 0);
        EXPECT_EQ(kiseki_closedir(fs, d), 0);
        EXPECT_ERR(kiseki_pread(fs, fd, buf, 1, 0), EBADF);
        EXPECT_ERR(kiseki_readdir(fs, d, &e), EBADF);
        rounds++;
    }
    EXPECT(rounds > 0);
    return NULL;
}

/* Phase 2: readers on one descriptor that another thread closes. */
static unsigned char *race_data;
static atomic_int race_fd;
static atomic_long race_reads;

static void *race_reader(void *arg)
{
    unsigned id = (unsigned)(intptr_t)arg;
    unsigned char buf[4096];
    for (long i = 0; i < 1000000; i++) {
        off_t at = (off_t)((i * 4096 + (long)id * 1000) % (long)(RACE_SIZE - sizeof buf));
        ssize_t n = kiseki_pread(fs, atomic_load(&race_fd), buf, sizeof buf, at);
        if (n == -EBADF) {
            return NULL; /* closed under us: the only acceptable failure */
        }
        if (!EXPECT_EQ(n, sizeof buf) || !EXPECT(memcmp(buf, race_data + at, sizeof buf) == 0)) {
            return NULL;
        }
        atomic_fetch_add(&race_reads, 1);
    }
    check_fail(__FILE__, __LINE__, "reader %u never saw its descriptor closed", id);
    return NULL;
}

static void race_close(void)
{
    race_data = pattern(77, RACE_SIZE);
    int w = (int)REQUIRE_OK(kiseki_open(fs, "race", O_WRONLY | O_CREAT | O_TRUNC, 0644));
    EXPECT_EQ(kiseki_write(fs, w, race_data, RACE_SIZE), RACE_SIZE);
    EXPECT_EQ(kiseki_close(fs, w), 0);
    atomic_store(&race_fd, (int)REQUIRE_OK(kiseki_open(fs, "race", O_RDONLY, 0)));

    pthread_t t[RACE_READERS];
    for (int i = 0; i < RACE_READERS; i++) {
        REQUIRE(pthread_create(&t[i], NULL, race_reader, (void *)(intptr_t)i) == 0);
    }
    /* Let the readers get going, then pull the descriptor away. */
    while (atomic_load(&race_reads) < 200) {
        sched_yield();
    }
    EXPECT_EQ(kiseki_close(fs, atomic_load(&race_fd)), 0);
    for (int i = 0; i < RACE_READERS; i++) {
        pthread_join(t[i], NULL);
    }
    EXPECT_ERR(kiseki_close(fs, atomic_load(&race_fd)), EBADF);
    free(race_data);
}

/* Every region of the shared file, every worker's own file and directory. */
static void verify_all(void)
{
    size_t total = (size_t)NWORKERS * REGION;
    unsigned char *want = malloc(total);
    REQUIRE(want != NULL);
    for (int id = 0; id < NWORKERS; id++) {
        prng p = prng_new(REGION_SEED(id));
        prng_fill(&p, want + (size_t)id * REGION, REGION);
    }
    /* Region by region first, so a failure names the worker. */
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "shared", O_RDONLY, 0));
    unsigned char *got = malloc(REGION);
    REQUIRE(got != NULL);
    for (int id = 0; id < NWORKERS; id++) {
        off_t at = (off_t)id * REGION;
        EXPECT_EQ(kiseki_pread(fs, fd, got, REGION, at), REGION);
        long long diff = first_diff(got, want + at, REGION);
        if (!EXPECT_EQ(diff, -1)) {
            fprintf(stderr, "    region %d of the shared file differs at byte %lld\n", id, diff);
        }
    }
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    verify_file("shared", want, total);
    free(got);
    free(want);

    for (int id = 0; id < NWORKERS; id++) {
        char path[64];
        snprintf(path, sizeof path, "own-%d", id);
        unsigned char *data = pattern(OWN_SEED(id), OWN_SIZE(id));
        verify_file(path, data, OWN_SIZE(id));
        free(data);
        snprintf(path, sizeof path, "dir-%d", id);
        EXPECT_EQ(count_entries(path), DIR_FILES + 2);
    }
    /* The root holds shared, churn, race, and own-N and dir-N of each worker. */
    EXPECT_EQ(count_entries("/"), 2 + 3 + 2 * NWORKERS);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s TMPDIR [META_URL of a formatted, empty volume]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3) {
        /* Another engine (etcd): the caller formatted the volume. */
        snprintf(meta_url, sizeof meta_url, "%s", argv[2]);
    } else {
        char bucket[4096], opts[4200];
        snprintf(meta_url, sizeof meta_url, "rocksdb://%s/meta", argv[1]);
        snprintf(bucket, sizeof bucket, "%s/data", argv[1]);
        if (mkdir(bucket, 0755) != 0) {
            perror(bucket);
            return 2;
        }
        snprintf(opts, sizeof opts, "storage=fs,bucket=%s", bucket);
        REQUIRE_OK(kiseki_format(meta_url, "threads", opts));
    }
    fs = kiseki_connect(meta_url, NULL);
    if (!fs) {
        fprintf(stderr, "kiseki_connect: %s\n", kiseki_last_error());
        return 2;
    }
    int fd = (int)REQUIRE_OK(kiseki_open(fs, "shared", O_WRONLY | O_CREAT | O_EXCL, 0644));
    EXPECT_EQ(kiseki_close(fs, fd), 0);
    fd = (int)REQUIRE_OK(kiseki_open(fs, "churn", O_WRONLY | O_CREAT | O_EXCL, 0644));
    EXPECT_EQ(kiseki_write(fs, fd, "churn", 5), 5);
    EXPECT_EQ(kiseki_close(fs, fd), 0);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    REQUIRE(pthread_barrier_init(&start, NULL, NWORKERS + 1) == 0);
    pthread_t workers[NWORKERS], churner;
    for (int i = 0; i < NWORKERS; i++) {
        REQUIRE(pthread_create(&workers[i], NULL, worker, (void *)(intptr_t)i) == 0);
    }
    REQUIRE(pthread_create(&churner, NULL, churn, NULL) == 0);
    for (int i = 0; i < NWORKERS; i++) {
        pthread_join(workers[i], NULL);
    }
    pthread_join(churner, NULL);
    pthread_barrier_destroy(&start);

    race_close();
    verify_all();

    /* Everything is durable: a fresh connection sees the same. */
    EXPECT_EQ(kiseki_disconnect(fs), 0);
    fs = kiseki_connect(meta_url, NULL);
    if (!fs) {
        fprintf(stderr, "kiseki_connect again: %s\n", kiseki_last_error());
        return 2;
    }
    verify_all();
    EXPECT_EQ(kiseki_disconnect(fs), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("test_threads: %d workers in %.2f s\n", NWORKERS,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return check_exit("test_threads");
}
