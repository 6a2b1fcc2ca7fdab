/*
 * huffdecode_tflm_check.c -- DcTflmCheckModel (huffdecode_tflm.h): the checks a firmware runs on its
 * model array before tflite::GetModel, for what TFLM itself does not check and faults or misreads
 * on (docs/microcontrollers.md, *Checking the model array*).  C99, no TFLM header, optional: a
 * firmware that does not call it leaves this file out of its build (the op needs only
 * huffdecode_tflm.c and dc_codec.c).
 */
#include <string.h>

#include "huffdecode_tflm.h"

/* A flatbuffer (flatbuffers' binary format): u32 offset of the root table, the 4-byte file
 * identifier; a table starts with an i32 offset back to its vtable (u16 vtable bytes, u16 table
 * bytes, a u16 offset per field, 0: absent); a vector field holds a u32 offset to a u32 count and
 * the elements.  schema.fbs: Model fields 0 version, 2 subgraphs, 4 buffers; Buffer fields 0
 * data, 1 offset (u64, > 1: the data lie after the flatbuffer). */
static uint32_t rd32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* n bytes at pos lie inside size */
static int fits(size_t pos, size_t n, size_t size) {
  return pos <= size && n <= size - pos;
}

/* *t: the table the u32 offset at e (inside size) points to; 0 if it points outside */
static int fb_ref(const uint8_t* m, size_t size, size_t e, size_t* t) {
  const uint32_t rel = rd32(m + e);
  if (rel == 0 || (size_t)rel > size - e) return 0;
  *t = e + rel;
  return 1;
}

/* *at: where field f of the table at t is (0: absent), its value needing n bytes; 0 if damaged */
static int fb_field(const uint8_t* m, size_t size, size_t t, unsigned f, size_t n, size_t* at) {
  size_t vt, vt_bytes, t_bytes, off;
  int32_t back;
  if ((t & 3) != 0 || !fits(t, 4, size)) return 0;
  back = (int32_t)rd32(m + t);
  if (back >= 0 ? (size_t)back > t : (size_t)(-(int64_t)back) > size - t) return 0;
  vt = back >= 0 ? t - (size_t)back : t + (size_t)(-(int64_t)back);
  if ((vt & 1) != 0 || !fits(vt, 4, size)) return 0;
  vt_bytes = (size_t)m[vt] | (size_t)m[vt + 1] << 8;
  t_bytes = (size_t)m[vt + 2] | (size_t)m[vt + 3] << 8;
  if (vt_bytes < 4 || (vt_bytes & 1) != 0 || !fits(vt, vt_bytes, size) || t_bytes < 4 ||
      !fits(t, t_bytes, size))
    return 0;
  *at = 0;
  if (4 + 2 * (size_t)f + 2 > vt_bytes) return 1;
  off = (size_t)m[vt + 4 + 2 * f] | (size_t)m[vt + 5 + 2 * f] << 8;
  if (off == 0) return 1;
  if (off < 4 || off + n > t_bytes) return 0;
  *at = t + off;
  return 1;
}

/* The vector that field f of the table at t points to: *vec (0: absent), *count elements of
 * elem bytes each; 0 if damaged */
static int fb_vector(const uint8_t* m, size_t size, size_t t, unsigned f, size_t elem, size_t* vec,
                     uint32_t* count) {
  size_t at;
  *vec = 0;
  *count = 0;
  if (!fb_field(m, size, t, f, 4, &at)) return 0;
  if (at == 0) return 1;
  if (!fb_ref(m, size, at, vec) || (*vec & 3) != 0 || !fits(*vec, 4, size)) return 0;
  *count = rd32(m + *vec);
  return (size_t)*count <= (size - *vec - 4) / elem;
}

DcTflmModelCheck DcTflmCheckModel(const void* model, size_t size) {
  const uint8_t* m = (const uint8_t*)model;
  size_t root, at, subgraphs, buffers;
  uint32_t n, i;
  if (m == NULL || size < 8) return DC_TFLM_MODEL_MISSING;
  if (((uintptr_t)m & 15) != 0) return DC_TFLM_MODEL_MISALIGNED;
  if (memcmp(m + 4, "TFL3", 4) != 0) return DC_TFLM_MODEL_NOT_TFLITE;
  root = rd32(m);
  if (!fb_field(m, size, root, 0, 4, &at)) return DC_TFLM_MODEL_DAMAGED;
  if (at == 0 || rd32(m + at) != 3) return DC_TFLM_MODEL_SCHEMA_VERSION;
  if (!fb_vector(m, size, root, 2, 4, &subgraphs, &n)) return DC_TFLM_MODEL_DAMAGED;
  if (n == 0) return DC_TFLM_MODEL_NO_SUBGRAPH;
  for (i = 0; i < n; ++i) { /* each subgraph's table (its contents are TFLM's to read) */
    const size_t e = subgraphs + 4 + 4 * (size_t)i;
    size_t t;
    if (!fb_ref(m, size, e, &t) || !fb_field(m, size, t, 0, 0, &at)) return DC_TFLM_MODEL_DAMAGED;
  }
  if (!fb_vector(m, size, root, 4, 4, &buffers, &n)) return DC_TFLM_MODEL_DAMAGED;
  for (i = 0; i < n; ++i) {
    const size_t e = buffers + 4 + 4 * (size_t)i;
    size_t b, data;
    uint32_t bytes;
    if (!fb_ref(m, size, e, &b) || !fb_vector(m, size, b, 0, 1, &data, &bytes))
      return DC_TFLM_MODEL_DAMAGED;
    if (!fb_field(m, size, b, 1, 8, &at)) return DC_TFLM_MODEL_DAMAGED;
    if (at != 0 && (rd32(m + at) > 1 || rd32(m + at + 4) != 0)) {
      return DC_TFLM_MODEL_EXTERNAL_BUFFERS;
    }
  }
  return DC_TFLM_MODEL_OK;
}

/* One array (not a string per case): with -fdata-sections its own section, which the linker drops
 * with DcTflmModelCheckMessage when a firmware calls only DcTflmCheckModel. */
#ifndef TF_LITE_STRIP_ERROR_STRINGS
static const char kModelCheckMessages[] =
    "model array: OK\0"
    "model array: NULL or under 8 bytes: pass the .tflite array and its size in bytes\0"
    "model array: not 16-byte aligned, which TFLM's loads need (on Cortex-M a HardFault in "
    "AllocateTensors): declare it alignas(16) (as generate_cc_arrays.py does) or copy it to"
    " a 16-byte aligned buffer\0"
    "model array: not a .tflite (no TFL3 identifier at bytes 4-7): embed the file dc-keras "
    "pack wrote, or flash the image again if it was\0"
    "model array: an offset points past its end: the image is truncated or damaged (flash "
    "it again), or the size passed is not the model's\0"
    "model array: schema version not 3 (TFLite's): the image is damaged (flash it again) or"
    " not a TFLite model\0"
    "model array: buffers stored after the flatbuffer, which TFLM does not read: pack with "
    "--buffers inline (dc-keras unpack IN PLAIN; dc-keras pack --buffers inline PLAIN OUT)\0"
    "model array: no subgraph: the image is damaged (flash it again) or not a model\0"
    "model array: not a DcTflmModelCheck value\0";
#endif

const char* DcTflmModelCheckMessage(DcTflmModelCheck check) {
#ifndef TF_LITE_STRIP_ERROR_STRINGS
  const char* p = kModelCheckMessages;
  unsigned k = (unsigned)check;
  if (k > (unsigned)DC_TFLM_MODEL_NO_SUBGRAPH) k = (unsigned)DC_TFLM_MODEL_NO_SUBGRAPH + 1;
  while (k--) p += strlen(p) + 1;
  return p;
#else
  (void)check;
  return "";
#endif
}
