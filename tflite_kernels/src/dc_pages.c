/*
 * dc_pages.c -- dc_release_file_pages (dc_pages.h).
 */
#if defined(__linux__)
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise */
#endif
#include "dc_pages.h"

#include <stdint.h>

#if defined(__linux__)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The whole of /proc/self/maps (NUL-terminated, malloc'd; NULL on failure).  fread, not fgets:
 * the library keeps to the C functions every target libc provides (tools/arm/check_abi.py). */
static char* read_maps(void) {
  FILE* f = fopen("/proc/self/maps", "r");
  size_t len = 0, cap = 1u << 16;
  char* buf = f ? (char*)malloc(cap) : NULL;
  while (buf) {
    len += fread(buf + len, 1, cap - 1 - len, f);
    if (len < cap - 1) break;
    char* nb = (char*)realloc(buf, 2 * cap);
    if (!nb) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap *= 2;
  }
  if (f) fclose(f);
  if (buf) buf[len] = '\0';
  return buf;
}

/* 1 if [a, b) lies inside one mapping of /proc/self/maps that is file-backed (inode != 0) and
 * not writable (a private writable mapping may hold modified copies of the file's pages). */
static int in_readonly_file_map(uintptr_t a, uintptr_t b) {
  char* maps = read_maps();
  int ok = 0;
  for (char* line = maps; line && *line;) {
    char* next = strchr(line, '\n');
    unsigned long lo, hi, inode;
    char perms[8];
    if (next) *next++ = '\0';
    if (sscanf(line, "%lx-%lx %7s %*s %*s %lu", &lo, &hi, perms, &inode) == 4 && a >= lo &&
        a < hi) {
      ok = b <= hi && inode != 0 && perms[0] == 'r' && perms[1] != 'w';
      break;
    }
    line = next;
  }
  free(maps);
  return ok;
}

/* The whole pages [*a, *b) inside [p, p + n); 0 if there are none. */
static int whole_pages(const void* p, size_t n, uintptr_t* a, uintptr_t* b) {
  const long page = sysconf(_SC_PAGESIZE);
  if (!p || page <= 0) return 0;
  const uintptr_t mask = (uintptr_t)page - 1u;
  *a = ((uintptr_t)p + mask) & ~mask;
  *b = ((uintptr_t)p + n) & ~mask;
  return *b > *a;
}

DC_API int dc_file_pages_readonly(const void* p, size_t n) {
  uintptr_t a, b;
  return whole_pages(p, n, &a, &b) && in_readonly_file_map(a, b);
}

DC_API size_t dc_drop_file_pages(const void* p, size_t n) {
  uintptr_t a, b;
  if (!whole_pages(p, n, &a, &b) || madvise((void*)a, (size_t)(b - a), MADV_DONTNEED) != 0)
    return 0;
  return (size_t)(b - a);
}

DC_API size_t dc_release_file_pages(const void* p, size_t n) {
  return dc_file_pages_readonly(p, n) ? dc_drop_file_pages(p, n) : 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 uapi; older kernels answer EINVAL (ignored) */
#endif

DC_API void dc_populate_pages(void* p, size_t n) {
  const long page = sysconf(_SC_PAGESIZE);
  if (!p || page <= 0) return;
  const uintptr_t mask = (uintptr_t)page - 1u;
  const uintptr_t a = ((uintptr_t)p + mask) & ~mask, b = ((uintptr_t)p + n) & ~mask;
  if (b > a) (void)madvise((void*)a, (size_t)(b - a), MADV_POPULATE_WRITE);
}
#else
DC_API int dc_file_pages_readonly(const void* p, size_t n) {
  (void)p, (void)n;
  return 0;
}

DC_API size_t dc_drop_file_pages(const void* p, size_t n) {
  (void)p, (void)n;
  return 0;
}

DC_API size_t dc_release_file_pages(const void* p, size_t n) {
  (void)p, (void)n;
  return 0;
}

DC_API void dc_populate_pages(void* p, size_t n) {
  (void)p, (void)n;
}
#endif
