/*
 * hi_offload_client_test.c - the firmware's offload client re-handshaking after a failed connection: a
 * handshake on a new connection must not read the bytes the last one left behind. The end-to-end client
 * tests (a real server, INFER -> RESULT, auth) are tests/firmware/test_core_client.py; this one scripts
 * the server's bytes so the failure modes are exact: a WELCOME of another version (decoded, then refused)
 * and a WELCOME cut off by a timeout, each followed by a healthy connection.
 */
#include "hi_offload_client.h"
#include "hi_test.h"

static uint8_t g_script[512];
static size_t g_len, g_pos;
static uint32_t g_ms;

static int t_send(void *u, const uint8_t *d, size_t n) {
  (void)u, (void)d, (void)n;
  return 0;
}

static int t_recv(void *u, uint8_t *buf, size_t cap, uint32_t timeout_ms) {
  size_t n = g_len - g_pos;
  (void)u;
  if (n == 0u) { /* silence: the time passes */
    g_ms += timeout_ms;
    return 0;
  }
  if (n > cap) n = cap;
  memcpy(buf, g_script + g_pos, n);
  g_pos += n;
  return (int)n;
}

static uint32_t t_now(void *u) {
  (void)u;
  return g_ms;
}

/* the next connection's server sends a WELCOME (version, max_frame), only its first `cut` bytes if cut > 0 */
static void next_connection(uint8_t version, uint32_t max_frame, size_t cut) {
  static const uint8_t nonce[16] = {1};
  hi_welcome_t w;
  int32_t n;
  memset(&w, 0, sizeof w);
  w.version = version;
  w.max_inflight = 4u;
  w.max_frame = max_frame;
  w.server_nonce = nonce;
  n = hi_frame_encode_welcome(g_script, sizeof g_script, 0u, &w);
  CHECK(n > 0);
  g_len = cut ? cut : (size_t)n;
  g_pos = 0u;
}

int main(void) {
  static const uint8_t client_nonce[16] = {2};
  hi_transport_t t = {t_send, t_recv, t_now, NULL};
  static hi_client_t c;
  CHECK(hi_client_init(&c, &t, "dev") == HI_CLIENT_OK);

  next_connection(2u, 65536u, 0u); /* a server of another protocol version: decoded, then refused */
  CHECK(hi_client_handshake(&c, client_nonce, NULL, 0u, 100u) == HI_CLIENT_E_VERSION);
  next_connection(1u, 65536u, 0u); /* reconnect to a healthy one */
  CHECK(hi_client_handshake(&c, client_nonce, NULL, 0u, 100u) == HI_CLIENT_OK);
  CHECK(c.ready && c.server_max_frame == 65536u);

  next_connection(1u, 1000u, 20u); /* a WELCOME cut off after 20 bytes: the handshake times out */
  CHECK(hi_client_handshake(&c, client_nonce, NULL, 0u, 100u) == HI_CLIENT_E_TIMEOUT);
  CHECK(!c.ready);
  next_connection(1u, 65536u, 0u); /* the new connection's WELCOME is read whole, not glued to the old one */
  CHECK(hi_client_handshake(&c, client_nonce, NULL, 0u, 100u) == HI_CLIENT_OK);
  CHECK(c.server_max_frame == 65536u && c.pending_len == 0u);
  TEST_END("hi_offload_client_test");
}
