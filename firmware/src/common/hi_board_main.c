/*
 * hi_board_main.c - the board-independent firmware main: generated app + serial command interface.
 * Every board (QEMU mps2-an386, Nano 33 BLE, ESP32, Coral Micro) calls these two functions from its glue.
 */
#include <string.h>

#include "hi_app.h"
#include "hi_board.h"

static hi_app_t g_app;
static hi_serial_t g_serial;
static int g_ready;

int hi_board_serial_begin(const hi_board_io_t *io) {
  hi_serial_io_t sio;
  hi_serial_config_t cfg;
  static const char setup_failed[] = "e-[application configuration is inconsistent: rebuild with hi-firmware build]\r\n";
  if (io == NULL || io->write == NULL) return -1;
  if (hi_app_setup(&g_app) != 0) {
    io->write(io->user, setup_failed, sizeof setup_failed - 1u);
    return -1;
  }
  sio.write = io->write;
  sio.timestamp_us = io->timestamp_us;
  sio.user = io->user;
  memset(&cfg, 0, sizeof cfg);
  cfg.device_name = io->device_name ? io->device_name : HI_BOARD_NAME;
  cfg.fw_version = HI_FW_VERSION;
  cfg.model_version = g_app.model_version;
  cfg.model_id = g_app.model_id;
  cfg.pipeline = g_app.pipeline;
  cfg.input = g_app.input;
  cfg.db = g_app.db;
  cfg.db_capacity = g_app.db_capacity;
  if (hi_serial_init(&g_serial, &sio, &cfg) != 0) {
    io->write(io->user, setup_failed, sizeof setup_failed - 1u);
    return -1;
  }
  g_ready = 1;
  hi_serial_banner(&g_serial);
  return 0;
}

void hi_board_serial_feed(const char *data, size_t n) {
  if (g_ready) hi_serial_feed(&g_serial, data, n);
}

hi_serial_t *hi_board_serial(void) { return g_ready ? &g_serial : NULL; }

const hi_app_t *hi_board_app(void) { return g_ready ? &g_app : NULL; }
