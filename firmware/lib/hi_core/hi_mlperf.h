/*
 * hi_mlperf.h - internal to hi_core: the MLPerf Tiny runner commands of the serial interface (hi_serial.h
 * documents the protocol). The harness side of EEMBC's split: the board-owned (th_*) parts are the
 * serial io callbacks and the pipeline.
 */
#ifndef HI_MLPERF_H
#define HI_MLPERF_H

#include "hi_serial.h"

/* Run tok[0..ntok) if it is a runner command (name, profile, timestamp, db, infer, results): 1, else 0. */
int hi_mlperf_execute(hi_serial_t *s, char **tok, int ntok);
/* th_load_tensor: the loaded uint8 pixels become the model input. 0 (and an e- line naming `what`) when no
 * complete sample is loaded. */
int hi_mlperf_load_tensor(hi_serial_t *s, const char *what);
/* Run the pipeline on the model input (mode: HI_RUN_ALL_SEGMENTS or HI_RUN_POLICY); the outcome is kept for
 * `results`. 0 (and an e- line) when the model failed. */
int hi_mlperf_run_model(hi_serial_t *s, int mode);
void hi_mlperf_help(hi_serial_t *s);
/* The runner's boot messages before m-ready: m-timestamp-mode-performance, m-lap-us-N, m-init-done. */
void hi_mlperf_banner(hi_serial_t *s);

#endif /* HI_MLPERF_H */
