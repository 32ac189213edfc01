/* fault.c - failure points for tests (see include/sluice/fault.h). Only
 * compiled into builds with assertions; production builds get the inline
 * stubs and cannot be made to fail this way. */
#include "sluice/fault.h"

#ifdef SLUICE_ASSERTIONS
#include "sluice/log.h"
#include "sluice/parse.h"

#include <stdlib.h>
#include <unistd.h>

static long worker_start_fail_at; /* 0: off */
static long worker_start_calls;
static bool fanout_wait_exit;
static long pick_delay_us; /* set before any worker runs, then only read */
static bool no_steering;   /* likewise */
static long retire_close_delay_us; /* likewise */
static bool uring_refuse;          /* likewise */

static long env_long(const char *name)
{
    const char *v = getenv(name);
    long n = 0;
    if (v == NULL || *v == '\0')
        return 0;
    if (!parse_int_range(v, 1, 1000000, &n)) {
        log_warn("%s=%s: not a number 1..1000000, ignored", name, v);
        return 0;
    }
    log_warn("%s=%ld: fault injection on (a test build)", name, n);
    return n;
}

void fault_init(void)
{
    worker_start_fail_at = env_long("SLUICE_FAULT_WORKER_START");
    fanout_wait_exit = env_long("SLUICE_FAULT_FANOUT_WAIT_EXIT") != 0;
    pick_delay_us = env_long("SLUICE_FAULT_PICK_DELAY_US");
    no_steering = env_long("SLUICE_FAULT_NO_STEERING") != 0;
    retire_close_delay_us = env_long("SLUICE_FAULT_RETIRE_CLOSE_DELAY_US");
    uring_refuse = env_long("SLUICE_FAULT_URING_REFUSE") != 0;
}

bool fault_worker_start(void)
{
    worker_start_calls++;
    if (worker_start_fail_at == 0 || worker_start_calls != worker_start_fail_at)
        return false;
    log_warn("fault: worker_start() call %ld fails (SLUICE_FAULT_WORKER_START)",
             worker_start_calls);
    return true;
}

bool fault_fanout_wait_exit(void)
{
    return fanout_wait_exit;
}
void fault_pick_delay(void)
{
    if (pick_delay_us > 0)
        usleep((useconds_t)pick_delay_us);
}

bool fault_no_steering(void)
{
    return no_steering;
}

void fault_retire_close_delay(void)
{
    if (retire_close_delay_us > 0)
        usleep((useconds_t)retire_close_delay_us);
}

bool fault_uring_refuse(void)
{
    return uring_refuse;
}
#endif
