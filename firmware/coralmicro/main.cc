// Coral Dev Board Micro glue (M7 core, FreeRTOS): serial commands on the USB console, WiFi offload with the
// portable HI client (lib/hi_core/hi_offload_client.c) over lwIP sockets. Written against the coralmicro
// SDK's documented API (libs/base: console, wifi, random, timer); NOT compiled here (the SDK is not
// available offline): see docs/firmware.md for exactly what was verified.
#include <cstring>

#include "libs/base/console_m7.h"
#include "libs/base/random.h"
#include "libs/base/timer.h"
#include "libs/base/wifi.h"
#include "third_party/freertos_kernel/include/FreeRTOS.h"
#include "third_party/freertos_kernel/include/task.h"
#include "third_party/nxp/rt1176-sdk/middleware/lwip/src/include/lwip/sockets.h"

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

int g_sock = -1;
hi_client_t g_client;

void console_write(void*, const char* data, size_t n) {
  coralmicro::ConsoleM7::GetSingleton()->Write(data, static_cast<int>(n));
}
uint32_t clock_us(void*) { return static_cast<uint32_t>(coralmicro::TimerMicros()); }
uint32_t now_ms(void*) { return static_cast<uint32_t>(coralmicro::TimerMicros() / 1000); }

int t_send(void*, const uint8_t* d, size_t n) {
  while (n > 0) {
    int k = lwip_send(g_sock, d, n, 0);
    if (k <= 0) return -1;
    d += k;
    n -= static_cast<size_t>(k);
  }
  return 0;
}

int t_recv(void*, uint8_t* buf, size_t cap, uint32_t timeout_ms) {
  struct timeval tv = {static_cast<long>(timeout_ms / 1000), static_cast<long>((timeout_ms % 1000) * 1000)};
  lwip_setsockopt(g_sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int k = lwip_recv(g_sock, buf, cap, 0);
  if (k > 0) return k;
  return (k < 0 && errno == EAGAIN) ? 0 : -1;
}

bool ensure_connected() {
  if (g_sock >= 0 && g_client.ready) return true;
  if (g_sock >= 0) lwip_close(g_sock);
  g_sock = lwip_socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = lwip_htons(HI_SERVER_PORT);
  if (g_sock < 0 || lwip_inet_pton(AF_INET, HI_SERVER_HOST, &addr.sin_addr) != 1 ||
      lwip_connect(g_sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (g_sock >= 0) lwip_close(g_sock);
    g_sock = -1;
    return false;
  }
  int one = 1;
  lwip_setsockopt(g_sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  hi_transport_t t = {t_send, t_recv, now_ms, nullptr};
  uint8_t nonce[16];
  coralmicro::Random::GetSingleton()->GetRandomNumber(nonce, sizeof nonce);  // hardware TRNG
  hi_client_init(&g_client, &t, "hi-coralmicro");
  const char* key = HI_SERVER_KEY;
  if (hi_client_handshake(&g_client, nonce, reinterpret_cast<const uint8_t*>(key), strlen(key),
                          HI_CONNECT_TIMEOUT_MS) != HI_CLIENT_OK) {
    lwip_close(g_sock);
    g_sock = -1;
    return false;
  }
  return true;
}

int wifi_offload(void*, uint32_t request_id, const int8_t* input, const hi_pipeline_t* p, int32_t* server_class) {
  if (!ensure_connected()) return HI_ERR_TIMEOUT;
  hi_infer_t m{};
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
  m.model_id_len = static_cast<uint8_t>(strlen(HI_SERVER_MODEL_ID));
  m.payload = reinterpret_cast<const uint8_t*>(input);
  m.payload_len = static_cast<uint32_t>(p->height) * p->width * p->channels;
  hi_client_answer_t ans;
  int rc = hi_client_infer(&g_client, request_id, &m, HI_OFFLOAD_BUDGET_MS, &ans);
  if (rc == HI_CLIENT_OK) {
    *server_class = ans.class_id;
    return 0;
  }
  if (rc != HI_CLIENT_E_SERVER) g_client.ready = 0;  // reconnect next time
  return rc == HI_CLIENT_E_SERVER ? static_cast<int>(ans.error_code) : static_cast<int>(HI_ERR_TIMEOUT);
}

}  // namespace

extern "C" [[noreturn]] void app_main(void*) {
  hi_board_io_t io = {console_write, clock_us, nullptr, "hi-runtime coralmicro"};
  coralmicro::WiFiTurnOn(/*default_iface=*/true);
  coralmicro::WiFiConnect(HI_WIFI_SSID, HI_WIFI_PASSWORD, /*retry_count=*/5);  // offloads degrade until up
  hi_board_serial_begin(&io);
#if HI_DEVICE_OFFLOAD
  if (hi_serial_t* s = hi_board_serial()) s->cfg.offload = wifi_offload;
#endif
  char buf[64];
  for (;;) {
    int n = coralmicro::ConsoleM7::GetSingleton()->Read(buf, sizeof buf);
    if (n > 0) {
      hi_board_serial_feed(buf, static_cast<size_t>(n));
    } else {
      vTaskDelay(pdMS_TO_TICKS(1));
    }
  }
}
