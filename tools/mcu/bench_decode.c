/* bench_decode.c -- decode cost and stack of the packed-tensor decoder on Cortex-M (qemu).
 *
 * For every tensor of bench_vectors.h (gen_bench_vectors.py): decode once into a static
 * buffer, counting instructions (mcu.h: run under `qemu -icount shift=0`) and the stack
 * high-water mark (painting), then check the output's FNV-1a hash.  With the v1 decoder it
 * also counts the Fletcher-64 checksum pass alone (dc_checksum_update over the output) to show
 * its share.  One line per tensor: "BENCH name elements nonzero packed insns stack ws ck_insns",
 * then "BENCH_DONE failures".  Exit status = number of failures. */
#include <stdio.h>
#include <string.h>

#include "bench_vectors.h"
#include "dc_codec.h"
#include "mcu.h"
#if !defined(DC_MAX_WORKSPACE)
#include "dc_codec_internal.h" /* dc_checksum_update (v1) */
#endif

static uint8_t out[BENCH_MAX_OUT] __attribute__((aligned(8)));
#if defined(DC_MAX_WORKSPACE)
static uint8_t ws[DC_MAX_WORKSPACE] __attribute__((aligned(8)));
#endif

static uint32_t fnv1a(const uint8_t* p, size_t n) {
  uint32_t h = 0x811C9DC5u;
  size_t i;
  for (i = 0; i < n; ++i) h = (h ^ p[i]) * 0x01000193u;
  return h;
}

/* Calibration of the counter: a loop of exactly 2 instructions per iteration. */
static uint32_t calibrate(uint32_t iterations) {
  uint32_t ticks, n = iterations;
  mcu_counter_start();
  __asm volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
  ticks = mcu_counter_ticks();
  return ticks * MCU_INSNS_PER_TICK;
}

int main(void) {
  unsigned v, failures = 0;
  printf("BENCH_STACK_SIZE %u\n", (unsigned)mcu_stack_size());
  printf("BENCH_CALIBRATION %lu %lu\n", 2000000ul, (unsigned long)calibrate(1000000u));
  for (v = 0; v < BENCH_COUNT; ++v) {
    const bench_vector* t = &bench_vectors[v];
    dc_status st;
    uint32_t ticks, ck_ticks = 0;
    size_t stack, ws_bytes = 0;
#if defined(DC_MAX_WORKSPACE)
    st = dc_workspace_size(t->packed, t->packed_size, &ws_bytes);
    if (st != DC_OK || ws_bytes > sizeof ws) {
      printf("FAIL %s: workspace %s\n", t->name, dc_strerror(st));
      failures++;
      continue;
    }
    mcu_stack_paint();
    mcu_counter_start();
    st = dc_decode_ws(t->packed, t->packed_size, out, t->raw_size, ws, ws_bytes);
    ticks = mcu_counter_ticks();
    stack = mcu_stack_used();
#else
    mcu_stack_paint();
    mcu_counter_start();
    st = dc_decode(t->packed, t->packed_size, out, t->raw_size);
    ticks = mcu_counter_ticks();
    stack = mcu_stack_used();
    {
      uint32_t a = 1, b = 0;
      mcu_counter_start();
      dc_checksum_update(&a, &b, out, t->raw_size / 4);
      ck_ticks = mcu_counter_ticks();
    }
#endif
    if (st != DC_OK || fnv1a(out, t->raw_size) != t->fnv) {
      printf("FAIL %s: %s / hash %08lx != %08lx\n", t->name, dc_strerror(st),
             (unsigned long)fnv1a(out, t->raw_size), (unsigned long)t->fnv);
      failures++;
      continue;
    }
    printf("BENCH %s %s %lu %lu %lu %lu %lu %lu %lu\n", t->name, t->layout,
           (unsigned long)t->elements, (unsigned long)t->nonzero, (unsigned long)t->packed_size,
           (unsigned long)ticks * MCU_INSNS_PER_TICK, (unsigned long)stack, (unsigned long)ws_bytes,
           (unsigned long)ck_ticks * MCU_INSNS_PER_TICK);
  }
  printf("BENCH_DONE %u\n", failures);
  return (int)failures;
}
