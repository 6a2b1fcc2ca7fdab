"""codec.encode(max_bytes=...): pack's cap. A tensor pack keeps raw (unclustered int32 / int16,
random int8) had every layout made and written first (grouped ones 1.3-1.7x its size: ~4.7 s and
~4.3x its memory for a 4096 x 4096 int32 tensor); with the cap, layouts whose size bounded from
counts exceeds it are not made and MaxBytesError says so. Output that fits must be the bytes
max_bytes=None writes, and the error's size a true lower bound (the exact size when ``exact``)."""
import pickle
import tracemalloc

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import codec, export
from dc_keras.codec import _layouts
from dc_keras.export import _inspect, _pack

import test_codec_identity as ident


def _encode_or_error(w, **opts):
    try:
        return codec.encode(w, **opts)
    except codec.MaxBytesError as exc:
        return exc
    except ValueError as exc:
        return f"ValueError: {exc}"


def test_output_under_the_cap_is_byte_identical_and_the_bound_never_exceeds_the_size():
    """Every tensor and option set of test_codec_identity (~1,400: every dtype and layout): with
    max_bytes = its packed size the same bytes; with less (1 B less, pack's cap, half) a
    MaxBytesError whose size is the exact one or below it; with a cap no tensor reaches, the same
    bytes or ValueError message as without. Some errors must come from layouts not made (a bound,
    not the size), or the test would not test the bounds."""
    bounded, checked = 0, 0
    for name, w, opts in ident.cases():
        base = _encode_or_error(w, **opts)
        assert _encode_or_error(w, **opts, max_bytes=1 << 62) == base, name
        if not isinstance(base, bytes):
            continue
        assert codec.encode(w, **opts, max_bytes=len(base)) == base, name
        for cap in {len(base) - 1, _pack.max_packed_bytes(len(base)), len(base) // 2}:
            if cap < 0:
                continue
            exc = _encode_or_error(w, **opts, max_bytes=cap)
            assert isinstance(exc, codec.MaxBytesError), (name, cap, exc)
            assert exc.max_bytes == cap and cap < exc.packed_bytes <= len(base), (name, cap, exc.packed_bytes, len(base))
            assert exc.packed_bytes == len(base) or not exc.exact, name
            bounded += not exc.exact
            checked += 1
    assert checked > 2000 and bounded > 500, (checked, bounded)


def _wide_int32(n, seed=0):
    """Every int32 bit pattern equally likely: nothing packs it (values of +-2^20, as before the
    integer planes of §17, now pack to ~66 %: tests/test_export_v4_ints.py)."""
    return np.random.default_rng(seed).integers(-(1 << 31), 1 << 31, (n, n)).astype(np.int32)


def _peak(fn, *args, **kwargs):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            out = fn(*args, **kwargs)
        except codec.MaxBytesError as exc:
            out = exc
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", ["i32_wide", "i16_raw", "i8_raw", "i16_pcq"])
def test_a_tensor_pack_keeps_raw_is_not_grouped_under_packs_cap(case, monkeypatch):
    """bench_scale.py --codec's incompressible tensors (1024 x 1024) under pack's cap: no grouped
    plan is built, nor (where group 0's distinct values already make the tables too big) the
    per-group counts, so encode allocates ~1.5x the tensor (mostly fixed) instead of 8-14x; the
    error's bound is at most the size encode writes without the cap."""
    from _benchmarks import load as load_bench

    w = load_bench("bench_scale").codec_tensor(case, 1024)
    # i32_wide (+-2^20): §17's integer planes pack it to 66 % (version 4); the grouped plans under
    # test are the ones of the layouts before it
    opts = {"version": 3} if case == "i32_wide" else {}
    full = codec.encode(w, **opts)
    cap = _pack.max_packed_bytes(w.nbytes)
    assert len(full) > cap  # the case under test: pack keeps it raw
    built, counted = [], []
    grouped, distinct = _layouts._Grouped, _layouts._distinct_per_group
    monkeypatch.setattr(_layouts, "_Grouped", lambda *a, **k: built.append(1) or grouped(*a, **k))
    monkeypatch.setattr(_layouts, "_distinct_per_group", lambda *a: counted.append(1) or distinct(*a))
    exc, peak = _peak(codec.encode, w, max_bytes=cap, **opts)
    assert isinstance(exc, codec.MaxBytesError) and cap < exc.packed_bytes <= len(full)
    assert not exc.exact, exc  # a bound (16-bit: §17's pass stopped at the cap; it was its exact size)
    assert not built, f"{len(built)} grouped plan(s) made for a tensor that cannot fit"
    countings = len(counted)  # (the uncapped encode below counts too)
    _, uncapped_peak = _peak(codec.encode, w, **opts)
    if case == "i8_raw":  # 256 values per group: small tables; the per-group counts bound the codes
        assert countings == 2  # their histograms remain; not the dense plan's indices (2 B each)
        assert peak < uncapped_peak - 2 * w.nbytes, (peak / w.nbytes, uncapped_peak / w.nbytes)
        return
    assert countings == 0
    # fixed: a 256 K-element chunk's int64 bincount and a 2^16 histogram (16-bit types); 8-14x without the cap
    assert peak < 0.5 * w.nbytes + (4 << 20), f"encode allocated {peak / w.nbytes:.2f}x the tensor"
    assert uncapped_peak > 4 * w.nbytes


def test_a_group_with_more_values_than_a_table_holds_is_refused_as_without_the_cap(monkeypatch):
    """int32, 5000 distinct values in each row and column: no grouping fits 4096 entries. With the
    cap that is seen from group 0 alone (no per-group counting), and the error is the refusal
    max_bytes=None raises, not a size: pack reports it as refused ("cluster it"), as before."""
    w = _wide_int32(5000)[:, :5000]
    with pytest.raises(ValueError) as without:
        codec.encode(w, version=3)  # version 4 has §17 for it (kept raw under the cap: MaxBytesError)
    counted = []
    distinct = _layouts._distinct_per_group
    monkeypatch.setattr(_layouts, "_distinct_per_group", lambda *a: counted.append(1) or distinct(*a))
    with pytest.raises(ValueError) as capped:
        codec.encode(w, max_bytes=_pack.max_packed_bytes(w.nbytes), version=3)
    assert type(capped.value) is ValueError and str(capped.value) == str(without.value)
    assert "needs more than 4096 entries per group" in str(capped.value) and not counted


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100", np.float32(3)])
def test_max_bytes_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match=r"max_bytes must be None or a non-negative int, got"):
        codec.encode(np.zeros(4, np.float32), max_bytes=bad)


def test_max_bytes_error_is_a_value_error_that_pickles_and_names_the_fix():
    w = _wide_int32(64)
    with pytest.raises(codec.MaxBytesError) as info:
        codec.encode(w, max_bytes=100)
    exc = info.value
    assert isinstance(exc, ValueError) and exc.max_bytes == 100 and exc.packed_bytes > 100
    assert "more than max_bytes = 100" in str(exc) and "keep the tensor as it is" in str(exc)
    back = pickle.loads(pickle.dumps(exc))
    assert (type(back), back.max_bytes, back.packed_bytes, back.exact, str(back)) == (
        type(exc), exc.max_bytes, exc.packed_bytes, exc.exact, str(exc))
    empty = np.zeros((0, 3), np.float32)  # no plan at all: the whole output is the size
    with pytest.raises(codec.MaxBytesError) as info:
        codec.encode(empty, max_bytes=3)
    assert info.value.exact and info.value.packed_bytes == len(codec.encode(empty))


def test_max_packed_bytes_is_the_largest_size_keep_reason_lets_pack_use():
    rng = np.random.default_rng(0)
    for raw in [0, 1, 80, 81, 82, 90, 100, 255, 256, 800, 801, 1000, 4096, 10 ** 6 + 3, *rng.integers(1, 10 ** 8, 50)]:
        for min_saving in (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9, 0.999):
            cap = _pack.max_packed_bytes(int(raw), min_saving)
            assert _pack.keep_reason(cap + 1, int(raw), min_saving) is not None, (raw, min_saving)
            if cap >= 0:
                assert _pack.keep_reason(cap, int(raw), min_saving) is None, (raw, min_saving)


def _model_with(values):
    """The test models' dense .tflite with its [10, 48] float kernel replaced by a constant of
    ``values``' dtype and shape (a buffer no TFLite op could run: pack and inspect read it as data)."""
    import _export_models as em

    m = fb.read_model(em.tflite("dense", None))
    [w] = [t for t in m.subgraphs[0].tensors if list(t.shape) == [10, 48]]
    w.type = {np.dtype(np.int32): fb.schema.TensorType.INT32, np.dtype(np.int16): fb.schema.TensorType.INT16}[values.dtype]
    w.shape = list(values.shape)
    m.buffers[w.buffer].data = np.frombuffer(values.tobytes(), np.uint8)
    return fb.write_model(m), fb.tensor_name(w)


def test_pack_keeps_an_unclustered_int32_constant_raw_without_grouping_it(monkeypatch):
    """pack on a model holding a 1024 x 1024 unclustered int32 constant: kept raw (not refused,
    as before the cap), the rest packed as without it, and codec.encode raised MaxBytesError for
    it instead of making its grouped layouts (~1.34x its size)."""
    values = _wide_int32(1024)
    data, name = _model_with(values)
    calls = []
    encode = codec.encode

    def spy(arr, **kw):
        try:
            return encode(arr, **kw)
        except codec.MaxBytesError as exc:
            calls.append((arr.shape, kw.get("max_bytes"), exc))
            raise

    monkeypatch.setattr(codec, "encode", spy)
    out, stats = _pack.pack_with_stats(data)
    [(shape, cap, exc)] = calls
    assert shape == (1024, 1024) and cap == _pack.max_packed_bytes(values.nbytes) and not exc.exact
    assert name not in [n for n, _, _ in stats["refused"]] and stats["packed_tensors"] > 0
    back = fb.read_model(out)
    [t] = [t for t in back.subgraphs[0].tensors if fb.tensor_name(t) == name]
    assert fb.buffer_bytes(back, t.buffer) == values.tobytes()


def test_inspect_says_at_least_for_a_big_kept_constant_and_the_exact_size_for_a_small_one(monkeypatch):
    """inspect's "kept" reason names the packed size; for constants of at least BOUND_KEPT_FROM
    bytes encoded under pack's cap it can only name a lower bound, and says "does not pack below"
    and that the encoding stopped at the cap (the bound is at most what the codec writes without
    the cap, here over raw: it said "packs to at least N B = 100% of raw (min_saving)", as if
    min_saving had kept it). A smaller one keeps its exact size."""
    values = _wide_int32(1024)
    data, name = _model_with(values)
    full = len(codec.encode(values))
    [row] = [r for r in export.inspect(data).rows if r.name == name]
    assert (row.status, row.packed_bytes) == ("kept", None)
    size = int(row.reason.split("does not pack below ")[1].split(" B")[0])
    cap = _pack.max_packed_bytes(values.nbytes)
    # §17's pass stopped once its size bounded from the classes counted reached the cap: a bound
    # below raw (the full size is just over raw), which names the cap, not a rule that kept it
    assert cap < size < values.nbytes < full
    assert row.reason == (
        f"does not pack below {size} B ({size / values.nbytes:.0%} of its {values.nbytes} B raw), "
        f"over pack's cap of {cap} B for it (the tighter of min_saving and the HuffDecode op's "
        "cost): encoding stopped there, so its full packed size, possibly over raw, is not known")
    # a bound over raw says so
    assert _pack.keep_reason(full, values.nbytes, at_least=True) == (
        f"does not pack below {full} B, no smaller than its {values.nbytes} B raw (data the packed format "
        "cannot shrink)")
    monkeypatch.setattr(_inspect, "BOUND_KEPT_FROM", values.nbytes + 1)
    [row] = [r for r in export.inspect(data).rows if r.name == name]
    assert row.reason == f"packs to {full} B, no smaller than its {values.nbytes} B raw " \
                         "(data the packed format cannot shrink)"


def _residuals_counter(monkeypatch, n):
    """Counts the elements of a tensor of ``n`` elements whose §17 residuals encode computes (its
    planning and its streams; not the 2^16 bit patterns whose residuals size a 16-bit base)."""
    from dc_keras.codec import _int_planes

    seen = []
    residuals = _int_planes.residuals

    def counting(bits, start, stop, step, *rest):
        out = residuals(bits, start, stop, step, *rest)
        if len(bits) == n:
            seen.append(len(out))
        return out

    monkeypatch.setattr(_int_planes, "residuals", counting)
    return seen


def test_int_planes_stops_its_pass_at_the_cap_with_a_bound_below_its_size(monkeypatch):
    """An int32 tensor only §17 may hold, each bit pattern equally likely (~33 bits per element):
    under a cap of half its packed size the class-count pass stops once the size bounded from the
    classes counted so far passes the cap, and MaxBytesError names that bound, under the full size
    (before: both predictors' passes ran to the end, and the bound was the exact size)."""
    w = _wide_int32(512)
    full = codec.encode(w, layouts=("int_planes",))
    cap = len(full) // 2
    seen = _residuals_counter(monkeypatch, w.size)
    with pytest.raises(codec.MaxBytesError) as err:
        codec.encode(w, layouts=("int_planes",), max_bytes=cap)
    assert cap < err.value.packed_bytes < len(full) and not err.value.exact
    assert 0 < sum(seen) <= 2 * 0.625 * w.size, sum(seen) / w.size  # each predictor: 5 steps of 8


def test_int_planes_is_not_counted_to_the_end_when_a_plan_made_is_smaller(monkeypatch):
    """A clustered int16 table (16 values per row, 70 % zeros): the grouped layout wins, §17 is
    ~1.9x bigger (2.5x at 2896 x 2896). Its base predictor is sized from the codebook's value counts (no pass) and the
    previous-element one's pass stops once its bound reaches the grouped plan's size: under half
    of one pass over the elements (before: two whole passes). The bytes are those of the smallest
    plan, as before."""
    from _benchmarks import load as load_bench

    w = load_bench("bench_scale").codec_tensor("i16_pc", 512)
    forced = codec.encode(w, layouts=("int_planes",))
    seen = _residuals_counter(monkeypatch, w.size)
    packed = codec.encode(w)
    assert codec.info(packed)["layout"] == "grouped_sparse" and len(forced) > 1.5 * len(packed)
    assert 0 < sum(seen) < 0.5 * w.size, sum(seen) / w.size
    assert np.array_equal(codec.decode(packed), w)


@pytest.mark.parametrize("dtype", [np.int16, np.uint32, np.int64])
def test_int_planes_bounds_are_lower_bounds_and_output_that_fits_is_unchanged(dtype, monkeypatch):
    """With steps of 64 elements (a bound checked after each), on tensors where the base or the
    previous-element predictor wins, with and without a codebook layout beside it: every cap gives
    the bytes encode writes without it, or a MaxBytesError whose bound is over the cap and at most
    that size."""
    from dc_keras.codec import _int_planes

    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -(1 << 40)), min(info.max, 1 << 40)
    tensors = [np.clip(rng.normal(0, 500, 6000), lo, hi),  # base
               np.sort(rng.integers(0, min(hi, 1 << 30), 6000)),  # previous
               np.cumsum(rng.integers(-40, 41, 6000)) + 5000,  # previous, narrow
               np.where(rng.random(6000) < 0.7, 0, rng.integers(0, min(hi, 30000), 6000)),
               rng.integers(lo, hi, 6000)]
    full = {}
    for i, x in enumerate(tensors):
        x = np.clip(x, lo, hi).astype(dtype)
        for opts in ({}, {"layouts": ("int_planes",)}, {"layouts": ("dense", "sparse", "int_planes")}):
            full[i, str(opts)] = x, opts, codec.encode(x, **opts)
    monkeypatch.setattr(_int_planes, "_CHUNK", 64)
    stopped = 0
    for (i, _), (x, opts, data) in full.items():
        assert codec.encode(x, **opts) == data
        for cap in (len(data), len(data) - 1, len(data) * 9 // 10, len(data) // 2, len(data) // 5):
            try:
                assert codec.encode(x, **opts, max_bytes=cap) == data and cap >= len(data), (i, opts, cap)
            except codec.MaxBytesError as exc:
                assert cap < exc.packed_bytes <= len(data), (i, opts, cap, exc.packed_bytes, len(data))
                stopped += exc.packed_bytes < len(data)
    assert stopped > 10, stopped
