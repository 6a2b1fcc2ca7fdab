/*
 * tool_packed.h -- what dc_decode says to do about a packed tensor file the decoder refused
 * (header-only, static inline).
 *
 * One table, keyed by dc_status, appended to dc_strerror's text.  The words are the Python side's
 * (dc_keras/_flatbuffer.py: CORRUPT_FIX for a damaged tensor, NEWER_FIX for a format version newer
 * than the decoder), for a packed tensor file (made again by dc_keras.codec.encode), with the
 * tools' own remedy for the latter (rebuild them from a newer dc_keras).  dc_unpack needs none:
 * the library's `why` names the fix of a damaged model itself (dc_unpack.h:
 * DC_UNPACK_CORRUPT_FIX, DC_UNPACK_NEWER_FIX).
 */
#ifndef DC_TOOL_PACKED_H
#define DC_TOOL_PACKED_H

#include <stdio.h>
#include <string.h>

#include "../src/dc_version_note.h" /* dc_version_note: a refused version, named */
#include "dc_codec.h"

/* What to do about a packed tensor file refused with `st`, appended after "; " to the line naming
 * the problem.  NULL where dc_strerror(st) already says what to do (a build option: "rebuild the
 * decoder without it"). */
static inline const char* tool_packed_fix(dc_status st) {
  static char msg[512];
  switch (st) {
    case DC_OK: return NULL;
    case DC_ERR_VERSION: /* §10: newer than this decoder (a version below the first: corrupt) */
      snprintf(msg, sizeof msg,
               "it was encoded by a newer dc_keras: update dc_keras and rebuild these tools from "
               "it (make -C tflite_kernels tools), or encode it again with a version= this "
               "decoder reads (%u to %u, docs/FORMAT.md §10)",
               (unsigned)DC_VERSION_MIN, (unsigned)DC_VERSION_MAX);
      return msg;
    case DC_ERR_UNSUPPORTED:
      return strstr(dc_strerror(st), "rebuild")
                 ? NULL
                 : "rebuild libdc_huffdecode without the DC_CODEC_NO_* options "
                   "(make -C tflite_kernels tools)";
    case DC_ERR_OUTPUT_SIZE:
    case DC_ERR_ARGUMENT:
    case DC_ERR_WORKSPACE: /* the tool's call, not the data: never for a tool's own buffers */
      return "this is a bug of the tool, not of the file: please report it with the file";
    case DC_ERR_MAGIC:
      return "give a packed tensor file (the bytes dc_keras.codec.encode returns); if it is one, "
             "it is corrupt: encode it again or copy it again from its source";
    default: break;
  }
  /* damaged: truncated, checksum, header fields, code lengths, streams (CORRUPT_FIX) */
  return "the file is truncated or corrupt: encode it again (dc_keras.codec.encode) or copy it "
         "again from its source";
}

#endif /* DC_TOOL_PACKED_H */
