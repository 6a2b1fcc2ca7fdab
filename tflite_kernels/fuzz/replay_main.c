/* replay_main.c -- runs a libFuzzer harness (LLVMFuzzerTestOneInput) over files or directories
 * of inputs without libFuzzer, so that any C compiler with ASan/UBSan (gcc too) replays the seed
 * corpus and the committed regression inputs (fuzz/regressions/) in `make test-sanitize`.
 *
 * Usage: replay_<harness> PATH...   (a directory means every regular file in it)
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static long g_count;

static int run_file(const char* path) {
  FILE* f = fopen(path, "rb");
  uint8_t* buf;
  long n;
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return 1;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    fprintf(stderr, "replay: cannot size %s\n", path);
    return 1;
  }
  buf = (uint8_t*)malloc(n ? (size_t)n : 1); /* exact size: overreads are caught */
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(buf);
    fprintf(stderr, "replay: cannot read %s\n", path);
    return 1;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  g_count++;
  return 0;
}

static int run_path(const char* path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "replay: no such file or directory: %s\n", path);
    return 1;
  }
  if (S_ISDIR(st.st_mode)) {
    DIR* d = opendir(path);
    struct dirent* e;
    int bad = 0;
    if (!d) return 1;
    while ((e = readdir(d)) != NULL) {
      char child[4096];
      struct stat cs;
      if (e->d_name[0] == '.') continue;
      snprintf(child, sizeof child, "%s/%s", path, e->d_name);
      if (stat(child, &cs) == 0 && S_ISREG(cs.st_mode)) bad |= run_file(child);
    }
    closedir(d);
    return bad;
  }
  return run_file(path);
}

int main(int argc, char** argv) {
  int i, bad = 0;
  for (i = 1; i < argc; ++i) bad |= run_path(argv[i]);
  printf("replay %s: %ld inputs, no failure\n", argc > 0 ? argv[0] : "?", g_count);
  return bad;
}
