/* Minimal bare-metal startup for QEMU mps2-an386 (Cortex-M4F): vector table, .data/.bss init, FPU on,
 * semihosting output/exit, and the CMSDK timer 0 (25 MHz) as a clock. Used only to count instructions with
 * `-icount shift=0` (1 instruction = 1 ns of virtual time = 1/40 timer tick). Not the board firmware. */
#include <stdint.h>
extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);
void SysTick_Handler(void) {}
void Reset_Handler(void) {
  uint32_t *s = &_sidata, *d = &_sdata;
  while (d < &_edata) *d++ = *s++;
  for (d = &_sbss; d < &_ebss;) *d++ = 0;
  *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20); /* FPU on */
  __asm volatile("dsb; isb");
  main();
  for (;;) {}
}
void Default_Handler(void) { for (;;) {} }
__attribute__((section(".isr_vector"))) const void *vectors[16] = {
  &_estack, Reset_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
  0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler};
static int semihost(int op, void *arg) {
  register int r0 __asm("r0") = op; register void *r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory"); return r0;
}
void sh_puts(const char *s) { semihost(0x04, (void *)s); }
void sh_exit(int code) { uint32_t a[2] = {0x20026, (uint32_t)code}; semihost(0x20, a); }
uint64_t ticks_now(void) { return 0xFFFFFFFFu - *(volatile uint32_t *)0x40000004; }
void ticks_start(void) {
  *(volatile uint32_t *)0x40000008 = 0xFFFFFFFF; *(volatile uint32_t *)0x40000004 = 0xFFFFFFFF;
  *(volatile uint32_t *)0x40000000 = 1;
}
