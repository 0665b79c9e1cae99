/*
 * hi_board_config.h - build-time settings shared by the board glue. Override any of them with -D in
 * platformio.ini (build_flags) or CMake. Secrets (WiFi, server address and key) are NOT here: they live in
 * hi_board_secrets.h, which is gitignored (copy hi_board_secrets.example.h).
 */
#ifndef HI_BOARD_CONFIG_H
#define HI_BOARD_CONFIG_H

/* How long `hi run` waits for the server's answer before keeping the local one (graceful degradation). */
#ifndef HI_OFFLOAD_BUDGET_MS
#define HI_OFFLOAD_BUDGET_MS 200u
#endif
/* BLE: the device's timeout for a RESULT (docs/ble.md step 5; the reference device uses 3 s). */
#ifndef HI_BLE_RESULT_TIMEOUT_MS
#define HI_BLE_RESULT_TIMEOUT_MS 3000u
#endif
/* WiFi: TCP connect + handshake timeout, and how long to wait before retrying a server that failed. */
#ifndef HI_CONNECT_TIMEOUT_MS
#define HI_CONNECT_TIMEOUT_MS 1000u
#endif
#ifndef HI_RECONNECT_BACKOFF_MS
#define HI_RECONNECT_BACKOFF_MS 2000u
#endif
#ifndef HI_SERIAL_BAUD
#define HI_SERIAL_BAUD 115200
#endif
/* 1: offload from the board itself (BLE on the Nano, WiFi on ESP32/Coral); 0: emit offload frames on the
 * serial port for hi-agent serial to forward. */
#ifndef HI_DEVICE_OFFLOAD
#define HI_DEVICE_OFFLOAD 1
#endif

#endif /* HI_BOARD_CONFIG_H */
