/*
 * dc_codec_spread.h -- the body of dc_codec.c's §5 spread-codebook loop, included there once per
 * instruction set (a template: C99 has no other way to give one loop two sets of primitives
 * without an indirect call per symbol).  Before each inclusion dc_codec.c defines
 *   DC_SP_BODY          the function's name,
 *   DC_SP_ATTR          its attributes (a target attribute, or nothing),
 *   DC_SP_LOW(w, n)     the low n bits of the 64-bit w (0 <= n <= 63),
 *   DC_SP_REFILL(w, p)  the marker refill of one stream (see dc_codec.c);
 * this file undefines them at its end.  The body's contract is in dc_codec.c, above its
 * inclusion.
 */
DC_SP_ATTR DC_INLINE dc_status DC_SP_BODY(const uint8_t* data, const dc_header* h,
                                          const uint16_t* tab, const uint8_t* spread, uint8_t* out,
                                          cksum* ck, const uint32_t S) {
  bitreader br[4];
  const uint32_t L = h->index_code.max_len;
  const uint64_t n = h->info.num_elements, rounds = n / 4;
  uint64_t k = 0, it, i, w[4], p[4];
  uint32_t s;
  streams_init(br, h);
  for (s = 0; s < 4; ++s) {
    w[s] = 1;
    p[s] = br[s].pos;
  }
  while ((it = min_u64(min_u64(min_u64(mark_safe(p[0], br[0].end), mark_safe(p[1], br[1].end)),
                               min_u64(mark_safe(p[2], br[2].end), mark_safe(p[3], br[3].end))),
                       min_u64((rounds - k) / S, DC_CHUNK_ITERS))) > 0) {
    uint8_t* o = out + k * 16u;
    uint64_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
    k += S * it;
    for (; it > 0; --it, o += 16u * S) {
      uint32_t r;
      DC_SP_REFILL(w0, p0);
      DC_SP_REFILL(w1, p1);
      DC_SP_REFILL(w2, p2);
      DC_SP_REFILL(w3, p3);
      for (r = 0; r < S; ++r) {
        DC_SPREAD_SYM(w0, o + 16 * r);
        DC_SPREAD_SYM(w1, o + 16 * r + 4);
        DC_SPREAD_SYM(w2, o + 16 * r + 8);
        DC_SPREAD_SYM(w3, o + 16 * r + 12);
      }
    }
    w[0] = w0;
    w[1] = w1;
    w[2] = w2;
    w[3] = w3;
    p[0] = p0;
    p[1] = p1;
    p[2] = p2;
    p[3] = p3;
    ck_upto(ck, out, (size_t)(k * 16u));
  }
  for (s = 0; s < 4; ++s) { /* the tail, each stream on its own with the safe refill */
    bitreader* b = &br[s];
    dc_status st;
    b->count = 63u - lead_zeros(w[s]);
    b->bits = DC_SP_LOW(w[s], b->count);
    b->pos = (size_t)p[s];
    for (i = k * 4 + s; i < n; i += 4) {
      uint32_t e;
      br_refill_safe(b, data);
      e = tab[DC_SP_LOW(b->bits, L)];
      b->bits >>= e & 63u;
      b->count -= e & 63u;
      memcpy(out + i * 4u, spread + e, 4u);
    }
    st = br_finish(b, data);
    if (st != DC_OK) return st;
  }
  return DC_OK;
}
#undef DC_SP_BODY
#undef DC_SP_ATTR
#undef DC_SP_LOW
#undef DC_SP_REFILL
