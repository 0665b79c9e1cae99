/*
 * hi_ble_offload.h - the device side of the HI GATT offload contract (docs/ble.md; executable reference
 * hi_runtime/ble/spec.py and sim.py), independent of any BLE stack.
 *
 * WHY stack-independent: the Nano 33 BLE glue (ArduinoBLE) only moves bytes between this session and three
 * characteristics, so everything that can go wrong (chunking at the negotiated MTU, NACK resends, the
 * result timeout and ABORT) is host-testable against the real gateway logic (tests/firmware/test_core_ble.py
 * drives hi_runtime.ble.gateway.DeviceSession with this C session on the other side).
 *
 * Use: hi_ble_begin() a sample, then repeatedly hi_ble_next() to get the next notification to send (and
 * on which characteristic), feed every gateway write to hi_ble_on_write(), and hi_ble_poll() for the answer.
 */
#ifndef HI_BLE_OFFLOAD_H
#define HI_BLE_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HI_BLE_DEFAULT_MTU 23u
#define HI_BLE_MAX_MTU 517u
#define HI_BLE_NOTIFY_OVERHEAD 3u
#define HI_BLE_CHUNK_HEADER 4u
#define HI_BLE_NO_CLASS 0xFFu

enum { HI_BLE_CONTROL = 1, HI_BLE_IMAGE = 2, HI_BLE_RESULT = 3 };                 /* characteristics */
enum { HI_BLE_OP_START = 0x01, HI_BLE_OP_END = 0x02, HI_BLE_OP_ABORT = 0x03,
       HI_BLE_OP_CONFIG = 0x80, HI_BLE_OP_NACK = 0x81 };
enum { HI_BLE_STATUS_OK = 0, HI_BLE_STATUS_DEGRADED = 1, HI_BLE_STATUS_ERROR = 2,
       HI_BLE_STATUS_TIMEOUT = 3 /* local: no RESULT in time, ABORT sent */ };
enum { HI_BLE_IDLE = 0, HI_BLE_PENDING = 1, HI_BLE_DONE = 2 };                    /* hi_ble_poll() */
enum { HI_BLE_E_ARG = -1, HI_BLE_E_BUSY = -2, HI_BLE_E_MESSAGE = -3 };

typedef struct {
  uint8_t status;   /* HI_BLE_STATUS_* */
  uint8_t class_id; /* the server's class when status is OK, else 255 */
  uint16_t server_ms;
  uint16_t sample_id;
} hi_ble_result_t;

typedef struct {
  uint16_t mtu;
  /* the sample being offloaded */
  uint8_t state; /* 0 idle, 1 sending, 2 waiting for the result, 3 done */
  uint16_t sample_id;
  const uint8_t *data;
  uint16_t total_len;
  uint8_t start_msg[18];
  uint8_t start_pending, end_pending, abort_pending;
  uint16_t abort_id;
  uint16_t cursor;     /* next byte offset to send */
  uint16_t send_limit; /* send chunks while cursor < send_limit */
  uint16_t resume_at, resume_limit; /* the rest of a pass a NACK interrupted, sent after the gap (limit 0: none) */
  uint16_t high_water; /* bytes [0, high_water) went out at least once: chunks beyond it are the first pass */
  uint16_t chunks_first_pass;
  uint32_t deadline_ms;
  uint16_t resends;
  hi_ble_result_t result;
} hi_ble_session_t;

void hi_ble_init(hi_ble_session_t *s);

/* Image bytes per IMAGE notification at an ATT MTU (16 at the default 23). */
uint16_t hi_ble_chunk_size(uint16_t mtu);

/* Start offloading one tensor (data must stay valid until the sample is done). scale = 0 means not
 * quantized. Returns 0, HI_BLE_E_ARG, or HI_BLE_E_BUSY while another sample is in flight. */
int hi_ble_begin(hi_ble_session_t *s, uint16_t sample_id, const uint8_t *data, uint16_t total_len, uint8_t dtype,
                 uint8_t layout, uint8_t height, uint8_t width, uint8_t channels, float scale, int32_t zero_point,
                 uint32_t now_ms, uint32_t timeout_ms);

/* The next notification to send: writes it to out and returns its length (> 0) with *characteristic set,
 * or 0 when there is nothing to send now. cap must be at least the MTU - 3. */
int hi_ble_next(hi_ble_session_t *s, uint8_t *out, size_t cap, int *characteristic, uint32_t now_ms);

/* A write from the gateway (CONFIG or NACK on CONTROL, RESULT on RESULT). Returns 0 or HI_BLE_E_MESSAGE for
 * a malformed or unexpected write (ignored). */
int hi_ble_on_write(hi_ble_session_t *s, int characteristic, const uint8_t *data, size_t n);

/* HI_BLE_IDLE, HI_BLE_PENDING, or HI_BLE_DONE with *out filled (once; the session is then idle again). On
 * timeout an ABORT is queued (send it with hi_ble_next) and the result has status HI_BLE_STATUS_TIMEOUT. */
int hi_ble_poll(hi_ble_session_t *s, uint32_t now_ms, hi_ble_result_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HI_BLE_OFFLOAD_H */
