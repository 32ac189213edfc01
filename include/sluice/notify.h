/* notify.h - systemd's readiness protocol (sd_notify) without libsystemd:
 * one datagram to $NOTIFY_SOCKET per state change. A no-op when sluice
 * does not run under systemd's Type=notify. */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

/* Send one state message ("READY=1", "RELOADING=1", "STOPPING=1", ...).
 * Returns 0 when sent or when there is nobody to tell, -1 on error. */
int notify_send(const char *state);

#endif
