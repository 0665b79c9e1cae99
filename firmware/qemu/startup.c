/*
 * startup.c - reset and vector table for the bare-metal Cortex-M4F image on QEMU mps2-an386.
 * Copies .data, clears .bss, enables the FPU (CP10/CP11), then calls main().
 */
#include <stdint.h>
#include <string.h>

extern uint32_t __stack_top;
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

#define CPACR (*(volatile uint32_t *)0xE000ED88u)

void Default_Handler(void) {
  for (;;) {
  }
}

void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UART0RX_Handler(void) __attribute__((weak, alias("Default_Handler")));

/* 16 system exceptions, then external IRQ 0 (mps2-an386: UART0 RX). */
__attribute__((section(".vectors"), used)) void (*const g_vectors[17])(void) = {
    (void (*)(void))(&__stack_top),
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0,
    0,
    0,
    0,
    SVC_Handler,
    0,
    0,
    PendSV_Handler,
    SysTick_Handler,
    UART0RX_Handler,
};

/* What happens when main returns: the board firmware never returns; programs run under semihosting (the
 * kernels' C tests, qemu/semihost_run.c) report the exit code to QEMU instead. */
__attribute__((weak)) void hi_startup_after_main(int rc) {
  (void)rc;
  for (;;) {
  }
}

void Reset_Handler(void) {
  uint32_t *src = &__data_load, *dst = &__data_start;
  while (dst < &__data_end) *dst++ = *src++;
  for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0u;
  CPACR |= (0xFu << 20); /* full access to CP10 and CP11 (the FPU) */
  __asm volatile("dsb\n\tisb" ::: "memory");
  hi_startup_after_main(main());
}
