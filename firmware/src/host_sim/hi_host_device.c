/*
 * hi_host_device.c - the firmware as a host shared library: the same shared main (src/common), core,
 * kernels and generated application as the boards, with the serial port replaced by two calls that
 * Python drives through ctypes. WHY: the serial bridge and its tests need a device that behaves exactly
 * like the firmware, and the host engine used to check the emulated board's outputs byte for byte.
 */
#define _POSIX_C_SOURCE 199309L
#include <string.h>
#include <time.h>

#include "hi_board.h"

#define HOST_OUT_SIZE (1u << 17)
static char g_out[HOST_OUT_SIZE];
static size_t g_out_len;
static int g_out_overflow;

static void host_write(void *user, const char *data, size_t n) {
  (void)user;
  if (n > HOST_OUT_SIZE - g_out_len) {
    g_out_overflow = 1;
    n = HOST_OUT_SIZE - g_out_len;
  }
  memcpy(g_out + g_out_len, data, n);
  g_out_len += n;
}

static uint32_t host_us(void *user) {
  struct timespec ts;
  (void)user;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

int hi_host_begin(void) {
  hi_board_io_t io;
  io.write = host_write;
  io.timestamp_us = host_us;
  io.user = NULL;
  io.device_name = "hi-runtime host-sim";
  g_out_len = 0;
  g_out_overflow = 0;
  return hi_board_serial_begin(&io);
}

void hi_host_feed(const char *data, size_t n) { hi_board_serial_feed(data, n); }

/* Move up to cap pending output bytes into dst; returns the count, or -1 if output was lost (overflow). */
long hi_host_take(char *dst, size_t cap) {
  size_t n = g_out_len < cap ? g_out_len : cap;
  if (g_out_overflow) return -1;
  memcpy(dst, g_out, n);
  memmove(g_out, g_out + n, g_out_len - n);
  g_out_len -= n;
  return (long)n;
}
