/*
 * test_main.c - PlatformIO unit tests of the HI core (Unity), runnable on the host (`pio test -e native`)
 * and on a board (`pio test -e nano33ble`): the frame codec against one shared protocol vector, the integer
 * decider, the exit rule, and the serial line discipline. The exhaustive comparisons with the Python
 * implementations run in pytest (tests/firmware/test_core_*.py); these guard the same code on the target.
 */
#include <string.h>
#include <unity.h>

#include "hi_core.h"

void setUp(void) {}
void tearDown(void) {}

/* tests/vectors/protocol_vectors.json "result_plain" */
static const uint8_t kResultPlain[32] = {0x48, 0x49, 0x01, 0x11, 0x01, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
                                          0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0xdc, 0x05,
                                          0x00, 0x00, 0xc4, 0x09, 0x00, 0x00, 0x68, 0x10, 0x00, 0x00};

static void test_result_vector_round_trip(void) {
  hi_frame_t f;
  uint8_t out[64];
  TEST_ASSERT_EQUAL_INT(HI_FRAME_OK, hi_frame_decode(kResultPlain, sizeof kResultPlain, 4096, &f));
  TEST_ASSERT_EQUAL_UINT16(3, f.u.result.class_id);
  TEST_ASSERT_EQUAL_UINT16(8, f.u.result.batch_size);
  TEST_ASSERT_EQUAL_UINT32(1500, f.u.result.queue_us);
  TEST_ASSERT_EQUAL_UINT32(4200, f.u.result.total_us);
  TEST_ASSERT_EQUAL_INT32(32, hi_frame_encode_result(out, sizeof out, 1, 1, &f.u.result, NULL, NULL));
  TEST_ASSERT_EQUAL_MEMORY(kResultPlain, out, sizeof kResultPlain);
  TEST_ASSERT_EQUAL_INT(HI_FRAME_E_TOO_LARGE, hi_frame_decode(kResultPlain, sizeof kResultPlain, 31, &f));
}

static void test_decider_integer_rule(void) {
  hi_decider_t d;
  const int32_t a[2] = {3, -2};
  const int8_t s[4] = {-128, 100, 20, -50};
  TEST_ASSERT_EQUAL_INT(0, hi_decider_init(&d, 2, -128, a, -500));
  TEST_ASSERT_EQUAL_INT32(-112, hi_decider_value(&d, s, 4));
  TEST_ASSERT_FALSE(hi_decider_accept(&d, s, 4));
}

static void test_exit_rule(void) {
  const int8_t s[3] = {3, 9, 9};
  int32_t m;
  TEST_ASSERT_EQUAL_INT(1, hi_argmax_s8(s, 3));
  TEST_ASSERT_TRUE(hi_exit_taken(s, 3, -128, 137, &m));
  TEST_ASSERT_FALSE(hi_exit_taken(s, 3, -128, 138, &m));
}

static char g_out[512];
static size_t g_len;
static void wr(void *u, const char *d, size_t n) {
  (void)u;
  if (g_len + n < sizeof g_out) {
    memcpy(g_out + g_len, d, n);
    g_len += n;
    g_out[g_len] = 0;
  }
}
static int model(const void *const *in, void *const *out) {
  memcpy(out[0], in[0], 2);
  return 0;
}

static void test_serial_line_discipline(void) {
  static hi_serial_t s;
  hi_segment_t seg;
  hi_pipeline_t p;
  int8_t scores[2], input[2];
  uint8_t db[2];
  hi_serial_io_t io = {wr, NULL, NULL};
  hi_serial_config_t cfg;
  char big[300];
  memset(&seg, 0, sizeof seg);
  seg.invoke = model;
  seg.num_outputs = 1;
  seg.features_output = -1;
  seg.scores_scale = 1.0 / 256;
  seg.scores_zero_point = -128;
  memset(&p, 0, sizeof p);
  p.segments = &seg;
  p.num_segments = 1;
  p.num_classes = 2;
  p.scores = scores;
  p.height = p.width = 1;
  p.channels = 2;
  p.input_scale = 1.0f;
  p.input_zero_point = -128;
  memset(&cfg, 0, sizeof cfg);
  cfg.pipeline = &p;
  cfg.input = input;
  cfg.db = db;
  cfg.db_capacity = 2;
  TEST_ASSERT_EQUAL_INT(0, hi_serial_init(&s, &io, &cfg));
  g_len = 0;
  hi_serial_feed(&s, "db load 2%db 80ff%hi run 3%", 28);
  TEST_ASSERT_NOT_NULL(strstr(g_out, "m-hi-final-[id=3,class=1,source=local]"));
  memset(big, 'x', sizeof big);
  big[sizeof big - 1] = '%';
  g_len = 0;
  hi_serial_feed(&s, big, sizeof big);
  TEST_ASSERT_NOT_NULL(strstr(g_out, "e-[Command longer than"));
  TEST_ASSERT_NOT_NULL(strstr(g_out, "m-ready"));
}

static int run_all(void) {
  UNITY_BEGIN();
  RUN_TEST(test_result_vector_round_trip);
  RUN_TEST(test_decider_integer_rule);
  RUN_TEST(test_exit_rule);
  RUN_TEST(test_serial_line_discipline);
  return UNITY_END();
}

#ifdef ARDUINO
void setup(void) {
  delay(2000); /* let the host open the port */
  run_all();
}
void loop(void) {}
#else
int main(void) { return run_all(); }
#endif
