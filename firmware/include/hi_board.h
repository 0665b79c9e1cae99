/*
 * hi_board.h - the thin contract between a board's glue and the shared firmware main loop
 * (src/common/hi_board_main.c): a board provides byte I/O and a microsecond clock, nothing else.
 */
#ifndef HI_BOARD_H
#define HI_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "hi_app.h"
#include "hi_serial.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HI_BOARD_NAME
#define HI_BOARD_NAME "hi-runtime"
#endif
#ifndef HI_FW_VERSION
#define HI_FW_VERSION "HI-FW 1.0 (MLPerf Tiny runner API)"
#endif

typedef struct {
  void (*write)(void *user, const char *data, size_t n);
  uint32_t (*timestamp_us)(void *user);
  void *user;
  const char *device_name;
} hi_board_io_t;

/* Set up the generated application and the serial interface, and print the runner's boot banner.
 * Returns 0, or -1 when the application configuration is unusable (the reason is printed as e-[...]). */
int hi_board_serial_begin(const hi_board_io_t *io);

/* Feed bytes received on the serial port (commands run inside this call). */
void hi_board_serial_feed(const char *data, size_t n);

/* The serial interface, for boards that add transports (BLE/WiFi offload) around it. */
hi_serial_t *hi_board_serial(void);
const hi_app_t *hi_board_app(void);

#ifdef __cplusplus
}
#endif

#endif /* HI_BOARD_H */
