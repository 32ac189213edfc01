/* test_log.c - the log-line limiters of log.h: one line per interval, the
 * suppressed count carried to the next line, and at most one line per
 * interval when several threads race for it. */
#include "unit.h"

#include "sluice/log.h"

#include <pthread.h>
#include <stdatomic.h>

static void test_limit_shared_interval(void)
{
    struct log_limit_shared l = {0};
    unsigned long dropped = 99;
    CHECK(log_limit_shared_due(&l, 5000, 1000, &dropped));
    CHECK_EQ_INT(dropped, 0);
    CHECK(!log_limit_shared_due(&l, 5000, 1000, &dropped));
    CHECK(!log_limit_shared_due(&l, 5999, 1000, &dropped));
    CHECK(log_limit_shared_due(&l, 6000, 1000, &dropped));
    CHECK_EQ_INT(dropped, 2);
    CHECK(log_limit_shared_due(&l, 9000, 1000, &dropped));
    CHECK_EQ_INT(dropped, 0);
}

#define RACERS 4
#define CALLS 20000

static struct log_limit_shared race_limit;
static _Atomic int race_passed;

static void *racer(void *arg)
{
    (void)arg;
    unsigned long dropped;
    for (int i = 0; i < CALLS; i++)
        if (log_limit_shared_due(&race_limit, 1000, 1000, &dropped))
            atomic_fetch_add(&race_passed, 1);
    return NULL;
}

/* Every thread calls at the same instant: exactly one line passes and the
 * rest are all counted for the next one. */
static void test_limit_shared_race(void)
{
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++)
        CHECK(pthread_create(&t[i], NULL, racer, NULL) == 0);
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(atomic_load(&race_passed), 1);
    unsigned long dropped = 0;
    CHECK(log_limit_shared_due(&race_limit, 2000, 1000, &dropped));
    CHECK_EQ_INT(dropped, RACERS * CALLS - 1);
}

UNIT_MAIN(TEST(test_limit_shared_interval), TEST(test_limit_shared_race))
