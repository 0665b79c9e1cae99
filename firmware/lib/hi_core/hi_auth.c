/*
 * hi_auth.c - SHA-256 (FIPS 180-4), HMAC (RFC 2104) and the protocol's PSK proofs. See hi_auth.h.
 */
#include "hi_auth.h"

#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32u - (n))))

static void compress(uint32_t s[8], const uint8_t *p) {
  uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;
  unsigned i;
  for (i = 0; i < 16u; ++i) {
    w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) | ((uint32_t)p[4 * i + 2] << 8) |
           (uint32_t)p[4 * i + 3];
  }
  for (i = 16; i < 64u; ++i) {
    uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = s[0]; b = s[1]; c = s[2]; d = s[3]; e = s[4]; f = s[5]; g = s[6]; h = s[7];
  for (i = 0; i < 64u; ++i) {
    t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

void hi_sha256_init(hi_sha256_t *c) {
  static const uint32_t iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
  memcpy(c->state, iv, sizeof iv);
  c->length = 0u;
  c->fill = 0u;
}

void hi_sha256_update(hi_sha256_t *c, const uint8_t *data, size_t n) {
  while (n > 0u) {
    size_t take = HI_SHA256_BLOCK - c->fill;
    if (take > n) take = n;
    memcpy(c->block + c->fill, data, take);
    c->fill += (uint32_t)take;
    c->length += take;
    data += take;
    n -= take;
    if (c->fill == HI_SHA256_BLOCK) {
      compress(c->state, c->block);
      c->fill = 0u;
    }
  }
}

void hi_sha256_final(hi_sha256_t *c, uint8_t out[HI_SHA256_SIZE]) {
  uint64_t bits = c->length * 8u;
  unsigned i;
  c->block[c->fill++] = 0x80u;
  if (c->fill > 56u) {
    memset(c->block + c->fill, 0, HI_SHA256_BLOCK - c->fill);
    compress(c->state, c->block);
    c->fill = 0u;
  }
  memset(c->block + c->fill, 0, 56u - c->fill);
  for (i = 0; i < 8u; ++i) c->block[56u + i] = (uint8_t)(bits >> (56u - 8u * i));
  compress(c->state, c->block);
  for (i = 0; i < 8u; ++i) {
    out[4 * i] = (uint8_t)(c->state[i] >> 24);
    out[4 * i + 1] = (uint8_t)(c->state[i] >> 16);
    out[4 * i + 2] = (uint8_t)(c->state[i] >> 8);
    out[4 * i + 3] = (uint8_t)c->state[i];
  }
}

void hi_sha256(const uint8_t *data, size_t n, uint8_t out[HI_SHA256_SIZE]) {
  hi_sha256_t c;
  hi_sha256_init(&c);
  hi_sha256_update(&c, data, n);
  hi_sha256_final(&c, out);
}

void hi_hmac_init(hi_hmac_t *h, const uint8_t *key, size_t key_len) {
  uint8_t k[HI_SHA256_BLOCK], ipad[HI_SHA256_BLOCK];
  unsigned i;
  memset(k, 0, sizeof k);
  if (key_len > HI_SHA256_BLOCK) {
    hi_sha256(key, key_len, k);
  } else if (key_len > 0u) {
    memcpy(k, key, key_len);
  }
  for (i = 0; i < HI_SHA256_BLOCK; ++i) {
    ipad[i] = (uint8_t)(k[i] ^ 0x36u);
    h->opad_key[i] = (uint8_t)(k[i] ^ 0x5cu);
  }
  hi_sha256_init(&h->inner);
  hi_sha256_update(&h->inner, ipad, sizeof ipad);
}

void hi_hmac_update(hi_hmac_t *h, const uint8_t *data, size_t n) { hi_sha256_update(&h->inner, data, n); }

void hi_hmac_final(hi_hmac_t *h, uint8_t out[HI_SHA256_SIZE]) {
  uint8_t inner[HI_SHA256_SIZE];
  hi_sha256_t outer;
  hi_sha256_final(&h->inner, inner);
  hi_sha256_init(&outer);
  hi_sha256_update(&outer, h->opad_key, HI_SHA256_BLOCK);
  hi_sha256_update(&outer, inner, sizeof inner);
  hi_sha256_final(&outer, out);
}

void hi_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n, uint8_t out[HI_SHA256_SIZE]) {
  hi_hmac_t h;
  hi_hmac_init(&h, key, key_len);
  hi_hmac_update(&h, data, n);
  hi_hmac_final(&h, out);
}

int hi_auth_proof(int server, const uint8_t *key, size_t key_len, const uint8_t server_nonce[16],
                  const uint8_t client_nonce[16], uint8_t version, const char *name, uint8_t name_len,
                  uint8_t out[HI_SHA256_SIZE]) {
  static const char client_label[] = "HI-AUTH-CLIENT";
  static const char server_label[] = "HI-AUTH-SERVER";
  const char *label = server ? server_label : client_label;
  uint8_t tail[2];
  hi_hmac_t h;
  if ((key == NULL && key_len > 0u) || server_nonce == NULL || client_nonce == NULL || out == NULL) return -1;
  if (name_len > 32u || (name == NULL && name_len > 0u)) return -1;
  hi_hmac_init(&h, key, key_len);
  hi_hmac_update(&h, (const uint8_t *)label, sizeof client_label - 1u);
  hi_hmac_update(&h, server_nonce, 16u);
  hi_hmac_update(&h, client_nonce, 16u);
  tail[0] = version;
  tail[1] = name_len;
  hi_hmac_update(&h, tail, 2u);
  if (name_len) hi_hmac_update(&h, (const uint8_t *)name, name_len);
  hi_hmac_final(&h, out);
  return 0;
}

int hi_auth_equal(const uint8_t a[HI_SHA256_SIZE], const uint8_t b[HI_SHA256_SIZE]) {
  uint8_t diff = 0u;
  unsigned i;
  for (i = 0; i < HI_SHA256_SIZE; ++i) diff = (uint8_t)(diff | (a[i] ^ b[i]));
  return diff == 0u;
}
