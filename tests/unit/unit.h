/* unit.h - a tiny header-only test harness for sluice's unit tests.
 *
 * A test is a `static void name(void)` function. CHECK, CHECK_EQ_INT,
 * CHECK_STR and CHECK_MSG (a condition plus a printf-style note) record a
 * failure and carry on, so one run shows every broken expectation; each
 * returns whether it passed. REQUIRE / REQUIRE_EQ_INT record it and return
 * from the calling function (only in functions returning void; use them
 * where going on would crash). Each executable ends with
 *
 *     UNIT_MAIN(TEST(test_a), TEST(test_b))
 *
 * which runs every test (or only those named on the command line) and
 * prints `ok NAME` or `FAIL NAME: FILE:LINE: EXPR` per failure; the exit
 * status is 1 when anything failed. Include it from exactly one .c file. */
#ifndef SLUICE_UNIT_H
#define SLUICE_UNIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct unit_test {
    const char *name;
    void (*fn)(void);
};

/* Failures printed per test before the rest are only counted. */
#define UNIT_MAX_REPORTS 20

static const char *unit_current = "?";
static int unit_failures; /* in the current test */

__attribute__((format(printf, 4, 5), unused)) static void
unit_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    if (++unit_failures > UNIT_MAX_REPORTS)
        return;
    printf("FAIL %s: %s:%d: %s", unit_current, file, line, expr);
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        printf(" (");
        vprintf(fmt, ap);
        printf(")");
        va_end(ap);
    }
    printf("\n");
    fflush(stdout);
}

static inline bool unit_check(bool ok, const char *file, int line, const char *expr)
{
    if (!ok)
        unit_fail(file, line, expr, NULL);
    return ok;
}

static inline bool unit_check_int(long long a, long long b, const char *file, int line,
                                  const char *expr)
{
    if (a != b)
        unit_fail(file, line, expr, "%lld != %lld", a, b);
    return a == b;
}

static inline bool unit_check_str(const char *a, const char *b, const char *file, int line,
                                  const char *expr)
{
    bool ok = a != NULL && b != NULL && strcmp(a, b) == 0;
    if (!ok)
        unit_fail(file, line, expr, "\"%s\" != \"%s\"", a ? a : "(null)", b ? b : "(null)");
    return ok;
}

__attribute__((format(printf, 5, 6), unused)) static bool
unit_checkf(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
    if (!ok) {
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        unit_fail(file, line, expr, "%s", why);
    }
    return ok;
}

/* Each returns whether it passed, so a test can skip what depends on it. */
#define CHECK(cond) unit_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ_INT(a, b)                                                                         \
    unit_check_int((long long)(a), (long long)(b), __FILE__, __LINE__, #a " == " #b)
#define CHECK_STR(a, b) unit_check_str((a), (b), __FILE__, __LINE__, #a " == " #b)
/* A check with a printf-style explanation of what was seen. */
#define CHECK_MSG(cond, ...) unit_checkf(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!CHECK(cond))                                                                          \
            return;                                                                                \
    } while (0)

#define REQUIRE_EQ_INT(a, b)                                                                       \
    do {                                                                                           \
        if (!CHECK_EQ_INT(a, b))                                                                   \
            return;                                                                                \
    } while (0)

#define TEST(fn)                                                                                   \
    {                                                                                              \
#fn, fn                                                                                    \
    }
#define UNIT_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline double unit_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline bool unit_selected(const char *name, int argc, char **argv)
{
    if (argc <= 1)
        return true;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static inline int unit_run(const struct unit_test *tests, size_t n, int argc, char **argv)
{
    int failed = 0, ran = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < n; i++) {
        if (!unit_selected(tests[i].name, argc, argv))
            continue;
        unit_current = tests[i].name;
        unit_failures = 0;
        double t0 = unit_now();
        tests[i].fn();
        double ms = (unit_now() - t0) * 1000;
        ran++;
        if (ms > 1000)
            printf("# %s took %.0f ms\n", tests[i].name, ms);
        if (unit_failures == 0) {
            printf("ok %s\n", tests[i].name);
        } else {
            if (unit_failures > UNIT_MAX_REPORTS)
                printf("FAIL %s: ... %d more failures\n", tests[i].name,
                       unit_failures - UNIT_MAX_REPORTS);
            failed++;
        }
    }
    printf("# %d tests, %d passed, %d failed\n", ran, ran - failed, failed);
    if (ran == 0) {
        printf("# no test matched\n");
        return 2;
    }
    return failed ? 1 : 0;
}

#define UNIT_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const struct unit_test unit_tests_[] = {__VA_ARGS__};                               \
        return unit_run(unit_tests_, sizeof(unit_tests_) / sizeof(unit_tests_[0]), argc, argv);    \
    }

#endif
