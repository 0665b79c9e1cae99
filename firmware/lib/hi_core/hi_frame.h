/*
 * hi_frame.h - the HI offload protocol's frame codec in portable C99 (spec: docs/protocol.md).
 *
 * WHY this shape: a microcontroller must encode an INFER frame and decode the server's answer with no
 * dynamic allocation and without trusting a single length field it received. Decoding therefore never
 * copies: a decoded frame's strings, nonces, MACs, payloads and top-k entries point into the caller's
 * buffer, and every length is checked against the frame size before it is used. Encoders write into a
 * caller-provided buffer and fail (HI_FRAME_E_BUFFER) instead of writing past its end.
 *
 * The byte layout is the Python implementation's (hi_runtime/protocol_codec.py): little-endian, no
 * padding, fixed offsets; floats are IEEE-754 binary32 (copied bit for bit, never converted). The shared
 * vectors in tests/vectors/protocol_vectors.json check both sides produce identical bytes, and that an
 * invalid frame is rejected with the error class Python raises (the HI_FRAME_E_* codes below map 1:1 to
 * the ProtocolError subclasses, checked in the same order).
 */
#ifndef HI_FRAME_H
#define HI_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HI_FRAME_MAGIC0 0x48u /* 'H' */
#define HI_FRAME_MAGIC1 0x49u /* 'I' */
#define HI_FRAME_VERSION 1u
#define HI_FRAME_HEADER_SIZE 12u
#define HI_FRAME_ABSOLUTE_MAX (16u * 1024u * 1024u)
#define HI_FRAME_DEFAULT_MAX (256u * 1024u)
#define HI_FRAME_NONCE_SIZE 16u
#define HI_FRAME_MAC_SIZE 32u
#define HI_FRAME_MAX_NAME 32u
#define HI_FRAME_MAX_MODEL_ID 32u
#define HI_FRAME_MAX_ERROR_MESSAGE 512u
#define HI_FRAME_TOPK_ENTRY_SIZE 6u

/* Message types (header byte 3). */
enum {
  HI_MSG_HELLO = 0x01,
  HI_MSG_WELCOME = 0x02,
  HI_MSG_AUTH = 0x03,
  HI_MSG_AUTH_OK = 0x04,
  HI_MSG_INFER = 0x10,
  HI_MSG_RESULT = 0x11,
  HI_MSG_ERROR = 0x20,
  HI_MSG_PING = 0x30,
  HI_MSG_PONG = 0x31
};

enum { HI_DTYPE_UINT8 = 1, HI_DTYPE_INT8 = 2, HI_DTYPE_FLOAT32 = 3 };
enum { HI_LAYOUT_NHWC = 0, HI_LAYOUT_NCHW = 1 };
#define HI_WELCOME_FLAG_AUTH_REQUIRED 0x01u
#define HI_INFER_FLAG_QUANT 0x01u

/* Error codes carried by ERROR frames (docs/protocol.md). */
enum {
  HI_ERR_BAD_FRAME = 1,
  HI_ERR_UNSUPPORTED_VERSION = 2,
  HI_ERR_AUTH_REQUIRED = 3,
  HI_ERR_AUTH_FAILED = 4,
  HI_ERR_FRAME_TOO_LARGE = 5,
  HI_ERR_UNKNOWN_MODEL = 6,
  HI_ERR_BAD_TENSOR = 7,
  HI_ERR_BUSY = 8,
  HI_ERR_INTERNAL = 9,
  HI_ERR_SHUTTING_DOWN = 10,
  HI_ERR_TIMEOUT = 11,
  HI_ERR_UNEXPECTED_MESSAGE = 12
};

/* Status codes of the codec. Negative values name what was wrong; each decoding error corresponds to the
 * Python exception in brackets. */
typedef enum {
  HI_FRAME_OK = 0,
  HI_FRAME_E_BAD_MAGIC = -1,   /* [BadMagicError] */
  HI_FRAME_E_VERSION = -2,     /* [UnsupportedVersionError] */
  HI_FRAME_E_TYPE = -3,        /* [UnknownMessageTypeError] */
  HI_FRAME_E_TOO_LARGE = -4,   /* [FrameTooLargeError] */
  HI_FRAME_E_LENGTH = -5,      /* [BadLengthError] */
  HI_FRAME_E_FIELD = -6,       /* [BadFieldError] */
  HI_FRAME_E_PAYLOAD = -7,     /* [PayloadMismatchError] */
  HI_FRAME_E_BUFFER = -8,      /* encoder: the output buffer is too small */
  HI_FRAME_E_ARG = -9          /* NULL pointer or impossible argument */
} hi_frame_status_t;

typedef struct {
  uint8_t version;
  uint8_t type;
  uint32_t request_id;
  uint32_t body_length;
} hi_frame_header_t;

typedef struct {
  uint8_t min_version, max_version;
  uint16_t flags;
  const uint8_t *client_nonce; /* 16 bytes */
  uint8_t name_len;
  const char *name; /* not NUL-terminated */
} hi_hello_t;

typedef struct {
  uint8_t version, flags;
  uint16_t max_inflight;
  uint32_t max_frame;
  const uint8_t *server_nonce; /* 16 bytes */
  uint8_t name_len;
  const char *name;
} hi_welcome_t;

typedef struct {
  const uint8_t *mac; /* 32 bytes */
} hi_auth_t;

typedef struct {
  uint8_t dtype, layout, flags, top_k;
  uint16_t shape[4]; /* in layout order: (N,H,W,C) or (N,C,H,W) */
  float scale;       /* valid when flags & HI_INFER_FLAG_QUANT */
  int32_t zero_point;
  uint8_t model_id_len;
  const char *model_id;
  const uint8_t *payload;
  uint32_t payload_len;
} hi_infer_t;

typedef struct {
  uint16_t class_id;
  uint8_t top_k_count;
  uint8_t flags;
  uint16_t batch_size;
  uint32_t queue_us, infer_us, total_us;
  const uint8_t *top_k; /* top_k_count entries of 6 bytes: read them with hi_frame_result_top_k() */
} hi_result_t;

typedef struct {
  uint16_t code;
  uint16_t message_len;
  const char *message; /* UTF-8, not NUL-terminated */
} hi_error_t;

typedef struct {
  uint64_t token;
} hi_ping_t;

typedef struct {
  hi_frame_header_t header;
  union {
    hi_hello_t hello;
    hi_welcome_t welcome;
    hi_auth_t auth; /* AUTH and AUTH_OK */
    hi_infer_t infer;
    hi_result_t result;
    hi_error_t error;
    hi_ping_t ping; /* PING and PONG */
  } u;
} hi_frame_t;

/* Validate the 12-byte header (magic, version, type, size against max_frame) before any body is read. */
hi_frame_status_t hi_frame_decode_header(const uint8_t *buf, size_t len, uint32_t max_frame,
                                         hi_frame_header_t *out);

/* Decode exactly one complete frame of len bytes (trailing or missing bytes are HI_FRAME_E_LENGTH).
 * Pointers in *out refer into buf. */
hi_frame_status_t hi_frame_decode(const uint8_t *buf, size_t len, uint32_t max_frame, hi_frame_t *out);

/* Entry i of a RESULT's top-k list (i < top_k_count). */
void hi_frame_result_top_k(const hi_result_t *r, uint8_t i, uint16_t *class_id, float *score);

/* Encoders: write one complete frame into out[0..cap) and return its length (> 0) or a negative
 * hi_frame_status_t. `version` is the header version (HELLO/WELCOME always use 1, as Python does). */
int32_t hi_frame_encode_hello(uint8_t *out, size_t cap, uint32_t request_id, const hi_hello_t *m);
int32_t hi_frame_encode_welcome(uint8_t *out, size_t cap, uint32_t request_id, const hi_welcome_t *m);
int32_t hi_frame_encode_auth(uint8_t *out, size_t cap, uint8_t version, uint8_t type, uint32_t request_id,
                             const uint8_t mac[32]);
int32_t hi_frame_encode_infer(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                              const hi_infer_t *m);
/* The INFER frame without its payload (header + fixed fields + quant + model id), so a device can stream
 * the tensor straight from its input buffer; m->payload_len must already be set. Returns the prefix length. */
int32_t hi_frame_encode_infer_prefix(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                                     const hi_infer_t *m);
/* top_k_classes/top_k_scores may be NULL when top_k_count is 0. */
int32_t hi_frame_encode_result(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                               const hi_result_t *m, const uint16_t *top_k_classes, const float *top_k_scores);
int32_t hi_frame_encode_error(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                              const hi_error_t *m);
int32_t hi_frame_encode_ping(uint8_t *out, size_t cap, uint8_t version, uint8_t type, uint32_t request_id,
                             uint64_t token);

/* Bytes of one element of a dtype (0 for an unknown dtype). */
uint32_t hi_frame_dtype_size(uint8_t dtype);

/* Incremental reader for a byte stream (TCP socket, BLE reassembly, fuzzing): bytes go into a fixed
 * caller-owned buffer; the header is validated as soon as 12 bytes are in, so an oversized frame is refused
 * before its body is buffered. After an error the stream is out of sync: reset the reader and reconnect. */
typedef struct {
  uint8_t *buf;
  size_t cap;
  size_t fill;
  uint32_t max_frame; /* min(max_frame, cap) is the effective limit */
  uint32_t frame_size; /* 0 until the header is validated */
  int ready;           /* a decoded frame is in buf; call hi_frame_reader_next() before pushing more */
} hi_frame_reader_t;

void hi_frame_reader_init(hi_frame_reader_t *r, uint8_t *buf, size_t cap, uint32_t max_frame);
/* Consume bytes from data[0..n). Returns 1 when a complete frame was decoded into *out (pointers into the
 * reader's buffer; *consumed tells how many input bytes were used), 0 when more bytes are needed (all n
 * consumed), or a negative hi_frame_status_t. */
int hi_frame_reader_push(hi_frame_reader_t *r, const uint8_t *data, size_t n, size_t *consumed, hi_frame_t *out);
/* Release the frame returned by the last successful push so the next one can be read. */
void hi_frame_reader_next(hi_frame_reader_t *r);

/* Little-endian helpers, shared with other hi_core modules. */
void hi_put_u16(uint8_t *p, uint16_t v);
void hi_put_u32(uint8_t *p, uint32_t v);
void hi_put_f32(uint8_t *p, float v);
uint16_t hi_get_u16(const uint8_t *p);
uint32_t hi_get_u32(const uint8_t *p);
float hi_get_f32(const uint8_t *p);

#ifdef __cplusplus
}
#endif

#endif /* HI_FRAME_H */
