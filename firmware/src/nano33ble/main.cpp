// Arduino Nano 33 BLE (nRF52840, Cortex-M4F @ 64 MHz) glue: serial commands over USB CDC, BLE offload
// through the HI GATT service (docs/ble.md) to `hi-agent gateway --ble`. Everything else is the shared core
// (src/common/hi_board_main.c, lib/hi_core); this file only moves bytes.
#include <Arduino.h>
#include <ArduinoBLE.h>

extern "C" {
#include "hi_ble_offload.h"
#include "hi_board.h"
#include "hi_board_config.h"
#include "hi_frame.h"
}

namespace {

const char kService[] = "48490001-7a1e-4c5b-9f3d-2b6e0d1c0a00";
BLEService service(kService);
BLECharacteristic control("48490002-7a1e-4c5b-9f3d-2b6e0d1c0a00", BLENotify | BLEWrite, 20);
BLECharacteristic image("48490003-7a1e-4c5b-9f3d-2b6e0d1c0a00", BLENotify, 244);
BLECharacteristic result("48490004-7a1e-4c5b-9f3d-2b6e0d1c0a00", BLEWrite | BLEWriteWithoutResponse, 6);
hi_ble_session_t session;
bool ble_ok = false;

void on_control(BLEDevice, BLECharacteristic c) {
  hi_ble_on_write(&session, HI_BLE_CONTROL, c.value(), (size_t)c.valueLength());
}
void on_result(BLEDevice, BLECharacteristic c) {
  hi_ble_on_write(&session, HI_BLE_RESULT, c.value(), (size_t)c.valueLength());
}

void serial_write(void *, const char *data, size_t n) { Serial.write((const uint8_t *)data, n); }
uint32_t serial_us(void *) { return micros(); }

// hi_serial's on-device offload: send the model input over BLE and wait for the gateway's RESULT.
int ble_offload(void *, uint32_t request_id, const int8_t *input, const hi_pipeline_t *p, int32_t *server_class) {
  uint8_t buf[244];
  int ch = 0;
  hi_ble_result_t res;
  if (!ble_ok || !BLE.connected()) return HI_ERR_TIMEOUT;  // no gateway: keep the local answer
  uint16_t n_in = (uint16_t)(p->height * p->width * p->channels);
  if (hi_ble_begin(&session, (uint16_t)request_id, (const uint8_t *)input, n_in, HI_DTYPE_INT8, HI_LAYOUT_NHWC,
                   (uint8_t)p->height, (uint8_t)p->width, (uint8_t)p->channels, p->input_scale,
                   p->input_zero_point, millis(), HI_BLE_RESULT_TIMEOUT_MS) != 0)
    return HI_ERR_BAD_TENSOR;
  for (;;) {
    BLE.poll();
    int n = hi_ble_next(&session, buf, sizeof buf, &ch, millis());
    if (n > 0) (ch == HI_BLE_CONTROL ? control : image).writeValue(buf, n);
    if (hi_ble_poll(&session, millis(), &res) == HI_BLE_DONE) break;
  }
  int n = hi_ble_next(&session, buf, sizeof buf, &ch, millis());  // a queued ABORT after a timeout
  if (n > 0) control.writeValue(buf, n);
  if (res.status != HI_BLE_STATUS_OK) return res.status == HI_BLE_STATUS_TIMEOUT ? HI_ERR_TIMEOUT : HI_ERR_BUSY;
  *server_class = res.class_id;
  return 0;
}

}  // namespace

void setup() {
  Serial.begin(HI_SERIAL_BAUD);
  while (!Serial && millis() < 3000) {
  }
  if (BLE.begin()) {
    BLE.setLocalName("hi-nano33ble");
    BLE.setAdvertisedService(service);
    service.addCharacteristic(control);
    service.addCharacteristic(image);
    service.addCharacteristic(result);
    BLE.addService(service);
    control.setEventHandler(BLEWritten, on_control);
    result.setEventHandler(BLEWritten, on_result);
    BLE.advertise();
    ble_ok = true;
  }
  hi_ble_init(&session);
  hi_board_io_t io = {serial_write, serial_us, nullptr, "hi-runtime nano33ble"};
  hi_board_serial_begin(&io);
#if HI_DEVICE_OFFLOAD
  hi_serial_t *s = hi_board_serial();
  if (s != nullptr) {
    s->cfg.offload = ble_offload;
    s->cfg.offload_user = nullptr;
  }
#endif
}

void loop() {
  char buf[64];
  size_t n = 0;
  while (Serial.available() && n < sizeof buf) buf[n++] = (char)Serial.read();
  if (n) hi_board_serial_feed(buf, n);
  if (ble_ok) BLE.poll();
}
