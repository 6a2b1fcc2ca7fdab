#define _POSIX_C_SOURCE 200809L
/* test_unpack.c -- dc_unpack / dc_list_huffdecode / dc_align_packed (dc_unpack.h) on the
 * committed packed models ../tests/data/zoo_lstm128.packed.tflite (packed data interleaved: an
 * older pack; kept as unused constants) and ../tests/data/conv_int8_tail.packed.tflite (packed
 * data as the file's tail, as pack writes them now: cut off, FORMAT.md §15); run from
 * tflite_kernels/, as `make test`, CTest and `make test-arm` do: every op's decoded bytes land in
 * the output, the result has nothing left to unpack, hostile variants (every truncation, byte
 * flips) fail with a message or succeed, never crash (run under ASan/UBSan by
 * `make test-sanitize`); the same models with a zip of associated files appended (offsets from
 * the file start or the zip start) unpack to the same model followed by that zip, its offsets
 * counted from the new file's start (FORMAT.md §15). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_parallel.h"
#include "dc_test.h"
#include "dc_unpack.h"

/* Every decoded tensor's bytes occur in `plain` at a 16-byte aligned offset. */
static void check_contents(const uint8_t* model, size_t n, const uint8_t* plain, size_t pn) {
  dc_huffdecode_op* ops = NULL;
  size_t num = 0;
  char why[256];
  CHECK(dc_list_huffdecode(model, n, &ops, &num, why, sizeof why) == DC_UNPACK_OK, "list: %s", why);
  CHECK(num >= 2, "expected several HuffDecode ops, found %zu", num);
  for (size_t i = 0; i < num; ++i) {
    uint8_t* dec = (uint8_t*)malloc(ops[i].output_bytes + 1);
    CHECK(dc_decode(ops[i].packed, ops[i].packed_size, dec, ops[i].output_bytes) == DC_OK, "%s",
          ops[i].name);
    int found = 0;
    for (size_t at = 0; !found && at + ops[i].output_bytes <= pn; at += 16) {
      found = memcmp(plain + at, dec, ops[i].output_bytes) == 0;
    }
    CHECK(found, "decoded %s not in the unpacked model", ops[i].name);
    free(dec);
  }
  free(ops);
}

/* How many of the model's packed tensors occur (whole) in `out`. */
static size_t packed_in(const uint8_t* model, size_t n, const uint8_t* out, size_t on) {
  dc_huffdecode_op* ops = NULL;
  size_t num = 0, found = 0;
  char why[256];
  CHECK(dc_list_huffdecode(model, n, &ops, &num, why, sizeof why) == DC_UNPACK_OK, "list: %s", why);
  for (size_t i = 0; i < num; ++i) {
    int hit = 0;
    for (size_t at = 0; !hit && at + ops[i].packed_size <= on; ++at) {
      hit = out[at] == ops[i].packed[0] && memcmp(out + at, ops[i].packed, ops[i].packed_size) == 0;
    }
    found += (size_t)hit;
  }
  free(ops);
  return found;
}

static void check_model(const char* path, int tail) {
  size_t n = 0;
  uint8_t* model = read_file(path, &n);
  CHECK(model != NULL, "cannot read %s (run from tflite_kernels/)", path);
  if (!model) return;
  uint8_t *plain = NULL, *again = NULL;
  size_t pn = 0, an = 0;
  char why[256];
  CHECK(dc_unpack(model, n, &plain, &pn, why, sizeof why) == DC_UNPACK_OK, "unpack: %s", why);
  CHECK(plain && pn > n && memcmp(plain, model, 8) == 0, "output");
  if (plain) check_contents(model, n, plain, pn);
  /* the tail layout drops the packed data; the older layout keeps them as unused constants */
  size_t kept = plain ? packed_in(model, n, plain, pn) : 0;
  CHECK(tail ? kept == 0 : kept >= 2, "%s: %zu packed tensors left in the output", path, kept);
  dc_huffdecode_op* ops = NULL;
  size_t num = 1;
  CHECK(plain && dc_list_huffdecode(plain, pn, &ops, &num, why, sizeof why) == DC_UNPACK_OK &&
            num == 0,
        "HuffDecode ops left after unpacking: %zu", num);
  free(ops);
  CHECK(dc_unpack(plain, pn, &again, &an, why, sizeof why) == DC_UNPACK_OK && an == pn &&
            memcmp(again, plain, pn) == 0,
        "unpacking a plain model must return it unchanged");
  dc_unpack_free(again);
  /* one thread gives the same bytes */
  setenv("DC_KERAS_DECODE_THREADS", "1", 1);
  CHECK(dc_unpack(model, n, &again, &an, why, sizeof why) == DC_UNPACK_OK && an == pn &&
            memcmp(again, plain, pn) == 0,
        "single-thread unpack differs");
  dc_unpack_free(again);
  setenv("DC_KERAS_DECODE_THREADS", "4x", 1); /* was taken as unset: one thread per CPU */
  CHECK(dc_unpack(model, n, &again, &an, why, sizeof why) == DC_UNPACK_ARGUMENT && !again &&
            strstr(why, "environment variable DC_KERAS_DECODE_THREADS='4x' is not a whole") != NULL,
        "an unreadable DC_KERAS_DECODE_THREADS is refused: %s", why);
  unsetenv("DC_KERAS_DECODE_THREADS");
  /* aligned packed bytes: every packed tensor 64-aligned, unpacks to the same tensors */
  uint8_t* al = NULL;
  size_t aln = 0;
  CHECK(dc_align_packed(model, n, 64, &al, &aln, why, sizeof why) == DC_UNPACK_OK, "align: %s",
        why);
  CHECK(dc_list_huffdecode(al, aln, &ops, &num, why, sizeof why) == DC_UNPACK_OK, "list aligned");
  for (size_t i = 0; i < num; ++i) {
    CHECK((size_t)(ops[i].packed - al) % 64 == 0, "packed %s not 64-aligned", ops[i].name);
  }
  free(ops);
  CHECK(dc_unpack(al, aln, &again, &an, why, sizeof why) == DC_UNPACK_OK, "unpack aligned");
  if (again) check_contents(model, n, again, an);
  dc_unpack_free(again);
  dc_unpack_free(al);
  CHECK(dc_align_packed(model, n, 48, &al, &aln, why, sizeof why) == DC_UNPACK_ARGUMENT && !al,
        "alignment must be a power of 2");
  CHECK(strstr(why, "alignment must be a power of 2 in 16..4096, got 48") != NULL, "why: %s", why);
  /* a NULL argument: DC_UNPACK_ARGUMENT (the caller's mistake, not the data's: it was
   * DC_UNPACK_MALFORMED), the message names it (not the alignment) */
  CHECK(dc_align_packed(NULL, n, 64, &al, &aln, why, sizeof why) == DC_UNPACK_ARGUMENT && !al &&
            strstr(why, "model is NULL") != NULL,
        "align NULL model: %s", why);
  CHECK(dc_align_packed(model, n, 64, NULL, &aln, why, sizeof why) == DC_UNPACK_ARGUMENT &&
            strstr(why, "out or out_n is NULL") != NULL,
        "align NULL out: %s", why);
  {
    dc_huffdecode_op* none = NULL;
    size_t count = 0;
    CHECK(dc_list_huffdecode(NULL, n, &none, &count, why, sizeof why) == DC_UNPACK_ARGUMENT &&
              strstr(why, "model is NULL") != NULL,
          "list NULL model: %s", why);
    CHECK(dc_list_huffdecode(model, n, NULL, &count, why, sizeof why) == DC_UNPACK_ARGUMENT &&
              strstr(why, "ops or num_ops is NULL") != NULL,
          "list NULL ops: %s", why);
    CHECK(dc_list_huffdecode(model, n, &none, NULL, why, sizeof why) == DC_UNPACK_ARGUMENT,
          "list NULL num_ops: %s", why);
  }
  {
    uint8_t* o = (uint8_t*)1;
    size_t on = 1;
    CHECK(dc_unpack(NULL, n, &o, &on, why, sizeof why) == DC_UNPACK_ARGUMENT && o == NULL &&
              on == 0 && strstr(why, "packed is NULL") != NULL,
          "unpack NULL packed: %s", why);
    CHECK(dc_unpack(model, n, NULL, &on, why, sizeof why) == DC_UNPACK_ARGUMENT &&
              strstr(why, "out or out_n is NULL") != NULL,
          "unpack NULL out: %s", why);
    CHECK(dc_unpack_bounded(model, n, n * 4, &o, NULL, why, sizeof why) == DC_UNPACK_ARGUMENT &&
              strstr(why, "out or out_n is NULL") != NULL,
          "unpack_bounded NULL out_n: %s", why);
    CHECK(dc_unpack(NULL, n, &o, &on, NULL, 0) == DC_UNPACK_ARGUMENT, "no why buffer");
    /* the data errors keep their statuses and values (ABI) */
    CHECK(DC_UNPACK_OK == 0 && DC_UNPACK_MALFORMED == 1 && DC_UNPACK_BAD_PACKED == 2 &&
              DC_UNPACK_UNSUPPORTED == 3 && DC_UNPACK_TOO_LARGE == 4 && DC_UNPACK_NO_MEMORY == 5 &&
              DC_UNPACK_ARGUMENT == 6,
          "status values");
  }
  /* hostile variants: an error with a message, or a success; never a crash */
  size_t errors = 0;
  for (size_t k = 0; k < n; k += 7) {
    uint8_t* o = (uint8_t*)1;
    dc_unpack_status st = dc_unpack(model, k, &o, &an, why, sizeof why);
    CHECK(st != DC_UNPACK_OK ? (o == NULL && why[0] != '\0') : o != NULL, "truncation %zu", k);
    errors += st != DC_UNPACK_OK;
    dc_unpack_free(st == DC_UNPACK_OK ? o : NULL);
  }
  CHECK(errors > 0, "no truncation was refused");
  uint8_t* bad = (uint8_t*)malloc(n);
  for (size_t k = 0; k < n; k += 13) {
    memcpy(bad, model, n);
    bad[k] ^= (uint8_t)(0x5a + k);
    uint8_t* o = NULL;
    dc_unpack_status st = dc_unpack(bad, n, &o, &an, why, sizeof why);
    CHECK(st == DC_UNPACK_OK || (o == NULL && why[0] != '\0'), "flip %zu", k);
    dc_unpack_free(o);
  }
  free(bad);
  uint8_t* o = NULL;
  CHECK(dc_unpack((const uint8_t*)"TFL3", 4, &o, &an, why, sizeof why) == DC_UNPACK_MALFORMED &&
            strstr(why, "not a .tflite") != NULL,
        "short input: %s", why);
  bad = (uint8_t*)malloc(n); /* another file identifier: refused, not unpacked (it was) */
  memcpy(bad, model, n);
  memcpy(bad + 4, "XXXX", 4);
  o = NULL;
  CHECK(dc_unpack(bad, n, &o, &an, why, sizeof why) == DC_UNPACK_MALFORMED && o == NULL &&
            strstr(why, "not a .tflite") != NULL && strstr(why, "TFL3") != NULL,
        "identifier: %s", why);
  free(bad);
  dc_unpack_free(plain);
  free(model);
}

/* ---- a zip of associated files after the model (FORMAT.md §15) ------------------------ */

static void put16(uint8_t* p, unsigned v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put32le(uint8_t* p, uint32_t v) {
  put16(p, v & 0xffff);
  put16(p + 2, v >> 16);
}

static uint32_t get32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc32_of(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = c >> 1 ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

static const char kName[] = "labels.txt", kText[] = "cat\ndog\n";

/* model + a stored zip holding labels.txt (as Python's zipfile writes it), its offsets counted
 * from the file start (`absolute`, as MetadataPopulator appends it) or from the zip start. */
static uint8_t* with_zip(const uint8_t* model, size_t n, int absolute, size_t* out_n) {
  size_t nl = sizeof kName - 1, tl = sizeof kText - 1, local = 30 + nl + tl, cd = 46 + nl;
  size_t zn = local + cd + 22, base = absolute ? n : 0;
  uint8_t* b = (uint8_t*)calloc(1, n + zn);
  if (!b) return NULL;
  memcpy(b, model, n);
  uint8_t *l = b + n, *c = l + local, *e = c + cd;
  uint32_t crc = crc32_of((const uint8_t*)kText, tl);
  put32le(l, 0x04034b50u);
  put16(l + 4, 20);
  put32le(l + 14, crc);
  put32le(l + 18, (uint32_t)tl);
  put32le(l + 22, (uint32_t)tl);
  put16(l + 26, (unsigned)nl);
  memcpy(l + 30, kName, nl);
  memcpy(l + 30 + nl, kText, tl);
  put32le(c, 0x02014b50u);
  put16(c + 4, 20);
  put16(c + 6, 20);
  put32le(c + 16, crc);
  put32le(c + 20, (uint32_t)tl);
  put32le(c + 24, (uint32_t)tl);
  put16(c + 28, (unsigned)nl);
  put32le(c + 42, (uint32_t)base);
  memcpy(c + 46, kName, nl);
  put32le(e, 0x06054b50u);
  put16(e + 8, 1);
  put16(e + 10, 1);
  put32le(e + 12, (uint32_t)cd);
  put32le(e + 16, (uint32_t)(base + local));
  *out_n = n + zn;
  return b;
}

/* The file ends with that zip, read as tflite_support's Java ZipFile reads it: offsets taken
 * literally, from the file start; 1 if labels.txt is there with its text. */
static int zip_reads_literally(const uint8_t* b, size_t n) {
  size_t nl = sizeof kName - 1, tl = sizeof kText - 1;
  if (n < 22 || get32(b + n - 22) != 0x06054b50u) return 0;
  size_t cd = get32(b + n - 22 + 16);
  if (cd + 46 + nl > n || get32(b + cd) != 0x02014b50u) return 0;
  size_t local = get32(b + cd + 42);
  return local + 30 + nl + tl <= n && get32(b + local) == 0x04034b50u &&
         memcmp(b + local + 30, kName, nl) == 0 && memcmp(b + local + 30 + nl, kText, tl) == 0;
}

static void check_zip(const char* path) {
  size_t n = 0, pn = 0, zn = 0, on = 0;
  uint8_t* model = read_file(path, &n);
  CHECK(model != NULL, "cannot read %s (run from tflite_kernels/)", path);
  if (!model) return;
  uint8_t *plain = NULL, *out = NULL;
  char why[256];
  CHECK(dc_unpack(model, n, &plain, &pn, why, sizeof why) == DC_UNPACK_OK, "unpack: %s", why);
  for (int absolute = 0; absolute < 2; ++absolute) {
    uint8_t* z = with_zip(model, n, absolute, &zn);
    CHECK(z && zip_reads_literally(z, zn) == absolute, "test zip (absolute %d)", absolute);
    CHECK(dc_unpack(z, zn, &out, &on, why, sizeof why) == DC_UNPACK_OK, "unpack+zip: %s", why);
    /* the same unpacked model (the packed data still cut off), then the zip, moved */
    CHECK(out && on == pn + (zn - n) && memcmp(out, plain, pn) == 0, "%s+zip: %zu != %zu + %zu",
          path, on, pn, zn - n);
    CHECK(out && zip_reads_literally(out, on), "the moved zip's offsets must count from the start");
    dc_unpack_free(out);
    /* dc_align_packed appends too: the zip moves to its end as well */
    CHECK(dc_align_packed(z, zn, 4096, &out, &on, why, sizeof why) == DC_UNPACK_OK, "align: %s",
          why);
    CHECK(out && zip_reads_literally(out, on), "aligned + zip");
    dc_unpack_free(out);
    /* hostile: truncated or flipped zip records fail with a message or succeed, never crash */
    uint8_t* bad = (uint8_t*)malloc(zn);
    for (size_t k = n; bad && k < zn; ++k) {
      uint8_t* o = NULL;
      dc_unpack_status st = dc_unpack(z, k, &o, &on, why, sizeof why);
      CHECK(st == DC_UNPACK_OK || (o == NULL && why[0] != '\0'), "zip truncation %zu", k);
      dc_unpack_free(o);
      memcpy(bad, z, zn);
      bad[k] ^= (uint8_t)(0xa5 + k);
      o = NULL;
      st = dc_unpack(bad, zn, &o, &on, why, sizeof why);
      CHECK(st == DC_UNPACK_OK || (o == NULL && why[0] != '\0'), "zip flip %zu", k);
      dc_unpack_free(o);
    }
    if (bad && z) { /* a local header offset that points at no local header: said, not dropped */
      memcpy(bad, z, zn);
      put32le(bad + zn - 22 - 46 - (sizeof kName - 1) + 42, 7);
      uint8_t* o = NULL;
      CHECK(dc_unpack(bad, zn, &o, &on, why, sizeof why) == DC_UNPACK_UNSUPPORTED && !o &&
                strstr(why, "associated files) cannot be moved: a local header") != NULL,
            "malformed zip: %s", why);
    }
    free(bad);
    free(z);
  }
  dc_unpack_free(plain);
  free(model);
}

/* How many times `needle` occurs in `text`. */
static int count_in(const char* text, const char* needle) {
  int k = 0;
  for (const char* at = strstr(text, needle); at; at = strstr(at + 1, needle)) ++k;
  return k;
}

/* A damaged packed tensor inside the model: DC_UNPACK_BAD_PACKED, and `why` names the problem and
 * ends with its fix, once (dc_unpack.h: DC_UNPACK_CORRUPT_FIX; DC_UNPACK_NEWER_FIX with the
 * version for a newer one).  The library said the problem alone before. */
static void check_packed_fixes(const char* path) {
  size_t n = 0;
  uint8_t* model = read_file(path, &n);
  CHECK(model != NULL, "cannot read %s (run from tflite_kernels/)", path);
  if (!model) return;
  dc_huffdecode_op* ops = NULL;
  size_t num = 0;
  char why[512];
  CHECK(dc_list_huffdecode(model, n, &ops, &num, why, sizeof why) == DC_UNPACK_OK && num > 0,
        "list: %s", why);
  const size_t at = ops ? (size_t)(ops[0].packed - model) : 0,
               last = ops ? ops[0].packed_size - 1 : 0;
  free(ops);
  static const struct {
    size_t offset; /* from the packed tensor's start (from_end: its last byte) */
    int from_end;
    uint8_t value, flip; /* the byte set to `value`, or xor'ed with `flip` */
    const char* problem;
    int newer; /* its fix: DC_UNPACK_NEWER_FIX, else DC_UNPACK_CORRUPT_FIX */
  } cases[] = {
      {4, 0, 9, 0,
       "packed tensor not readable here: unsupported packed tensor format version (newer than this "
       "decoder?): it is version 9, which only a decoder with DC_VERSION_MAX >= 9 reads; ",
       1},
      {4, 0, 0, 0,
       "invalid packed tensor: unsupported packed tensor format version (newer than this "
       "decoder?): version 0 does not exist (the first is 1); ",
       0},
      {0, 0, 'X', 0, "invalid packed tensor: not a packed tensor (bad magic); ", 0},
      {0, 1, 0, 0x10, "): ", 0}, /* its last byte: a checksum or stream error */
  };
  uint8_t* bad = (uint8_t*)malloc(n);
  for (size_t c = 0; bad && c < sizeof cases / sizeof cases[0]; ++c) {
    memcpy(bad, model, n);
    uint8_t* p = bad + at + (cases[c].from_end ? last : cases[c].offset);
    *p = cases[c].flip ? (uint8_t)(*p ^ cases[c].flip) : cases[c].value;
    const char* fix = cases[c].newer ? DC_UNPACK_NEWER_FIX : DC_UNPACK_CORRUPT_FIX;
    const char* other = cases[c].newer ? DC_UNPACK_CORRUPT_FIX : DC_UNPACK_NEWER_FIX;
    uint8_t* o = NULL;
    size_t on = 0;
    for (int route = 0; route < 3; ++route) {
      dc_unpack_status st;
      if (route == 0) {
        st = dc_unpack(bad, n, &o, &on, why, sizeof why);
        dc_unpack_free(o);
      } else if (route == 1) {
        st = dc_align_packed(bad, n, 64, &o, &on, why, sizeof why);
        dc_unpack_free(o);
      } else {
        st = dc_list_huffdecode(bad, n, &ops, &num, why, sizeof why);
        free(ops);
      }
      if (route > 0 && cases[c].from_end && st == DC_UNPACK_OK) continue; /* found by decoding */
      const size_t len = strlen(why), fix_len = strlen(fix);
      CHECK(st == DC_UNPACK_BAD_PACKED && strncmp(why, "HuffDecode(", 11) == 0 &&
                strstr(why, cases[c].problem) != NULL && len > fix_len &&
                strcmp(why + len - fix_len, fix) == 0 && count_in(why, fix) == 1 &&
                !strstr(why, other),
            "%s: damage %zu, route %d: status %d, why: %s", path, c, route, (int)st, why);
    }
  }
  free(bad);
  free(model);
}

int main(void) {
  check_model("../tests/data/zoo_lstm128.packed.tflite", 0);
  check_model("../tests/data/conv_int8_tail.packed.tflite", 1);
  check_zip("../tests/data/conv_int8_tail.packed.tflite");
  check_zip("../tests/data/zoo_lstm128.packed.tflite");
  check_packed_fixes("../tests/data/conv_int8_tail.packed.tflite");
  check_packed_fixes("../tests/data/zoo_lstm128.packed.tflite");
  if (failures) {
    fprintf(stderr, "test_unpack: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_unpack: all passed\n");
  return 0;
}
