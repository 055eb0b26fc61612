/* Classify int8 inputs read from the host with semihosting: reads tl_inputs.bin
 * (TL_MODEL_INPUT_BYTES per input) into the model's own input buffer, runs the model,
 * appends each int8 output to tl_outputs.bin, and exits 0. */
#include <stdint.h>
#include <string.h>

#include "tl_model.h"
#include "tl_semihost.h"

static int sh_open(const char *name, int mode) {
  uint32_t args[3];
  args[0] = (uint32_t)(uintptr_t)name;
  args[1] = (uint32_t)mode;
  args[2] = (uint32_t)strlen(name);
  return tl_semihost(TL_SYS_OPEN, args);
}

static int sh_rw(int op, int handle, const void *buf, uint32_t len) {
  uint32_t args[3];
  args[0] = (uint32_t)handle;
  args[1] = (uint32_t)(uintptr_t)buf;
  args[2] = len;
  return tl_semihost(op, args); /* bytes NOT transferred */
}

int main(void) {
  const int in = sh_open("tl_inputs.bin", 1);   /* "rb" */
  const int out = sh_open("tl_outputs.bin", 5); /* "wb" */
  uint32_t handle;
  if (in < 0 || out < 0) return 1;
  while (sh_rw(TL_SYS_READ, in, tl_model_input(), TL_MODEL_INPUT_BYTES) == 0) {
    tl_model_invoke(tl_model_input(), NULL);
    if (sh_rw(TL_SYS_WRITE, out, tl_model_output(), TL_MODEL_OUTPUT_BYTES) != 0) return 1;
  }
  handle = (uint32_t)in;
  tl_semihost(TL_SYS_CLOSE, &handle);
  handle = (uint32_t)out;
  tl_semihost(TL_SYS_CLOSE, &handle);
  tl_semihost(TL_SYS_WRITE0, "tinylarge: inputs classified\n");
  return 0;
}
