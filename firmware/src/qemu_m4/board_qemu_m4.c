/*
 * board_qemu_m4.c - glue for QEMU's mps2-an386 (Cortex-M4F): CMSDK APB UART0 at 0x40004000 polled for
 * the serial commands, SysTick for timestamps. Everything else is the shared core.
 *
 * Timing: SysTick runs from the 25 MHz system clock with a 24-bit reload and an overflow counter, so
 * timestamps never wrap within 2^32 microseconds. Under `qemu-system-arm -icount shift=0` every guest
 * instruction advances virtual time by exactly 1 ns, which makes `m-lap-us` differences deterministic
 * instruction counts (1 us = 1000 instructions; SysTick ticks every 40 instructions, timestamps are
 * reported in whole microseconds).
 *
 * Input: the UART RX interrupt fills a ring buffer and the main loop sleeps in WFI while it is empty.
 * WHY not busy polling: an idle vCPU lets QEMU service the host socket at once; a busy-polling guest
 * under -icount only sees new bytes when QEMU's vCPU kick timer fires, which made each command cost
 * ~90 ms of wall time. Idle time is outside every measured interval (timestamps are taken while running).
 */
#include <stdint.h>

#include "hi_board.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08u))
#define UART_INTCLEAR (*(volatile uint32_t *)(UART0_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))
#define UART_STATE_TX_FULL 0x1u
#define UART_STATE_RX_FULL 0x2u
#define UART_CTRL_TX_EN 0x1u
#define UART_CTRL_RX_EN 0x2u
#define UART_CTRL_RX_INT 0x8u
#define UART_INT_RX 0x2u
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define UART0_RX_IRQ 0u /* mps2-an386: IRQ 0 = UART0 RX */

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYSCLK_HZ 25000000u
#define SYSTICK_RELOAD 0x00FFFFFFu

static volatile uint32_t g_systick_wraps;

void SysTick_Handler(void) { ++g_systick_wraps; }

static uint64_t systick_ticks(void) {
  uint32_t w1, w2, cvr;
  do {
    w1 = g_systick_wraps;
    cvr = SYST_CVR;
    w2 = g_systick_wraps;
  } while (w1 != w2);
  return (uint64_t)w1 * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - (cvr & SYSTICK_RELOAD));
}

static uint32_t timestamp_us(void *user) {
  (void)user;
  return (uint32_t)(systick_ticks() / (SYSCLK_HZ / 1000000u));
}

static void uart_write(void *user, const char *data, size_t n) {
  size_t i;
  (void)user;
  for (i = 0; i < n; ++i) {
    while (UART_STATE & UART_STATE_TX_FULL) {
    }
    UART_DATA = (uint8_t)data[i];
  }
}

#define RX_RING 256u
static volatile uint8_t g_rx[RX_RING];
static volatile uint32_t g_rx_head, g_rx_tail; /* head: written by the ISR, tail: read by main */

/* Move received bytes into the ring. The interrupt flag is cleared BEFORE draining, so a byte that arrives
 * during the drain raises the interrupt again instead of being stranded in the data register. */
static void uart_drain(void) {
  UART_INTCLEAR = UART_INT_RX;
  while ((UART_STATE & UART_STATE_RX_FULL) && g_rx_head - g_rx_tail < RX_RING) {
    g_rx[g_rx_head % RX_RING] = (uint8_t)(UART_DATA & 0xFFu);
    ++g_rx_head;
  }
  if (g_rx_head - g_rx_tail >= RX_RING) UART_CTRL &= ~UART_CTRL_RX_INT; /* main re-enables when drained */
}

void UART0RX_Handler(void) { uart_drain(); }

int main(void) {
  hi_board_io_t io;
  UART_BAUDDIV = SYSCLK_HZ / 115200u;
  UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_INT;
  NVIC_ISER0 = 1u << UART0_RX_IRQ;
  SYST_RVR = SYSTICK_RELOAD;
  SYST_CVR = 0u;
  SYST_CSR = 0x7u; /* processor clock, interrupt, enable */
  io.write = uart_write;
  io.timestamp_us = timestamp_us;
  io.user = 0;
  io.device_name = "hi-runtime qemu-mps2-an386";
  if (hi_board_serial_begin(&io) != 0) {
    for (;;) {
    }
  }
  for (;;) {
    char chunk[64];
    size_t n = 0u;
    __asm volatile("cpsid i" ::: "memory");
    while (g_rx_tail != g_rx_head && n < sizeof chunk) chunk[n++] = (char)g_rx[g_rx_tail++ % RX_RING];
    if (n == 0u) {
      UART_CTRL |= UART_CTRL_RX_INT;
      if (UART_STATE & UART_STATE_RX_FULL) {
        uart_drain(); /* a byte is already waiting: never sleep on it */
      } else {
        __asm volatile("wfi" ::: "memory"); /* wakes on a pending interrupt even with PRIMASK set */
      }
    }
    __asm volatile("cpsie i" ::: "memory");
    if (n > 0u) hi_board_serial_feed(chunk, n);
  }
}
