/* hi_auth_test.c - SHA-256 (FIPS 180-4 examples) and HMAC-SHA256 (RFC 4231 cases 1, 2, 6) known answers. */
#include "hi_auth.h"
#include "hi_test.h"

static int digest_is(const unsigned char *d, const char *hex) {
  unsigned char want[32];
  return hi_test_unhex(hex, want, 32) == 32 && memcmp(d, want, 32) == 0;
}

int main(void) {
  unsigned char d[32], key[131], data[200];
  const char *abc = "abc";
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  hi_sha256_t c;
  size_t i;
  hi_sha256((const uint8_t *)abc, 3, d);
  CHECK(digest_is(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  hi_sha256((const uint8_t *)two, strlen(two), d);
  CHECK(digest_is(d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
  hi_sha256((const uint8_t *)"", 0, d);
  CHECK(digest_is(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  /* streaming in odd pieces gives the same digest */
  hi_sha256_init(&c);
  for (i = 0; i < strlen(two); i += 7) hi_sha256_update(&c, (const uint8_t *)two + i, strlen(two) - i < 7 ? strlen(two) - i : 7);
  hi_sha256_final(&c, d);
  CHECK(digest_is(d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
  /* RFC 4231 test case 1 */
  memset(key, 0x0b, 20);
  hi_hmac_sha256(key, 20, (const uint8_t *)"Hi There", 8, d);
  CHECK(digest_is(d, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
  /* case 2 */
  hi_hmac_sha256((const uint8_t *)"Jefe", 4, (const uint8_t *)"what do ya want for nothing?", 28, d);
  CHECK(digest_is(d, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
  /* case 6: key longer than the block */
  memset(key, 0xaa, 131);
  memcpy(data, "Test Using Larger Than Block-Size Key - Hash Key First", 54);
  hi_hmac_sha256(key, 131, data, 54, d);
  CHECK(digest_is(d, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
  CHECK(hi_auth_equal(d, d));
  {
    unsigned char e[32];
    memcpy(e, d, 32);
    e[31] ^= 1;
    CHECK(!hi_auth_equal(d, e));
  }
  CHECK(hi_auth_proof(0, key, 4, NULL, data, 1, "x", 1, d) == -1);
  CHECK(hi_auth_proof(0, key, 4, data, data, 1, "x", 33, d) == -1);
  TEST_END("hi_auth_test");
}
