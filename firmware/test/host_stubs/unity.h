/* Minimal stand-in for the Unity test framework's macros used in firmware/test (PlatformIO ships the real
 * Unity; this lets pytest build and run the same test files with the host compiler, offline). */
#ifndef HI_UNITY_STUB_H
#define HI_UNITY_STUB_H
#include <stdio.h>
#include <string.h>

static int unity_failures, unity_tests;
#define UNITY_BEGIN() (unity_failures = 0, unity_tests = 0)
#define UNITY_END() (printf("%d Tests %d Failures\n", unity_tests, unity_failures), unity_failures != 0)
#define RUN_TEST(fn) (setUp(), ++unity_tests, fn(), tearDown())
#define UNITY_CHECK(cond, what)                                       \
  do {                                                                \
    if (!(cond)) {                                                    \
      printf("%s:%d: FAIL: %s\n", __FILE__, __LINE__, what);          \
      ++unity_failures;                                               \
    }                                                                 \
  } while (0)
#define TEST_ASSERT_TRUE(c) UNITY_CHECK((c), #c)
#define TEST_ASSERT_FALSE(c) UNITY_CHECK(!(c), "!" #c)
#define TEST_ASSERT_NOT_NULL(p) UNITY_CHECK((p) != NULL, #p " != NULL")
#define TEST_ASSERT_EQUAL_INT(a, b) UNITY_CHECK((long long)(a) == (long long)(b), #a " == " #b)
#define TEST_ASSERT_EQUAL_INT32(a, b) TEST_ASSERT_EQUAL_INT(a, b)
#define TEST_ASSERT_EQUAL_UINT16(a, b) TEST_ASSERT_EQUAL_INT(a, b)
#define TEST_ASSERT_EQUAL_UINT32(a, b) TEST_ASSERT_EQUAL_INT(a, b)
#define TEST_ASSERT_EQUAL_MEMORY(a, b, n) UNITY_CHECK(memcmp((a), (b), (n)) == 0, "memory " #a " == " #b)
#endif
