/*
 * hi_offload_client.h - a blocking client of the HI offload protocol (docs/protocol.md) for boards with
 * WiFi (ESP32, Coral Dev Board Micro): HELLO/WELCOME version negotiation, the mutual HMAC-SHA256
 * handshake when the server requires a key, and INFER -> RESULT/ERROR, over any byte transport.
 *
 * WHY a transport interface: the board glue only wraps its TCP socket (WiFiClient, lwIP) in three calls,
 * so the whole conversation is host-tested against the real hi-server (tests/firmware/test_core_client.py).
 * The tensor is streamed from the caller's buffer after the frame prefix: no frame-sized buffer is needed.
 * Nonces must come from the board's hardware RNG. No dynamic allocation.
 */
#ifndef HI_OFFLOAD_CLIENT_H
#define HI_OFFLOAD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "hi_frame.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HI_CLIENT_RX_SIZE
#define HI_CLIENT_RX_SIZE 1024u /* largest frame the client accepts (answers are small) */
#endif

typedef struct {
  /* send all n bytes: 0, or < 0 on a broken connection */
  int (*send)(void *user, const uint8_t *data, size_t n);
  /* receive up to cap bytes: count > 0, 0 when nothing arrived within timeout_ms, < 0 when closed/broken */
  int (*recv)(void *user, uint8_t *buf, size_t cap, uint32_t timeout_ms);
  uint32_t (*now_ms)(void *user);
  void *user;
} hi_transport_t;

enum {
  HI_CLIENT_OK = 0,
  HI_CLIENT_E_ARG = -1,
  HI_CLIENT_E_IO = -2,       /* connection closed or broken: reconnect */
  HI_CLIENT_E_TIMEOUT = -3,  /* no answer in time (the connection may still be usable) */
  HI_CLIENT_E_PROTOCOL = -4, /* invalid or unexpected frame: reconnect */
  HI_CLIENT_E_AUTH = -5,     /* key missing or wrong, or the server failed to prove it holds the key */
  HI_CLIENT_E_SERVER = -6,   /* the server answered ERROR (code in the answer / last_error) */
  HI_CLIENT_E_VERSION = -7   /* no common protocol version */
};

typedef struct {
  uint16_t class_id;
  uint16_t batch_size;
  uint32_t queue_us, infer_us, total_us;
  uint16_t error_code; /* server ERROR code when the call returned HI_CLIENT_E_SERVER */
} hi_client_answer_t;

typedef struct {
  hi_transport_t t;
  uint8_t rx[HI_CLIENT_RX_SIZE];
  hi_frame_reader_t reader;
  uint8_t pending[HI_CLIENT_RX_SIZE]; /* bytes received beyond the current frame */
  size_t pending_len;
  uint8_t version;
  uint32_t server_max_frame;
  uint16_t last_error;
  int ready; /* handshake done */
  char name[HI_FRAME_MAX_NAME];
  uint8_t name_len;
} hi_client_t;

/* name: the client name sent in HELLO (printable ASCII, <= 32 bytes). */
int hi_client_init(hi_client_t *c, const hi_transport_t *t, const char *name);

/* HELLO -> WELCOME, then AUTH -> AUTH_OK when the server requires it (key may be NULL when it does not). */
int hi_client_handshake(hi_client_t *c, const uint8_t client_nonce[16], const uint8_t *key, size_t key_len,
                        uint32_t timeout_ms);

/* Send one INFER (m->payload streamed from the caller's buffer) and wait for its RESULT or ERROR.
 * PINGs from the server are answered; answers for other request ids are skipped. */
int hi_client_infer(hi_client_t *c, uint32_t request_id, const hi_infer_t *m, uint32_t timeout_ms,
                    hi_client_answer_t *answer);

#ifdef __cplusplus
}
#endif

#endif /* HI_OFFLOAD_CLIENT_H */
