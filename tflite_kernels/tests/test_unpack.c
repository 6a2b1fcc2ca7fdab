#define _POSIX_C_SOURCE 200809L
/* test_unpack.c -- dc_unpack / dc_list_huffdecode / dc_align_packed (dc_unpack.h) on the
 * committed packed models ../tests/data/zoo_lstm128.packed.tflite (packed data interleaved: an
 * older pack; kept as unused constants) and ../tests/data/conv_int8_tail.packed.tflite (packed
 * data as the file's tail, as pack writes them now: cut off, FORMAT.md §15); run from
 * tflite_kernels/, as `make test`, CTest and `make test-arm` do: every op's decoded bytes land in
 * the output, the result has nothing left to unpack, hostile variants (every truncation, byte
 * flips) fail with a message or succeed, never crash (run under ASan/UBSan by
 * `make test-sanitize`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_parallel.h"
#include "dc_test.h"
#include "dc_unpack.h"

static uint8_t* read_file(const char* path, size_t* n) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t* b = len > 0 ? (uint8_t*)malloc((size_t)len) : NULL;
  if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *n = (size_t)len;
  return b;
}

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
  unsetenv("DC_KERAS_DECODE_THREADS");
  dc_unpack_free(again);
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
  dc_unpack_free(plain);
  free(model);
}

int main(void) {
  check_model("../tests/data/zoo_lstm128.packed.tflite", 0);
  check_model("../tests/data/conv_int8_tail.packed.tflite", 1);
  if (failures) {
    fprintf(stderr, "test_unpack: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_unpack: all passed\n");
  return 0;
}
