/* tinylarge int8 kernels; see tl_kernels.h for the arithmetic they follow. */
#include "tl_kernels.h"

#define TL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2 + 2^31) >> 32, saturating. */
static int32_t srdhm(int32_t a, int32_t b) {
  int64_t ab;
  int32_t nudge;
  if (a == b && a == INT32_MIN) return INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: arithmetic right shift rounding half away from zero. */
static int32_t rdivpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp saturating multiply by 2^exponent, exponent > 0. */
static int32_t sat_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((uint32_t)x << exponent);
}

int32_t tl_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  return rdivpot(srdhm((int32_t)((uint32_t)x << left_shift), multiplier), right_shift);
}

static int8_t tl_clamp(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)TL_MIN(TL_MAX(v, lo), hi);
}

void tl_conv2d(const tl_conv_params *p, const int8_t *in, const int8_t *filter,
               const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out) {
  const int f_depth = p->filter_depth;
  const int groups = p->in_c / f_depth;
  const int per_group = p->out_c / groups;
  int oy, ox, oc, ky, kx, ic;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int y0 = oy * p->stride_h - p->pad_h;
    for (ox = 0; ox < p->out_w; ++ox) {
      const int x0 = ox * p->stride_w - p->pad_w;
      for (oc = 0; oc < p->out_c; ++oc) {
        const int group = oc / per_group;
        int32_t acc = 0;
        for (ky = 0; ky < p->k_h; ++ky) {
          const int y = y0 + p->dil_h * ky;
          if (y < 0 || y >= p->in_h) continue;
          for (kx = 0; kx < p->k_w; ++kx) {
            const int x = x0 + p->dil_w * kx;
            const int8_t *src, *w;
            if (x < 0 || x >= p->in_w) continue;
            src = in + ((y * p->in_w) + x) * p->in_c + group * f_depth;
            w = filter + ((oc * p->k_h + ky) * p->k_w + kx) * f_depth;
            for (ic = 0; ic < f_depth; ++ic) acc += (int32_t)w[ic] * ((int32_t)src[ic] + p->input_offset);
          }
        }
        if (bias) acc += bias[oc];
        acc = tl_mul_by_quantized_multiplier(acc, mult[oc], shift[oc]) + p->output_offset;
        out[(oy * p->out_w + ox) * p->out_c + oc] = tl_clamp(acc, p->act_min, p->act_max);
      }
    }
  }
}

void tl_depthwise_conv2d(const tl_conv_params *p, const int8_t *in, const int8_t *filter,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift,
                         int8_t *out) {
  int oy, ox, ic, m, ky, kx;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int y0 = oy * p->stride_h - p->pad_h;
    for (ox = 0; ox < p->out_w; ++ox) {
      const int x0 = ox * p->stride_w - p->pad_w;
      for (ic = 0; ic < p->in_c; ++ic) {
        for (m = 0; m < p->depth_multiplier; ++m) {
          const int oc = m + ic * p->depth_multiplier;
          int32_t acc = 0;
          for (ky = 0; ky < p->k_h; ++ky) {
            const int y = y0 + p->dil_h * ky;
            if (y < 0 || y >= p->in_h) continue;
            for (kx = 0; kx < p->k_w; ++kx) {
              const int x = x0 + p->dil_w * kx;
              if (x < 0 || x >= p->in_w) continue;
              acc += (int32_t)filter[(ky * p->k_w + kx) * p->out_c + oc] *
                     ((int32_t)in[(y * p->in_w + x) * p->in_c + ic] + p->input_offset);
            }
          }
          if (bias) acc += bias[oc];
          acc = tl_mul_by_quantized_multiplier(acc, mult[oc], shift[oc]) + p->output_offset;
          out[(oy * p->out_w + ox) * p->out_c + oc] = tl_clamp(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void tl_fully_connected(const tl_fc_params *p, const int8_t *in, const int8_t *filter,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *out) {
  int b, o, d;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = in + b * p->in_depth;
    for (o = 0; o < p->out_depth; ++o) {
      const int8_t *w = filter + o * p->in_depth;
      const int k = p->per_channel ? o : 0;
      int32_t acc = 0;
      for (d = 0; d < p->in_depth; ++d) acc += (int32_t)w[d] * ((int32_t)x[d] + p->input_offset);
      if (bias) acc += bias[o];
      acc = tl_mul_by_quantized_multiplier(acc, mult[k], shift[k]) + p->output_offset;
      out[b * p->out_depth + o] = tl_clamp(acc, p->act_min, p->act_max);
    }
  }
}

static void pool(const tl_pool_params *p, const int8_t *in, int8_t *out, int average) {
  int oy, ox, c, y, x;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int y0 = oy * p->stride_h - p->pad_h;
    const int ys = TL_MAX(0, -y0), ye = TL_MIN(p->k_h, p->in_h - y0);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int x0 = ox * p->stride_w - p->pad_w;
      const int xs = TL_MAX(0, -x0), xe = TL_MIN(p->k_w, p->in_w - x0);
      for (c = 0; c < p->channels; ++c) {
        int32_t acc = average ? 0 : -128;
        int32_t count = 0;
        for (y = ys; y < ye; ++y) {
          for (x = xs; x < xe; ++x) {
            const int32_t v = in[((y0 + y) * p->in_w + (x0 + x)) * p->channels + c];
            if (average) acc += v;
            else acc = TL_MAX(acc, v);
            ++count;
          }
        }
        if (average && count > 0) {
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        out[(oy * p->out_w + ox) * p->channels + c] = tl_clamp(acc, p->act_min, p->act_max);
      }
    }
  }
}

void tl_average_pool(const tl_pool_params *p, const int8_t *in, int8_t *out) { pool(p, in, out, 1); }

void tl_max_pool(const tl_pool_params *p, const int8_t *in, int8_t *out) { pool(p, in, out, 0); }

void tl_add(const tl_add_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
  int i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = ((int32_t)a[i] + p->input1_offset) * (1 << p->left_shift);
    const int32_t y = ((int32_t)b[i] + p->input2_offset) * (1 << p->left_shift);
    const int32_t sx = tl_mul_by_quantized_multiplier(x, p->input1_multiplier, p->input1_shift);
    const int32_t sy = tl_mul_by_quantized_multiplier(y, p->input2_multiplier, p->input2_shift);
    const int32_t raw =
        tl_mul_by_quantized_multiplier(sx + sy, p->output_multiplier, p->output_shift) +
        p->output_offset;
    out[i] = tl_clamp(raw, p->act_min, p->act_max);
  }
}

/* gemmlowp fixed point: Q0.31 (F0), Q2.29 (F2), Q5.26 (input of exp), Q12.19 (sum). */
#define TL_F0_ONE INT32_MAX

/* exp(a) for a in [-1/4, 0), a in Q0.31 (gemmlowp's Taylor expansion around -1/8). */
static int32_t exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;  /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = a + (1 << 28);
  const int32_t x2 = srdhm(x, x);
  const int32_t x3 = srdhm(x2, x);
  const int32_t x4 = srdhm(x2, x2);
  const int32_t x4_over_4 = rdivpot(x4, 2);
  const int32_t poly = rdivpot(srdhm(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0, a in Q5.26; the result in Q0.31 (gemmlowp exp_on_negative_values). */
static int32_t exp_negative(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                         39332535,   720401,     242};
  const int32_t quarter = 1 << 24;
  const int32_t a_mod = (a & (quarter - 1)) - quarter;
  int32_t result = exp_quarter(sat_shl(a_mod, 5));
  const int32_t remainder = a_mod - a;
  int k;
  for (k = 0; k < 7; ++k) {
    if (remainder & (1 << (24 + k))) result = srdhm(result, multipliers[k]);
  }
  return a == 0 ? TL_F0_ONE : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (gemmlowp Newton-Raphson division). */
static int32_t one_over_one_plus(int32_t a) {
  const int64_t sum = (int64_t)a + TL_F0_ONE;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t c48_17 = 1515870810, c_neg32_17 = -1010580540, f2_one = 1 << 29;
  int32_t x = c48_17 + srdhm(half_denominator, c_neg32_17);
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t hdx = srdhm(half_denominator, x);
    x = x + sat_shl(srdhm(x, f2_one - hdx), 2);
  }
  return sat_shl(x, 1);
}

static int count_leading_zeros(uint32_t x) {
  int n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

void tl_softmax(const tl_softmax_params *p, const int8_t *in, int8_t *out) {
  int r, c;
  for (r = 0; r < p->rows; ++r) {
    const int8_t *x = in + r * p->depth;
    int8_t *y = out + r * p->depth;
    int32_t max_in_row = -128, sum = 0, shifted_scale, exponent;
    int headroom, bits_over_unit;
    for (c = 0; c < p->depth; ++c) max_in_row = TL_MAX(max_in_row, x[c]);
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t scaled =
            tl_mul_by_quantized_multiplier(diff, p->input_multiplier, p->input_left_shift);
        sum += rdivpot(exp_negative(scaled), 12);
      }
    }
    headroom = count_leading_zeros((uint32_t)sum);
    bits_over_unit = 12 - headroom;
    shifted_scale = one_over_one_plus(
        (int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
    exponent = bits_over_unit + 31 - 8;
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t scaled =
            tl_mul_by_quantized_multiplier(diff, p->input_multiplier, p->input_left_shift);
        const int32_t unsat = rdivpot(srdhm(shifted_scale, exp_negative(scaled)), exponent);
        y[c] = tl_clamp(unsat - 128, -128, 127);
      } else {
        y[c] = -128;
      }
    }
  }
}
