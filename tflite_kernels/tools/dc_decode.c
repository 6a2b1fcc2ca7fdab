/*
 * dc_decode -- decode packed tensors (docs/FORMAT.md) to raw little-endian bytes with the
 * C decoder of libdc_huffdecode.so.  Used by the cross-architecture test (`make test-arm`):
 * the same packed files are decoded by the x86_64, aarch64 and armv7 builds and the outputs
 * compared byte for byte.
 *
 *   usage: dc_decode PACKED OUT [PACKED OUT ...]     (dc_decode --help)
 *
 * For each pair, in order, it prints "dtype=D shape=[d0,d1,...] bytes=N" and writes the decoded
 * bytes to OUT atomically (a temporary file next to OUT, renamed over OUT: a new OUT gets mode
 * 0666 minus the umask, a replaced one keeps its mode, a symbolic link is written through; one
 * that leads to no file, dangling or a loop, is refused); PACKED
 * is never modified.  At the first error (unreadable file, malformed packed tensor, OUT the same
 * file as PACKED, an OUT that is read-only, a device or a FIFO, unwritable OUT) it prints one line naming the file, the problem
 * and the fix, leaves that OUT as it was and exits with status 1 (the pairs before it are
 * written); 2 for a usage error.  A packed tensor the decoder refuses gets dc_strerror's text and
 * tool_packed.h's fix (damaged: encode it again or copy it again; a newer format version: which
 * decoder reads it, and the update).  Before any pair is decoded, an OUT that is another pair's
 * PACKED or an existing packed tensor file (an OUT gone missing: `dc_decode *.dcp`) is refused
 * (status 1, nothing written), and an empty path or "-" (files only) is a usage error.
 */
#define _XOPEN_SOURCE 700 /* POSIX.1-2008 + XSI: realpath (tool_io.h) */
#include "dc_codec.h"
#include "tool_io.h"
#include "tool_packed.h"

static const char USAGE[] =
    "usage: dc_decode PACKED OUT [PACKED OUT ...]\n"
    "Decodes each packed tensor PACKED (one tensor in docs/FORMAT.md's bytes, as\n"
    "dc_keras.codec.encode writes it; not a whole .tflite: use dc_unpack for a model) to OUT as\n"
    "raw little-endian elements in C order, and prints \"dtype=D shape=[...] bytes=N\".\n"
    "PACKED is never modified; OUT is written atomically (temporary file + rename; a new OUT\n"
    "gets mode 0666 minus the umask, a replaced one keeps its mode; a read-only OUT, a device\n"
    "or a FIFO is refused).\n"
    "exit status: 0 all written; 1 error (one line on stderr naming the problem and the fix;\n"
    "that OUT is left as it was, the pairs before it are written; nothing is written when an\n"
    "OUT is another pair's PACKED or an existing packed tensor file); 2 usage error (also an\n"
    "empty path or \"-\": files only, no standard input or output).\n"
    "A damaged PACKED (truncated, a checksum mismatch, a bad header) is named as such, with the\n"
    "fix: encode it again (dc_keras.codec.encode) or copy it again from its source; one of a\n"
    "newer format version with the decoder it needs (update dc_keras, rebuild the tools).\n";

/* The first bytes of a .tflite flatbuffer: root offset, then the file identifier "TFL3". */
static int looks_like_tflite(const uint8_t* data, size_t size) {
  return size >= 8 && data[4] == 'T' && data[5] == 'F' && data[6] == 'L' && data[7] == '3';
}

/* The one line for a packed tensor dc_peek or dc_decode refused: the file, the problem
 * (dc_strerror's text; for a version, which one and which decoder reads it) and the fix. */
static void packed_error(const char* path, dc_status st, const uint8_t* data, size_t size) {
  const char* fix = tool_packed_fix(st);
  char detail[160];
  /* called for every status: it sets detail to "" for all but DC_ERR_VERSION */
  const int newer = dc_version_note(st, data, size, detail, sizeof detail);
  if (st == DC_ERR_VERSION && !newer) {
    fix = tool_packed_fix(DC_ERR_STREAM); /* a version below the first: the damaged-file fix */
  }
  fprintf(stderr, "dc_decode: %s: %s%s%s%s\n", path, dc_strerror(st), detail, fix ? "; " : "",
          fix ? fix : "");
}

static int decode_one(const char* in_path, const char* out_path) {
  uint8_t* data = NULL;
  size_t size = 0;
  dc_tensor_info info;
  dc_status st;
  void* out;
  uint32_t i;
  int w;

  if (tool_check_output("dc_decode", in_path, out_path)) return 1; /* before the work */
  if (tool_read_file(in_path, &data, &size) != 0) {
    tool_read_error("dc_decode", in_path, errno, "packed tensor", "packed tensor");
    return 1;
  }
  st = dc_peek(data, size, &info);
  if (st == DC_ERR_MAGIC && looks_like_tflite(data, size)) {
    fprintf(stderr,
            "dc_decode: %s is a .tflite model, not a packed tensor: dc_decode takes one packed "
            "tensor (docs/FORMAT.md); to decode a whole packed model use dc_unpack %s OUT.tflite\n",
            in_path, in_path);
    free(data);
    return 1;
  }
  if (st != DC_OK) {
    packed_error(in_path, st, data, size);
    free(data);
    return 1;
  }
  if ((uint64_t)(size_t)info.output_bytes != info.output_bytes) {
    fprintf(stderr,
            "dc_decode: %s: tensor too large for this platform (%llu decoded bytes): decode it "
            "on a 64-bit machine\n",
            in_path, (unsigned long long)info.output_bytes);
    free(data);
    return 1;
  }
  out = malloc(info.output_bytes ? (size_t)info.output_bytes : 1);
  if (!out) {
    fprintf(stderr,
            "dc_decode: %s: out of memory (%llu decoded bytes): free memory or decode it on a "
            "machine with more\n",
            in_path, (unsigned long long)info.output_bytes);
    free(data);
    return 1;
  }
  st = dc_decode(data, size, out, (size_t)info.output_bytes);
  if (st != DC_OK) packed_error(in_path, st, data, size);
  free(data);
  if (st != DC_OK) {
    free(out);
    return 1;
  }
  w = tool_write_output("dc_decode", out_path, (const uint8_t*)out, (size_t)info.output_bytes);
  free(out);
  if (w != 0) return 1;
  printf("dtype=%u shape=[", (unsigned)info.dtype);
  for (i = 0; i < info.rank; ++i) printf("%s%llu", i ? "," : "", (unsigned long long)info.dims[i]);
  printf("] bytes=%llu\n", (unsigned long long)info.output_bytes);
  return 0;
}

/* The first 4 bytes of the regular file at path are DC_MAGIC: it holds a packed tensor. */
static int holds_packed_tensor(const char* path) {
  struct stat st;
  char head[4];
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return 0;
  ssize_t n = read(fd, head, sizeof head);
  close(fd);
  return n == (ssize_t)sizeof head && memcmp(head, DC_MAGIC, sizeof head) == 0;
}

/* Before any pair is decoded: 0, or 1 after one line if an OUT would destroy a packed tensor the
 * user has -- the PACKED of another pair (`dc_decode a.dcp b.dcp b.dcp c.raw`: b.dcp overwritten
 * before it is read) or an existing packed tensor file (`dc_decode *.dcp` over a.dcp b.dcp: b.dcp
 * taken for a's OUT).  OUT the same file as its own PACKED: tool_check_output's line. */
static int refuse_outputs_over_packed(int argc, char** argv) {
  for (int o = 2; o < argc; o += 2) {
    for (int i = 1; i < argc; i += 2) {
      if (i != o - 1 && tool_same_file(argv[i], argv[o])) {
        fprintf(stderr,
                "dc_decode: the output %s (argument %d) is the packed input %s (argument %d), "
                "which is never overwritten: choose a different output path (arguments go in "
                "pairs: PACKED OUT [PACKED OUT ...]); nothing was written\n",
                argv[o], o, argv[i], i);
        return 1;
      }
    }
    if (!tool_same_file(argv[o - 1], argv[o]) && holds_packed_tensor(argv[o])) {
      fprintf(stderr,
              "dc_decode: the output %s (argument %d) holds a packed tensor, which dc_decode "
              "would replace by raw decoded bytes: choose a different output path (arguments go "
              "in pairs: PACKED OUT [PACKED OUT ...]; did an OUT go missing?) or remove %s first; "
              "nothing was written\n",
              argv[o], o, argv[o]);
      return 1;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  int i;
  tool_open_std_fds(); /* before any file is opened */
  if (argc == 2 && tool_is_help(argv[1])) {
    fputs(USAGE, stdout);
    return 0;
  }
  if (argc < 3 || (argc - 1) % 2 != 0) {
    fprintf(stderr,
            "usage: dc_decode PACKED OUT [PACKED OUT ...] (dc_decode --help: what it does)\n");
    return 2;
  }
  if (tool_check_path_args("dc_decode", argc, argv)) return 2;
  if (refuse_outputs_over_packed(argc, argv)) return 1;
  for (i = 1; i + 1 < argc; i += 2)
    if (decode_one(argv[i], argv[i + 1]) != 0) return 1;
  return tool_finish_stdout("dc_decode");
}
