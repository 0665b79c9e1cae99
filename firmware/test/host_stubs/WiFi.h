/* Declarations of the ESP32 Arduino WiFi subset used by src/esp32 (see Arduino.h in this folder). */
#ifndef HI_WIFI_STUB_H
#define HI_WIFI_STUB_H
#include "Arduino.h"

enum wifi_mode_t { WIFI_STA = 1 };
enum wl_status_t { WL_CONNECTED = 3 };

class WiFiClass {
 public:
  bool mode(wifi_mode_t m);
  wl_status_t begin(const char *ssid, const char *passphrase);
  wl_status_t status();
};
extern WiFiClass WiFi;

class WiFiClient {
 public:
  int connect(const char *host, uint16_t port, int32_t timeout_ms);
  size_t write(const uint8_t *buf, size_t size);
  int available();
  int read(uint8_t *buf, size_t size);
  uint8_t connected();
  void stop();
  int setNoDelay(bool nodelay);
};
#endif
