/* Declarations of the Arduino core API subset the board glue uses, so pytest can syntax-check
 * src/nano33ble and src/esp32 with the host C++ compiler offline. NOT the real Arduino core: this checks our
 * code's syntax and types against the documented signatures, not the board API itself. */
#ifndef HI_ARDUINO_STUB_H
#define HI_ARDUINO_STUB_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

unsigned long millis(void);
unsigned long micros(void);
void delay(unsigned long ms);
uint32_t esp_random(void);

class HardwareSerial {
 public:
  void begin(unsigned long baud);
  int available(void);
  int read(void);
  size_t write(const uint8_t *buf, size_t n);
  operator bool() const;
};
extern HardwareSerial Serial;
#endif
