/*
 * tool_packed.h -- what the command-line tools in this folder say to do about a packed tensor the
 * decoder refused (header-only, static inline: each tool uses what it needs).
 *
 * One table, keyed by dc_status, for both tools: dc_decode appends it to dc_strerror's text,
 * dc_unpack to the library's `why` of a DC_UNPACK_BAD_PACKED model (whose dc_strerror text names
 * the status).  The words are the Python side's (dc_keras/_flatbuffer.py: CORRUPT_FIX for a damaged
 * tensor, NEWER_FIX for a format version newer than the decoder), with the tools' own remedy for
 * the latter (rebuild them from a newer dc_keras) -- so that a damaged file gets the same fix
 * from `dc_unpack` as from dc_keras.runtime.unpack (tests/test_c_tools.py compares them).
 */
#ifndef DC_TOOL_PACKED_H
#define DC_TOOL_PACKED_H

#include <stdio.h>
#include <string.h>

#include "dc_codec.h"

/* What to do about a packed tensor refused with `st`, appended after "; " to the line naming the
 * problem.  `model`: 1 for a packed tensor inside a .tflite (dc_unpack: made again by exporting the
 * model), 0 for a packed tensor file (dc_decode: made again by dc_keras.codec.encode).  NULL where
 * dc_strerror(st) already says what to do (a build option: "rebuild the decoder without it"). */
static inline const char* tool_packed_fix(dc_status st, int model) {
  static char msg[512];
  switch (st) {
    case DC_OK: return NULL;
    case DC_ERR_VERSION: /* §10: newer than this decoder (a version below the first: corrupt) */
      snprintf(msg, sizeof msg,
               "it was %s by a newer dc_keras: update dc_keras and rebuild these tools from it "
               "(make -C tflite_kernels tools), or %s again with a version= this decoder reads "
               "(%u to %u, docs/FORMAT.md §10)",
               model ? "packed" : "encoded", model ? "pack it" : "encode it",
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
      if (!model) {
        return "give a packed tensor file (the bytes dc_keras.codec.encode returns); if it is "
               "one, it is corrupt: encode it again or copy it again from its source";
      }
      break;
    default: break;
  }
  /* damaged: truncated, checksum, header fields, code lengths, streams (CORRUPT_FIX) */
  return model ? "the file is truncated or corrupt: export it again or copy it again from its "
                 "source"
               : "the file is truncated or corrupt: encode it again (dc_keras.codec.encode) or "
                 "copy it again from its source";
}

/* The status whose dc_strerror text a message of the library holds (the longest one found), or
 * DC_OK if none: dc_unpack's `why` names a refused packed tensor by that text. */
static inline dc_status tool_status_in(const char* why) {
  dc_status found = DC_OK;
  size_t best = 0;
  for (int s = DC_ERR_TRUNCATED; s <= DC_ERR_UNSUPPORTED; ++s) {
    const char* text = dc_strerror((dc_status)s);
    size_t len = strlen(text);
    if (len > best && strstr(why, text)) {
      found = (dc_status)s;
      best = len;
    }
  }
  return found;
}

#endif /* DC_TOOL_PACKED_H */
