/* dc_tensor_label.h -- how every message and report of the library names a tensor: its name, or,
 * for a tensor without one (dc_keras.export.pack(strip_strings=True) / `dc-keras pack
 * --strip-strings` drops them all), "(unnamed tensor N)", N its index in its subgraph (the index
 * TFLite's get_tensor_details() gives, and the "tensor" column of `dc-keras inspect` shows for a
 * nameless tensor), with ", subgraph S" where the subgraph is known and not the first.  Used by the
 * op and the delegate (src/huffdecode_op.c) and dc_unpack() / dc_list_huffdecode()
 * (src/dc_unpack.c, whose names the LiteRT CompiledModel kernel and dc_keras.runtime print);
 * dc_keras/_flatbuffer.py's tensor_label says the same words.  (The TFLM kernel names every tensor
 * "output tensor N": TFLM keeps no names.)  Internal (header-only, static inline). */
#ifndef DC_TENSOR_LABEL_H_
#define DC_TENSOR_LABEL_H_

#include <stddef.h>
#include <stdio.h>

/* Bytes a label of a nameless tensor takes at most ("(unnamed tensor 2147483647, subgraph
 * 2147483647)" and the NUL). */
#define DC_TENSOR_LABEL_SIZE 56

/* `name` when it is not NULL or "", else the label above written to buf (n bytes) and returned.
 * subgraph < 1: not said. */
static inline const char* dc_tensor_label(const char* name, long index, long subgraph, char* buf,
                                          size_t n) {
  if (name && name[0]) return name;
  if (subgraph > 0) {
    snprintf(buf, n, "(unnamed tensor %ld, subgraph %ld)", index, subgraph);
  } else {
    snprintf(buf, n, "(unnamed tensor %ld)", index);
  }
  return buf;
}

#endif /* DC_TENSOR_LABEL_H_ */
