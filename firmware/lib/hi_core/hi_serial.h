/*
 * hi_serial.h - the device's serial command interface (protocol: docs/serial.md).
 *
 * Two command sets share one line discipline (hi_serial.c), each in its own module:
 *  - the MLPerf Tiny / EEMBC image-classification runner commands (`name%`, `profile%`, `timestamp%`,
 *    `db load N%`, `db HEX%`, `db print%`, `infer N W%`, `results%`, `help%`), with the runner's reply
 *    conventions (`m-` messages, `e-[...]` errors, `m-lap-us-N` timestamps, `m-results-[...]`, and
 *    `m-ready` after every command), so the MLPerf Tiny host runner can benchmark the board as is
 *    (hi_mlperf.c: the harness side of EEMBC's ee_ / th_ split; the board side is hi_serial_io_t and the
 *    pipeline);
 *  - HI commands (`hi run`, `hi result`, `hi degraded`, `hi config`, `hi status`): run the full HI decision
 *    on the loaded sample, emit an offload request as a protocol INFER frame in hex, and take the server's
 *    RESULT/ERROR frame (or a degraded notice) back from the host (the serial bridge, hi-agent serial):
 *    the offload state machine of hi_offload_session.c.
 *
 * WHY this design: the device never trusts the host. Commands are assembled into a fixed buffer and an
 * over-long command is discarded with an error instead of overflowing it; numbers are parsed strictly;
 * `db` data can never be written past the announced length or the buffer. No dynamic allocation, no
 * printf (output is formatted here, so no float printf support is needed from the C library).
 */
#ifndef HI_SERIAL_H
#define HI_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "hi_exit_policy.h"
#include "hi_frame.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest command (without the '%' terminator). 256 holds `db` + 120 bytes of hex and a RESULT frame
 * with up to 14 top-k entries in hex. */
#ifndef HI_SERIAL_CMD_SIZE
#define HI_SERIAL_CMD_SIZE 256
#endif
#ifndef HI_SERIAL_OUT_SIZE
#define HI_SERIAL_OUT_SIZE 128 /* output is buffered in chunks of this size */
#endif
#ifndef HI_SERIAL_MAX_INFER_RUNS
#define HI_SERIAL_MAX_INFER_RUNS 100000u /* bound on N and W of `infer N W` (a command must end) */
#endif
#define HI_SERIAL_TERMINATOR '%'
#define HI_SERIAL_MAX_TOKENS 6
#define HI_SERIAL_MAX_CLASSES 1000
#define HI_SERIAL_FW_VERSION_DEFAULT "HI-FW 1.0 (MLPerf Tiny runner API)"

typedef struct {
  /* Write n bytes to the serial port (blocking is fine). */
  void (*write)(void *user, const char *data, size_t n);
  /* Microseconds from a free-running timer (wraps at 2^32). On QEMU with -icount shift=0 one
   * microsecond is 1000 instructions. May be NULL (timestamps read 0). */
  uint32_t (*timestamp_us)(void *user);
  void *user;
} hi_serial_io_t;

/* Optional on-device offload (boards that reach the server themselves: BLE gateway, WiFi). Called by
 * `hi run` when the decision is to offload, with the model input; blocks until answered or given up.
 * Returns 0 with *server_class set, or a negative value / positive protocol error code to keep the local
 * answer (reported as source=degraded,error=<value>). */
typedef int (*hi_offload_fn)(void *user, uint32_t request_id, const int8_t *input, const hi_pipeline_t *pipeline,
                             int32_t *server_class);

typedef struct {
  const char *device_name;   /* `name%` -> m-name-dut-[device_name] */
  const char *fw_version;    /* `profile%` -> m-profile-[fw_version] */
  const char *model_version; /* `profile%` -> m-model-[model_version], e.g. "ic01" */
  const char *model_id;      /* model id put in offload INFER frames ("" = the server's default) */
  const hi_pipeline_t *pipeline;
  int8_t *input;             /* model input buffer: height*width*channels bytes */
  uint8_t *db;               /* `db` byte buffer (uint8 pixels, NHWC) */
  uint32_t db_capacity;
  hi_offload_fn offload;     /* NULL: offload requests go to the serial host as frames (`hi result` answers) */
  void *offload_user;
} hi_serial_config_t;

/* State of the MLPerf Tiny runner commands (hi_mlperf.c). */
typedef struct {
  uint32_t db_expected, db_fill; /* `db load N` and the bytes received so far */
  int has_result;
  hi_outcome_t last; /* the last pipeline run (also the HI decision's) */
} hi_mlperf_state_t;

/* State of the HI offload session (hi_offload_session.c): at most one pending offload. */
typedef struct {
  uint8_t pending;
  uint32_t pending_id;
  int16_t pending_local_class;
  uint32_t next_id;
  uint32_t offloads, answers, degraded; /* reported by `hi status` */
} hi_offload_state_t;

typedef struct {
  hi_serial_io_t io;
  hi_serial_config_t cfg;
  /* line discipline (hi_serial.c) */
  char cmd[HI_SERIAL_CMD_SIZE + 1];
  size_t cmd_len;
  uint8_t overflow;  /* current command exceeded HI_SERIAL_CMD_SIZE: discard until '%' */
  uint16_t bad_char; /* 0x100 | first invalid character of the current command (0 = none) */
  uint32_t commands, errors; /* reported by `hi status` */
  hi_mlperf_state_t mlperf;
  hi_offload_state_t hi;
  /* output buffer (hi_serial_out.c) */
  char out[HI_SERIAL_OUT_SIZE];
  size_t out_len;
} hi_serial_t;

/* Set up the interface. Returns 0, or -1 when the configuration is unusable (NULL pointers, a db buffer
 * smaller than the model input, a pipeline that fails hi_pipeline_check). */
int hi_serial_init(hi_serial_t *s, const hi_serial_io_t *io, const hi_serial_config_t *cfg);

/* The runner's boot messages: m-timestamp-mode-performance, m-lap-us-N, m-init-done, m-ready. */
void hi_serial_banner(hi_serial_t *s);

/* Feed received bytes; every '%' completes a command, which runs before this returns. */
void hi_serial_feed(hi_serial_t *s, const char *data, size_t n);

/* Run one command line (no terminator). `line` is modified (tokenized). Ends with m-ready. */
void hi_serial_execute(hi_serial_t *s, char *line);

#ifdef __cplusplus
}
#endif

#endif /* HI_SERIAL_H */
