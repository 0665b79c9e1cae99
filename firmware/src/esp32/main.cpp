// ESP32 DevKit (Xtensa LX6 @ 240 MHz) glue: serial commands over UART0, WiFi offload with the HI TCP
// protocol (docs/protocol.md) through the portable client in lib/hi_core/hi_offload_client.c.
// Credentials, server address and key come from include/hi_board_secrets.h (gitignored; copy the example).
#include <Arduino.h>
#include <WiFi.h>

#if __has_include("hi_board_secrets.h")
#include "hi_board_secrets.h"
#else
#error "copy firmware/include/hi_board_secrets.example.h to hi_board_secrets.h and fill in WiFi and server"
#endif

extern "C" {
#include "hi_board.h"
#include "hi_board_config.h"
#include "hi_offload_client.h"
}

namespace {

WiFiClient tcp;
hi_client_t client;
uint32_t retry_after_ms = 0;

void serial_write(void *, const char *data, size_t n) { Serial.write((const uint8_t *)data, n); }
uint32_t serial_us(void *) { return micros(); }

int t_send(void *, const uint8_t *d, size_t n) { return tcp.write(d, n) == n ? 0 : -1; }
int t_recv(void *, uint8_t *buf, size_t cap, uint32_t timeout_ms) {
  uint32_t start = millis();
  while (!tcp.available()) {
    if (!tcp.connected()) return -1;
    if (millis() - start >= timeout_ms) return 0;
    delay(1);
  }
  int n = tcp.read(buf, cap);
  return n < 0 ? -1 : n;
}
uint32_t t_now(void *) { return millis(); }

// Connect and authenticate if needed; false while the server is unreachable (with backoff).
bool ensure_connected() {
  if (tcp.connected() && client.ready) return true;
  if ((int32_t)(millis() - retry_after_ms) < 0 || WiFi.status() != WL_CONNECTED) return false;
  tcp.stop();
  if (!tcp.connect(HI_SERVER_HOST, HI_SERVER_PORT, HI_CONNECT_TIMEOUT_MS)) {
    retry_after_ms = millis() + HI_RECONNECT_BACKOFF_MS;
    return false;
  }
  tcp.setNoDelay(true);
  hi_transport_t t = {t_send, t_recv, t_now, nullptr};
  uint8_t nonce[16];
  for (int i = 0; i < 16; i += 4) {
    uint32_t r = esp_random();  // hardware RNG
    memcpy(nonce + i, &r, 4);
  }
  hi_client_init(&client, &t, "hi-esp32");
  const char *key = HI_SERVER_KEY;
  if (hi_client_handshake(&client, nonce, (const uint8_t *)key, strlen(key), HI_CONNECT_TIMEOUT_MS) != HI_CLIENT_OK) {
    tcp.stop();
    retry_after_ms = millis() + HI_RECONNECT_BACKOFF_MS;
    return false;
  }
  return true;
}

int wifi_offload(void *, uint32_t request_id, const int8_t *input, const hi_pipeline_t *p, int32_t *server_class) {
  if (!ensure_connected()) return HI_ERR_TIMEOUT;
  hi_infer_t m;
  memset(&m, 0, sizeof m);
  m.dtype = HI_DTYPE_INT8;
  m.layout = HI_LAYOUT_NHWC;
  m.flags = HI_INFER_FLAG_QUANT;
  m.shape[0] = 1;
  m.shape[1] = p->height;
  m.shape[2] = p->width;
  m.shape[3] = p->channels;
  m.scale = p->input_scale;
  m.zero_point = p->input_zero_point;
  m.model_id = HI_SERVER_MODEL_ID;
  m.model_id_len = (uint8_t)strlen(HI_SERVER_MODEL_ID);
  m.payload = (const uint8_t *)input;
  m.payload_len = (uint32_t)p->height * p->width * p->channels;
  hi_client_answer_t ans;
  int rc = hi_client_infer(&client, request_id, &m, HI_OFFLOAD_BUDGET_MS, &ans);
  if (rc == HI_CLIENT_OK) {
    *server_class = ans.class_id;
    return 0;
  }
  if (rc == HI_CLIENT_E_IO || rc == HI_CLIENT_E_PROTOCOL || rc == HI_CLIENT_E_TIMEOUT) tcp.stop();  // resync
  return rc == HI_CLIENT_E_SERVER ? (int)ans.error_code : (int)HI_ERR_TIMEOUT;
}

}  // namespace

void setup() {
  Serial.begin(HI_SERIAL_BAUD);
  WiFi.mode(WIFI_STA);
  WiFi.begin(HI_WIFI_SSID, HI_WIFI_PASSWORD);  // connects in the background; offloads degrade until then
  hi_board_io_t io = {serial_write, serial_us, nullptr, "hi-runtime esp32dev"};
  hi_board_serial_begin(&io);
#if HI_DEVICE_OFFLOAD
  hi_serial_t *s = hi_board_serial();
  if (s != nullptr) s->cfg.offload = wifi_offload;
#endif
}

void loop() {
  char buf[64];
  size_t n = 0;
  while (Serial.available() && n < sizeof buf) buf[n++] = (char)Serial.read();
  if (n) hi_board_serial_feed(buf, n);
}
