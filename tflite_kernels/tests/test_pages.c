/* test_pages.c -- dc_pages.h: packed bytes in a read-only file mapping are dropped from the
 * process (its resident pages of that mapping go down) and read back unchanged; anonymous and
 * writable memory is never touched; dc_populate_pages keeps contents. */
#if defined(__linux__)
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_pages.h"
#include "dc_test.h"

static uint8_t pattern(size_t i) {
  return (uint8_t)(i * 2654435761u >> 13);
}

static void test_anonymous(void) {
  const size_t n = 1u << 20;
  uint8_t* a = malloc(n);
  for (size_t i = 0; i < n; ++i) a[i] = pattern(i);
  CHECK(dc_release_file_pages(a, n) == 0, "malloc'd memory released");
  dc_populate_pages(a, n);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += a[i] != pattern(i);
  CHECK(bad == 0, "anonymous memory changed: %zu bytes", bad);
  CHECK(dc_release_file_pages(NULL, 10) == 0, "NULL");
  free(a);
  uint8_t* z = calloc(1, 1);
  dc_populate_pages(z, 1); /* less than a page: nothing to do */
  CHECK(z[0] == 0, "1 byte");
  free(z);
}

#if defined(__linux__)
/* Resident kB of the mapping that starts at `start` (/proc/self/smaps), -1 if not found. */
static long rss_kb(const void* start) {
  FILE* f = fopen("/proc/self/smaps", "r");
  char line[4352];
  long rss = -1;
  int in = 0;
  if (!f) return -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
      if (in) break;
      in = lo == (unsigned long)(uintptr_t)start;
    } else if (in && sscanf(line, "Rss: %ld kB", &rss) == 1) {
      break;
    }
  }
  fclose(f);
  return rss;
}

static void test_file(void) {
  char path[] = "/tmp/dc_test_pagesXXXXXX";
  const size_t n = 256u << 10;
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0) return;
  uint8_t* buf = malloc(n);
  for (size_t i = 0; i < n; ++i) buf[i] = pattern(i);
  CHECK(write(fd, buf, n) == (ssize_t)n, "write");
  uint8_t* ro = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
  uint8_t* rw = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  CHECK(ro != MAP_FAILED && rw != MAP_FAILED, "mmap");
  if (ro != MAP_FAILED && rw != MAP_FAILED) {
    CHECK(memcmp(ro, buf, n) == 0 && memcmp(rw, buf, n) == 0, "file contents"); /* all resident */
    long before = rss_kb(ro);
    /* a range starting mid-page: only the whole pages inside are released */
    size_t got = dc_release_file_pages(ro + 100, n - 100);
    long after = rss_kb(ro);
    CHECK(got >= n - 2 * 4096 && got <= n - 100, "released %zu of %zu bytes", got, n);
    if (before < 0) { /* e.g. qemu-user on a 32-bit guest: smaps shows the host's addresses */
      printf("test_pages: /proc/self/smaps does not list the mapping: resident size not checked\n");
    } else {
      CHECK(before >= 200 && after >= 0 && after <= before - 200,
            "resident kB of the mapping: %ld before, %ld after", before, after);
    }
    CHECK(memcmp(ro, buf, n) == 0, "read-only mapping changed after release");
    rw[7] ^= 0xff; /* a private writable mapping may differ from its file: never dropped */
    CHECK(dc_release_file_pages(rw, n) == 0, "writable mapping released");
    CHECK(rw[7] + pattern(7) == 255, "writable mapping lost its change"); /* x ^ 0xff = 255 - x */
    CHECK(dc_release_file_pages(ro + n - 4096, 8192) == 0, "range past the mapping released");
  }
  if (ro != MAP_FAILED) munmap(ro, n);
  if (rw != MAP_FAILED) munmap(rw, n);
  close(fd);
  unlink(path);
  free(buf);
}
#endif

int main(void) {
  test_anonymous();
#if defined(__linux__)
  test_file();
#endif
  if (failures) {
    fprintf(stderr, "test_pages: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_pages: all passed\n");
  return 0;
}
