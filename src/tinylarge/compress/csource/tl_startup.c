/* Minimal Cortex-M startup for tinylarge firmware on an MPS2 board (and any Cortex-M).
 * A vector table, a reset handler that copies .data, clears .bss, enables the FPU
 * and calls main(), and ARM semihosting (bkpt 0xAB) for file I/O and exit. */
#include <stddef.h>
#include <stdint.h>

#include "tl_semihost.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__;
int main(void);
void tl_reset(void);

int tl_semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void tl_exit(int status) {
  /* SYS_EXIT with ADP_Stopped_ApplicationExit (0) or ADP_Stopped_RunTimeErrorUnknown */
  tl_semihost(0x18, (const void *)(uintptr_t)(status == 0 ? 0x20026u : 0x20023u));
  for (;;) {
  }
}

static void tl_fault(void) { tl_exit(1); }

typedef void (*tl_vector)(void);
__attribute__((section(".vectors"), used)) const tl_vector tl_vectors[16] = {
    (tl_vector)&__stack_top__, tl_reset, tl_fault, tl_fault, tl_fault, tl_fault, tl_fault,
    0, 0, 0, 0, tl_fault, tl_fault, 0, tl_fault, tl_fault};

void tl_reset(void) {
  uint32_t *src = &__data_load__, *dst = &__data_start__;
  while (dst < &__data_end__) *dst++ = *src++;
  for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
#if defined(__ARM_FP)
  *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10 and CP11 full access */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
  tl_exit(main());
}
