/* fault.h - failure points the integration tests switch on through the
 * environment, in builds with assertions only (-Dassertions=true, which
 * defines SLUICE_ASSERTIONS). Elsewhere every point is a constant "no".
 * The variables are listed in docs/testing.md. */
#ifndef SLUICE_FAULT_H
#define SLUICE_FAULT_H

#include <stdbool.h>

#ifdef SLUICE_ASSERTIONS
/* Main thread, once at start before any worker exists: read the
 * SLUICE_FAULT_* variables and log the ones that are set. */
void fault_init(void);
/* Main thread: true when this call to worker_start() must fail
 * (SLUICE_FAULT_WORKER_START=N: the Nth call since start, counting 1..). */
bool fault_worker_start(void);
/* Main thread: true when control_fanout() must hold its caller until a
 * worker it chose exits (SLUICE_FAULT_FANOUT_WAIT_EXIT=1). */
bool fault_fanout_wait_exit(void);
/* Any worker: pause between picking a server and reserving its slot
 * (SLUICE_FAULT_PICK_DELAY_US=N microseconds), widening the window in
 * which workers race for a server's last max_conns slot. */
void fault_pick_delay(void);
/* Any thread: true when reloads must not steer connections away from
 * retiring workers' sockets (SLUICE_FAULT_NO_STEERING=1), to show what
 * the steering prevents. */
bool fault_no_steering(void);
/* A retiring worker: pause between accepting the last queued connection
 * of a listening socket and closing it (SLUICE_FAULT_RETIRE_CLOSE_DELAY_US
 * =N microseconds), widening the window in which the kernel can still
 * queue a connection there. */
void fault_retire_close_delay(void);
/* Any worker: true when opening the io_uring for relay = uring must fail
 * as if the kernel refused it (SLUICE_FAULT_URING_REFUSE=1). */
bool fault_uring_refuse(void);
#else
static inline void fault_init(void)
{
}
static inline bool fault_worker_start(void)
{
    return false;
}
static inline bool fault_fanout_wait_exit(void)
{
    return false;
}
static inline void fault_pick_delay(void)
{
}
static inline bool fault_no_steering(void)
{
    return false;
}
static inline void fault_retire_close_delay(void)
{
}
static inline bool fault_uring_refuse(void)
{
    return false;
}
#endif

#endif
