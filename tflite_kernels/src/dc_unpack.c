/*
 * dc_unpack.c -- packed .tflite -> plain .tflite in C (see dc_unpack.h and
 * docs/FORMAT.md §15).  A minimal, bounds-checked flatbuffer reader for the
 * few TFLite schema tables involved (Model, SubGraph, Tensor, Operator,
 * OperatorCode, Buffer); the writer only patches 32-bit offsets in a copy of
 * the input and appends Buffer tables after it.  Every read of the untrusted
 * input is checked against its size; nothing recurses.  Before any of it, the
 * whole model's structure is checked as LiteRT's verifier checks it
 * (check_structure, with the schema's layout from dc_tflite_layout.h), so a
 * damaged file is refused here, naming the field, not copied into a result
 * no runtime loads.
 *
 * TFLite schema field ids used here (schema.fbs):
 *   Model:        1 operator_codes, 2 subgraphs, 4 buffers, 5 metadata_buffer,
 *                 6 metadata
 *   Metadata:     1 buffer
 *   SubGraph:     0 tensors, 3 operators
 *   Tensor:       0 shape, 1 type, 2 buffer, 3 name
 *   Operator:     0 opcode_index, 1 inputs, 2 outputs
 *   OperatorCode: 0 deprecated_builtin_code, 1 custom_code, 3 builtin_code
 *   Buffer:       0 data, 1 offset, 2 size
 */
#include "dc_unpack.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dc_parallel.h"
#include "dc_tensor_label.h"
#include "dc_tflite_layout.h" /* generated: tflite_kernels/tools/gen_tflite_layout.py */
#include "dc_version_note.h"

enum { kCustom = 32, kUInt8 = 3, kDataAlign = 16 };
#define DC_FLATBUFFER_MAX ((size_t)0x7fffffff) /* flatbuffer offsets are < 2 GiB */

/* What to do about a result past `max_output`: with dc_unpack's own bound (the flatbuffer's), the
 * model's weights do not fit inside a flatbuffer, which is where this unpacker writes them. */
static const char* too_large_fix(size_t max_output) {
  return max_output >= DC_FLATBUFFER_MAX
             ? " (this unpacker writes the weights inside the flatbuffer, which addresses at most "
               "2 GiB): unpack it with dc_keras.export.unpack or `dc-keras unpack`, which write "
               "them "
               "after the flatbuffer, or run the packed model with the HuffDecode op or delegate, "
               "which decode at load"
             : " (the max_output bound given)";
}

typedef struct {
  const uint8_t* b;
  size_t n;
  char* why;
  size_t why_n;
  /* A DC_UNPACK_BAD_PACKED error's fix, which with_fix appends (set by packed_refused; NULL:
   * DC_UNPACK_CORRUPT_FIX, the HuffDecode op's tensors are damaged; "": why has it already). */
  const char* packed_fix;
} Fb;

static int say(Fb* f, const char* fmt, ...) {
  if (f->why && f->why_n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, f->why_n, fmt, ap);
    va_end(ap);
  }
  return 0;
}

static uint32_t le32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static int u32at(const Fb* f, size_t pos, uint32_t* v) {
  if (pos > f->n || f->n - pos < 4) return 0;
  *v = le32(f->b + pos);
  return 1;
}

/* Field `id` of the table at t: 1 (at *pos, `width` bytes fit the table),
 * 0 absent, -1 malformed. */
static int field(const Fb* f, size_t t, unsigned id, size_t width, size_t* pos) {
  uint32_t so;
  if (!u32at(f, t, &so)) return -1;
  int64_t vt = (int64_t)t - (int64_t)(int32_t)so;
  if (vt < 0 || (uint64_t)vt + 2 > f->n || vt % 2) return -1;
  const uint8_t* v = f->b + vt;
  size_t vsize = (size_t)v[0] | (size_t)v[1] << 8;
  if (vsize % 2 || (uint64_t)vt + vsize > f->n) return -1;
  size_t slot = 4 + 2 * (size_t)id;
  if (slot + 2 > vsize) return 0;
  size_t fo = (size_t)v[slot] | (size_t)v[slot + 1] << 8;
  if (fo == 0) return 0;
  if (t + fo + width > f->n) return -1; /* the table's size field is not checked (flatbuffers) */
  *pos = t + fo;
  return 1;
}

/* Scalar field with a default; 0 if malformed. */
static int scalar(const Fb* f, size_t t, unsigned id, size_t width, uint64_t dflt, uint64_t* v) {
  size_t pos = 0;
  int r = field(f, t, id, width, &pos);
  if (r < 0) return 0;
  *v = dflt;
  if (r == 0) return 1;
  uint64_t x = 0;
  for (size_t k = 0; k < width; ++k) x |= (uint64_t)f->b[pos + k] << (8 * k);
  *v = x;
  return 1;
}

/* Follows the uoffset at pos. */
static int deref(const Fb* f, size_t pos, size_t* target) {
  uint32_t u;
  if (!u32at(f, pos, &u) || u == 0 || (uint64_t)pos + u >= f->n) return 0;
  *target = pos + u;
  return 1;
}

typedef struct {
  size_t start; /* first element */
  size_t count;
} Vec;

/* Vector field `id` of table t with elements of `elem` bytes; absent = empty.
 * Returns 0 if malformed. */
static int vec(const Fb* f, size_t t, unsigned id, size_t elem, Vec* out) {
  size_t pos = 0, at = 0;
  uint32_t count;
  int r = field(f, t, id, 4, &pos);
  out->start = out->count = 0;
  if (r <= 0) return r == 0;
  if (!deref(f, pos, &at) || !u32at(f, at, &count)) return 0;
  if (count > (f->n - at - 4) / elem) return 0;
  out->start = at + 4;
  out->count = count;
  return 1;
}

static int table_at(const Fb* f, const Vec* v, size_t i, size_t* t) {
  return i < v->count && deref(f, v->start + 4 * i, t);
}

static int32_t i32_elem(const Fb* f, const Vec* v, size_t i) {
  return (int32_t)le32(f->b + v->start + 4 * i);
}

/* ---------------------------------------------------------- structural check
 * Every table, vtable, scalar field, vector and string the root reaches, checked the way
 * flatbuffers' Verifier checks them (LiteRT runs it before it loads a model) and named by its
 * path from the root as dc_keras._flatbuffer's walk names it, in the same words: the fields as
 * dc_tflite_layout.h (generated from the same schema module) lays them out; a union member it
 * does not list is checked by its offset only, as the runtime checks it.  Without it the tables
 * this unpacker copies without reading reached LiteRT's verifier only when the result loaded
 * ("not a valid Flatbuffer", no field named).  Each (table, position) is visited once, and each
 * vector of tables or strings walked once, so the walk is linear in the file whatever its offsets
 * share (walking a shared vector once per referrer made a crafted 1 MB file take 12.6 s); every
 * reference to a table counts toward the verifier's limit of 1,000,000 as it counts them, except
 * that the tables under a table referred to twice count once (the verifier walks them again): so
 * this refuses no file the verifier reads.  Nothing recurses. */

#define DC_FB_NONE 0xffffu        /* no field name: the path ends at its parent */
#define DC_FB_MAX_TABLES 1000000u /* flatbuffers' Verifier default (max_tables), as TFLite loads */

typedef struct {
  int32_t parent; /* -1: the root */
  uint16_t name;
  int64_t index; /* -1: none */
} PathNode;

typedef struct {
  uint16_t table;
  int64_t pos; /* may lie outside the file: wtable names it */
  int32_t node;
} Visit;

typedef struct {
  Fb* f;
  PathNode* nodes; /* nodes and stack: seen_cap / 2 entries each */
  size_t num_nodes;
  Visit* stack;
  size_t depth;
  uint64_t* seen; /* open addressing: (pos << 16 | table) + 1, 0 = empty; vectors: table
                   * 0x8000 + their element table (0xffff: strings) */
  uint64_t refs;  /* references to tables, repeats included (the verifier's count) */
  size_t seen_cap, num_seen;
  int oom;
} Walk;

/* `v` with thousands separators (Python's "{:,}"). */
static const char* commas(char buf[32], uint64_t v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v), o = 0;
  for (int i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = tmp[i];
  }
  buf[o] = '\0';
  return buf;
}

/* a + b in decimal, also past 2^64 (the Python walk prints the exact sum). */
static void sum_digits(uint64_t a, uint64_t b, char out[32]) {
  const uint64_t low = a + b;
  if (low >= a) {
    snprintf(out, 32, "%llu", (unsigned long long)low);
    return;
  }
  char x[24], y[] = "18446744073709551616"; /* 2^64 + low, digit by digit */
  int i = snprintf(x, sizeof x, "%llu", (unsigned long long)low) - 1, j = (int)sizeof y - 2, o = 0;
  char rev[32];
  int carry = 0;
  for (; i >= 0 || j >= 0 || carry; --i, --j) {
    int d = carry + (i >= 0 ? x[i] - '0' : 0) + (j >= 0 ? y[j] - '0' : 0);
    rev[o++] = (char)('0' + d % 10);
    carry = d / 10;
  }
  for (int k = 0; k < o; ++k) out[k] = rev[o - 1 - k];
  out[o] = '\0';
}

/* Appends printf output to out (n bytes) at *at; nothing once it is full. */
static void append(char* out, size_t n, size_t* at, const char* fmt, ...) {
  if (*at >= n) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(out + *at, n - *at, fmt, ap);
  va_end(ap);
  if (k > 0) *at += (size_t)k;
}

/* The path (node, then name[index] under it) as "subgraphs[0].tensors[3].shape". */
static void where(const Walk* w, int32_t node, unsigned name, int64_t index, char* out, size_t n) {
  int32_t chain[64];
  size_t depth = 0, at = 0;
  for (int32_t k = node; k >= 0 && depth < 64; k = w->nodes[k].parent) chain[depth++] = k;
  out[0] = '\0';
  for (size_t d = depth; d-- > 0;) {
    const PathNode* p = &w->nodes[chain[d]];
    append(out, n, &at, "%s%s", at ? "." : "", dc_fb_names[p->name]);
    if (p->index >= 0) append(out, n, &at, "[%lld]", (long long)p->index);
  }
  if (name != DC_FB_NONE) {
    append(out, n, &at, "%s%s", at ? "." : "", dc_fb_names[name]);
    if (index >= 0) append(out, n, &at, "[%lld]", (long long)index);
  } else if (!at) {
    append(out, n, &at, "the root table");
  }
}

static int wfail(Walk* w, int32_t node, unsigned name, int64_t index, const char* fmt, ...) {
  char path[256], problem[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(problem, sizeof problem, fmt, ap);
  va_end(ap);
  where(w, node, name, index, path, sizeof path);
  return say(w->f, "malformed .tflite: %s: %s", path, problem);
}

/* `n` bytes of `what` at `pos`: inside the file and `align`-aligned (pos may be negative). */
static int wcheck(Walk* w, int32_t node, unsigned name, int64_t index, int64_t pos, uint64_t n,
                  unsigned align, const char* what) {
  char a[32], b[32];
  if (pos < 0) {
    return wfail(w, node, name, index, "%s points %s bytes before the start of the file", what,
                 commas(a, (uint64_t)-pos));
  }
  if ((uint64_t)pos + n > w->f->n) {
    return wfail(w, node, name, index,
                 "%s points past the end of the file (byte %s of a %s-byte file)", what,
                 commas(a, (uint64_t)pos + n), commas(b, w->f->n));
  }
  if ((uint64_t)pos % align) {
    return wfail(w, node, name, index, "%s at byte %s is not %u-byte aligned", what,
                 commas(a, (uint64_t)pos), align);
  }
  return 1;
}

/* The position the offset field at `pos` refers to (*to), or 0. */
static int woffset(Walk* w, int32_t node, unsigned name, size_t pos, size_t* to) {
  char a[32];
  if (!wcheck(w, node, name, -1, (int64_t)pos, 4, 4, "its offset")) return 0;
  uint32_t o = le32(w->f->b + pos);
  if (o == 0 || o > DC_FLATBUFFER_MAX) {
    return wfail(w, node, name, -1,
                 "its offset at byte %s is %lu (0 and offsets above 2^31 - 1 are invalid)",
                 commas(a, pos), (unsigned long)o);
  }
  if (!wcheck(w, node, name, -1, (int64_t)pos + o, 1, 1, "its offset")) return 0;
  *to = pos + o;
  return 1;
}

/* The length (*count) of the vector of `width`-byte elements at `pos`, checked. */
static int wvector(Walk* w, int32_t node, unsigned name, int64_t index, int64_t pos, unsigned width,
                   size_t* count) {
  char a[32], b[32], c[32];
  if (!wcheck(w, node, name, index, pos, 4, 4, "its vector")) return 0;
  uint64_t n = le32(w->f->b + pos), end = (uint64_t)pos + 4 + n * width;
  if (n >= DC_FLATBUFFER_MAX / width || end > w->f->n) {
    return wfail(w, node, name, index,
                 "its vector declares %s entries, which run past the end of the file (to byte %s "
                 "of a %s-byte file)",
                 commas(a, n), commas(b, end), commas(c, w->f->n));
  }
  *count = (size_t)n;
  return 1;
}

static int wstring(Walk* w, int32_t node, unsigned name, int64_t index, int64_t pos) {
  char a[32];
  size_t n;
  if (!wvector(w, node, name, index, pos, 1, &n)) return 0;
  int64_t end = pos + 4 + (int64_t)n;
  if (!wcheck(w, node, name, index, end, 1, 1, "its string's terminator")) return 0;
  if (w->f->b[end] != 0) {
    return wfail(w, node, name, index, "its string does not end in a 0 byte (byte %s)",
                 commas(a, (uint64_t)end));
  }
  return 1;
}

/* Records `key` in the seen set: 1 if new, 0 if seen before, -1 out of memory.  The path nodes
 * and the stack grow with the set (one each at most per key). */
static int wseen(Walk* w, uint64_t key) {
  if (2 * (w->num_seen + 1) > w->seen_cap) {
    size_t cap = w->seen_cap ? 2 * w->seen_cap : 1024;
    if (cap / 2 > (size_t)-1 / sizeof(Visit)) return w->oom = 1, -1; /* 32-bit targets */
    PathNode* p = (PathNode*)realloc(w->nodes, cap / 2 * sizeof *p);
    if (p) w->nodes = p;
    Visit* v = p ? (Visit*)realloc(w->stack, cap / 2 * sizeof *v) : NULL;
    if (v) w->stack = v;
    uint64_t* s = v ? (uint64_t*)calloc(cap, sizeof *s) : NULL;
    if (!s) return w->oom = 1, -1;
    for (size_t i = 0; i < w->seen_cap; ++i) {
      if (!w->seen[i]) continue;
      size_t h = (size_t)(w->seen[i] * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
      while (s[h]) h = (h + 1) & (cap - 1);
      s[h] = w->seen[i];
    }
    free(w->seen);
    w->seen = s;
    w->seen_cap = cap;
  }
  size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull >> 20) & (w->seen_cap - 1);
  for (; w->seen[h]; h = (h + 1) & (w->seen_cap - 1)) {
    if (w->seen[h] == key) return 0;
  }
  w->seen[h] = key;
  w->num_seen++;
  return 1;
}

/* n more references to tables, under the path (node, name, index): 0 past the verifier's limit. */
static int wcount(Walk* w, uint64_t n, int32_t node, unsigned name, int64_t index) {
  w->refs += n;
  if (w->refs <= DC_FB_MAX_TABLES) return 1;
  char a[32];
  return wfail(w, node, name, index,
               "the model refers to tables more than %s times, the most TFLite's flatbuffer "
               "verifier reads",
               commas(a, DC_FB_MAX_TABLES));
}

/* Pushes (table, pos) under the path (node, name, index) unless it was pushed before (name
 * DC_FB_NONE: the path is node's); every push counts toward the limit of references.  0 if out of
 * memory or past the limit.  pos is 0 .. 2^33. */
static int wpush(Walk* w, unsigned table, int64_t pos, int32_t node, unsigned name, int64_t index) {
  if (!wcount(w, 1, node, name, index)) return 0;
  const int fresh = wseen(w, ((uint64_t)pos << 16 | table) + 1);
  if (fresh <= 0) return fresh == 0;
  Visit v = {(uint16_t)table, pos, node};
  if (name != DC_FB_NONE) {
    PathNode pn = {node, (uint16_t)name, index};
    w->nodes[w->num_nodes] = pn;
    v.node = (int32_t)w->num_nodes++;
  }
  w->stack[w->depth++] = v;
  return 1;
}

/* The field at vtable `slot` of the table at pos: its position, or 0 when absent. */
static size_t wfield(const Walk* w, size_t pos, size_t vt, unsigned vt_size, unsigned slot) {
  if (slot >= vt_size) return 0;
  const uint8_t* b = w->f->b + vt + slot;
  const unsigned o = (unsigned)b[0] | (unsigned)b[1] << 8;
  return o ? pos + o : 0;
}

/* One table: its start and vtable, its scalar fields, its data after the flatbuffer (Buffer),
 * then its fields that refer to other objects, by slot (tables pushed, the rest checked here). */
static int wtable(Walk* w, const Visit* v) {
  const uint8_t* b = w->f->b;
  const dc_fb_field* fd = dc_fb_fields + dc_fb_tables[v->table].first;
  const dc_fb_field* end = fd + dc_fb_tables[v->table].count;
  const int32_t node = v->node;
  char a[32];
  if (!wcheck(w, node, DC_FB_NONE, -1, v->pos, 4, 4, "its table")) return 0;
  const size_t pos = (size_t)v->pos;
  const int64_t vt = v->pos - (int32_t)le32(b + pos);
  if (!wcheck(w, node, DC_FB_NONE, -1, vt, 2, 2, "its vtable")) return 0;
  const unsigned vt_size = (unsigned)b[vt] | (unsigned)b[vt + 1] << 8;
  if (vt_size % 2) {
    return wfail(w, node, DC_FB_NONE, -1, "its vtable has an odd size, %u at byte %s", vt_size,
                 commas(a, (uint64_t)vt));
  }
  if (!wcheck(w, node, DC_FB_NONE, -1, vt, vt_size, 2, "its vtable")) return 0;
  uint64_t vals[32]; /* scalar values by slot / 2 (absent: 0; slots < 64, gen_tflite_layout.py) */
  memset(vals, 0, sizeof vals);
  for (; fd < end && fd->kind == DC_FB_SCALAR; ++fd) {
    size_t at = wfield(w, pos, (size_t)vt, vt_size, fd->slot);
    if (!at) continue;
    if ((at % fd->width || at + fd->width > w->f->n) &&
        !wcheck(w, node, fd->name, -1, (int64_t)at, fd->width, fd->width, "its value")) {
      return 0;
    }
    uint64_t x = 0;
    for (unsigned i = 0; i < fd->width; ++i) x |= (uint64_t)b[at + i] << (8 * i);
    vals[fd->slot / 2] = x;
  }
  if (v->table == DC_FB_BUFFER_TABLE) { /* reached only as Model.buffers[i] */
    uint64_t off = vals[DC_FB_BUFFER_OFFSET_SLOT / 2], n = vals[DC_FB_BUFFER_SIZE_SLOT / 2];
    if (off > 1 && (off > w->f->n || n > w->f->n - off)) {
      char end_at[32];
      sum_digits(off, n, end_at);
      return say(w->f,
                 "malformed .tflite: buffer %lld lies outside the file (bytes %llu..%s of a "
                 "%llu-byte file)",
                 (long long)w->nodes[node].index, (unsigned long long)off, end_at,
                 (unsigned long long)w->f->n);
    }
  }
  for (; fd < end; ++fd) {
    size_t at = wfield(w, pos, (size_t)vt, vt_size, fd->slot), ref, n;
    if (!at) continue;
    if (!woffset(w, node, fd->name, at, &ref)) return 0;
    switch (fd->kind) {
      case DC_FB_TABLE:
        if (!wpush(w, fd->arg, (int64_t)ref, node, fd->name, -1)) return 0;
        break;
      case DC_FB_UNION: {
        const dc_fb_union* u = &dc_fb_unions[fd->arg];
        const uint64_t type = vals[u->type_slot / 2];
        for (unsigned m = u->first; type && m < (unsigned)u->first + u->count; ++m) {
          if (dc_fb_members[m].type != type) continue;
          if (!wpush(w, dc_fb_members[m].table, (int64_t)ref, node, fd->name, -1)) return 0;
          break;
        } /* NONE, or a member this schema does not list: its offset only, as the runtime */
        break;
      }
      case DC_FB_VECTOR:
        if (!wvector(w, node, fd->name, -1, (int64_t)ref, fd->width, &n)) return 0;
        break;
      case DC_FB_STRING:
        if (!wstring(w, node, fd->name, -1, (int64_t)ref)) return 0;
        break;
      default: { /* TABLES, STRINGS: the elements are not checked as offsets (as flatbuffers) */
        if (!wvector(w, node, fd->name, -1, (int64_t)ref, 4, &n)) return 0;
        /* a vector referred to again is walked once (linear in the file), its tables counted again */
        const unsigned tag = 0x8000u + (fd->kind == DC_FB_TABLES ? fd->arg : 0x7fffu);
        const int fresh = wseen(w, ((uint64_t)ref << 16 | tag) + 1);
        if (fresh < 0) return 0;
        if (!fresh) {
          if (fd->kind == DC_FB_TABLES && !wcount(w, n, node, fd->name, -1)) return 0;
          break;
        }
        for (size_t i = 0; i < n; ++i) {
          const size_t e = ref + 4 + 4 * i;
          const int64_t target = (int64_t)e + (int64_t)le32(b + e);
          if (fd->kind == DC_FB_TABLES) {
            if (!wpush(w, fd->arg, target, node, fd->name, (int64_t)i)) return 0;
          } else if (!wstring(w, node, fd->name, (int64_t)i, target)) {
            return 0;
          }
        }
      }
    }
  }
  return 1;
}

/* The structural check of the whole model: DC_UNPACK_OK, or MALFORMED with the path and the
 * problem in f->why (NO_MEMORY if its bookkeeping does not fit). */
static int check_structure(Fb* f) {
  Walk w;
  memset(&w, 0, sizeof w);
  w.f = f;
  size_t root;
  int ok = woffset(&w, -1, DC_FB_NONE, 0, &root) && wpush(&w, 0, (int64_t)root, -1, DC_FB_NONE, -1);
  while (ok && w.depth) {
    const Visit v = w.stack[--w.depth];
    ok = wtable(&w, &v);
  }
  free(w.nodes);
  free(w.stack);
  free(w.seen);
  if (w.oom) return say(f, "out of memory"), DC_UNPACK_NO_MEMORY;
  return ok ? DC_UNPACK_OK : DC_UNPACK_MALFORMED;
}

/* Tensor fields this file needs. */
typedef struct {
  int type;
  uint32_t buffer;
  Vec shape;
  char name[96];
} Tensor;

static int read_tensor(Fb* f, const Vec* tensors, int32_t index, Tensor* t) {
  size_t tt;
  uint64_t type, buffer;
  Vec name;
  if (index < 0 || !table_at(f, tensors, (size_t)index, &tt) || !scalar(f, tt, 1, 1, 0, &type) ||
      !scalar(f, tt, 2, 4, 0, &buffer) || !vec(f, tt, 0, 4, &t->shape) ||
      !vec(f, tt, 3, 1, &name)) {
    return say(f, "malformed .tflite: tensor %d cannot be read", (int)index);
  }
  t->type = (int)(int8_t)type;
  t->buffer = (uint32_t)buffer;
  size_t k = name.count < sizeof t->name - 1 ? name.count : sizeof t->name - 1;
  memcpy(t->name, f->b + name.start, k);
  t->name[k] = '\0';
  return 1;
}

/* Bytes of buffer i: inline data, or (offset > 1) a range of the file. */
static int buffer_bytes(Fb* f, const Vec* buffers, uint32_t i, const uint8_t** p, size_t* len) {
  size_t bt;
  Vec data;
  uint64_t off, size;
  if (!table_at(f, buffers, i, &bt) || !vec(f, bt, 0, 1, &data) || !scalar(f, bt, 1, 8, 0, &off) ||
      !scalar(f, bt, 2, 8, 0, &size)) {
    return say(f, "malformed .tflite: buffer %u cannot be read", (unsigned)i);
  }
  *p = f->b + data.start;
  *len = data.count;
  if (data.count == 0 && off > 1) {
    if (off > f->n || size > f->n - off) {
      return say(f, "malformed .tflite: buffer %u lies outside the file", (unsigned)i);
    }
    *p = f->b + off;
    *len = (size_t)size;
  }
  return 1;
}

/* One HuffDecode op to undo. */
typedef struct {
  uint32_t buffer; /* the output tensor's buffer, to be given the decoded bytes */
  char name[96];
  uint32_t rank;
  int32_t dims[DC_MAX_RANK];
  uint32_t packed_buffer; /* the packed input's buffer */
  size_t subgraph;        /* where the op is */
  int32_t packed_tensor;  /* its packed input */
} Target;

/* An offset field of the zip appended after the model: `width` bytes at `pos` of the input
 * that must hold the file position of `target` (an input position) once the zip has moved. */
typedef struct {
  size_t pos, target;
  unsigned width;
} ZipField;

/* The zip archive appended after the model (TFLite metadata's associated files), if any:
 * input[start, n).  start == n: none. */
typedef struct {
  size_t start;
  ZipField* fields;
  size_t num_fields;
} Zip;

typedef struct {
  size_t model; /* the Model table */
  Vec codes, subgraphs, buffers;
  unsigned char* is_huff; /* per operator code */
  dc_decode_job* jobs;
  Target* targets;
  size_t num_jobs, cap_jobs;
  size_t total; /* decoded bytes */
  size_t max_output;
  int list_only; /* dc_list_huffdecode: plan without output memory */
  Zip zip;       /* find_zip */
} Plan;

static int is_huff_code(Fb* f, const Vec* codes, size_t k, int* yes) {
  size_t ct;
  uint64_t dep, builtin;
  Vec name;
  if (!table_at(f, codes, k, &ct) || !scalar(f, ct, 0, 1, 0, &dep) ||
      !scalar(f, ct, 3, 4, 0, &builtin) || !vec(f, ct, 1, 1, &name)) {
    return say(f, "malformed .tflite: operator code %zu cannot be read", k);
  }
  int32_t code = (int32_t)(int8_t)dep > (int32_t)builtin ? (int32_t)(int8_t)dep : (int32_t)builtin;
  *yes = code == kCustom && name.count == 10 && memcmp(f->b + name.start, "HuffDecode", 10) == 0;
  return 1;
}

static int add_job(Plan* pl) {
  if (pl->num_jobs < pl->cap_jobs) return 1;
  size_t cap = pl->cap_jobs ? 2 * pl->cap_jobs : 16;
  dc_decode_job* j = (dc_decode_job*)realloc(pl->jobs, cap * sizeof *j);
  if (j) pl->jobs = j;
  Target* t = j ? (Target*)realloc(pl->targets, cap * sizeof *t) : NULL;
  if (t) pl->targets = t;
  if (!j || !t) return 0;
  pl->cap_jobs = cap;
  return 1;
}

/* A packed tensor the decoder refused with `st` (dc_peek's or dc_decode's status; `raw`: its
 * `len` bytes): the problem in f->why, as "HuffDecode(name): failure: dc_strerror's text", and its
 * fix for with_fix.  A refused version is named (dc_version_note): a newer one with the decoder
 * that reads it, one below DC_VERSION_MIN as damage, not a newer file.  Returns
 * DC_UNPACK_BAD_PACKED. */
static int packed_refused(Fb* f, const char* name, const char* failure, dc_status st,
                          const uint8_t* raw, size_t len) {
  char detail[96];
  const int newer = dc_version_note(st, raw, len, detail, sizeof detail);
  f->packed_fix = NULL; /* damaged: truncated, checksum, header fields, code lengths, streams */
  if (newer) {
    f->packed_fix = DC_UNPACK_NEWER_FIX;
  } else if (st == DC_ERR_VERSION) {
    failure = "invalid packed tensor";
  } else if (st == DC_ERR_UNSUPPORTED) { /* a layout or type this build leaves out */
    f->packed_fix = strstr(dc_strerror(st), "rebuild")
                        ? ""
                        : "rebuild the decoder without the DC_CODEC_NO_* options";
  } else if (st == DC_ERR_OUTPUT_SIZE || st == DC_ERR_ARGUMENT || st == DC_ERR_WORKSPACE) {
    f->packed_fix = "this is a bug of dc_unpack, not of the file: please report it with the file";
  }
  say(f, "HuffDecode(%s): %s: %s%s", name, failure, dc_strerror(st), detail);
  return DC_UNPACK_BAD_PACKED;
}

/* Checks one HuffDecode op (packed input -> weight output) and plans its
 * decode.  Returns a dc_unpack_status. */
static int plan_op(Fb* f, Plan* pl, const Vec* tensors, size_t s, size_t o, size_t ot) {
  Vec ins, outs;
  Tensor p, t;
  if (!vec(f, ot, 1, 4, &ins) || !vec(f, ot, 2, 4, &outs)) {
    return say(f, "malformed .tflite: subgraph %zu operator %zu", s, o), DC_UNPACK_MALFORMED;
  }
  if (ins.count != 1 || outs.count != 1) {
    say(f, "subgraph %zu operator %zu (HuffDecode): expected one input and one output", s, o);
    return DC_UNPACK_BAD_PACKED;
  }
  if (!read_tensor(f, tensors, i32_elem(f, &ins, 0), &p) ||
      !read_tensor(f, tensors, i32_elem(f, &outs, 0), &t)) {
    return DC_UNPACK_MALFORMED;
  }
  /* a nameless output (pack(strip_strings=True)): the messages below and dc_list_huffdecode's
   * name say "(unnamed tensor N)", as the op and the delegate do (dc_tensor_label.h) */
  if (!t.name[0])
    (void)dc_tensor_label(NULL, i32_elem(f, &outs, 0), (long)s, t.name, sizeof t.name);
  const uint8_t* raw = NULL;
  size_t len = 0;
  /* pack writes packed tensors nameless (FORMAT.md §15): then named by the tensor they decode to */
  char what[256];
  if (p.name[0]) {
    snprintf(what, sizeof what, "packed input '%s'", p.name);
  } else {
    snprintf(what, sizeof what, "packed input of '%s'", t.name);
  }
  if (p.buffer >= pl->buffers.count) {
    say(f, "HuffDecode(%s): %s has no constant buffer", t.name, what);
    return DC_UNPACK_BAD_PACKED;
  }
  if (!buffer_bytes(f, &pl->buffers, p.buffer, &raw, &len)) return DC_UNPACK_MALFORMED;
  if (p.type != kUInt8 || len == 0 || p.shape.count != 1) {
    say(f, "HuffDecode(%s): %s must be a constant 1-D uint8 tensor", t.name, what);
    return DC_UNPACK_BAD_PACKED;
  }
  if (i32_elem(f, &p.shape, 0) != (int64_t)len) {
    say(f, "HuffDecode(%s): %s holds %zu bytes, but its shape says %lld", t.name, what, len,
        (long long)i32_elem(f, &p.shape, 0));
    return DC_UNPACK_BAD_PACKED;
  }
  dc_tensor_info info;
  dc_status st = dc_peek(raw, len, &info);
  if (st != DC_OK) return packed_refused(f, t.name, DC_PEEK_FAILURE(st), st, raw, len);
  int same = (int)info.dtype == t.type && info.rank == t.shape.count;
  for (uint32_t k = 0; same && k < info.rank; ++k) {
    same = i32_elem(f, &t.shape, k) >= 0 && (uint64_t)i32_elem(f, &t.shape, k) == info.dims[k];
  }
  if (!same) {
    say(f, "HuffDecode(%s): the packed data's dtype/shape do not match the tensor's", t.name);
    return DC_UNPACK_BAD_PACKED;
  }
  if (!pl->list_only && (t.buffer == 0 || t.buffer >= pl->buffers.count)) {
    say(f,
        "HuffDecode(%s): the tensor has no buffer of its own (packed from a DENSIFY op?); "
        "this unpacker cannot add buffers: use dc_keras.export.unpack",
        t.name);
    return DC_UNPACK_UNSUPPORTED;
  }
  if (pl->total > pl->max_output || info.output_bytes + 64 > pl->max_output - pl->total) {
    say(f, "HuffDecode(%s): the unpacked model would exceed %zu bytes%s", t.name, pl->max_output,
        too_large_fix(pl->max_output));
    return DC_UNPACK_TOO_LARGE;
  }
  if (!add_job(pl)) return say(f, "out of memory"), DC_UNPACK_NO_MEMORY;
  dc_decode_job* j = &pl->jobs[pl->num_jobs];
  j->packed = raw;
  j->packed_size = len;
  j->out_size = (size_t)info.output_bytes;
  j->out = pl->list_only ? NULL : dc_alloc_output(j->out_size);
  j->status = DC_OK;
  if (!j->out && !pl->list_only) return say(f, "out of memory (%s)", t.name), DC_UNPACK_NO_MEMORY;
  Target* tg = &pl->targets[pl->num_jobs];
  tg->buffer = t.buffer;
  tg->packed_buffer = p.buffer;
  tg->subgraph = s;
  tg->packed_tensor = i32_elem(f, &ins, 0);
  memcpy(tg->name, t.name, sizeof t.name);
  tg->rank = info.rank;
  for (uint32_t k = 0; k < info.rank; ++k) tg->dims[k] = (int32_t)info.dims[k];
  pl->num_jobs++;
  pl->total += j->out_size + 64; /* data + table + alignment */
  return DC_UNPACK_OK;
}

/* Reads the model and plans every HuffDecode op, in subgraph order. */
static int plan_model(Fb* f, Plan* pl) {
  size_t model;
  if (f->n < 8) {
    return say(f, "not a .tflite flatbuffer (only %zu bytes)", f->n), DC_UNPACK_MALFORMED;
  }
  if (memcmp(f->b + 4, "TFL3", 4) != 0) {
    return say(f, "not a .tflite flatbuffer (file identifier %02x%02x%02x%02x, not \"TFL3\")",
               f->b[4], f->b[5], f->b[6], f->b[7]),
           DC_UNPACK_MALFORMED;
  }
  int r = check_structure(f); /* the root offset first */
  if (r != DC_UNPACK_OK) return r;
  if (!deref(f, 0, &model)) return say(f, "malformed .tflite: the root table"), DC_UNPACK_MALFORMED;
  uint64_t version;
  if (!scalar(f, model, 0, 4, 0, &version)) {
    return say(f, "malformed .tflite: model table"), DC_UNPACK_MALFORMED;
  }
  if (version != 3) { /* the schema version every TFLite runtime loads */
    return say(f, "malformed .tflite: schema version %u, not 3", (unsigned)version),
           DC_UNPACK_MALFORMED;
  }
  pl->model = model;
  if (!vec(f, model, 1, 4, &pl->codes) || !vec(f, model, 2, 4, &pl->subgraphs) ||
      !vec(f, model, 4, 4, &pl->buffers)) {
    return say(f, "malformed .tflite: model table"), DC_UNPACK_MALFORMED;
  }
  pl->is_huff = (unsigned char*)calloc(pl->codes.count + 1, 1);
  if (!pl->is_huff) return say(f, "out of memory"), DC_UNPACK_NO_MEMORY;
  for (size_t k = 0; k < pl->codes.count; ++k) {
    int yes = 0;
    if (!is_huff_code(f, &pl->codes, k, &yes)) return DC_UNPACK_MALFORMED;
    pl->is_huff[k] = (unsigned char)yes;
  }
  for (size_t s = 0; s < pl->subgraphs.count; ++s) {
    size_t st, ot;
    Vec tensors, ops;
    if (!table_at(f, &pl->subgraphs, s, &st) || !vec(f, st, 0, 4, &tensors) ||
        !vec(f, st, 3, 4, &ops)) {
      return say(f, "malformed .tflite: subgraph %zu", s), DC_UNPACK_MALFORMED;
    }
    for (size_t o = 0; o < ops.count; ++o) {
      uint64_t code;
      if (!table_at(f, &ops, o, &ot) || !scalar(f, ot, 0, 4, 0, &code) || code >= pl->codes.count) {
        return say(f, "malformed .tflite: subgraph %zu operator %zu", s, o), DC_UNPACK_MALFORMED;
      }
      if (!pl->is_huff[code]) continue;
      int r = plan_op(f, pl, &tensors, s, o, ot);
      if (r != DC_UNPACK_OK) return r;
    }
  }
  return DC_UNPACK_OK;
}

/* After decoding: several ops may fill one buffer only with equal bytes, and
 * a buffer that already has data must hold exactly the decoded bytes. */
static int check_targets(Fb* f, Plan* pl, unsigned char* keep) {
  for (size_t i = 0; i < pl->num_jobs; ++i) {
    const dc_decode_job* j = &pl->jobs[i];
    if (j->status != DC_OK) {
      return packed_refused(f, pl->targets[i].name, "decoding failed", j->status, j->packed,
                            j->packed_size);
    }
    keep[i] = 1;
    for (size_t e = 0; e < i && keep[i]; ++e) {
      if (pl->targets[e].buffer != pl->targets[i].buffer) continue;
      if (pl->jobs[e].out_size != j->out_size || memcmp(pl->jobs[e].out, j->out, j->out_size)) {
        say(f,
            "HuffDecode(%s): buffer %u is shared with '%s' but decodes to different bytes; "
            "use dc_keras.export.unpack",
            pl->targets[i].name, (unsigned)pl->targets[i].buffer, pl->targets[e].name);
        return DC_UNPACK_UNSUPPORTED;
      }
      keep[i] = 0; /* same bytes: the first one's Buffer serves both */
    }
    const uint8_t* have = NULL;
    size_t have_n = 0;
    if (!buffer_bytes(f, &pl->buffers, pl->targets[i].buffer, &have, &have_n)) {
      return DC_UNPACK_MALFORMED;
    }
    if (have_n && (have_n != j->out_size || memcmp(have, j->out, have_n))) {
      say(f, "HuffDecode(%s): its buffer %u already holds other data; use dc_keras.export.unpack",
          pl->targets[i].name, (unsigned)pl->targets[i].buffer);
      return DC_UNPACK_UNSUPPORTED;
    }
    if (have_n) keep[i] = 0; /* already there */
  }
  return DC_UNPACK_OK;
}

static size_t align_up(size_t x, size_t a) {
  return (x + a - 1) / a * a;
}

/* Removes the HuffDecode ops from every operator vector of `out` (a copy of
 * the input): kept entries move down, their offsets grow by the distance. */
static void drop_ops(Fb* f, const Plan* pl, uint8_t* out) {
  for (size_t s = 0; s < pl->subgraphs.count; ++s) {
    size_t st = 0, ot = 0;
    Vec ops = {0, 0};
    uint64_t code = 0;
    (void)table_at(f, &pl->subgraphs, s, &st); /* all checked by plan_model */
    (void)vec(f, st, 3, 4, &ops);
    size_t kept = 0;
    for (size_t o = 0; o < ops.count; ++o) {
      (void)table_at(f, &ops, o, &ot);
      (void)scalar(f, ot, 0, 4, 0, &code);
      if (pl->is_huff[code]) continue;
      uint32_t u = le32(f->b + ops.start + 4 * o) + (uint32_t)(4 * (o - kept));
      put32(out + ops.start + 4 * kept, u);
      ++kept;
    }
    if (kept != ops.count) put32(out + ops.start - 4, (uint32_t)kept);
  }
  size_t n = pl->codes.count;
  while (n > 0 && pl->is_huff[n - 1]) --n; /* no op uses them any more */
  if (n != pl->codes.count) put32(out + pl->codes.start - 4, (uint32_t)n);
}

/* ---- the zip of associated files after the model (FORMAT.md §15) ----- */

static uint16_t le16(const uint8_t* p) {
  return (uint16_t)(p[0] | p[1] << 8);
}

static uint64_t le64(const uint8_t* p) {
  return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int zip_bad(Fb* f, const char* what) {
  say(f,
      "the file ends with a zip end record but its archive (TFLite metadata's associated "
      "files) cannot be moved: %s; dc_keras.export.unpack writes the model without it",
      what);
  return DC_UNPACK_UNSUPPORTED;
}

static int zip_field(Zip* z, size_t cap, size_t pos, unsigned width, size_t target) {
  if (z->num_fields >= cap) return 0;
  ZipField e = {pos, target, width};
  z->fields[z->num_fields++] = e;
  return 1;
}

/* The local header offset (and the position of its field) of the central directory entry at
 * `c`, from its zip64 extra field when the 32-bit one is saturated.  0 if malformed. */
static int zip_local_offset(const uint8_t* b, size_t c, size_t extra, size_t extra_end,
                            uint64_t* local, size_t* where, unsigned* width) {
  uint32_t usize = le32(b + c + 24), csize = le32(b + c + 20), off = le32(b + c + 42);
  *local = off;
  *where = c + 42;
  *width = 4;
  if (usize != 0xffffffffu && csize != 0xffffffffu && off != 0xffffffffu &&
      le16(b + c + 34) != 0xffff) {
    return 1;
  }
  while (extra_end - extra >= 4) { /* zip64 extra: the saturated fields, in this order */
    size_t tag = le16(b + extra), size = le16(b + extra + 2), at = extra + 4;
    if (size > extra_end - at) return 0;
    if (tag == 1) {
      at += 8 * (size_t)(usize == 0xffffffffu) + 8 * (size_t)(csize == 0xffffffffu);
      if (off != 0xffffffffu) return at <= extra + 4 + size;
      if (at + 8 > extra + 4 + size) return 0;
      *local = le64(b + at);
      *where = at;
      *width = 8;
      return 1;
    }
    extra = at + size;
  }
  return 0;
}

/* Finds the zip whose end record ends the input (an archive comment's length included) and
 * the offset fields that must change when it moves: every local header offset, the central
 * directory's offset (end record, zip64 end record) and the zip64 end record's (locator).
 * Offsets may count from the file start (as tflite_support's MetadataPopulator writes them)
 * or from the archive start: the shift is where the central directory really is minus where
 * it says it is, as zip readers infer it.  No end record: z->start = n.  Returns a status. */
static int find_zip(Fb* f, Zip* z) {
  const uint8_t* b = f->b;
  size_t n = f->n, eocd = n;
  z->start = n;
  if (n < 22) return DC_UNPACK_OK;
  size_t lowest = n - 22 > 0xffff ? n - 22 - 0xffff : 0;
  for (size_t p = n - 22 + 1; p-- > lowest;) {
    if (b[p] == 'P' && memcmp(b + p, "PK\5\6", 4) == 0 && p + 22 + le16(b + p + 20) == n) {
      eocd = p;
      break;
    }
  }
  if (eocd == n) return DC_UNPACK_OK;
  uint64_t disk = le16(b + eocd + 4), cd_disk = le16(b + eocd + 6), n_disk = le16(b + eocd + 8);
  uint64_t n_total = le16(b + eocd + 10), cd_size = le32(b + eocd + 12);
  uint64_t cd_offset = le32(b + eocd + 16);
  size_t cd_end = eocd, loc = eocd - 20, rec = 0;
  int z64 = eocd >= 20 && memcmp(b + loc, "PK\6\7", 4) == 0;
  if (z64) {
    if (le32(b + loc + 4) != 0 || le32(b + loc + 16) > 1) return zip_bad(f, "split over disks");
    rec = loc - 56;
    if (loc < 56 || memcmp(b + rec, "PK\6\6", 4) != 0 || le64(b + rec + 4) != 44) {
      return zip_bad(f, "a zip64 end record not just before its locator, or with extensible data");
    }
    disk = le32(b + rec + 16);
    cd_disk = le32(b + rec + 20);
    n_disk = le64(b + rec + 24);
    n_total = le64(b + rec + 32);
    cd_size = le64(b + rec + 40);
    cd_offset = le64(b + rec + 48);
    cd_end = rec;
  }
  if (disk || cd_disk || n_disk != n_total) return zip_bad(f, "split over disks");
  if (cd_size > cd_end || n_total > cd_size / 46 || cd_offset > DC_FLATBUFFER_MAX) {
    return zip_bad(f, "its end record does not match its central directory");
  }
  size_t cd = cd_end - (size_t)cd_size, cap = (size_t)n_total + 3, pos = cd;
  z->fields = (ZipField*)calloc(cap, sizeof *z->fields);
  if (!z->fields) return say(f, "out of memory"), DC_UNPACK_NO_MEMORY;
  if (z64) {
    (void)zip_field(z, cap, loc + 8, 8, rec);
    (void)zip_field(z, cap, rec + 48, 8, cd);
  }
  if (!z64 || le32(b + eocd + 16) != 0xffffffffu) (void)zip_field(z, cap, eocd + 16, 4, cd);
  size_t start = cd;
  for (uint64_t k = 0; k < n_total; ++k) {
    if (cd_end - pos < 46 || memcmp(b + pos, "PK\1\2", 4) != 0) {
      return zip_bad(f, "a central directory entry is missing or truncated");
    }
    size_t extra = pos + 46 + le16(b + pos + 28), extra_end = extra + le16(b + pos + 30);
    size_t end = extra_end + le16(b + pos + 32), where = 0;
    uint64_t local = 0;
    unsigned width = 4;
    if (end > cd_end || !zip_local_offset(b, pos, extra, extra_end, &local, &where, &width)) {
      return zip_bad(f, "a central directory entry is malformed");
    }
    /* its file position: local + (cd - cd_offset), all below 2^32 here */
    if (local > DC_FLATBUFFER_MAX || local + cd < cd_offset ||
        (size_t)(local + cd - cd_offset) + 30 > cd ||
        memcmp(b + (size_t)(local + cd - cd_offset), "PK\3\4", 4) != 0) {
      return zip_bad(f, "a local header is not where the central directory says");
    }
    size_t at = (size_t)(local + cd - cd_offset);
    if (at < start) start = at;
    (void)zip_field(z, cap, where, width, at);
    pos = end;
  }
  if (pos != cd_end) return zip_bad(f, "its central directory size does not match its entries");
  z->start = start;
  return DC_UNPACK_OK;
}

/* find_zip, and no buffer's data (Buffer.offset) may lie in the zip (the copy of the model
 * ends where the zip starts). */
static int plan_zip(Fb* f, Plan* pl) {
  int r = find_zip(f, &pl->zip);
  for (size_t i = 0; r == DC_UNPACK_OK && pl->zip.start < f->n && i < pl->buffers.count; ++i) {
    const uint8_t* p = NULL;
    size_t len = 0;
    if (!buffer_bytes(f, &pl->buffers, (uint32_t)i, &p, &len)) return DC_UNPACK_MALFORMED;
    if (len && (size_t)(p - f->b) + len > pl->zip.start) {
      return zip_bad(f, "a buffer's data lie inside it");
    }
  }
  return r;
}

/* Writes the input's zip at out + at, every offset field counting from the output's start. */
static void move_zip(const Fb* f, const Zip* z, uint8_t* out, size_t at) {
  memcpy(out + at, f->b + z->start, f->n - z->start);
  for (size_t i = 0; i < z->num_fields; ++i) {
    const ZipField* e = &z->fields[i];
    uint8_t* p = out + at + (e->pos - z->start);
    uint64_t v = (uint64_t)(at + (e->target - z->start));
    put32(p, (uint32_t)v);
    if (e->width == 8) put32(p + 4, (uint32_t)(v >> 32));
  }
}

/* New contents for buffer `buffer`, appended by append_buffers. */
typedef struct {
  uint32_t buffer;
  const void* data;
  size_t size;
} NewBuffer;

/* Lays out [input][pad][vtable][Buffer table, data]...[zip] (data `align`-aligned in the file)
 * and points each buffers[b] entry at its new table.  A copy of the input if count and cut are
 * 0.  With cut > 0 only the input's first `cut` bytes are kept, then 4 bytes for tail_fix's
 * vtable.  The input's model ends where its appended zip starts (zip->start, the input's size
 * when it has none); that zip is moved to the end (move_zip). */
static int append_buffers(Fb* f, const Vec* buffers, const NewBuffer* nb, size_t count,
                          size_t align, size_t max_output, size_t cut, const Zip* zip,
                          uint8_t** out, size_t* out_n) {
  size_t model_n = count || cut ? zip->start : f->n, zip_n = f->n - model_n;
  size_t in_n = cut ? cut + 4 : model_n;
  size_t base = align_up(in_n, 16), end = count ? base + 8 : in_n;
  for (size_t i = 0; i < count; ++i) {
    size_t v = align_up(end + 8 + 4, align) - 4; /* data at v + 4, aligned */
    end = align_up(v + 4 + nb[i].size, 4);
  }
  if (end > max_output || zip_n > max_output - end) {
    return say(f, "the unpacked model would exceed %zu bytes%s", max_output,
               too_large_fix(max_output)),
           DC_UNPACK_TOO_LARGE;
  }
  uint8_t* o = (uint8_t*)calloc(1, end + zip_n);
  if (!o) return say(f, "out of memory (%zu bytes)", end + zip_n), DC_UNPACK_NO_MEMORY;
  memcpy(o, f->b, cut ? cut : model_n);
  if (zip_n) move_zip(f, zip, o, end);
  static const uint8_t vtable[8] = {6, 0, 8, 0, 4, 0, 0, 0}; /* Buffer: field 0 (data) at +4 */
  if (count) memcpy(o + base, vtable, sizeof vtable);
  size_t pos = base + 8;
  for (size_t i = 0; i < count; ++i) {
    size_t t = pos, v = align_up(t + 8 + 4, align) - 4;
    put32(o + t, (uint32_t)(t - base));        /* soffset: vtable = t - (t - base) */
    put32(o + t + 4, (uint32_t)(v - (t + 4))); /* data vector */
    put32(o + v, (uint32_t)nb[i].size);
    memcpy(o + v + 4, nb[i].data, nb[i].size);
    size_t entry = buffers->start + 4 * (size_t)nb[i].buffer;
    put32(o + entry, (uint32_t)(t - entry)); /* buffers[b] -> the new table */
    pos = align_up(v + 4 + nb[i].size, 4);
  }
  *out = o;
  *out_n = end + zip_n;
  return DC_UNPACK_OK;
}

/* ---- dropping the packed data (FORMAT.md §15) ----------------------- */

/* One packed data vector and the Buffer table that points at it. */
typedef struct {
  size_t begin, end; /* its length prefix .. one past its last byte */
  size_t table;      /* its Buffer table */
} Tail;

static int cmp_tail(const void* a, const void* b) {
  size_t x = ((const Tail*)a)->begin, y = ((const Tail*)b)->begin;
  return x < y ? -1 : x > y;
}

/* 1 if the buffers marked in `mark` are read by HuffDecode inputs only (no
 * other tensor, no metadata); 0 if not or unreadable. */
static int only_packed_readers(Fb* f, const Plan* pl, const unsigned char* mark) {
  size_t nb = pl->buffers.count, st, tt, mt;
  for (size_t s = 0; s < pl->subgraphs.count; ++s) {
    Vec tensors;
    if (!table_at(f, &pl->subgraphs, s, &st) || !vec(f, st, 0, 4, &tensors)) return 0;
    for (size_t k = 0; k < tensors.count; ++k) {
      uint64_t b;
      if (!table_at(f, &tensors, k, &tt) || !scalar(f, tt, 2, 4, 0, &b)) return 0;
      if (b >= nb || !mark[b]) continue;
      int packed_input = 0;
      for (size_t i = 0; i < pl->num_jobs && !packed_input; ++i) {
        packed_input = pl->targets[i].subgraph == s && pl->targets[i].packed_tensor == (int32_t)k;
      }
      if (!packed_input) return 0;
    }
  }
  Vec mb, md;
  if (!vec(f, pl->model, 5, 4, &mb) || !vec(f, pl->model, 6, 4, &md)) return 0;
  for (size_t k = 0; k < mb.count; ++k) {
    uint32_t b = (uint32_t)i32_elem(f, &mb, k);
    if (b < nb && mark[b]) return 0;
  }
  for (size_t k = 0; k < md.count; ++k) {
    uint64_t b;
    if (!table_at(f, &md, k, &mt) || !scalar(f, mt, 1, 4, 0, &b)) return 0;
    if (b < nb && mark[b]) return 0;
  }
  return 1;
}

/* 1 if input[from, to) holds zero bytes only (padding). */
static int zeros(const Fb* f, size_t from, size_t to) {
  for (size_t k = from; k < to; ++k) {
    if (f->b[k]) return 0;
  }
  return 1;
}

/* Checks the tail rules; the cut position or 0 (t: the count packed vectors; slack: the most
 * padding between them, 3 for inline vectors (4-byte aligned), 15 for data stored after the
 * flatbuffer (Buffer.offset, 16-byte aligned by dc_keras' writer); padding must be zeros). */
static size_t tail_cut(Fb* f, const Plan* pl, const unsigned char* mark, Tail* t, size_t count,
                       size_t slack) {
  if (!count || !only_packed_readers(f, pl, mark)) return 0;
  qsort(t, count, sizeof *t, cmp_tail);
  size_t cut = t[0].begin, model_end = pl->zip.start; /* the zip after the model moves */
  if (cut % 4 || t[count - 1].end > model_end || model_end - t[count - 1].end > slack ||
      !zeros(f, t[count - 1].end, model_end)) {
    return 0;
  }
  for (size_t k = 0; k < count; ++k) {
    if (t[k].table >= cut) return 0; /* the pointing Buffer table is in the tail */
    if (k + 1 < count && (t[k + 1].begin < t[k].end || t[k + 1].begin - t[k].end > slack ||
                          !zeros(f, t[k].end, t[k + 1].begin))) {
      return 0;
    }
  }
  for (size_t b = 0; b < pl->buffers.count; ++b) { /* no other buffer's data in the tail */
    size_t bt;
    Vec data;
    uint64_t off, size;
    if (mark[b]) continue;
    if (!table_at(f, &pl->buffers, b, &bt) || !vec(f, bt, 0, 1, &data) ||
        !scalar(f, bt, 1, 8, 0, &off) || !scalar(f, bt, 2, 8, 0, &size)) {
      return 0;
    }
    if (data.start && data.start > cut) return 0;
    if (off > 1 && size && off + size > cut) return 0;
  }
  return cut;
}

/* When the packed tensors' data vectors are the file's last bytes, read by
 * nothing but their Buffer tables (as dc_keras.export.pack writes them), the
 * output ends before them: returns that position (their Buffer tables then get
 * a vtable there without fields: tail_fix) and the vectors in *tails; else 0
 * (the packed data stay as unused constants, e.g. in files packed before). */
static size_t packed_tail(Fb* f, const Plan* pl, Tail** tails, size_t* num) {
  size_t nb = pl->buffers.count, count = 0, cut = 0;
  int external = 0;
  unsigned char* mark = (unsigned char*)calloc(nb + 1, 1);
  Tail* t = (Tail*)calloc(pl->num_jobs + 1, sizeof *t);
  int ok = mark && t;
  for (size_t i = 0; ok && i < pl->num_jobs; ++i) {
    uint32_t b = pl->targets[i].packed_buffer;
    size_t bt = 0;
    Vec data;
    if (b >= nb || mark[b]) continue;
    mark[b] = 1;
    /* inline data (from its length prefix), or data stored after the flatbuffer
     * (Buffer.offset/size, a file packed with buffers="external"); not both kinds */
    uint64_t off = 0, size = 0;
    ok = table_at(f, &pl->buffers, b, &bt) && vec(f, bt, 0, 1, &data) &&
         scalar(f, bt, 1, 8, 0, &off) && scalar(f, bt, 2, 8, 0, &size);
    int ext = ok && data.count == 0 && off > 1 && size > 0 && off <= f->n && size <= f->n - off;
    ok = ok && (data.count > 0 || ext) && (count == 0 || ext == external);
    if (ok) {
      Tail e = {ext ? (size_t)off : data.start - 4,
                ext ? (size_t)(off + size) : data.start + data.count, bt};
      external = ext;
      t[count++] = e;
    }
  }
  if (ok) cut = tail_cut(f, pl, mark, t, count, external ? 15 : 3);
  free(mark);
  if (!cut) {
    free(t);
    t = NULL;
    count = 0;
  }
  *tails = t;
  *num = count;
  return cut;
}

/* Gives each packed Buffer table the vtable without fields written at `cut`:
 * no data field at all, as a Buffer pack empties (an empty data vector would
 * make TFLite read the tensor as a 0-byte constant). */
static void tail_fix(uint8_t* out, size_t cut, const Tail* t, size_t count) {
  static const uint8_t kNoFields[4] = {4, 0, 4, 0}; /* vtable 4 B, table 4 B */
  if (count) memcpy(out + cut, kNoFields, sizeof kNoFields);
  for (size_t k = 0; k < count; ++k) {
    /* soffset = table - vtable, negative: the vtable is after the table */
    put32(out + t[k].table, (uint32_t)(-(int64_t)(cut - t[k].table)));
  }
}

/* The decoded tensors as new buffers, the packed data dropped when they are
 * the file's tail, then the HuffDecode ops removed. */
static int assemble(Fb* f, const Plan* pl, const unsigned char* keep, uint8_t** out,
                    size_t* out_n) {
  NewBuffer* nb = (NewBuffer*)calloc(pl->num_jobs + 1, sizeof *nb);
  if (!nb) return say(f, "out of memory"), DC_UNPACK_NO_MEMORY;
  size_t count = 0;
  for (size_t i = 0; i < pl->num_jobs; ++i) {
    if (!keep[i]) continue;
    NewBuffer e = {pl->targets[i].buffer, pl->jobs[i].out, pl->jobs[i].out_size};
    nb[count++] = e;
  }
  Tail* tails = NULL;
  size_t num_tails = 0, cut = packed_tail(f, pl, &tails, &num_tails);
  int r = append_buffers(f, &pl->buffers, nb, count, kDataAlign, pl->max_output, cut, &pl->zip, out,
                         out_n);
  free(nb);
  if (r == DC_UNPACK_OK) {
    tail_fix(*out, cut, tails, num_tails);
    drop_ops(f, pl, *out);
  }
  free(tails);
  return r;
}

static void plan_free(Plan* pl) {
  for (size_t i = 0; i < pl->num_jobs; ++i) free(pl->jobs[i].out);
  free(pl->jobs);
  free(pl->targets);
  free(pl->is_huff);
  free(pl->zip.fields);
}

/* Appends what the user can do to a MALFORMED or BAD_PACKED error (the words of
 * dc_keras/_flatbuffer.py: CORRUPT_FIX, NEWER_FIX), once: every caller (an app, the Python
 * runtime, the tools) gets it from here. */
static int with_fix(Fb* f, int r) {
  if ((r != DC_UNPACK_MALFORMED && r != DC_UNPACK_BAD_PACKED) || !f->why || !f->why_n) return r;
  size_t len = strlen(f->why);
  const char* fix = DC_UNPACK_CORRUPT_FIX;
  if (r == DC_UNPACK_BAD_PACKED && f->packed_fix) {
    fix = f->packed_fix;
  } else if (r == DC_UNPACK_MALFORMED && strncmp(f->why, "not a .tflite", 13) == 0) {
    fix = "give a packed .tflite (the output of dc_keras.export.pack or dc-keras pack)";
  }
  if (*fix && len + 1 < f->why_n) {
    snprintf(f->why + len, f->why_n - len, "%s%s", len ? "; " : "", fix);
  }
  return r;
}

DC_API dc_unpack_status dc_unpack_bounded(const uint8_t* packed, size_t n, size_t max_output,
                                          uint8_t** out, size_t* out_n, char* why, size_t why_n) {
  Fb f = {packed, n, why, why_n, NULL};
  Plan pl;
  memset(&pl, 0, sizeof pl);
  pl.max_output = max_output < DC_FLATBUFFER_MAX ? max_output : DC_FLATBUFFER_MAX;
  if (why && why_n) why[0] = '\0';
  if (!out || !out_n) {
    return say(&f,
               "dc_unpack: out or out_n is NULL: pass the addresses of a uint8_t* and a size_t"),
           DC_UNPACK_ARGUMENT;
  }
  *out = NULL;
  *out_n = 0;
  if (!packed) {
    return say(&f, "dc_unpack: packed is NULL: pass the packed .tflite's bytes"),
           DC_UNPACK_ARGUMENT;
  }
  if (n > pl.max_output) {
    return say(&f, "input of %zu bytes exceeds the %zu byte bound", n, pl.max_output),
           DC_UNPACK_TOO_LARGE;
  }
  if (!dc_decode_threads_check(why, why_n)) return DC_UNPACK_ARGUMENT; /* the caller's setting */
  int r = with_fix(&f, plan_model(&f, &pl));
  if (r == DC_UNPACK_OK) r = with_fix(&f, plan_zip(&f, &pl));
  unsigned char* keep = NULL;
  if (r == DC_UNPACK_OK) {
    dc_decode_many(pl.jobs, pl.num_jobs, 0);
    keep = (unsigned char*)calloc(pl.num_jobs + 1, 1);
    r = keep ? with_fix(&f, check_targets(&f, &pl, keep))
             : (say(&f, "out of memory"), DC_UNPACK_NO_MEMORY);
  }
  if (r == DC_UNPACK_OK) r = assemble(&f, &pl, keep, out, out_n);
  free(keep);
  plan_free(&pl);
  return (dc_unpack_status)r;
}

DC_API dc_unpack_status dc_unpack(const uint8_t* packed, size_t n, uint8_t** out, size_t* out_n,
                                  char* why, size_t why_n) {
  return dc_unpack_bounded(packed, n, DC_FLATBUFFER_MAX, out, out_n, why, why_n);
}

DC_API void dc_unpack_free(uint8_t* out) {
  free(out);
}

DC_API dc_unpack_status dc_list_huffdecode(const uint8_t* model, size_t n, dc_huffdecode_op** ops,
                                           size_t* num_ops, char* why, size_t why_n) {
  Fb f = {model, n, why, why_n, NULL};
  Plan pl;
  memset(&pl, 0, sizeof pl);
  pl.max_output = DC_FLATBUFFER_MAX;
  pl.list_only = 1;
  if (why && why_n) why[0] = '\0';
  if (!ops || !num_ops) {
    return say(&f,
               "dc_list_huffdecode: ops or num_ops is NULL: pass the addresses of a "
               "dc_huffdecode_op* and a size_t"),
           DC_UNPACK_ARGUMENT;
  }
  if (!model) {
    return say(&f, "dc_list_huffdecode: model is NULL: pass the .tflite's bytes"),
           DC_UNPACK_ARGUMENT;
  }
  *ops = NULL;
  *num_ops = 0;
  int r = with_fix(&f, plan_model(&f, &pl));
  dc_huffdecode_op* list = NULL;
  if (r == DC_UNPACK_OK) {
    list = (dc_huffdecode_op*)calloc(pl.num_jobs + 1, sizeof *list);
    if (!list) r = (say(&f, "out of memory"), DC_UNPACK_NO_MEMORY);
  }
  for (size_t i = 0; list && i < pl.num_jobs; ++i) {
    list[i].packed = pl.jobs[i].packed;
    list[i].packed_size = pl.jobs[i].packed_size;
    list[i].output_bytes = pl.jobs[i].out_size;
    list[i].rank = pl.targets[i].rank;
    memcpy(list[i].dims, pl.targets[i].dims, sizeof list[i].dims);
    memcpy(list[i].name, pl.targets[i].name, sizeof list[i].name);
  }
  if (r == DC_UNPACK_OK) {
    *ops = list;
    *num_ops = pl.num_jobs;
  }
  plan_free(&pl);
  return (dc_unpack_status)r;
}

DC_API dc_unpack_status dc_align_packed(const uint8_t* model, size_t n, size_t alignment,
                                        uint8_t** out, size_t* out_n, char* why, size_t why_n) {
  Fb f = {model, n, why, why_n, NULL};
  Plan pl;
  memset(&pl, 0, sizeof pl);
  pl.max_output = DC_FLATBUFFER_MAX;
  pl.list_only = 1;
  if (why && why_n) why[0] = '\0';
  if (out && out_n) {
    *out = NULL;
    *out_n = 0;
  }
  if (!out || !out_n)
    return say(&f,
               "dc_align_packed: out or out_n is NULL: pass the addresses of a uint8_t* and "
               "a size_t"),
           DC_UNPACK_ARGUMENT;
  if (!model)
    return say(&f, "dc_align_packed: model is NULL: pass the .tflite's bytes"), DC_UNPACK_ARGUMENT;
  if (alignment < 16 || alignment > 4096 || (alignment & (alignment - 1))) {
    return say(&f,
               "dc_align_packed: alignment must be a power of 2 in 16..4096, got %zu (64 for "
               "LiteRT)",
               alignment),
           DC_UNPACK_ARGUMENT;
  }
  *out = NULL;
  *out_n = 0;
  int r = with_fix(&f, plan_model(&f, &pl));
  if (r == DC_UNPACK_OK) r = with_fix(&f, plan_zip(&f, &pl));
  NewBuffer* nb = r == DC_UNPACK_OK ? (NewBuffer*)calloc(pl.num_jobs + 1, sizeof *nb) : NULL;
  if (r == DC_UNPACK_OK && !nb) r = (say(&f, "out of memory"), DC_UNPACK_NO_MEMORY);
  size_t count = 0;
  for (size_t i = 0; nb && i < pl.num_jobs; ++i) {
    int seen = (uintptr_t)(pl.jobs[i].packed - model) % alignment == 0; /* already aligned */
    for (size_t e = 0; e < count && !seen; ++e) seen = nb[e].buffer == pl.targets[i].packed_buffer;
    if (seen) continue;
    NewBuffer b = {pl.targets[i].packed_buffer, pl.jobs[i].packed, pl.jobs[i].packed_size};
    nb[count++] = b;
  }
  if (r == DC_UNPACK_OK)
    r = append_buffers(&f, &pl.buffers, nb, count, alignment, pl.max_output, 0, &pl.zip, out,
                       out_n);
  free(nb);
  plan_free(&pl);
  return (dc_unpack_status)r;
}
