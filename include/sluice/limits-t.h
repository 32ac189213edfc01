/* limits-t.h - the process-wide count of live sessions and its cap: the
 * workers take and give back slots on the data path, the control thread
 * sets the cap ([global] max_conns) and reads the count. The data path
 * reaches it through this header alone, not through the control module. */
#ifndef SLUICE_LIMITS_T_H
#define SLUICE_LIMITS_T_H

struct session_limits {
    _Atomic int active;    /* live sessions, all workers */
    _Atomic int max_conns; /* cap of the current generation */
};

#endif
