/*
 * dc_unpack -- turn a packed .tflite (HuffDecode ops) into a plain .tflite with the C library
 * (dc_unpack.h): no TensorFlow, no Python.  The same code an app calls at first launch.
 *
 *   usage: dc_unpack PACKED.tflite OUT.tflite
 *
 * Reads PACKED (never modified), writes OUT atomically: a temporary file next to OUT
 * (created with mode 0666 minus the umask), then renamed over OUT.  Prints
 * "unpacked IN (N bytes) -> OUT (M bytes)" on success; on any error it prints one line
 * naming the problem and the fix, and exits with status 1 (2 for a usage error).  It refuses
 * (status 1, nothing written) an OUT that is the same file as PACKED (same device and inode:
 * also a hard link, a symlink or another spelling of the path) and a PACKED without
 * HuffDecode ops (nothing to unpack; as `dc-keras unpack`).
 */
#define _POSIX_C_SOURCE 200809L
#include "dc_unpack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool_io.h"

/* Writes data to path through a temporary file and rename (mode 0666 & ~umask). */
static int write_atomic(const char* path, const uint8_t* data, size_t size) {
  size_t n = strlen(path) + 32;
  char* tmp = (char*)malloc(n);
  if (!tmp) return -1;
  snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
  int ok = fd >= 0;
  size_t done = 0;
  while (ok && done < size) {
    ssize_t w = write(fd, data + done, size - done);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) done += (size_t)w;
  }
  if (fd >= 0) ok = (fsync(fd) == 0) & ok, ok = (close(fd) == 0) & ok;
  if (ok) ok = rename(tmp, path) == 0;
  int err = errno;
  if (!ok && fd >= 0) unlink(tmp);
  free(tmp);
  errno = err;
  return ok ? 0 : -1;
}

/* What to do about errno `err` when reading the input / writing the output (as dc-keras says). */
static const char* io_fix(int err, int output) {
  if (!output) {
    return err == ENOENT   ? "check the path of the packed .tflite"
           : err == EISDIR ? "give the path of a .tflite file"
           : err == EACCES ? "the input must be readable by you"
                           : "check the input file";
  }
  if (err == ENOENT)
    return "its directory does not exist: create it first or choose another output path";
  if (err == ENOTDIR)
    return "a part of its directory is a file: choose an output path in an existing directory";
  if (err == EISDIR) return "give a file name for the output, e.g. DIR/model.tflite";
  if (err == EACCES || err == EPERM || err == EROFS) {
    return "its directory is not writable: choose an output path in a writable directory";
  }
  if (err == ENOSPC || err == EDQUOT) {
    return "free some space or choose an output path on another disk (nothing was written)";
  }
  return "choose another output path";
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: dc_unpack PACKED.tflite OUT.tflite\n");
    return 2;
  }
  uint8_t *in = NULL, *out = NULL;
  size_t in_n = 0, out_n = 0;
  char why[512];
  struct stat si, so;
  if (stat(argv[1], &si) == 0 && stat(argv[2], &so) == 0 && si.st_dev == so.st_dev &&
      si.st_ino == so.st_ino) {
    fprintf(stderr,
            "dc_unpack: the output %s is the same file as the input %s, which is never "
            "overwritten: choose a different output path\n",
            argv[2], argv[1]);
    return 1;
  }
  if (stat(argv[2], &so) == 0 && S_ISDIR(so.st_mode)) { /* before the work, not after it */
    fprintf(stderr, "dc_unpack: cannot write %s: %s; %s\n", argv[2], strerror(EISDIR),
            io_fix(EISDIR, 1));
    return 1;
  }
  if (tool_read_file(argv[1], &in, &in_n) != 0) {
    int err = errno;
    fprintf(stderr, "dc_unpack: cannot read %s: %s; %s\n", argv[1], strerror(err), io_fix(err, 0));
    return 1;
  }
  dc_unpack_status st = dc_unpack(in, in_n, &out, &out_n, why, sizeof why);
  /* dc_unpack returns a model without HuffDecode ops as an identical copy */
  int unchanged = st == DC_UNPACK_OK && out_n == in_n && memcmp(out, in, in_n) == 0;
  free(in);
  if (st != DC_UNPACK_OK) {
    fprintf(stderr, "dc_unpack: %s: %s\n", argv[1], why);
    return 1;
  }
  if (unchanged) {
    dc_unpack_free(out);
    fprintf(stderr,
            "dc_unpack: %s is not packed (it has no HuffDecode op): it already is an ordinary "
            ".tflite, nothing to unpack; %s was not written\n",
            argv[1], argv[2]);
    return 1;
  }
  int w = write_atomic(argv[2], out, out_n);
  dc_unpack_free(out);
  if (w != 0) {
    int err = errno;
    fprintf(stderr, "dc_unpack: cannot write %s: %s; %s\n", argv[2], strerror(err), io_fix(err, 1));
    return 1;
  }
  printf("unpacked %s (%zu bytes) -> %s (%zu bytes)\n", argv[1], in_n, argv[2], out_n);
  return 0;
}
