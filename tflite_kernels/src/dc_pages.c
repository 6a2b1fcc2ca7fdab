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
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* 1 if [a, b) lies inside one mapping of /proc/self/maps that is file-backed (inode != 0) and
 * not writable (a private writable mapping may hold modified copies of the file's pages). */
static int in_readonly_file_map(uintptr_t a, uintptr_t b) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[4352];
  int ok = 0, fresh = 1; /* fresh: the buffer starts a line */
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    const int starts = fresh;
    unsigned long lo, hi, inode;
    char perms[8];
    fresh = strchr(line, '\n') != NULL; /* a longer line continues in the next buffer */
    if (!starts || sscanf(line, "%lx-%lx %7s %*s %*s %lu", &lo, &hi, perms, &inode) != 4) continue;
    if (a >= lo && a < hi) {
      ok = b <= hi && inode != 0 && perms[0] == 'r' && perms[1] != 'w';
      break;
    }
  }
  fclose(f);
  return ok;
}

DC_API size_t dc_release_file_pages(const void* p, size_t n) {
  const long page = sysconf(_SC_PAGESIZE);
  if (!p || page <= 0) return 0;
  const uintptr_t mask = (uintptr_t)page - 1u;
  const uintptr_t a = ((uintptr_t)p + mask) & ~mask, b = ((uintptr_t)p + n) & ~mask;
  if (b <= a || !in_readonly_file_map(a, b)) return 0;
  if (madvise((void*)a, (size_t)(b - a), MADV_DONTNEED) != 0) return 0;
  return (size_t)(b - a);
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
DC_API size_t dc_release_file_pages(const void* p, size_t n) {
  (void)p, (void)n;
  return 0;
}

DC_API void dc_populate_pages(void* p, size_t n) {
  (void)p, (void)n;
}
#endif
