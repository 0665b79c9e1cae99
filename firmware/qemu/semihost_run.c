/*
 * semihost_run.c - run an ordinary C test program (the kernels' *_test.c programs) on the emulated board: stdout
 * and stderr go to QEMU through semihosting, malloc takes a static pool, and main's return value becomes
 * QEMU's exit code (`qemu-system-arm -semihosting`). Used by `make -C firmware/lib/hi_nn qemu-test`, so every
 * kernel test also runs with the Cortex-M4 DSP paths (the host build runs the portable ones).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void SysTick_Handler(void) {}

static int semihost(int op, void *arg) {
  register int r0 __asm("r0") = op;
  register void *r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

int _write(int fd, const char *buf, int len);
int _write(int fd, const char *buf, int len) {
  char chunk[129];
  int done = 0;
  (void)fd;
  while (done < len) {
    int n = len - done < 128 ? len - done : 128;
    memcpy(chunk, buf + done, (size_t)n);
    chunk[n] = '\0';
    semihost(0x04, chunk); /* SYS_WRITE0 */
    done += n;
  }
  return len;
}

static uint8_t g_heap[1u << 20] __attribute__((aligned(8)));
static size_t g_heap_used;

void *_sbrk(ptrdiff_t incr);
void *_sbrk(ptrdiff_t incr) {
  void *p;
  if (incr < 0 || g_heap_used + (size_t)incr > sizeof g_heap) return (void *)-1;
  p = g_heap + g_heap_used;
  g_heap_used += (size_t)incr;
  return p;
}

void hi_startup_after_main(int rc);
void hi_startup_after_main(int rc) {
  uint32_t a[2] = {0x20026u, (uint32_t)rc}; /* ADP_Stopped_ApplicationExit, exit code */
  semihost(0x20, a);                         /* SYS_EXIT_EXTENDED */
  for (;;) {
  }
}
