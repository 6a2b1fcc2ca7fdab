/*
 * dc_decode -- decode packed tensors (docs/FORMAT.md) to raw little-endian bytes with the
 * C decoder of libdc_huffdecode.so.  Used by the cross-architecture test (`make test-arm`):
 * the same packed files are decoded by the x86_64, aarch64 and armv7 builds and the outputs
 * compared byte for byte.
 *
 *   usage: dc_decode PACKED OUT [PACKED OUT ...]
 *
 * For each pair it prints "dtype=D shape=[d0,d1,...] bytes=N" and writes the decoded bytes
 * to OUT.  On any error (unreadable file, malformed packed tensor) it prints the decoder's
 * message naming the file and exits with status 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dc_codec.h"
#include "tool_io.h"

static int decode_one(const char* in_path, const char* out_path) {
  uint8_t* data = NULL;
  size_t size = 0;
  dc_tensor_info info;
  dc_status st;
  void* out;
  FILE* f;
  uint32_t i;
  int ok;

  if (tool_read_file(in_path, &data, &size) != 0) {
    fprintf(stderr, "dc_decode: cannot read %s\n", in_path);
    return 1;
  }
  st = dc_peek(data, size, &info);
  if (st != DC_OK) {
    fprintf(stderr, "dc_decode: %s: %s\n", in_path, dc_strerror(st));
    free(data);
    return 1;
  }
  if ((uint64_t)(size_t)info.output_bytes != info.output_bytes) {
    fprintf(stderr, "dc_decode: %s: tensor too large for this platform\n", in_path);
    free(data);
    return 1;
  }
  out = malloc(info.output_bytes ? (size_t)info.output_bytes : 1);
  if (!out) {
    fprintf(stderr, "dc_decode: %s: out of memory\n", in_path);
    free(data);
    return 1;
  }
  st = dc_decode(data, size, out, (size_t)info.output_bytes);
  free(data);
  if (st != DC_OK) {
    fprintf(stderr, "dc_decode: %s: %s\n", in_path, dc_strerror(st));
    free(out);
    return 1;
  }
  f = fopen(out_path, "wb");
  ok = f && fwrite(out, 1, (size_t)info.output_bytes, f) == (size_t)info.output_bytes;
  if (f && fclose(f) != 0) ok = 0;
  free(out);
  if (!ok) {
    fprintf(stderr, "dc_decode: cannot write %s\n", out_path);
    return 1;
  }
  printf("dtype=%u shape=[", (unsigned)info.dtype);
  for (i = 0; i < info.rank; ++i) printf("%s%llu", i ? "," : "", (unsigned long long)info.dims[i]);
  printf("] bytes=%llu\n", (unsigned long long)info.output_bytes);
  return 0;
}

int main(int argc, char** argv) {
  int i;
  if (argc < 3 || (argc - 1) % 2 != 0) {
    fprintf(stderr, "usage: %s PACKED OUT [PACKED OUT ...]\n", argv[0]);
    return 2;
  }
  for (i = 1; i + 1 < argc; i += 2)
    if (decode_one(argv[i], argv[i + 1]) != 0) return 1;
  return 0;
}
