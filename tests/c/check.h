/*
 * Tiny assertion helpers shared by the libkiseki C tests.
 *
 * EXPECT_* checks are not fatal: a failure prints file:line, the call, the value it
 * returned (as -errno with its name when negative) and kiseki_last_error(), counts
 * itself and the test goes on, so one library bug does not hide the next. REQUIRE_*
 * checks stop the program: use them where later steps cannot make sense without the
 * result (a connection, a descriptor). check_exit() turns the count into the exit
 * status and prints the summary line the Rust harness shows.
 *
 * The counters are atomic so that test_threads can check from many threads.
 */
#ifndef KISEKI_TEST_CHECK_H
#define KISEKI_TEST_CHECK_H

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiseki.h"

static atomic_long check_passed;
static atomic_long check_failed;

/* Formats `v` as "-2 (-ENOENT: No such file or directory)" when negative. */
static inline const char *check_describe(long long v, char *buf, size_t len)
{
    if (v < 0 && v > -4096) {
        const char *name = strerrorname_np((int)-v);
        snprintf(buf, len, "%lld (-%s: %s)", v, name ? name : "?", strerror((int)-v));
    } else {
        snprintf(buf, len, "%lld", v);
    }
    return buf;
}

static inline void check_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&check_failed, 1);
    /* One fprintf per failure so lines from different threads do not interleave. */
    fprintf(stderr, "%s:%d: FAIL: %s\n    kiseki_last_error: \"%s\"\n", file, line, msg,
            kiseki_last_error());
}

/* `got` must equal `want`; returns whether it did. */
static inline int check_eq(const char *file, int line, const char *expr, long long got,
                           long long want)
{
    if (got == want) {
        atomic_fetch_add(&check_passed, 1);
        return 1;
    }
    char g[128], w[128];
    check_fail(file, line, "%s returned %s, expected %s", expr,
               check_describe(got, g, sizeof g), check_describe(want, w, sizeof w));
    return 0;
}

/* `got` must be a success (>= 0); returns it either way so callers can use it. */
static inline long long check_ok(const char *file, int line, const char *expr, long long got)
{
    if (got >= 0) {
        atomic_fetch_add(&check_passed, 1);
    } else {
        char g[128];
        check_fail(file, line, "%s failed: %s", expr, check_describe(got, g, sizeof g));
    }
    return got;
}

static inline int check_true(const char *file, int line, const char *expr, int ok)
{
    if (ok) {
        atomic_fetch_add(&check_passed, 1);
    } else {
        check_fail(file, line, "%s is false", expr);
    }
    return ok;
}

static inline long long check_require(const char *file, int line, const char *expr,
                                      long long got)
{
    if (check_ok(file, line, expr, got) < 0) {
        fprintf(stderr, "%s:%d: required step failed, stopping\n", file, line);
        exit(2);
    }
    return got;
}

/* The call returns exactly `want`. */
#define EXPECT_EQ(expr, want) check_eq(__FILE__, __LINE__, #expr, (long long)(expr), (long long)(want))
/* The call fails with -err (err is a positive errno constant such as ENOENT). */
#define EXPECT_ERR(expr, err) check_eq(__FILE__, __LINE__, #expr, (long long)(expr), -(long long)(err))
/* The call succeeds (>= 0); evaluates to its result. */
#define EXPECT_OK(expr) check_ok(__FILE__, __LINE__, #expr, (long long)(expr))
#define EXPECT(cond) check_true(__FILE__, __LINE__, #cond, (cond) ? 1 : 0)
/* The call succeeds or the program stops; evaluates to its result. */
#define REQUIRE_OK(expr) check_require(__FILE__, __LINE__, #expr, (long long)(expr))
#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!check_true(__FILE__, __LINE__, #cond, (cond) ? 1 : 0)) {                   \
            fprintf(stderr, "%s:%d: required condition failed, stopping\n", __FILE__,   \
                    __LINE__);                                                          \
            exit(2);                                                                    \
        }                                                                               \
    } while (0)

/* Prints "<name>: N passed, M failed" and returns the exit status. */
static inline int check_exit(const char *name)
{
    long passed = atomic_load(&check_passed), failed = atomic_load(&check_failed);
    printf("%s: %ld passed, %ld failed\n", name, passed, failed);
    fflush(stdout);
    return failed == 0 ? 0 : 1;
}

/*
 * Deterministic pseudo-random bytes (xorshift64): byte i of stream `seed` depends only
 * on (seed, i) through the generator state, so writers and verifiers that walk the same
 * stream from its start agree without storing the data. Same generator as
 * kiseki-mount/tests/mount.rs `pattern()`.
 */
typedef struct {
    uint64_t x;
} prng;

static inline prng prng_new(uint64_t seed)
{
    prng p = {(seed * 0x9E3779B97F4A7C15ull) | 1};
    return p;
}

static inline void prng_fill(prng *p, unsigned char *buf, size_t len)
{
    uint64_t x = p->x;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    p->x = x;
}

/* A whole buffer of stream `seed` from its start (caller frees). */
static inline unsigned char *pattern(uint64_t seed, size_t len)
{
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        perror("malloc");
        exit(2);
    }
    prng p = prng_new(seed);
    prng_fill(&p, buf, len);
    return buf;
}

/* Index of the first differing byte, or -1 when equal. */
static inline long long first_diff(const unsigned char *a, const unsigned char *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (a[i] != b[i]) {
            return (long long)i;
        }
    }
    return -1;
}

#endif /* KISEKI_TEST_CHECK_H */
