/* hi_test.h - the few macros the hi_core C unit tests share (each *_test.c is its own program). */
#ifndef HI_TEST_H
#define HI_TEST_H

#include <stdio.h>
#include <string.h>

static int hi_test_failures = 0; /* per program */
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++hi_test_failures;                                                      \
    }                                                                          \
  } while (0)
#define TEST_END(name)                                                    \
  do {                                                                    \
    if (hi_test_failures) {                                               \
      fprintf(stderr, "%s: %d check(s) failed\n", name, hi_test_failures); \
      return 1;                                                           \
    }                                                                     \
    printf("%s: ok\n", name);                                             \
    return 0;                                                             \
  } while (0)

static inline int hi_test_unhex(const char *hex, unsigned char *out, size_t cap) {
  size_t n = strlen(hex) / 2, i;
  if (n > cap) return -1;
  for (i = 0; i < n; ++i) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
    out[i] = (unsigned char)v;
  }
  return (int)n;
}

#endif
