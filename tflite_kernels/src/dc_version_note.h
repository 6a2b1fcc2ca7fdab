/* dc_version_note.h -- the words for a packed tensor's format version that the decoder refused
 * (DC_ERR_VERSION), said after dc_strerror's text by dc_unpack() (src/dc_unpack.c), the HuffDecode
 * op (src/huffdecode_op.c) and the dc_decode tool; dc_keras/codec/_decode.py says the same words.
 * Internal (header-only, static inline); not part of the public API. */
#ifndef DC_VERSION_NOTE_H_
#define DC_VERSION_NOTE_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dc_codec.h"

/* For packed bytes `data` (`size` bytes) refused with `st`: when st is DC_ERR_VERSION, the version
 * byte (data[4], after the magic the decoder checked first) in buf -- ": it is version 9, which only
 * a decoder with DC_VERSION_MAX >= 9 reads" (a newer file: returns 1) or ": version 0 does not
 * exist (the first is 1)" (a damaged byte: returns 0).  Any other status: buf "", returns 0. */
static inline int dc_version_note(dc_status st, const uint8_t* data, size_t size, char* buf,
                                  size_t n) {
  if (n) buf[0] = '\0';
  if (st != DC_ERR_VERSION || data == NULL || size <= 4 || n == 0) return 0;
  if (data[4] > DC_VERSION_MAX) {
    snprintf(buf, n, ": it is version %u, which only a decoder with DC_VERSION_MAX >= %u reads",
             (unsigned)data[4], (unsigned)data[4]);
    return 1;
  }
  if (data[4] < DC_VERSION_MIN) {
    snprintf(buf, n, ": version %u does not exist (the first is %u)", (unsigned)data[4],
             (unsigned)DC_VERSION_MIN);
  }
  return 0;
}

#endif /* DC_VERSION_NOTE_H_ */
