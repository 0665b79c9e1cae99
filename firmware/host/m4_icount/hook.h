/* Force-included into the generated model: record the timer after every kernel step. */
#include <stdint.h>
uint64_t ticks_now(void);
extern uint64_t step_ticks[256];
#define HI_MODEL_STEP_HOOK(i) (step_ticks[(i)] = ticks_now())
