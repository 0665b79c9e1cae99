/*
 * bench_main.c - the model bench on the emulated board (QEMU mps2-an386, same startup and linker script as
 * the board image): runs one compiled model on the inputs that `hi-firmware profile` embedded in
 * bench_config.c, and prints through semihosting
 *   steps <n> <t_1> ... <t_n>     instructions of each kernel step of the first sample (HI_MODEL_STEP_HOOK)
 *   total <instructions>          one whole invoke of the first sample
 *   out <sample> <output> <hex>   every output byte of every sample
 * then exits QEMU. Timing: SysTick from the 25 MHz clock; under -icount shift=0 one tick is 40 instructions.
 */
#include <stdint.h>
#include <string.h>

#include "bench_hook.h"

/* From the generated bench_config.c. */
extern const uint32_t bench_num_samples, bench_num_inputs, bench_num_outputs;
extern const uint32_t bench_input_bytes[], bench_output_bytes[];
extern const uint8_t bench_inputs[]; /* sample-major, inputs concatenated */
extern uint8_t *const bench_input_bufs[];
extern uint8_t *const bench_output_bufs[];
int bench_invoke(void);

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define RELOAD 0x00FFFFFFu
#define INSTRUCTIONS_PER_TICK 40u /* 25 MHz SysTick, 1 ns per instruction */

static volatile uint32_t g_wraps;
void SysTick_Handler(void) { ++g_wraps; }

static uint64_t ticks(void) {
  uint32_t w1, w2, cvr;
  do {
    w1 = g_wraps;
    cvr = SYST_CVR;
    w2 = g_wraps;
  } while (w1 != w2);
  return (uint64_t)w1 * (RELOAD + 1u) + (RELOAD - (cvr & RELOAD));
}

#define MAX_STEPS 512
static uint64_t g_step_ticks[MAX_STEPS]; /* ticks since the previous hook (0: the step emits no code) */
static uint64_t g_last;
static uint32_t g_steps;
static int g_recording;

void bench_step_hook(int step) {
  if (g_recording && step >= 0 && step < MAX_STEPS) {
    const uint64_t now = ticks();
    g_step_ticks[step] = now - g_last;
    g_last = now;
    if ((uint32_t)step + 1u > g_steps) g_steps = (uint32_t)step + 1u;
  }
}

static int semihost(int op, void *arg) {
  register int r0 __asm("r0") = op;
  register void *r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static char g_line[256];
static uint32_t g_len;

static void flush_line(void) {
  g_line[g_len] = '\0';
  semihost(0x04, g_line); /* SYS_WRITE0 */
  g_len = 0u;
}

static void put(const char *s) {
  while (*s) {
    if (g_len == sizeof g_line - 1u) flush_line();
    g_line[g_len++] = *s++;
  }
}

static void put_u64(uint64_t v) {
  char b[21];
  int i = 20;
  b[i] = '\0';
  do {
    b[--i] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v);
  put(b + i);
}

static void put_hex(const uint8_t *p, uint32_t n) {
  static const char d[] = "0123456789abcdef";
  uint32_t i;
  for (i = 0; i < n; ++i) {
    char h[3] = {d[p[i] >> 4], d[p[i] & 15u], '\0'};
    put(h);
  }
}

int main(void) {
  uint32_t s, k, off = 0u;
  int rc = 0;
  uint64_t t0, t1;
  SYST_RVR = RELOAD;
  SYST_CVR = 0u;
  SYST_CSR = 0x7u;
  for (s = 0; s < bench_num_samples; ++s) {
    for (k = 0; k < bench_num_inputs; ++k) {
      memcpy(bench_input_bufs[k], bench_inputs + off, bench_input_bytes[k]);
      off += bench_input_bytes[k];
    }
    g_recording = s == 0u;
    t0 = ticks();
    g_last = t0;
    rc = bench_invoke();
    t1 = ticks();
    g_recording = 0;
    if (s == 0u) {
      uint32_t i;
      put("steps ");
      put_u64(g_steps);
      for (i = 0; i < g_steps; ++i) {
        put(" ");
        put_u64(g_step_ticks[i] * INSTRUCTIONS_PER_TICK);
      }
      put("\ntotal ");
      put_u64((t1 - t0) * INSTRUCTIONS_PER_TICK);
      put("\n");
      flush_line();
    }
    if (rc != 0) {
      put("rc ");
      put_u64(s);
      put(rc < 0 ? " -" : " ");
      put_u64((uint64_t)(rc < 0 ? -rc : rc));
      put("\n");
      flush_line();
      continue;
    }
    for (k = 0; k < bench_num_outputs; ++k) {
      put("out ");
      put_u64(s);
      put(" ");
      put_u64(k);
      put(" ");
      put_hex(bench_output_bufs[k], bench_output_bytes[k]);
      put("\n");
      flush_line();
    }
  }
  put("done\n");
  flush_line();
  {
    uint32_t a[2] = {0x20026u, 0u}; /* ADP_Stopped_ApplicationExit, exit code 0 */
    semihost(0x20, a);               /* SYS_EXIT_EXTENDED */
  }
  for (;;) {
  }
}
