/*
 * dc_unpack -- turn a packed .tflite (HuffDecode ops) into a plain .tflite with the C library
 * (dc_unpack.h): no TensorFlow, no Python.  The same code an app calls at first launch.
 *
 *   usage: dc_unpack PACKED.tflite OUT.tflite     (dc_unpack --help)
 *
 * Reads PACKED (never modified), writes OUT atomically: a temporary file next to OUT, then
 * renamed over OUT (a new OUT gets mode 0666 minus the umask, a replaced one keeps its mode, a
 * symbolic link is written through; a read-only OUT, a device, a FIFO, a link that leads to no
 * file (dangling or a loop) and an OUT in a directory the user may not write are refused before
 * the work).  Prints
 * "unpacked IN (N bytes) -> OUT (M bytes)" on success; on any error it prints one line
 * naming the problem and the fix, and exits with status 1 (2 for a usage error).  It refuses
 * (status 1, nothing written) an OUT that is the same file as PACKED (same device and inode:
 * also a hard link, a symlink or another spelling of the path) and a PACKED without
 * HuffDecode ops (nothing to unpack; as `dc-keras unpack`), and an OUT that is an existing
 * .tflite model other than the one it writes (refuse_another_model).  The library's message names the fix
 * of a damaged model or packed tensor itself (dc_unpack.h: the words dc_keras.runtime.unpack
 * gives, which calls the same library); unpack_fix adds the fix of the few messages without one.
 */
#define _XOPEN_SOURCE 700 /* POSIX.1-2008 + XSI: realpath (tool_io.h) */
#include "dc_unpack.h"

#include "tool_io.h"

static const char USAGE[] =
    "usage: dc_unpack PACKED.tflite OUT.tflite\n"
    "Turns a packed .tflite (HuffDecode ops, from dc_keras.export.pack / dc-keras pack) into a\n"
    "plain .tflite any TFLite/LiteRT runtime or accelerator loads.  PACKED is never modified;\n"
    "OUT is written atomically (temporary file + rename; a new OUT gets mode 0666 minus the\n"
    "umask, a replaced one keeps its mode; a read-only OUT, a device or a FIFO is refused).\n"
    "exit status: 0 written; 1 error (one line on stderr naming the problem and the fix,\n"
    "nothing written; also when OUT is PACKED, PACKED has no HuffDecode op, or OUT is an\n"
    "existing .tflite of another model, which would be lost); 2 usage error\n"
    "(also an empty path or \"-\": files only, no standard input or output).\n"
    "A damaged PACKED (a truncated or corrupt model, a packed tensor with a checksum mismatch\n"
    "or a bad header) is named as such, with the fix: export it again or copy it again from\n"
    "its source; a packed tensor of a newer format version with the update it needs.\n";

/* What to do about the library's error `st` when `why` does not say it (dc_unpack.h: MALFORMED,
 * BAD_PACKED and UNSUPPORTED name their fix, a refused packed tensor's included): NULL if `why`
 * has one. */
static const char* unpack_fix(dc_unpack_status st, const char* why) {
  const char* fix = NULL;
  if (st == DC_UNPACK_TOO_LARGE && !strstr(why, "dc_keras.export.unpack")) {
    fix =
        "unpack it with dc_keras.export.unpack or `dc-keras unpack`, which write the weights "
        "after the flatbuffer, or run the packed model with the HuffDecode op or delegate, "
        "which decode at load";
  } else if (st == DC_UNPACK_NO_MEMORY) {
    fix = "free memory or unpack it on a machine with more";
  }
  return fix && !strstr(why, fix) ? fix : NULL;
}

/* dc-keras unpack's rule (review s55): an existing OUT that is a .tflite model (the flatbuffer
 * identifier "TFL3" at byte 4) other than the one this writes is another model, which the rename
 * would lose: `dc_unpack *.tflite` in a folder of two packed models unpacked the first over the
 * second.  A re-run (the same bytes) and an OUT that is no .tflite are left to the write.  Without
 * the flatbuffer of both read here, "another model" is any other bytes: this model unpacked by
 * dc-keras (whose writer lays the file out differently, FORMAT.md §15) is refused too, with the
 * same fix.  1 (the line printed) when refused. */
static int refuse_another_model(const char* in, const char* path, const uint8_t* out,
                                size_t out_n) {
  struct stat st;
  uint8_t* old = NULL;
  size_t old_n = 0;
  int another;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || tool_read_file(path, &old, &old_n) != 0)
    return 0;
  another = old_n >= 8 && memcmp(old + 4, "TFL3", 4) == 0 &&
            (old_n != out_n || memcmp(old, out, out_n) != 0);
  free(old);
  if (!another) return 0;
  fprintf(
      stderr,
      "dc_unpack: OUT %s is an existing .tflite model other than %s unpacked (another model, "
      "packed or not, or this one written by another tool): dc_unpack replaces an OUT it wrote "
      "before, never another model, which would be lost (did a shell pattern such as *.tflite "
      "expand to two models? dc_unpack takes one PACKED and one OUT); nothing written. Choose a "
      "new OUT, or delete ",
      path, in);
  tool_shell_arg(stderr, path);
  fputs(" first to replace it\n", stderr);
  return 1;
}

int main(int argc, char** argv) {
  tool_open_std_fds(); /* before any file is opened */
  if (argc == 2 && tool_is_help(argv[1])) {
    fputs(USAGE, stdout);
    return 0;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: dc_unpack PACKED.tflite OUT.tflite (dc_unpack --help: what it does)\n");
    return 2;
  }
  if (tool_check_path_args("dc_unpack", argc, argv)) return 2;
  uint8_t *in = NULL, *out = NULL;
  size_t in_n = 0, out_n = 0;
  char why[512];
  if (tool_check_output("dc_unpack", argv[1], argv[2])) return 1; /* before the work */
  if (tool_read_file(argv[1], &in, &in_n) != 0) {
    tool_read_error("dc_unpack", argv[1], errno, "packed .tflite", ".tflite");
    return 1;
  }
  dc_unpack_status st = dc_unpack(in, in_n, &out, &out_n, why, sizeof why);
  /* dc_unpack returns a model without HuffDecode ops as an identical copy */
  int unchanged = st == DC_UNPACK_OK && out_n == in_n && memcmp(out, in, in_n) == 0;
  free(in);
  if (st != DC_UNPACK_OK) {
    const char* fix = unpack_fix(st, why);
    fprintf(stderr, "dc_unpack: %s: %s%s%s\n", argv[1], why, fix ? "; " : "", fix ? fix : "");
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
  if (refuse_another_model(argv[1], argv[2], out, out_n)) {
    dc_unpack_free(out);
    return 1;
  }
  int w = tool_write_output("dc_unpack", argv[2], out, out_n);
  dc_unpack_free(out);
  if (w != 0) return 1;
  printf("unpacked %s (%zu bytes) -> %s (%zu bytes)\n", argv[1], in_n, argv[2], out_n);
  return tool_finish_stdout("dc_unpack");
}
