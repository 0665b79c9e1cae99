/*
 * hi_offload_session.h - internal to hi_core: the HI offload state machine behind the `hi` serial commands
 * (run, result, degraded, config, status; protocol in docs/serial.md). Its state is hi_serial_t.hi.
 */
#ifndef HI_OFFLOAD_SESSION_H
#define HI_OFFLOAD_SESSION_H

#include "hi_serial.h"

/* tok[0] is "hi": run the subcommand tok[1]. */
void hi_offload_session_execute(hi_serial_t *s, char **tok, int ntok);
void hi_offload_session_help(hi_serial_t *s);

#endif /* HI_OFFLOAD_SESSION_H */
