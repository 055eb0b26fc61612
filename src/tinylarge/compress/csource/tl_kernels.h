/* tinylarge int8 kernels: TFLite's integer arithmetic in plain C99.
 *
 * Each kernel follows the TensorFlow Lite reference integer kernel of the same
 * operator (tensorflow/lite/kernels/internal/reference/integer_ops/ and
 * reference/softmax.h) as TFLite Micro runs it, so outputs are bit-identical:
 * int32 accumulation of (input + input_offset) * weight, the int32 bias, then
 * requantization by MultiplyByQuantizedMultiplier (the double-rounding form:
 * a saturating rounding doubling high multiply, then a rounding right shift).
 * Tensors are NHWC, batch 1 for the 2-D operators. No allocation, no floats.
 */
#ifndef TL_KERNELS_H_
#define TL_KERNELS_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x * multiplier * 2^shift with TFLite's rounding; multiplier is Q0.31. */
int32_t tl_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift);

typedef struct {
  int16_t in_h, in_w, in_c;
  int16_t out_h, out_w, out_c;
  int16_t k_h, k_w;
  int16_t stride_h, stride_w;
  int16_t dil_h, dil_w;
  int16_t pad_h, pad_w;
  int16_t filter_depth;     /* conv: input channels per group */
  int16_t depth_multiplier; /* depthwise only */
  int32_t input_offset;     /* -input zero point */
  int32_t output_offset;    /* output zero point */
  int32_t act_min, act_max; /* fused activation as an int8 range */
} tl_conv_params;

typedef struct {
  int16_t in_h, in_w, channels;
  int16_t out_h, out_w;
  int16_t k_h, k_w;
  int16_t stride_h, stride_w;
  int16_t pad_h, pad_w;
  int32_t act_min, act_max;
} tl_pool_params;

typedef struct {
  int32_t batches, in_depth, out_depth;
  int32_t input_offset, output_offset;
  int32_t act_min, act_max;
  int32_t per_channel; /* 1: one multiplier per output unit, 0: one for all */
} tl_fc_params;

typedef struct {
  int32_t size;
  int32_t input1_offset, input2_offset, output_offset;
  int32_t input1_multiplier, input2_multiplier, output_multiplier;
  int32_t input1_shift, input2_shift, output_shift;
  int32_t left_shift;
  int32_t act_min, act_max;
} tl_add_params;

typedef struct {
  int32_t rows, depth;
  int32_t input_multiplier, input_left_shift, diff_min;
} tl_softmax_params;

/* Conv (per-channel, grouped when filter depth < input depth). filter [C_out, KH, KW, C_in/groups]. */
void tl_conv2d(const tl_conv_params *p, const int8_t *in, const int8_t *filter,
               const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out);
/* Depthwise conv (per-channel). filter [1, KH, KW, C_out]. */
void tl_depthwise_conv2d(const tl_conv_params *p, const int8_t *in, const int8_t *filter,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift,
                         int8_t *out);
/* Fully connected. filter [out_depth, in_depth]; mult/shift per unit or one value. */
void tl_fully_connected(const tl_fc_params *p, const int8_t *in, const int8_t *filter,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *out);
void tl_average_pool(const tl_pool_params *p, const int8_t *in, int8_t *out);
void tl_max_pool(const tl_pool_params *p, const int8_t *in, int8_t *out);
/* Elementwise add of two equal-shaped tensors. */
void tl_add(const tl_add_params *p, const int8_t *a, const int8_t *b, int8_t *out);
/* Softmax over the last axis (output scale 1/256, zero point -128). */
void tl_softmax(const tl_softmax_params *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TL_KERNELS_H_ */
