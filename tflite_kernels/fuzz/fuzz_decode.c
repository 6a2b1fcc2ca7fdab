/* fuzz_decode.c -- libFuzzer harness of the packed-tensor decoder (dc_codec.h).
 *
 * The input is one packed tensor (docs/FORMAT.md).  dc_peek must either fail or describe an
 * output that dc_decode then fills: the output buffer is an exact-size heap block (so ASan sees
 * any write past it) when the declared size is at most DC_FUZZ_MAX_OUTPUT; larger tensors
 * (constant or all-background ones, the only kind a short input can declare, FORMAT.md §9) are
 * still peeked but not decoded, which bounds the harness's memory.
 *
 * Properties checked besides memory safety (any violation aborts):
 *  - dc_peek and dc_decode agree on the status of structural errors: if dc_peek fails,
 *    dc_decode fails with the same status;
 *  - info is self-consistent (rank <= 8, output_bytes = num_elements * element_size,
 *    num_elements = product of dims) and the output it declares is bounded by the input size
 *    (FORMAT.md §9: no allocation the input does not justify);
 *  - dc_decode rejects a wrong output size with DC_ERR_OUTPUT_SIZE;
 *  - dc_decode_ws, with an exact-size heap workspace of dc_workspace_size() bytes (so ASan
 *    sees any access past it), gives the same status and bytes as dc_decode, and rejects a
 *    workspace one byte short with DC_ERR_WORKSPACE (dc_decode's larger workspace takes the
 *    x86-64 table paths: the §6 pair table, the §5 spread codebook; the exact one the plain
 *    BMI2 or portable loops);
 *  - dc_decode with dc_codec_use_simd(0) (the portable reference loops and CRC) gives the same
 *    status and bytes as with the x86-64 fast paths, and as with dc_codec_portable_fast(2) (the
 *    portable §5 spread-codebook loop forced; fuzz.sh's DC_SPREAD_MIN_ELEMENTS=16 lets short
 *    inputs reach it);
 *  - decoding is deterministic (a second decode into another buffer gives the same bytes);
 *  - dc_strerror returns a non-empty string for every status.
 *
 * Build: make -C tflite_kernels fuzz-smoke (see docs/fuzzing.md).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_codec.h"

#define DC_FUZZ_NAME "fuzz_decode"
#include "dc_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dc_tensor_info info;
  dc_status st, st2;
  uint8_t *out, *out2;
  uint64_t n = 1;
  uint32_t r;
  /* exact-size heap copy: the fuzzer's own buffer is exact too, this also covers size 0 */
  uint8_t* buf = (uint8_t*)malloc(size ? size : 1);
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);

  st = dc_peek(buf, size, &info);
  {
    const char* msg = dc_strerror(st);
    REQUIRE(msg != NULL && msg[0] != '\0');
  }
  if (st != DC_OK) {
    uint8_t dummy[8];
    st2 = dc_decode(buf, size, dummy, sizeof dummy);
    REQUIRE(st2 == st);
    free(buf);
    return 0;
  }
  REQUIRE(info.version >= DC_VERSION_MIN && info.version <= DC_VERSION_MAX);
  REQUIRE(info.rank <= DC_MAX_RANK);
  for (r = 0; r < info.rank; ++r) n *= info.dims[r];
  REQUIRE(n == info.num_elements);
  REQUIRE(info.num_elements <= DC_MAX_ELEMENTS);
  REQUIRE(info.element_bits == 2 || info.element_bits == 4 || info.element_bits == 8 ||
          info.element_bits == 16 || info.element_bits == 32 ||
          (info.element_bits == 64 && info.version >= 3));
  REQUIRE(info.element_size == (info.element_bits < 8 ? 1 : info.element_bits / 8));
  REQUIRE(info.output_bytes == (info.num_elements * info.element_bits + 7) / 8);
  REQUIRE(info.layout <= (info.version == 1  ? DC_LAYOUT_SPARSE
                          : info.version < 4 ? DC_LAYOUT_CONTEXT_SPARSE
                          : info.version < 5 ? DC_LAYOUT_INT_PLANES
                                             : DC_LAYOUT_SPARSE_PLANES));
  /* FORMAT.md §9, no blow-up: the declared output is bounded by the input size (dense N <= 8 *
   * stream bytes, sparse N < (8 * stream bytes + 1) * 4096; §14 up to C/2 + 1 <= 5 times that, as
   * up to C/2 entries in a row may be zero-bit) unless zero-bit codes can code any number of
   * elements, and then it is at most DC_MAX_ZERO_BIT_OUTPUT. */
  REQUIRE(info.output_bytes <= DC_MAX_ZERO_BIT_OUTPUT ||
          info.output_bytes <= info.element_size * DC_MAX_SYMBOLS *
                                   (info.layout == DC_LAYOUT_CONTEXT_SPARSE
                                        ? 5ull * (8ull * size + 5)
                                        : 8ull * size + 1));

  if (info.output_bytes > DC_FUZZ_MAX_OUTPUT) {
    free(buf);
    return 0;
  }
  {
    size_t nb = (size_t)info.output_bytes;
    out = (uint8_t*)malloc(nb ? nb : 1);
    out2 = (uint8_t*)malloc(nb + 1);
    REQUIRE(out != NULL && out2 != NULL);
    st = dc_decode(buf, size, out, nb);
    /* wrong output sizes are rejected before anything is written */
    REQUIRE(dc_decode(buf, size, out2, nb + 1) == DC_ERR_OUTPUT_SIZE);
    if (nb) REQUIRE(dc_decode(buf, size, out2, nb - 1) == DC_ERR_OUTPUT_SIZE);
    {
      size_t wsz = 0;
      uint8_t* ws;
      REQUIRE(dc_workspace_size(buf, size, &wsz) == DC_OK && wsz <= DC_MAX_WORKSPACE);
      ws = (uint8_t*)malloc(wsz ? wsz : 1);
      REQUIRE(ws != NULL);
      st2 = dc_decode_ws(buf, size, out2, nb, ws, wsz);
      REQUIRE(st2 == st);
      if (st == DC_OK) REQUIRE(nb == 0 || memcmp(out, out2, nb) == 0);
      if (wsz > 2 && info.num_elements > 0)
        REQUIRE(dc_decode_ws(buf, size, out2, nb, ws, wsz - 1) == DC_ERR_WORKSPACE);
      free(ws);
    }
    {
      const int was = dc_codec_use_simd(0);
      st2 = dc_decode(buf, size, out2, nb);
      dc_codec_use_simd(was);
      REQUIRE(st2 == st);
      if (st == DC_OK) REQUIRE(nb == 0 || memcmp(out, out2, nb) == 0);
    }
    {
      const int was = dc_codec_portable_fast(2);
      st2 = dc_decode(buf, size, out2, nb);
      dc_codec_portable_fast(was);
      REQUIRE(st2 == st);
      if (st == DC_OK) REQUIRE(nb == 0 || memcmp(out, out2, nb) == 0);
    }
    if (st == DC_OK && info.dtype == DC_DTYPE_BOOL) { /* §16: a decoded bool is 0 or 1 */
      size_t i;
      for (i = 0; i < nb; ++i) REQUIRE(out[i] <= 1);
    }
    free(out);
    free(out2);
  }
  free(buf);
  return 0;
}
