/*
 * tflm_stand_in.h -- a stand-in for TensorFlow Lite Micro's context (micro/tflm_abi.h), on the
 * host, for driving the HuffDecode TFLM kernel (micro/huffdecode_tflm.c) the way TFLM does:
 * init, Prepare, the memory planner, Invoke.  Shared by tools/mcu/tflm_mock_ctx.c (the lifecycle
 * test of tests/test_micro.py) and fuzz/fuzz_tflm.c (the libFuzzer harness); C99, header only.
 *
 * What it models, from TFLM's MicroContext / MicroInterpreterContext / MicroAllocator:
 *  - AllocatePersistentBuffer (the arena's tail): allowed in init and Prepare only (TFLM
 *    DCHECKs the interpreter's state); sizes rounded up to 16 B (MicroArenaBufferAlignment) are
 *    counted against tail_limit, NULL beyond it.  Each buffer is its own exact-size malloc, so
 *    ASan reports a kernel that writes past what it asked for.
 *  - RequestScratchBufferInArena: Prepare only, before planning; fails when fail_request is
 *    set or DC_SI_MAX_SCRATCH requests were made.
 *  - dc_si_plan (the planner, after every Prepare): gives each requested scratch buffer and, when
 *    the kernel left the output's data pointer NULL, the output tensor (out_bytes) memory filled
 *    with garbage, as planned memory shared with other tensors is; fails (as TFLM's planner
 *    fails AllocateTensors) when they need more than head_limit bytes.
 *  - GetScratchBuffer: Invoke only; NULL before planning, for an unknown index or when
 *    null_scratch is set.
 *  - GetEvalTensor: tensors[0] (the packed input) and tensors[1] (the output), NULL otherwise.
 *  - ReportError: formats the message into last_error (longest_error: the longest one seen);
 *    echo != 0 also prints "log MESSAGE" lines on stdout.
 * A call outside the phase TFLM allows it in is counted in out_of_phase (and refused).
 */
#ifndef DC_TFLM_STAND_IN_H_
#define DC_TFLM_STAND_IN_H_

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tflm_abi.h"

#define DC_SI_MAX_BLOCKS 16
#define DC_SI_MAX_SCRATCH 8
#define DC_SI_ALIGN 16u

typedef enum { DC_SI_IDLE = 0, DC_SI_INIT, DC_SI_PREPARE, DC_SI_INVOKE } DcSiPhase;

typedef struct DcTflmStandIn {
  DcTflmContext ctx; /* first: the callbacks get a DcTflmContext* and cast it back */
  DcTflmEvalTensor tensors[2];
  DcSiPhase phase;
  /* the arena's tail: persistent buffers */
  size_t tail_used, tail_limit;
  void* blocks[DC_SI_MAX_BLOCKS];
  size_t block_bytes[DC_SI_MAX_BLOCKS];
  int num_blocks, persistent_calls;
  /* the arena's head: scratch buffers and the planned output */
  size_t scratch_bytes[DC_SI_MAX_SCRATCH];
  void* scratch[DC_SI_MAX_SCRATCH];
  int scratch_count, scratch_gets, planned;
  size_t head_limit, head_used, out_bytes;
  void* planned_out; /* the output's planned memory (when the kernel left it to the planner) */
  int fail_request, null_scratch;
  int out_of_phase;
  /* ReportError */
  int errors, echo;
  size_t longest_error;
  char last_error[1024];
} DcTflmStandIn;

static inline DcTflmStandIn* dc_si_of(const DcTflmContext* ctx) {
  return (DcTflmStandIn*)(void*)ctx;
}

static inline void dc_si_report(struct DcTflmContext* ctx, const char* fmt, ...) {
  DcTflmStandIn* s = dc_si_of(ctx);
  size_t n;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->last_error, sizeof s->last_error, fmt, ap);
  va_end(ap);
  n = strlen(s->last_error);
  if (n > s->longest_error) s->longest_error = n;
  s->errors++;
  if (s->echo) printf("log %s\n", s->last_error);
}

static inline void* dc_si_persistent(struct DcTflmContext* ctx, size_t bytes) {
  DcTflmStandIn* s = dc_si_of(ctx);
  size_t aligned = (bytes + (DC_SI_ALIGN - 1)) & ~(size_t)(DC_SI_ALIGN - 1);
  void* p;
  s->persistent_calls++;
  if (s->phase != DC_SI_INIT && s->phase != DC_SI_PREPARE) {
    s->out_of_phase++;
    return NULL;
  }
  if (aligned < bytes || s->tail_used + aligned > s->tail_limit ||
      s->tail_used + aligned < s->tail_used || s->num_blocks == DC_SI_MAX_BLOCKS)
    return NULL;
  p = malloc(bytes ? bytes : 1);
  if (p == NULL) return NULL;
  memset(p, 0xC3, bytes); /* the arena's old contents */
  s->blocks[s->num_blocks] = p;
  s->block_bytes[s->num_blocks++] = bytes;
  s->tail_used += aligned;
  return p;
}

static inline DcTflmStatus dc_si_request_scratch(struct DcTflmContext* ctx, size_t bytes,
                                                 int* idx) {
  DcTflmStandIn* s = dc_si_of(ctx);
  if (s->phase != DC_SI_PREPARE) {
    s->out_of_phase++;
    return kDcTflmError;
  }
  if (s->fail_request || s->planned || s->scratch_count == DC_SI_MAX_SCRATCH) return kDcTflmError;
  s->scratch_bytes[s->scratch_count] = bytes;
  *idx = s->scratch_count++;
  return kDcTflmOk;
}

static inline void* dc_si_get_scratch(struct DcTflmContext* ctx, int idx) {
  DcTflmStandIn* s = dc_si_of(ctx);
  s->scratch_gets++;
  if (s->phase != DC_SI_INVOKE) {
    s->out_of_phase++;
    return NULL;
  }
  if (s->null_scratch || !s->planned || idx < 0 || idx >= s->scratch_count) return NULL;
  return s->scratch[idx];
}

static inline DcTflmEvalTensor* dc_si_get_eval(const struct DcTflmContext* ctx, int idx) {
  DcTflmStandIn* s = dc_si_of(ctx);
  return idx >= 0 && idx < 2 ? &s->tensors[idx] : NULL;
}

/* A zeroed stand-in with its callbacks; tail_limit and head_limit unlimited. */
static inline void dc_si_setup(DcTflmStandIn* s) {
  memset(s, 0, sizeof *s);
  s->ctx.ReportError = dc_si_report;
  s->ctx.AllocatePersistentBuffer = dc_si_persistent;
  s->ctx.RequestScratchBufferInArena = dc_si_request_scratch;
  s->ctx.GetScratchBuffer = dc_si_get_scratch;
  s->ctx.GetEvalTensor = dc_si_get_eval;
  s->tail_limit = (size_t)-1;
  s->head_limit = (size_t)-1;
}

static inline void* dc_si_init_op(DcTflmStandIn* s, const DcTflmRegistration* reg,
                                  const char* options, size_t length) {
  void* p;
  s->phase = DC_SI_INIT;
  p = reg->init(&s->ctx, options, length);
  s->phase = DC_SI_IDLE;
  return p;
}

/* Prepare (a fresh plan follows: planned is cleared, as each AllocateTensors plans anew). */
static inline DcTflmStatus dc_si_prepare(DcTflmStandIn* s, const DcTflmRegistration* reg,
                                         DcTflmNode* node) {
  DcTflmStatus st;
  s->planned = 0;
  s->phase = DC_SI_PREPARE;
  st = reg->prepare(&s->ctx, node);
  s->phase = DC_SI_IDLE;
  return st;
}

static inline DcTflmStatus dc_si_invoke(DcTflmStandIn* s, const DcTflmRegistration* reg,
                                        DcTflmNode* node) {
  DcTflmStatus st;
  s->phase = DC_SI_INVOKE;
  st = reg->invoke(&s->ctx, node);
  s->phase = DC_SI_IDLE;
  return st;
}

/* Head bytes the planner needs: every scratch buffer requested (one op: all live at once) and,
 * if the kernel left the output's data pointer NULL, the output's out_bytes. */
static inline size_t dc_si_head_need(const DcTflmStandIn* s) {
  size_t need = s->tensors[1].data.data == NULL && s->planned_out == NULL ? s->out_bytes : 0;
  int i;
  for (i = 0; i < s->scratch_count; ++i) need += s->scratch_bytes[i];
  return need;
}

/* TFLM's planner after Prepare: 0 (AllocateTensors fails) when the head needs more than
 * head_limit; else scratch buffers and (if left NULL) the output get garbage-filled memory. */
static inline int dc_si_plan(DcTflmStandIn* s) {
  int i;
  s->head_used = dc_si_head_need(s);
  if (s->head_used > s->head_limit) return 0;
  for (i = 0; i < s->scratch_count; ++i) {
    if (s->scratch[i] == NULL) {
      s->scratch[i] = malloc(s->scratch_bytes[i] ? s->scratch_bytes[i] : 1);
      if (s->scratch[i] == NULL) return 0;
      memset(s->scratch[i], 0xA5, s->scratch_bytes[i]);
    }
  }
  if (s->tensors[1].data.data == NULL) {
    if (s->planned_out == NULL) {
      s->planned_out = malloc(s->out_bytes ? s->out_bytes : 1);
      if (s->planned_out == NULL) return 0;
    }
    memset(s->planned_out, 0x5A, s->out_bytes);
    s->tensors[1].data.data = s->planned_out;
  }
  s->planned = 1;
  return 1;
}

/* Other ops run between two invokes: planned memory (scratch, a planned output) is overwritten. */
static inline void dc_si_clobber_planned(DcTflmStandIn* s, unsigned char byte) {
  int i;
  for (i = 0; i < s->scratch_count; ++i)
    if (s->scratch[i]) memset(s->scratch[i], byte, s->scratch_bytes[i]);
  if (s->planned_out) memset(s->planned_out, byte, s->out_bytes);
}

/* 1 if p points into a persistent buffer with at least `bytes` bytes from p on (addresses compared
 * as integers: the buffers are separate objects). */
static inline int dc_si_is_persistent(const DcTflmStandIn* s, const void* p, size_t bytes) {
  uintptr_t q = (uintptr_t)p;
  int i;
  for (i = 0; i < s->num_blocks; ++i) {
    uintptr_t b = (uintptr_t)s->blocks[i];
    if (q >= b && q - b <= s->block_bytes[i] && s->block_bytes[i] - (q - b) >= bytes) return 1;
  }
  return 0;
}

static inline void dc_si_release(DcTflmStandIn* s) {
  int i;
  for (i = 0; i < s->num_blocks; ++i) free(s->blocks[i]);
  for (i = 0; i < s->scratch_count; ++i) free(s->scratch[i]);
  free(s->planned_out);
  s->num_blocks = s->scratch_count = 0;
  s->planned_out = NULL;
}

#endif /* DC_TFLM_STAND_IN_H_ */
