/*
 * hi_auth.h - SHA-256, HMAC-SHA256 and the offload protocol's pre-shared-key proofs (docs/protocol.md,
 * "Authentication"), in portable C99 with no allocation.
 *
 * WHY here and not a vendor library: the ESP32/Coral boards must authenticate to a server that binds a
 * non-loopback address (the server refuses to run there without a key), and the same code has to be
 * testable on the host against Python's hmac module and the shared vectors. Nonces must come from the
 * board's hardware RNG; this module never generates them.
 */
#ifndef HI_AUTH_H
#define HI_AUTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HI_SHA256_SIZE 32u
#define HI_SHA256_BLOCK 64u

typedef struct {
  uint32_t state[8];
  uint64_t length; /* bytes hashed so far */
  uint8_t block[HI_SHA256_BLOCK];
  uint32_t fill;
} hi_sha256_t;

void hi_sha256_init(hi_sha256_t *c);
void hi_sha256_update(hi_sha256_t *c, const uint8_t *data, size_t n);
void hi_sha256_final(hi_sha256_t *c, uint8_t out[HI_SHA256_SIZE]);
void hi_sha256(const uint8_t *data, size_t n, uint8_t out[HI_SHA256_SIZE]);

typedef struct {
  hi_sha256_t inner;
  uint8_t opad_key[HI_SHA256_BLOCK];
} hi_hmac_t;

void hi_hmac_init(hi_hmac_t *h, const uint8_t *key, size_t key_len);
void hi_hmac_update(hi_hmac_t *h, const uint8_t *data, size_t n);
void hi_hmac_final(hi_hmac_t *h, uint8_t out[HI_SHA256_SIZE]);
void hi_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n, uint8_t out[HI_SHA256_SIZE]);

/* AUTH.mac (client, server = 0) or AUTH_OK.mac (server = 1):
 *   HMAC-SHA256(key, label || server_nonce(16) || client_nonce(16) || u8 version || u8 name_len || name)
 * with label "HI-AUTH-CLIENT" or "HI-AUTH-SERVER". Returns 0, or -1 when name_len > 32 or a pointer is NULL. */
int hi_auth_proof(int server, const uint8_t *key, size_t key_len, const uint8_t server_nonce[16],
                  const uint8_t client_nonce[16], uint8_t version, const char *name, uint8_t name_len,
                  uint8_t out[HI_SHA256_SIZE]);

/* Constant-time comparison of two 32-byte MACs: 1 when equal. */
int hi_auth_equal(const uint8_t a[HI_SHA256_SIZE], const uint8_t b[HI_SHA256_SIZE]);

#ifdef __cplusplus
}
#endif

#endif /* HI_AUTH_H */
