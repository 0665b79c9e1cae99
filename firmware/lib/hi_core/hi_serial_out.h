/*
 * hi_serial_out.h - internal to hi_core: output and parsing helpers shared by the MLPerf Tiny runner
 * (hi_mlperf.c) and the HI offload session (hi_offload_session.c). Output is formatted here (no printf, so
 * no float printf support is needed from the C library) and written in HI_SERIAL_OUT_SIZE chunks.
 */
#ifndef HI_SERIAL_OUT_H
#define HI_SERIAL_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "hi_serial.h"

void hi_serial_flush(hi_serial_t *s);
void hi_serial_put_n(hi_serial_t *s, const char *p, size_t n);
void hi_serial_put(hi_serial_t *s, const char *str);
/* Printable ASCII only (and no brackets): echoing a host token must not let it inject control characters. */
void hi_serial_put_safe(hi_serial_t *s, const char *str, size_t max);
void hi_serial_end_line(hi_serial_t *s); /* "\r\n" and flush */
void hi_serial_put_u64(hi_serial_t *s, uint64_t v);
void hi_serial_put_u32(hi_serial_t *s, uint32_t v);
void hi_serial_put_i32(hi_serial_t *s, int32_t v);
void hi_serial_put_hex_bytes(hi_serial_t *s, const uint8_t *p, size_t n);
void hi_serial_put_hex_u32(hi_serial_t *s, uint32_t v);
void hi_serial_put_fixed3(hi_serial_t *s, double v); /* the runner's "%0.3f", half away from zero */
uint32_t hi_serial_float_bits(float f);
void hi_serial_error_begin(hi_serial_t *s); /* "e-[" and count the error */
void hi_serial_error_msg(hi_serial_t *s, const char *msg);
uint32_t hi_serial_now_us(hi_serial_t *s);
void hi_serial_lap(hi_serial_t *s); /* m-lap-us-N */
/* Strict unsigned decimal: digits only, no sign, at most UINT32_MAX. 1 on success. */
int hi_serial_parse_u32(const char *t, uint32_t *out);
/* Decode hex into out (cap bytes). Returns bytes written, -1 odd length, -2 bad digit, -3 too long. */
int32_t hi_serial_parse_hex(const char *t, uint8_t *out, size_t cap);
uint32_t hi_serial_input_bytes(const hi_serial_t *s); /* height * width * channels of the pipeline input */

#endif /* HI_SERIAL_OUT_H */
