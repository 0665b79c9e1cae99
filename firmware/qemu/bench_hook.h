/* bench_hook.h - force-included into the model bench build (firmware/qemu/Makefile, target bench): every
 * kernel step of the generated model reports to bench_main.c. */
#ifndef HI_BENCH_HOOK_H
#define HI_BENCH_HOOK_H
void bench_step_hook(int step);
#define HI_MODEL_STEP_HOOK(step) bench_step_hook(step)
#endif
