/* unit.h - a tiny header-only test harness for sluice's unit tests.
 *
 * A test is a `static void name(void)` function. CHECK, CHECK_EQ_INT,
 * CHECK_STR and CHECK_MSG (a condition plus a printf-style note) record a
 * failure and carry on, so one run shows every broken expectation; each
 * returns whether it passed. REQUIRE / REQUIRE_EQ_INT record it and return
 * from the calling function (only in functions returning void; use them
 * where going on would crash). SKIP("why %s", ...) ends the test as skipped
 * (when the machine cannot run it, never to hide a failure). Each
 * executable ends with
 *
 *     UNIT_MAIN(TEST(test_a), TEST(test_b))
 *
 * which runs every test (or only those named on the command line) and
 * reports in TAP, which meson (protocol : 'tap') and scripts/test count per
 * test: the plan `1..N`, then `ok K - NAME`, `ok K - NAME # SKIP why` or
 * `not ok K - NAME` per test. Each failure is a diagnostic
 * `# FAIL NAME: FILE:LINE: EXPR` on stderr (TAP's place for them, and the
 * stream `meson test --print-errorlogs` shows). The exit status is 1 when
 * anything failed, 2 when no test matched the names given. Include it from
 * exactly one .c file. */
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
static int unit_failures;       /* in the current test */
static char unit_skip_why[256]; /* non-empty: the current test skipped */

__attribute__((format(printf, 4, 5), unused)) static void
unit_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    if (++unit_failures > UNIT_MAX_REPORTS)
        return;
    fprintf(stderr, "# FAIL %s: %s:%d: %s", unit_current, file, line, expr);
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, " (");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, ")");
        va_end(ap);
    }
    fprintf(stderr, "\n");
    fflush(stderr);
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

/* unit_skip: record why the current test is skipped; SKIP() also returns. */
__attribute__((format(printf, 1, 2), unused)) static void unit_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(unit_skip_why, sizeof(unit_skip_why), fmt, ap);
    va_end(ap);
    if (unit_skip_why[0] == '\0')
        snprintf(unit_skip_why, sizeof(unit_skip_why), "skipped");
}

#define SKIP(...)                                                                                  \
    do {                                                                                           \
        unit_skip(__VA_ARGS__);                                                                    \
        return;                                                                                    \
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

/* The one scale factor for a time bound in a unit test, as SLOW is for the
 * integration tests (tests/integration/sluicetest.py): 3 in a sanitizer
 * build (known at compile time), times SLUICE_TEST_SLOW (a float, for a
 * loaded machine; unset, empty or not a positive number: 1). Write a bound
 * as `4.0 * unit_slow()`. meson's own per-test timeout is separate: give
 * `meson test --timeout-multiplier` as well when the factor is large. */
static inline double unit_slow(void)
{
    double f = 1.0;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    f = 3.0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    f = 3.0;
#endif
#endif
    const char *env = getenv("SLUICE_TEST_SLOW");
    if (env != NULL && *env != '\0') {
        char *end;
        double v = strtod(env, &end);
        if (end != env && *end == '\0' && v > 0)
            f *= v;
        else
            fprintf(stderr, "# SLUICE_TEST_SLOW=%s is not a positive number: ignored\n", env);
    }
    return f;
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
    int failed = 0, skipped = 0, ran = 0, plan = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < n; i++)
        plan += unit_selected(tests[i].name, argc, argv);
    if (plan == 0) {
        printf("Bail out! no test matched the names given\n");
        return 2;
    }
    printf("1..%d\n", plan);
    for (size_t i = 0; i < n; i++) {
        if (!unit_selected(tests[i].name, argc, argv))
            continue;
        unit_current = tests[i].name;
        unit_failures = 0;
        unit_skip_why[0] = '\0';
        double t0 = unit_now();
        tests[i].fn();
        double ms = (unit_now() - t0) * 1000;
        ran++;
        if (ms > 1000)
            printf("# %s took %.0f ms\n", tests[i].name, ms);
        if (unit_failures > 0) { /* a failure before a SKIP still fails */
            if (unit_failures > UNIT_MAX_REPORTS)
                fprintf(stderr, "# FAIL %s: ... %d more failures\n", tests[i].name,
                        unit_failures - UNIT_MAX_REPORTS);
            printf("not ok %d - %s\n", ran, tests[i].name);
            failed++;
        } else if (unit_skip_why[0] != '\0') {
            printf("ok %d - %s # SKIP %s\n", ran, tests[i].name, unit_skip_why);
            skipped++;
        } else {
            printf("ok %d - %s\n", ran, tests[i].name);
        }
    }
    printf("# %d tests, %d passed, %d failed, %d skipped\n", ran, ran - failed - skipped, failed,
           skipped);
    return failed ? 1 : 0;
}

#define UNIT_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const struct unit_test unit_tests_[] = {__VA_ARGS__};                               \
        return unit_run(unit_tests_, sizeof(unit_tests_) / sizeof(unit_tests_[0]), argc, argv);    \
    }

#endif
