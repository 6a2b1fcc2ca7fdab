/*
 * tool_io.h -- file reading shared by the command-line tools in this folder; header-only, each tool
 * is one translation unit.
 */
#ifndef DC_TOOL_IO_H
#define DC_TOOL_IO_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Reads the whole file at path into a malloc'ed buffer (*data, *size); -1 (nothing allocated) if
 * it cannot be opened or read, or memory runs out. */
static int tool_read_file(const char* path, uint8_t** data, size_t* size) {
  FILE* f = fopen(path, "rb");
  size_t cap = 1 << 16, len = 0;
  uint8_t* buf = f ? (uint8_t*)malloc(cap) : NULL;
  int bad;
  while (buf) {
    uint8_t* bigger;
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap) break;
    bigger = (uint8_t*)realloc(buf, cap * 2);
    if (!bigger) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = bigger;
    cap *= 2;
  }
  bad = !f || !buf || ferror(f);
  if (f) fclose(f);
  if (bad) {
    free(buf);
    return -1;
  }
  *data = buf;
  *size = len;
  return 0;
}

#endif /* DC_TOOL_IO_H */
