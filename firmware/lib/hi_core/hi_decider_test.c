/* hi_decider_test.c - the integer decider on hand-checked cases (random cases vs Python: tests/firmware). */
#include "hi_decider.h"
#include "hi_test.h"

int main(void) {
  hi_decider_t d;
  const int32_t a[2] = {3, -2};
  const int8_t s1[4] = {-128, 100, 20, -50}; /* top: 100, 20 */
  int32_t top[3];
  CHECK(hi_decider_init(&d, 0, 0, a, 0) == -1);
  CHECK(hi_decider_init(&d, HI_DECIDER_MAX_TOP_K + 1, 0, a, 0) == -1);
  CHECK(hi_decider_init(&d, 2, -128, a, -500) == 0);
  /* 3*(100+128) - 2*(20+128) - 500 = 684 - 296 - 500 = -112 */
  CHECK(hi_decider_value(&d, s1, 4) == -112);
  CHECK(hi_decider_accept(&d, s1, 4) == 0);
  d.bias = -388; /* exactly zero accepts */
  CHECK(hi_decider_value(&d, s1, 4) == 0);
  CHECK(hi_decider_accept(&d, s1, 4) == 1);
  /* ties: values matter, not positions */
  {
    const int8_t t[3] = {5, 5, 5};
    CHECK(hi_top_k_s8(t, 3, top, 2) == 2 && top[0] == 5 && top[1] == 5);
  }
  {
    const int8_t t[5] = {-3, 7, 7, -128, 127};
    CHECK(hi_top_k_s8(t, 5, top, 3) == 3 && top[0] == 127 && top[1] == 7 && top[2] == 7);
  }
  /* fewer scores than top_k: only the available ranks count */
  CHECK(hi_decider_value(&d, s1, 1) == 3 * (-128 + 128) - 388);
  /* NULL decider keeps everything */
  CHECK(hi_decider_accept(NULL, s1, 4) == 1);
  /* the int64 accumulation saturates the reported value instead of wrapping */
  {
    const int32_t big[2] = {INT32_MAX, INT32_MAX};
    const int8_t hi8[2] = {127, 127};
    CHECK(hi_decider_init(&d, 2, -128, big, 0) == 0);
    CHECK(hi_decider_value(&d, hi8, 2) == INT32_MAX);
    CHECK(hi_decider_accept(&d, hi8, 2) == 1);
  }
  TEST_END("hi_decider_test");
}
