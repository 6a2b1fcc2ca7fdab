/* fuzz_unpack.c -- libFuzzer harness of dc_unpack (dc_unpack.c): a packed .tflite from untrusted
 * bytes (an app may unpack a downloaded model).  Input: the whole file.
 *
 * Properties: no memory error, UB or leak (ASan/UBSan/LSan); a failure returns NULL output and a
 * non-empty message; a success returns at least the input's size (the input is copied, then
 * Buffers appended) and the same first 8 bytes (root offset, file identifier), and unpacking the
 * result again succeeds or fails cleanly (no HuffDecode op of the input is left to decode, but a
 * hostile file may alias tables, so only memory safety is required there).  The result is
 * bounded to DC_FUZZ_MAX_OUTPUT bytes (dc_unpack_bounded) to keep the harness small.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_unpack.h"

#define DC_FUZZ_NAME "fuzz_unpack"
#include "dc_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t* out = (uint8_t*)1;
  size_t n = 12345;
  char why[256];
  dc_unpack_status st =
      dc_unpack_bounded(data, size, DC_FUZZ_MAX_OUTPUT, &out, &n, why, sizeof why);
  if (st != DC_UNPACK_OK) {
    REQUIRE(out == NULL && n == 0);
    REQUIRE(why[0] != '\0' && memchr(why, '\0', sizeof why) != NULL);
    return 0;
  }
  REQUIRE(out != NULL && n >= size && n >= 8 && memcmp(out, data, 8) == 0);
  uint8_t* again = NULL;
  size_t n2 = 0;
  if (dc_unpack_bounded(out, n, DC_FUZZ_MAX_OUTPUT, &again, &n2, why, sizeof why) == DC_UNPACK_OK) {
    REQUIRE(again != NULL && n2 >= n);
  } else {
    REQUIRE(again == NULL && why[0] != '\0');
  }
  dc_unpack_free(again);
  dc_unpack_free(out);
  return 0;
}
