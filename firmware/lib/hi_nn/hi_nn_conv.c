/* hi_nn_conv.c - int8 CONV_2D; see hi_nn_conv.h for the design. */
#include "hi_nn_conv.h"

/* Output stage shared by all paths: requantize, clamp, then (optionally) the fused residual ADD. */
HI_NN_INLINE int8_t conv_output(const hi_nn_conv_params_t *p, int32_t acc, int32_t mult, int32_t shift,
                                const hi_nn_residual_t *res, int32_t out_index) {
  const int8_t c = hi_nn_requant_s8(acc, mult, shift, p->output_offset, p->act_min, p->act_max);
  if (res == NULL) return c;
  {
    const int8_t r = res->data[out_index];
    return res->conv_is_input2 ? hi_nn_add_elem_s8(r, c, &res->add) : hi_nn_add_elem_s8(c, r, &res->add);
  }
}

/* Border pixel: TFLM semantics, taps outside the image are skipped. */
HI_NN_NOINLINE static void conv_pixel_border(const hi_nn_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                              const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out_px,
                              const hi_nn_residual_t *res, int32_t out_index, int32_t in_y0, int32_t in_x0) {
  const int32_t in_c = p->in_c;
  int32_t oc;
  for (oc = 0; oc < p->out_c; ++oc) {
    const int8_t *w_oc = filter + (int32_t)oc * p->k_h * p->k_w * in_c;
    int32_t acc = bias ? bias[oc] : 0;
    int32_t ky, kx, ic;
    for (ky = 0; ky < p->k_h; ++ky) {
      const int32_t iy = in_y0 + p->dil_h * ky;
      if (iy < 0 || iy >= p->in_h) continue;
      for (kx = 0; kx < p->k_w; ++kx) {
        const int32_t ix = in_x0 + p->dil_w * kx;
        const int8_t *x;
        const int8_t *w;
        if (ix < 0 || ix >= p->in_w) continue;
        x = in_b + ((int32_t)iy * p->in_w + ix) * in_c;
        w = w_oc + (ky * p->k_w + kx) * in_c;
        for (ic = 0; ic < in_c; ++ic) {
          acc += (int32_t)w[ic] * ((int32_t)x[ic] + p->input_offset);
        }
      }
    }
    out_px[oc] = conv_output(p, acc, mult[oc], shift[oc], res, out_index + oc);
  }
}

/* Interior pixel: every tap is inside the image, so the folded bias applies and each filter row is one
 * contiguous dot product (dilation_w == 1) of length k_w*in_c. Two output channels share activation loads. */
HI_NN_NOINLINE static void conv_pixel_interior(const hi_nn_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                                const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                int8_t *out_px, const hi_nn_residual_t *res, int32_t out_index, int32_t in_y0,
                                int32_t in_x0) {
  const int32_t in_c = p->in_c;
  const int32_t row_len = p->k_w * in_c;
  const int32_t w_per_oc = p->k_h * row_len;
  const int32_t in_row_stride = p->in_w * in_c * p->dil_h;
  const int8_t *x0 = in_b + ((int32_t)in_y0 * p->in_w + in_x0) * in_c;
  int32_t oc = 0;
  if (p->dil_w == 1) {
    for (; oc + 2 <= p->out_c; oc += 2) {
      const int8_t *w0 = filter + oc * w_per_oc;
      const int8_t *w1 = w0 + w_per_oc;
      int32_t a0 = bias_folded[oc], a1 = bias_folded[oc + 1];
      const int8_t *x = x0;
      int32_t ky;
      for (ky = 0; ky < p->k_h; ++ky) {
        hi_nn_dot2_s8(x, w0 + ky * row_len, w1 + ky * row_len, row_len, &a0, &a1);
        x += in_row_stride;
      }
      out_px[oc] = conv_output(p, a0, mult[oc], shift[oc], res, out_index + oc);
      out_px[oc + 1] = conv_output(p, a1, mult[oc + 1], shift[oc + 1], res, out_index + oc + 1);
    }
    for (; oc < p->out_c; ++oc) {
      const int8_t *w0 = filter + oc * w_per_oc;
      int32_t a0 = bias_folded[oc];
      const int8_t *x = x0;
      int32_t ky;
      for (ky = 0; ky < p->k_h; ++ky) {
        a0 = hi_nn_dot_s8(x, w0 + ky * row_len, row_len, a0);
        x += in_row_stride;
      }
      out_px[oc] = conv_output(p, a0, mult[oc], shift[oc], res, out_index + oc);
    }
  } else {
    for (; oc < p->out_c; ++oc) {
      const int8_t *w0 = filter + oc * w_per_oc;
      int32_t a0 = bias_folded[oc];
      int32_t ky, kx;
      for (ky = 0; ky < p->k_h; ++ky) {
        for (kx = 0; kx < p->k_w; ++kx) {
          const int8_t *x = x0 + ky * in_row_stride + kx * p->dil_w * in_c;
          a0 = hi_nn_dot_s8(x, w0 + ky * row_len + kx * in_c, in_c, a0);
        }
      }
      out_px[oc] = conv_output(p, a0, mult[oc], shift[oc], res, out_index + oc);
    }
  }
}


/* ---- strip path (strip_w > 0) --------------------------------------------------------------------
 * For one output row and a strip of up to strip_w output pixels, the k_h input rows the strip reads are
 * widened once to int16 in the scratch buffer, with the image border filled with the input zero point
 * (so (x + input_offset) == 0 there and the folded bias gives TFLM's "skip taps outside the image").
 * Buffer layout: [ky][g][b] records of 8 bytes, g = group of 4 input channels (zero padded), b = input pixel
 * of the strip. Record = the 4 channels as int16; with the DSP extension in SXTB16 order (c0 c2 c1 c3) so
 * that one SXTB16 pair of a weight word (c0..c3 bytes) lines up with the two record words.
 * Filter layout (compiler): [oc][ky][g][kx][4 channels], zero padded channels. For pixel j the taps of
 * (ky, g) are the records b = j*stride_w + kx*dil_w of row (ky, g), and consecutive (ky, g) rows are wb
 * records apart: the whole receptive field is ONE loop of k_h*G steps with a constant pointer jump.
 * WHY: every activation is widened once per row instead of once per multiply, the input is never copied
 * per output pixel (no im2col), and four output pixels share each unpacked weight word. */

#define HI_NN_RES_LUT_BYTES (2 * 256 * 4)

static int32_t strip_groups(const hi_nn_conv_params_t *p) { return (p->in_c + 3) / 4; }

static int32_t strip_buf_pixels(const hi_nn_conv_params_t *p, int32_t strip) {
  return (strip - 1) * p->stride_w + (p->k_w - 1) * p->dil_w + 1;
}

int32_t hi_nn_conv_scratch_bytes(const hi_nn_conv_params_t *p, int has_residual) {
  if (p->strip_w <= 0) return 0;
  return (has_residual ? HI_NN_RES_LUT_BYTES : 0) + p->k_h * strip_groups(p) * strip_buf_pixels(p, p->strip_w) * 8;
}

/* Store the 4 int8 channels in v (little-endian bytes) as one record (layout above). */
HI_NN_INLINE void strip_store_rec(uint8_t *rec, uint32_t v) {
#if HI_NN_USE_DSP
  uint32_t *r = (uint32_t *)(void *)rec;
  r[0] = __sxtb16(v);
  r[1] = hi_nn_sxtb16_ror8(v);
#else
  int16_t *r = (int16_t *)(void *)rec;
  r[0] = (int8_t)(v & 0xFFu);
  r[1] = (int8_t)((v >> 8) & 0xFFu);
  r[2] = (int8_t)((v >> 16) & 0xFFu);
  r[3] = (int8_t)(v >> 24);
#endif
}

/* Records b0 .. b1-1 of every group of one row: the input zero point (taps outside the image). */
static void strip_fill_pad(uint8_t *row, int32_t b0, int32_t b1, int32_t groups, int32_t rec_stride, int32_t zp) {
  int32_t g, b;
  const uint32_t z = (uint32_t)(uint8_t)(int8_t)zp * 0x01010101u;
  for (g = 0; g < groups; ++g) {
    for (b = b0; b < b1; ++b) strip_store_rec(row + g * rec_stride + b * 8, z);
  }
}

/* Widen the k_h input rows of output row oy, input pixels x0 .. x0+wb-1, into buf (layout above). */
HI_NN_NOINLINE static void strip_fill(const hi_nn_conv_params_t *p, const int8_t *in_b, int32_t oy, int32_t x0,
                                      int32_t wb, int32_t groups, void *buf) {
  const int32_t in_c = p->in_c;
  const int32_t zp = -p->input_offset;
  const int32_t rec_stride = wb * 8; /* bytes between groups of one row */
  const int32_t b_lo = x0 < 0 ? (-x0 < wb ? -x0 : wb) : 0;
  const int32_t b_hi = p->in_w - x0 < wb ? (p->in_w - x0 > b_lo ? p->in_w - x0 : b_lo) : wb;
  const int32_t full_groups = in_c / 4;
  int32_t ky, b, g;
  for (ky = 0; ky < p->k_h; ++ky) {
    const int32_t iy = oy * p->stride_h - p->pad_h + ky * p->dil_h;
    uint8_t *row = (uint8_t *)buf + ky * groups * rec_stride;
    if (iy < 0 || iy >= p->in_h) {
      strip_fill_pad(row, 0, wb, groups, rec_stride, zp);
      continue;
    }
    strip_fill_pad(row, 0, b_lo, groups, rec_stride, zp);
    strip_fill_pad(row, b_hi, wb, groups, rec_stride, zp);
    {
      const int8_t *src_row = in_b + (iy * p->in_w + x0 + b_lo) * in_c;
      for (g = 0; g < full_groups; ++g) {
        const int8_t *src = src_row + 4 * g;
        uint8_t *rec = row + g * rec_stride + b_lo * 8;
        for (b = b_lo; b < b_hi; ++b, src += in_c, rec += 8) strip_store_rec(rec, hi_nn_load32(src));
      }
      if (full_groups < groups) { /* last, partial group: channels beyond in_c are 0 (their weights are 0 too) */
        const int32_t rem = in_c - 4 * full_groups;
        const int8_t *src = src_row + 4 * full_groups;
        uint8_t *rec = row + full_groups * rec_stride + b_lo * 8;
        for (b = b_lo; b < b_hi; ++b, src += in_c, rec += 8) {
          uint32_t v = (uint8_t)src[0];
          if (rem > 1) v |= (uint32_t)(uint8_t)src[1] << 8;
          if (rem > 2) v |= (uint32_t)(uint8_t)src[2] << 16;
          strip_store_rec(rec, v);
        }
      }
    }
  }
}

/* acc[q] += record(x + (q*stride + kx*dil) records) . weights, over n (ky, g) steps of k_w taps: any geometry. */
static void strip_block_c(const uint8_t *x, int32_t npx, int32_t stride, int32_t dil, int32_t k_w, int32_t n,
                          int32_t jump, const int8_t *w, int32_t *acc) {
  int32_t i, kx, q;
#if !HI_NN_USE_DSP
  if (npx == 4) {
    /* Portable cores (no SIMD multiply): four accumulators and the tap's four weights in locals, so every
     * multiply needs only its activation load. */
    const int32_t ps = stride * 4; /* int16 elements from one pixel's record to the next */
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (i = 0; i < n; ++i, x += jump) {
      for (kx = 0; kx < k_w; ++kx, w += 4) {
        const int16_t *r = (const int16_t *)(const void *)(x + kx * dil * 8);
        const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
        a0 += r[0] * w0 + r[1] * w1 + r[2] * w2 + r[3] * w3;
        r += ps;
        a1 += r[0] * w0 + r[1] * w1 + r[2] * w2 + r[3] * w3;
        r += ps;
        a2 += r[0] * w0 + r[1] * w1 + r[2] * w2 + r[3] * w3;
        r += ps;
        a3 += r[0] * w0 + r[1] * w1 + r[2] * w2 + r[3] * w3;
      }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    return;
  }
#endif
  for (i = 0; i < n; ++i, x += jump) {
    for (kx = 0; kx < k_w; ++kx, w += 4) {
#if HI_NN_USE_DSP
      const uint32_t wv = hi_nn_load32(w);
      const uint32_t w02 = __sxtb16(wv), w13 = hi_nn_sxtb16_ror8(wv);
      for (q = 0; q < npx; ++q) {
        const uint32_t *r = (const uint32_t *)(const void *)(x + (q * stride + kx * dil) * 8);
        acc[q] = (int32_t)__smlad(r[0], w02, (uint32_t)acc[q]);
        acc[q] = (int32_t)__smlad(r[1], w13, (uint32_t)acc[q]);
      }
#else
      const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
      for (q = 0; q < npx; ++q) {
        const int16_t *r = (const int16_t *)(const void *)(x + (q * stride + kx * dil) * 8);
        acc[q] += r[0] * w0 + r[1] * w1 + r[2] * w2 + r[3] * w3;
      }
#endif
    }
  }
}

#if !HI_NN_USE_DSP
/* Portable cores: two output channels x two pixels per pass, so each activation load feeds two multiplies and
 * each weight load two more (the register-tiled kernels above need the DSP extension). acc0/acc1 hold the
 * biases on entry. */
static void strip_block_2oc_c(const uint8_t *x, int32_t npx, int32_t stride, int32_t dil, int32_t k_w, int32_t n,
                              int32_t jump, const int8_t *w0, const int8_t *w1, int32_t *acc0, int32_t *acc1) {
  const int32_t ps = stride * 4;
  int32_t j, i, kx, c;
  for (j = 0; j + 2 <= npx; j += 2) {
    int32_t a00 = acc0[j], a01 = acc0[j + 1], a10 = acc1[j], a11 = acc1[j + 1];
    const int8_t *p0 = w0, *p1 = w1;
    const uint8_t *xr = x + j * stride * 8;
    for (i = 0; i < n; ++i, xr += jump) {
      for (kx = 0; kx < k_w; ++kx, p0 += 4, p1 += 4) {
        const int16_t *ra = (const int16_t *)(const void *)(xr + kx * dil * 8);
        const int16_t *rb = ra + ps;
        /* unrolled by hand: GCC -O2 keeps the 4-channel loop otherwise (a compare and branch per channel) */
#define HI_NN_MAC2X2(C)                                                   \
  do {                                                                    \
    const int32_t xa = ra[C], xb = rb[C], k0 = p0[C], k1 = p1[C];         \
    a00 += xa * k0;                                                       \
    a10 += xa * k1;                                                       \
    a01 += xb * k0;                                                       \
    a11 += xb * k1;                                                       \
  } while (0)
        HI_NN_MAC2X2(0);
        HI_NN_MAC2X2(1);
        HI_NN_MAC2X2(2);
        HI_NN_MAC2X2(3);
#undef HI_NN_MAC2X2
      }
    }
    acc0[j] = a00;
    acc0[j + 1] = a01;
    acc1[j] = a10;
    acc1[j + 1] = a11;
  }
  if (j < npx) {
    int32_t a0 = acc0[j], a1 = acc1[j];
    const int8_t *p0 = w0, *p1 = w1;
    const uint8_t *xr = x + j * stride * 8;
    for (i = 0; i < n; ++i, xr += jump) {
      for (kx = 0; kx < k_w; ++kx, p0 += 4, p1 += 4) {
        const int16_t *ra = (const int16_t *)(const void *)(xr + kx * dil * 8);
        for (c = 0; c < 4; ++c) {
          a0 += ra[c] * p0[c];
          a1 += ra[c] * p1[c];
        }
      }
    }
    acc0[j] = a0;
    acc1[j] = a1;
  }
}
#endif

#if HI_NN_USE_DSP && defined(__GNUC__)
/* Four pixels x one output channel, register-tiled: per weight word one LDR + two SXTB16, then per pixel one
 * LDRD of its record and two SMLAD. O0..O3 are the pixels' record offsets in bytes (immediates). */
#define HI_NN_TAP4(O0, O1, O2, O3)                 \
  "ldr %[w], [%[wp]], #4\n\t"                      \
  "sxtb16 %[t], %[w]\n\t"                          \
  "sxtb16 %[w], %[w], ror #8\n\t"                  \
  "ldrd %[xa], %[xb], [%[xp], #" #O0 "]\n\t"       \
  "smlad %[a0], %[xa], %[t], %[a0]\n\t"            \
  "smlad %[a0], %[xb], %[w], %[a0]\n\t"            \
  "ldrd %[xa], %[xb], [%[xp], #" #O1 "]\n\t"       \
  "smlad %[a1], %[xa], %[t], %[a1]\n\t"            \
  "smlad %[a1], %[xb], %[w], %[a1]\n\t"            \
  "ldrd %[xa], %[xb], [%[xp], #" #O2 "]\n\t"       \
  "smlad %[a2], %[xa], %[t], %[a2]\n\t"            \
  "smlad %[a2], %[xb], %[w], %[a2]\n\t"            \
  "ldrd %[xa], %[xb], [%[xp], #" #O3 "]\n\t"       \
  "smlad %[a3], %[xa], %[t], %[a3]\n\t"            \
  "smlad %[a3], %[xb], %[w], %[a3]\n\t"

#define HI_NN_BLOCK4_ASM(NAME, TAPS)                                                                        \
  HI_NN_INLINE void NAME(const uint8_t *x, int32_t n, int32_t jump, const int8_t *w, int32_t bias,          \
                         int32_t *acc) {                                                                    \
    int32_t a0 = bias, a1 = bias, a2 = bias, a3 = bias;                                                     \
    uint32_t wt, t, xa, xb;                                                                                 \
    __asm__ volatile("1:\n\t" TAPS "add %[xp], %[xp], %[jump]\n\t"                                         \
                     "subs %[n], %[n], #1\n\t"                                                              \
                     "bne 1b\n\t"                                                                           \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(x), [wp] "+r"(w), \
                       [n] "+r"(n), [w] "=&r"(wt), [t] "=&r"(t), [xa] "=&r"(xa), [xb] "=&r"(xb)              \
                     : [jump] "r"(jump)                                                                     \
                     : "cc", "memory");                                                                     \
    acc[0] = a0;                                                                                            \
    acc[1] = a1;                                                                                            \
    acc[2] = a2;                                                                                            \
    acc[3] = a3;                                                                                            \
  }

/* k_w = 3, stride 1: pixel q, tap kx reads record q + kx. */
HI_NN_BLOCK4_ASM(strip_block4_k3s1, HI_NN_TAP4(0, 8, 16, 24) HI_NN_TAP4(8, 16, 24, 32) HI_NN_TAP4(16, 24, 32, 40))
/* k_w = 3, stride 2: record 2q + kx. */
HI_NN_BLOCK4_ASM(strip_block4_k3s2, HI_NN_TAP4(0, 16, 32, 48) HI_NN_TAP4(8, 24, 40, 56) HI_NN_TAP4(16, 32, 48, 64))
/* k_w = 1, stride 1 / 2. */
HI_NN_BLOCK4_ASM(strip_block4_k1s1, HI_NN_TAP4(0, 8, 16, 24))
HI_NN_BLOCK4_ASM(strip_block4_k1s2, HI_NN_TAP4(0, 16, 32, 48))
#define HI_NN_STRIP_ASM 1
#else
#define HI_NN_STRIP_ASM 0
#endif

#if HI_NN_STRIP_ASM && defined(__thumb2__)
/* Eight pixels x one output channel: all 14 allocatable registers are needed (8 accumulators in r4-r11, the
 * pixel record in r2/r3, the weight word unpacked in ip/lr, the record pointer r0, the weight pointer r1), so
 * this is a whole function in assembly with the loop end and the row jump in its stack frame. Per tap: one
 * LDR + two SXTB16 for the weight word, then per pixel one LDRD + two SMLAD: 27 instructions per 32 MACs.
 * The loop is unrolled twice; an odd step count enters at the second copy. */
typedef struct {
  int32_t bias;
  const int8_t *w_end; /* weight pointer after the last step */
  int32_t jump;        /* bytes from one (ky, g) record row to the next */
  int32_t odd;         /* the step count is odd */
  int32_t *out;        /* 8 accumulators */
} strip8_args_t;

#define HI_NN_P8(ACC, OFF) \
  "ldrd r2, r3, [r0, #" #OFF "]\n\t" "smlad " ACC ", r2, lr, " ACC "\n\t" "smlad " ACC ", r3, ip, " ACC "\n\t"
#define HI_NN_TAP8(O0, O1, O2, O3, O4, O5, O6, O7)                                                    \
  "ldr ip, [r1], #4\n\t"                                                                              \
  "sxtb16 lr, ip\n\t"                                                                                 \
  "sxtb16 ip, ip, ror #8\n\t" HI_NN_P8("r4", O0) HI_NN_P8("r5", O1) HI_NN_P8("r6", O2) HI_NN_P8("r7", O3) \
      HI_NN_P8("r8", O4) HI_NN_P8("r9", O5) HI_NN_P8("r10", O6) HI_NN_P8("r11", O7)
/* void NAME(const uint8_t *x, const int8_t *w, const strip8_args_t *args) */
#define HI_NN_STRIP8_ASM(NAME, STEP)                                                                  \
  void NAME(const uint8_t *x, const int8_t *w, const strip8_args_t *args);                           \
  __asm__(".text\n\t.syntax unified\n\t.thumb\n\t.p2align 2\n\t.global " #NAME "\n\t.hidden " #NAME     \
          "\n\t.type " #NAME ", %function\n\t.thumb_func\n" #NAME ":\n\t"                              \
          "push {r4-r11, lr}\n\t"                                                                     \
          "sub sp, sp, #12\n\t"                                                                       \
          "ldr ip, [r2, #4]\n\t"                                                                      \
          "str ip, [sp, #0]\n\t"                                                                      \
          "ldr ip, [r2, #8]\n\t"                                                                      \
          "str ip, [sp, #4]\n\t"                                                                      \
          "str r2, [sp, #8]\n\t"                                                                      \
          "ldr ip, [r2, #12]\n\t"                                                                     \
          "ldr r4, [r2, #0]\n\t"                                                                      \
          "mov r5, r4\n\tmov r6, r4\n\tmov r7, r4\n\tmov r8, r4\n\tmov r9, r4\n\tmov r10, r4\n\tmov r11, r4\n\t" \
          "cmp ip, #0\n\t"                                                                            \
          "bne 2f\n"                                                                                  \
          "1:\n\t" STEP                                                                               \
          "ldr ip, [sp, #4]\n\t"                                                                      \
          "add r0, r0, ip\n"                                                                          \
          "2:\n\t" STEP                                                                               \
          "ldr ip, [sp, #4]\n\t"                                                                      \
          "add r0, r0, ip\n\t"                                                                        \
          "ldr ip, [sp, #0]\n\t"                                                                      \
          "cmp r1, ip\n\t"                                                                            \
          "bne 1b\n\t"                                                                                \
          "ldr r2, [sp, #8]\n\t"                                                                      \
          "ldr r2, [r2, #16]\n\t"                                                                     \
          "stm r2, {r4-r11}\n\t"                                                                      \
          "add sp, sp, #12\n\t"                                                                       \
          "pop {r4-r11, pc}\n\t"                                                                      \
          ".size " #NAME ", .-" #NAME "\n");

HI_NN_STRIP8_ASM(hi_nn_strip8_k3s1, HI_NN_TAP8(0, 8, 16, 24, 32, 40, 48, 56) HI_NN_TAP8(8, 16, 24, 32, 40, 48, 56, 64)
                                        HI_NN_TAP8(16, 24, 32, 40, 48, 56, 64, 72))
HI_NN_STRIP8_ASM(hi_nn_strip8_k3s2, HI_NN_TAP8(0, 16, 32, 48, 64, 80, 96, 112)
                                        HI_NN_TAP8(8, 24, 40, 56, 72, 88, 104, 120)
                                            HI_NN_TAP8(16, 32, 48, 64, 80, 96, 112, 128))
HI_NN_STRIP8_ASM(hi_nn_strip8_k1s1, HI_NN_TAP8(0, 8, 16, 24, 32, 40, 48, 56))
HI_NN_STRIP8_ASM(hi_nn_strip8_k1s2, HI_NN_TAP8(0, 16, 32, 48, 64, 80, 96, 112))
#define HI_NN_STRIP_ASM8 1
#else
#define HI_NN_STRIP_ASM8 0
#endif

/* Which tiled kernel a conv uses (0: the C loop, any geometry / no DSP). */
enum { STRIP_C = 0, STRIP_K3S1, STRIP_K3S2, STRIP_K1S1, STRIP_K1S2 };

static int strip_variant(const hi_nn_conv_params_t *p) {
#if HI_NN_STRIP_ASM
  if (p->dil_w == 1 || p->k_w == 1) {
    if (p->k_w == 3 && p->stride_w == 1) return STRIP_K3S1;
    if (p->k_w == 3 && p->stride_w == 2) return STRIP_K3S2;
    if (p->k_w == 1 && p->stride_w == 1) return STRIP_K1S1;
    if (p->k_w == 1 && p->stride_w == 2) return STRIP_K1S2;
  }
#else
  (void)p;
#endif
  return STRIP_C;
}

/* acc[0..7] = bias + the eight pixels' dot products (HI_NN_STRIP_ASM8 only). */
HI_NN_INLINE void strip_block8(int variant, const uint8_t *x, int32_t n, int32_t k_w, int32_t jump, const int8_t *w,
                               int32_t bias, int32_t *acc) {
#if HI_NN_STRIP_ASM8
  strip8_args_t a;
  a.bias = bias;
  a.w_end = w + n * k_w * 4;
  a.jump = jump;
  a.odd = n & 1;
  a.out = acc;
  switch (variant) {
    case STRIP_K3S1: hi_nn_strip8_k3s1(x, w, &a); return;
    case STRIP_K3S2: hi_nn_strip8_k3s2(x, w, &a); return;
    case STRIP_K1S1: hi_nn_strip8_k1s1(x, w, &a); return;
    case STRIP_K1S2: hi_nn_strip8_k1s2(x, w, &a); return;
    default: break;
  }
#endif
  (void)variant;
  (void)x;
  (void)n;
  (void)k_w;
  (void)jump;
  (void)w;
  (void)bias;
  (void)acc;
}

/* acc[j..j+3] = bias + the four pixels' dot products, with the kernel of the given variant. */
HI_NN_INLINE void strip_block4(int variant, const uint8_t *x, int32_t n, int32_t jump, const int8_t *w, int32_t bias,
                               int32_t *acc) {
#if HI_NN_STRIP_ASM
  switch (variant) {
    case STRIP_K3S1: strip_block4_k3s1(x, n, jump, w, bias, acc); return;
    case STRIP_K3S2: strip_block4_k3s2(x, n, jump, w, bias, acc); return;
    case STRIP_K1S1: strip_block4_k1s1(x, n, jump, w, bias, acc); return;
    case STRIP_K1S2: strip_block4_k1s2(x, n, jump, w, bias, acc); return;
    default: break;
  }
#endif
  (void)variant;
  (void)x;
  (void)n;
  (void)jump;
  (void)w;
  (void)bias;
  (void)acc;
}

/* The residual ADD of the output stage (TFLM AddFunc with each operand's rescaling tabulated). */
typedef struct {
  const int32_t *lut_res, *lut_conv; /* each operand's rescaled value, indexed by int8 + 128 */
  int32_t mult, shift, e, rnd, fast, offset, act_min, act_max;
  int32_t q30; /* |lut_res| + |lut_conv| < 2^30 for every entry (see HI_NN_RQ30_ASM) */
} strip_add_t;

/* Requantization constants of one output channel. */
typedef struct {
  int32_t mult, shift, e, rnd, fast, offset, act_min, act_max;
  int32_t q30; /* the conv's accumulators provably fit in +-(2^30 - 1) (params acc_q30) */
} strip_rq_t;

#if HI_NN_STRIP_ASM
/* hi_nn_mbqm_rs(x, m, e, rnd) + off in registers: x in %[v] on entry, the result in %[v]; clobbers lo, hi.
 * q = (x*m + 2^30) >> 31 is bits 31..62 of the 64-bit sum; its sign is the sign of hi (|x*m| < 2^62). */
#define HI_NN_RQ_ASM(M, RND, E, OFF)             \
  "smull %[lo], %[hi], %[v], %[" M "]\n\t"       \
  "adds %[lo], %[lo], #0x40000000\n\t"           \
  "adc %[hi], %[hi], #0\n\t"                     \
  "lsl %[v], %[hi], #1\n\t"                      \
  "orr %[v], %[v], %[lo], lsr #31\n\t"           \
  "qadd %[v], %[v], %[" RND "]\n\t"              \
  "add %[v], %[v], %[hi], asr #31\n\t"           \
  "asr %[v], %[v], %[" E "]\n\t"                 \
  "add %[v], %[v], %[" OFF "]\n\t"
/* The same when |x| < 2^30: then (x*m + 2^30) >> 31 == (2x*m + 2^31) >> 32, which SMMULR computes in one
 * instruction (the high word of the product, rounded), and q's sign is its own sign bit. */
#define HI_NN_RQ30_ASM(M, RND, E, OFF)           \
  "lsl %[v], %[v], #1\n\t"                       \
  "smmulr %[v], %[v], %[" M "]\n\t"              \
  "qadd %[lo], %[v], %[" RND "]\n\t"             \
  "add %[lo], %[lo], %[v], asr #31\n\t"          \
  "asr %[v], %[lo], %[" E "]\n\t"                \
  "add %[v], %[v], %[" OFF "]\n\t"
#endif

/* One output channel of a strip: out[j * stride] = requant(acc[j]) (or, when lut is not NULL, the int32
 * acc[j] = lut[requant(acc[j])] for the residual pass). The fast loops keep every constant in a register
 * (GCC spills them in C); the exact loop handles shifts outside hi_nn_mbqm_rs's range. */
HI_NN_NOINLINE static void strip_out_plain(int32_t *acc, int32_t npx, int8_t *out, int32_t stride,
                                           const strip_rq_t *rq, const int32_t *lut) {
  const int32_t m = rq->mult, off = rq->offset, amin = rq->act_min, amax = rq->act_max;
  if (npx <= 0) return;
  if (rq->fast) {
    const int32_t e = rq->e, rnd = rq->rnd;
#if HI_NN_STRIP_ASM
    if (amin == -128 && amax == 127) {
      int32_t *end = acc + npx;
      uint32_t v, lo, hi;
#define HI_NN_OUT_PLAIN(RQ)                                                                                   \
  __asm__ volatile("1:\n\t"                                                                                  \
                   "ldr %[v], [%[acc]], #4\n\t" RQ("m", "rnd", "e", "off") "ssat %[v], #8, %[v]\n\t"           \
                   "strb %[v], [%[out]]\n\t"                                                                  \
                   "add %[out], %[out], %[stride]\n\t"                                                        \
                   "cmp %[acc], %[end]\n\t"                                                                   \
                   "bne 1b\n\t"                                                                               \
                   : [acc] "+r"(acc), [out] "+r"(out), [v] "=&r"(v), [lo] "=&r"(lo), [hi] "=&r"(hi)           \
                   : [end] "r"(end), [stride] "r"(stride), [m] "r"(m), [rnd] "r"(rnd), [e] "r"(e), [off] "r"(off) \
                   : "cc", "memory")
#define HI_NN_OUT_LUT(RQ)                                                                                     \
  __asm__ volatile("1:\n\t"                                                                                  \
                   "ldr %[v], [%[acc]]\n\t" RQ("m", "rnd", "e", "off") "ssat %[v], #8, %[v]\n\t"               \
                   "ldr %[v], [%[lut], %[v], lsl #2]\n\t"                                                     \
                   "str %[v], [%[acc]], #4\n\t"                                                               \
                   "cmp %[acc], %[end]\n\t"                                                                   \
                   "bne 1b\n\t"                                                                               \
                   : [acc] "+r"(acc), [v] "=&r"(v), [lo] "=&r"(lo), [hi] "=&r"(hi)                            \
                   : [end] "r"(end), [lut] "r"(lut0), [m] "r"(m), [rnd] "r"(rnd), [e] "r"(e), [off] "r"(off)     \
                   : "cc", "memory")
      const int32_t *lut0 = lut != NULL ? lut + 128 : NULL;
      if (lut == NULL && rq->q30) {
        HI_NN_OUT_PLAIN(HI_NN_RQ30_ASM);
      } else if (lut == NULL) {
        HI_NN_OUT_PLAIN(HI_NN_RQ_ASM);
      } else if (rq->q30) {
        HI_NN_OUT_LUT(HI_NN_RQ30_ASM);
      } else {
        HI_NN_OUT_LUT(HI_NN_RQ_ASM);
      }
#undef HI_NN_OUT_PLAIN
#undef HI_NN_OUT_LUT
      (void)hi;
      return;
    }
#endif
    int32_t j;
    for (j = 0; j < npx; ++j) {
      int32_t v = hi_nn_mbqm_rs(acc[j], m, e, rnd) + off;
      v = v < amin ? amin : (v > amax ? amax : v);
      if (lut) {
        acc[j] = lut[v + 128];
      } else {
        out[j * stride] = (int8_t)v;
      }
    }
  } else {
    const int32_t sh = rq->shift;
    int32_t j;
    for (j = 0; j < npx; ++j) {
      const int32_t v = hi_nn_clamp_i32(hi_nn_mbqm(acc[j], m, sh) + off, amin, amax);
      if (lut) {
        acc[j] = lut[v + 128];
      } else {
        out[j * stride] = (int8_t)v;
      }
    }
  }
}

/* The fused residual ADD for one output channel of a strip: acc[j] holds the conv operand's rescaled value
 * (strip_out_plain with the conv operand's table), res may be out (in place: element j is read before it is
 * written). */
HI_NN_NOINLINE static void strip_out_residual(int32_t *acc, int32_t npx, int8_t *out, const int8_t *res,
                                              int32_t stride, const strip_add_t *a) {
  const int32_t *lr = a->lut_res + 128;
  int32_t j;
  if (npx <= 0) return;
  if (a->fast) {
    const int32_t am = a->mult, ae = a->e, arnd = a->rnd, aoff = a->offset, amin = a->act_min, amax = a->act_max;
#if HI_NN_STRIP_ASM
    if (amin == -128 && amax == 127) {
      const int32_t diff = (int32_t)(out - res);
      const int32_t *end = acc + npx;
      uint32_t v, lo, hi;
#define HI_NN_OUT_RES(RQ)                                                                                     \
  __asm__ volatile("1:\n\t"                                                                                  \
                   "ldrsb %[v], [%[res]]\n\t"                                                                  \
                   "ldr %[lo], [%[acc]], #4\n\t"                                                              \
                   "ldr %[v], [%[lr], %[v], lsl #2]\n\t"                                                      \
                   "add %[v], %[v], %[lo]\n\t" RQ("am", "arnd", "ae", "aoff") "ssat %[v], #8, %[v]\n\t"        \
                   "strb %[v], [%[res], %[diff]]\n\t"                                                         \
                   "add %[res], %[res], %[stride]\n\t"                                                        \
                   "cmp %[acc], %[end]\n\t"                                                                   \
                   "bne 1b\n\t"                                                                               \
                   : [acc] "+r"(acc), [res] "+r"(res), [v] "=&r"(v), [lo] "=&r"(lo), [hi] "=&r"(hi)           \
                   : [end] "r"(end), [diff] "r"(diff), [stride] "r"(stride), [lr] "r"(lr), [am] "r"(am),       \
                     [arnd] "r"(arnd), [ae] "r"(ae), [aoff] "r"(aoff)                                            \
                   : "cc", "memory")
      if (a->q30) {
        HI_NN_OUT_RES(HI_NN_RQ30_ASM);
      } else {
        HI_NN_OUT_RES(HI_NN_RQ_ASM);
      }
#undef HI_NN_OUT_RES
      (void)hi;
      return;
    }
#endif
    for (j = 0; j < npx; ++j, out += stride, res += stride) {
      int32_t v = hi_nn_mbqm_rs(lr[*res] + acc[j], am, ae, arnd) + aoff;
      v = v < amin ? amin : v;
      *out = (int8_t)(v > amax ? amax : v);
    }
  } else {
    for (j = 0; j < npx; ++j, out += stride, res += stride) {
      const int32_t v = hi_nn_rdbpot(hi_nn_srdhm_mult(lr[*res] + acc[j], a->mult), (int)-a->shift);
      *out = (int8_t)hi_nn_clamp_i32(v + a->offset, a->act_min, a->act_max);
    }
  }
}

/* All output channels of one strip (npx <= HI_NN_STRIP_MAX pixels) from the widened rows; instantiated once
 * per kernel variant below so that the tiled kernel is inlined. */
HI_NN_INLINE void strip_compute(int variant, const hi_nn_conv_params_t *p, const uint8_t *buf, int32_t wb,
                                int32_t groups, int32_t npx, const int8_t *filter, const int32_t *bias_folded,
                                const int32_t *mult, const int32_t *shift, int8_t *out, const int8_t *res,
                                const strip_add_t *add) {
  const int32_t out_c = p->out_c, stride = p->stride_w, dil = p->dil_w, k_w = p->k_w;
  const int32_t n = p->k_h * groups, jump = wb * 8, w_per_oc = n * k_w * 4;
  int32_t acc[HI_NN_STRIP_MAX];
  strip_rq_t rq;
  int32_t oc;
  rq.offset = p->output_offset;
  rq.act_min = p->act_min;
  rq.act_max = p->act_max;
  rq.q30 = p->acc_q30;
  for (oc = 0; oc < out_c; ++oc) {
    const int8_t *w = filter + oc * w_per_oc;
    const int32_t bf = bias_folded[oc];
    int32_t j = 0;
#if !HI_NN_USE_DSP
    if (oc + 2 <= out_c) { /* two channels at a time (portable tiling), then both output stages */
      int32_t acc1[HI_NN_STRIP_MAX];
      int32_t k;
      for (j = 0; j < npx; ++j) {
        acc[j] = bf;
        acc1[j] = bias_folded[oc + 1];
      }
      strip_block_2oc_c(buf, npx, stride, dil, k_w, n, jump, w, w + w_per_oc, acc, acc1);
      for (k = 0; k < 2; ++k, ++oc) {
        int32_t *a = k ? acc1 : acc;
        rq.mult = mult[oc];
        rq.shift = shift[oc];
        rq.fast = rq.shift <= -1 && rq.shift >= -HI_NN_MBQM_RS_MAX_EXP;
        rq.e = -rq.shift;
        rq.rnd = rq.fast ? (int32_t)(1u << (rq.e - 1)) : 0;
        if (res != NULL) {
          strip_out_plain(a, npx, NULL, 0, &rq, add->lut_conv);
          strip_out_residual(a, npx, out + oc, res + oc, out_c, add);
        } else {
          strip_out_plain(a, npx, out + oc, out_c, &rq, NULL);
        }
      }
      --oc; /* the loop's ++oc */
      continue;
    }
#endif
    if (variant != STRIP_C) {
      if (HI_NN_STRIP_ASM8) {
        for (; j + 8 <= npx; j += 8) strip_block8(variant, buf + j * stride * 8, n, k_w, jump, w, bf, acc + j);
      }
      for (; j + 4 <= npx; j += 4) strip_block4(variant, buf + j * stride * 8, n, jump, w, bf, acc + j);
    }
    for (; j < npx; j += 4) {
      const int32_t cnt = npx - j < 4 ? npx - j : 4;
      int32_t q;
      for (q = 0; q < cnt; ++q) acc[j + q] = bf;
      strip_block_c(buf + j * stride * 8, cnt, stride, dil, k_w, n, jump, w, acc + j);
    }
    rq.mult = mult[oc];
    rq.shift = shift[oc];
    rq.fast = rq.shift <= -1 && rq.shift >= -HI_NN_MBQM_RS_MAX_EXP;
    rq.e = -rq.shift;
    rq.rnd = rq.fast ? (int32_t)(1u << (rq.e - 1)) : 0;
    if (res != NULL) {
      strip_out_plain(acc, npx, NULL, 0, &rq, add->lut_conv);
      strip_out_residual(acc, npx, out + oc, res + oc, out_c, add);
    } else {
      strip_out_plain(acc, npx, out + oc, out_c, &rq, NULL);
    }
  }
}

#define HI_NN_STRIP_COMPUTE(NAME, VARIANT)                                                                  \
  HI_NN_NOINLINE static void NAME(const hi_nn_conv_params_t *p, const uint8_t *buf, int32_t wb, int32_t groups, \
                                  int32_t npx, const int8_t *filter, const int32_t *bias_folded,             \
                                  const int32_t *mult, const int32_t *shift, int8_t *out, const int8_t *res, \
                                  const strip_add_t *add) {                                                   \
    strip_compute(VARIANT, p, buf, wb, groups, npx, filter, bias_folded, mult, shift, out, res, add);       \
  }
HI_NN_STRIP_COMPUTE(strip_compute_c, STRIP_C)
#if HI_NN_STRIP_ASM
HI_NN_STRIP_COMPUTE(strip_compute_k3s1, STRIP_K3S1)
HI_NN_STRIP_COMPUTE(strip_compute_k3s2, STRIP_K3S2)
HI_NN_STRIP_COMPUTE(strip_compute_k1s1, STRIP_K1S1)
HI_NN_STRIP_COMPUTE(strip_compute_k1s2, STRIP_K1S2)
#endif

typedef void (*strip_compute_fn)(const hi_nn_conv_params_t *p, const uint8_t *buf, int32_t wb, int32_t groups,
                                 int32_t npx, const int8_t *filter, const int32_t *bias_folded, const int32_t *mult,
                                 const int32_t *shift, int8_t *out, const int8_t *res, const strip_add_t *add);

static strip_compute_fn strip_compute_for(const hi_nn_conv_params_t *p) {
  switch (strip_variant(p)) {
#if HI_NN_STRIP_ASM
    case STRIP_K3S1: return strip_compute_k3s1;
    case STRIP_K3S2: return strip_compute_k3s2;
    case STRIP_K1S1: return strip_compute_k1s1;
    case STRIP_K1S2: return strip_compute_k1s2;
#endif
    default: return strip_compute_c;
  }
}

/* Rescaled ADD operand (TFLM AddFunc's shifted_input) for every int8 value. */
static void add_operand_lut(int32_t *lut, int32_t offset, int32_t left_shift, int32_t mult, int32_t shift) {
  int32_t i;
  for (i = 0; i < 256; ++i) {
    const int32_t x = (int32_t)((uint32_t)(offset + i - 128) << left_shift);
    lut[i] = hi_nn_rdbpot(hi_nn_srdhm_mult(x, mult), (int)-shift);
  }
}

static int32_t lut_abs_max(const int32_t *lut) {
  int32_t i, m = 0;
  for (i = 0; i < 256; ++i) {
    const int32_t v = lut[i] < 0 ? -lut[i] : lut[i]; /* |v| < 2^31: the rescaled operands are far smaller */
    if (v > m) m = v;
  }
  return m > (1 << 29) ? (1 << 30) : m; /* saturate so the sum of two cannot overflow */
}

static int conv_strip(const hi_nn_conv_params_t *p, const int8_t *in, const int8_t *filter,
                      const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *out,
                      const hi_nn_residual_t *residual, void *scratch, int32_t scratch_bytes) {
  const int32_t groups = strip_groups(p);
  const int32_t in_batch = p->in_h * p->in_w * p->in_c;
  const int32_t out_batch = p->out_h * p->out_w * p->out_c;
  const strip_compute_fn compute = strip_compute_for(p);
  uint8_t *buf = (uint8_t *)scratch;
  strip_add_t add;
  int32_t b, oy, ox0;
  if (scratch == NULL || ((uintptr_t)scratch & 7u) != 0 ||
      scratch_bytes < hi_nn_conv_scratch_bytes(p, residual != NULL)) {
    return HI_NN_ERROR_BAD_PARAMS;
  }
  if (p->strip_w > HI_NN_STRIP_MAX) return HI_NN_ERROR_BAD_PARAMS;
  memset(&add, 0, sizeof add);
  if (residual != NULL) {
    const hi_nn_add_params_t *a = &residual->add;
    int32_t *lut1 = (int32_t *)(void *)buf, *lut2 = lut1 + 256;
    add_operand_lut(lut1, a->input1_offset, a->left_shift, a->input1_multiplier, a->input1_shift);
    add_operand_lut(lut2, a->input2_offset, a->left_shift, a->input2_multiplier, a->input2_shift);
    add.lut_res = residual->conv_is_input2 ? lut1 : lut2;
    add.lut_conv = residual->conv_is_input2 ? lut2 : lut1;
    add.mult = a->output_multiplier;
    add.shift = a->output_shift;
    add.fast = a->output_shift <= -1 && a->output_shift >= -HI_NN_MBQM_RS_MAX_EXP;
    add.e = -a->output_shift;
    add.rnd = add.fast ? (int32_t)(1u << (add.e - 1)) : 0;
    add.offset = a->output_offset;
    add.act_min = a->act_min;
    add.act_max = a->act_max;
    add.q30 = lut_abs_max(lut1) + lut_abs_max(lut2) < (1 << 30);
    buf += HI_NN_RES_LUT_BYTES;
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = in + b * in_batch;
    for (oy = 0; oy < p->out_h; ++oy) {
      for (ox0 = 0; ox0 < p->out_w; ox0 += p->strip_w) {
        const int32_t npx = p->out_w - ox0 < p->strip_w ? p->out_w - ox0 : p->strip_w;
        const int32_t wb = strip_buf_pixels(p, npx);
        const int32_t out_index = b * out_batch + (oy * p->out_w + ox0) * p->out_c;
        strip_fill(p, in_b, oy, ox0 * p->stride_w - p->pad_w, wb, groups, buf);
        compute(p, buf, wb, groups, npx, filter, bias_folded, mult, shift, out + out_index,
                residual != NULL ? residual->data + out_index : NULL, &add);
      }
    }
  }
  return HI_NN_OK;
}

int hi_nn_conv_s8(const hi_nn_conv_params_t *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                  const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *out,
                  const hi_nn_residual_t *residual, void *scratch, int32_t scratch_bytes) {
  const int32_t in_batch = p->in_h * p->in_w * p->in_c;
  const int32_t out_batch = p->out_h * p->out_w * p->out_c;
  const int32_t span_h = (p->k_h - 1) * p->dil_h;
  const int32_t span_w = (p->k_w - 1) * p->dil_w;
  int32_t b, oy, ox;
  if (p->in_c <= 0 || p->out_c <= 0 || p->k_h <= 0 || p->k_w <= 0) return HI_NN_ERROR_BAD_PARAMS;
  if (p->strip_w > 0) {
    return conv_strip(p, in, filter, bias_folded, mult, shift, out, residual, scratch, scratch_bytes);
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = in + b * in_batch;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      const int y_inside = in_y0 >= 0 && in_y0 + span_h < p->in_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        const int32_t out_index = b * out_batch + (oy * p->out_w + ox) * p->out_c;
        int8_t *out_px = out + out_index;
        const int inside = y_inside && in_x0 >= 0 && in_x0 + span_w < p->in_w;
        if (inside) {
          conv_pixel_interior(p, in_b, filter, bias_folded, mult, shift, out_px, residual, out_index, in_y0, in_x0);
        } else {
          conv_pixel_border(p, in_b, filter, bias, mult, shift, out_px, residual, out_index, in_y0, in_x0);
        }
      }
    }
  }
  return HI_NN_OK;
}
