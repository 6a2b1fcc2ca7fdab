"""Per-tensor size report of a ``.tflite`` (packed or not): what ``dc-keras inspect`` prints."""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from dc_keras._fileio import check_writable, show_path, write_figure
from dc_keras import _flatbuffer as fb
from dc_keras.export._pack import (DEFAULT_MIN_BYTES, _buffer_users, buffer_keep_reason, check_constant_sizes, check_min_bytes, after_model, _codec, _offline_plans, _progress,
                                   _planned_constants, _signed_zeros, keep_reason, max_packed_bytes,
                                   _subgraph_facts, negative_zeros_note,
                                   weight_only_tensors, zero_counts,
                                   _tensor_array, header_mismatch, packed_shape_mismatch, shared_buffer_reason,
                                   CUT_ZIP_TEXT, is_cut_zip, skip_reason, unreferenced_buffers, unreferenced_note)


#: "kept" rows of constants of at least this many bytes may give a lower bound of the packed size
#: ("does not pack below N B"): inspect encodes them with pack's max_bytes, and the codec does not
#: make the layouts that cannot fit (an unclustered 4096 x 4096 int32 weight: ~0.1 s, not ~5 s).
#: Smaller ones are encoded in full (~0.1 s at most): their reason gives the exact size.
BOUND_KEPT_FROM = 1 << 20


def _encode_size(codec, arr, raw_bytes):
    """(packed data or None, its size or a lower bound of it, True if a bound) of ``arr``, a
    constant of ``raw_bytes``; ValueError if the codec refuses it. None (a bound, or the size
    pack would not use) only when ``keep_reason`` keeps the tensor."""
    try:
        packed = codec.encode(arr, max_bytes=max(0, max_packed_bytes(raw_bytes)) if raw_bytes >= BOUND_KEPT_FROM
                              else None)
        return packed, len(packed), False
    except codec.MaxBytesError as exc:
        return None, exc.packed_bytes, not exc.exact


def _layout_name(packed):
    """The layout of a packed tensor ``codec.encode`` just wrote: its header's layout byte
    (FORMAT.md §2, after the magic, version, dtype and rank). ``codec.info`` parses and checks the
    whole header (~60 us: a tenth of inspect's time on a model of 4,000 small kernels)."""
    from dc_keras.codec._format import LAYOUT_NAMES, MAGIC

    return LAYOUT_NAMES[packed[len(MAGIC) + 3]]


def _version(packed):
    """The format version of a packed tensor ``codec.encode`` just wrote: its header's version byte
    (FORMAT.md §2, after the magic)."""
    from dc_keras.codec._format import MAGIC

    return packed[len(MAGIC)]


def _raw_key(i, r):
    """What identifies the unpacked data of row ``i`` (``r``): its ``raw_buffer``; else (a row made
    without one, a packed tensor whose decoded tensor has no buffer of its own) the buffer it reads in
    the file (rows reading one packed buffer decode to the same bytes); else the row itself."""
    if r.raw_buffer > 0:
        return r.raw_buffer
    return ("file", r.buffer) if r.buffer > 0 else ("row", i)


def _once(rows):
    """Raw bytes of ``rows``, a buffer several of them read counted once (``_raw_key``)."""
    return sum({_raw_key(i, r): r.raw_bytes for i, r in enumerate(rows)}.values())


def _shared_groups(rows):
    """[[row, ...]] of the rows whose unpacked data is one buffer (``_raw_key``), two rows or more each."""
    groups = {}
    for i, r in enumerate(rows):
        groups.setdefault(_raw_key(i, r), []).append(r)
    return [g for g in groups.values() if len(g) > 1]


@dataclasses.dataclass
class TensorRow:
    """One constant tensor: ``packed_bytes`` is its size in the file if packed, else what it would
    pack to (``None`` when the codec refuses it or the tensor is smaller than ``min_bytes``)."""

    subgraph: int
    name: str
    dtype: str
    shape: tuple
    density: float | None  # None: the data could not be read as its dtype (see ``reason``)
    distinct: int | None
    raw_bytes: int
    packed_bytes: int | None
    #: "packed", "packable", "kept" (packs, but would not shrink enough), "refused" (pack cannot pack
    #: it: its type, its use in the graph, or the codec), "skipped" (smaller than ``min_bytes``: pack
    #: leaves it alone by design, whatever else is true of it; "small" before 2026-12-01)
    status: str
    reason: str = ""  # why a tensor is not packed ("kept", "refused", "skipped"); "" otherwise
    #: the buffer holding the row's data in the file (the packed tensor's for a packed row), or -1:
    #: rows sharing one count once in ``packed_total`` (a packed one once per type and shape)
    buffer: int = -1
    #: the buffer of the tensor's own data, unpacked: ``buffer`` for a row that is not packed; for a
    #: packed row the buffer its decoded tensor keeps (emptied by ``pack``, filled again by
    #: ``unpack``), which tensors sharing one raw buffer still share although pack wrote a packed
    #: buffer per type and shape; -1: none (then ``buffer`` stands for it). Rows sharing one (a
    #: weight read in several subgraphs, equal bytes the converter stores once for two tensors)
    #: count once in ``raw_total``
    raw_buffer: int = -1
    #: a "packable" row: a digest of the bytes ``pack`` would write for it. ``pack`` stores equal
    #: packed bytes in one buffer (``_add_packed``), so rows with one key count once in
    #: ``packed_total``, also when their raw data sits in different buffers
    packed_key: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    #: the tensor's index in its subgraph (-1: not known): how the table names a nameless tensor
    #: (``pack(strip_strings=True)``), "(unnamed tensor N)", as the runtime's errors and reports do
    index: int = -1
    #: the packed format version (FORMAT.md §10) of a "packed" row as the file holds it, of a
    #: "packable" one as ``pack`` writes it at the default options; None for the other rows
    version: int | None = None
    #: a "packed" row: its -0.0 entries where it also holds +0.0 (a float weight, kept bit-exact)
    negative_zeros: int = dataclasses.field(default=0, repr=False, compare=False)

    @property
    def label(self) -> str:
        """The tensor's name, or ``"(unnamed tensor N)"`` for a nameless one (``index`` N): the
        words the runtime's errors and ``compressed_report()`` use for it.

        Example:
          >>> [r.label for r in dc_keras.export.inspect(dc_keras.export.pack(data, strip_strings=True)).rows][:1]
          ['(unnamed tensor 1)']
        """
        if self.name or self.index < 0:
            return self.name
        return f"(unnamed tensor {self.index})"


def format_version_line(rows, packed) -> str:
    """``Report.to_text``'s line on the packed format versions of the "packed" (``packed``) or
    "packable" rows: the newest, how many tensors take each, and what an older decoder needs."""
    counts = {}
    for r in rows:
        if r.version is not None:
            counts[r.version] = counts.get(r.version, 0) + 1
    newest = max(counts)
    each = ", ".join(f"{n} of version {v}" for v, n in sorted(counts.items(), reverse=True))
    head = (f"format version {newest} ({'packed' if packed else 'packable'} tensors: {each}; FORMAT.md §10): a "
            f"decoder with DC_VERSION_MAX >= {newest} (the C library an app or TFLM kernel ships) reads {'it' if packed else 'what pack writes'}")
    if newest <= 2:
        return head + " (every decoder since format version 2)"
    how = ("unpack it and pack again with --format-version N (Python: version=N)" if packed
           else "pack with --format-version N (Python: version=N)")
    return head + f"; for a decoder of an older version N, {how}: the tensors version N cannot hold stay raw"


def _negative_zeros(arr) -> int:
    """The -0.0 entries of a float array that also holds +0.0 (0 for any other array)."""
    if (arr.dtype.kind != "f" and arr.dtype.name != "bfloat16") or not arr.size:
        return 0
    bits = np.ascontiguousarray(arr).reshape(-1).view(f"u{arr.dtype.itemsize}")  # native order, as arr
    negative, positive = zero_counts(bits)
    return negative if positive else 0


def _packed_key(packed):
    """``TensorRow.packed_key`` of packed bytes."""
    return hashlib.blake2b(packed, digest_size=16).digest()


@dataclasses.dataclass
class Report:
    """``inspect`` result: rows plus totals; ``str(report)`` is the table ``dc-keras inspect`` prints."""

    file_bytes: int
    rows: list
    packed: bool
    external_buffers: bool = False  # buffer data after the flatbuffer (Buffer.offset/size)
    #: TFLite metadata's associated files in a zip appended after the model: [(name, bytes)]
    associated_files: list = dataclasses.field(default_factory=list)
    associated_bytes: int = 0  # the bytes that zip takes at the end of the file
    associated_error: str = None  # why a zip after the model cannot be kept (pack/unpack drop it)
    dropped_bytes: int = 0  # the bytes pack/unpack drop with that zip
    model_end: int = 0  # where the model ends (its flatbuffer and the data it locates after itself)
    #: other bytes after the model (not part of it, not a zip of associated files), which pack and
    #: unpack write unchanged after their model
    trailing_bytes: int = 0
    #: those bytes start like a zip of associated files but have no end record: an archive cut short
    trailing_cut_zip: bool = False
    #: ``(tensors, entries)``: the -0.0 entries of float weights that also hold +0.0 (an unpacked
    #: file; ``pack`` keeps them bit-exact, each like a kept weight, unless ``positive_zeros``)
    negative_zeros: tuple = (0, 0)
    #: ``(buffers, bytes)``: buffers holding data that no tensor or metadata refers to (pack and
    #: unpack keep them as they are)
    unreferenced: tuple = (0, 0)
    #: why ``pack`` and ``unpack`` refuse to rewrite the file (data a newer TFLite schema added,
    #: which they would drop: ``_flatbuffer.check_rewritable``), or None
    not_rewritable: str = None
    #: resource variables (VAR_HANDLE ops) that no operator assigns: the weights are not in the file
    #: (``_flatbuffer.unassigned_variables``); said in a note line, as pack and the runtime say it
    unassigned_variables: int = 0
    #: ``(tensors, entries)``: the -0.0 entries of a packed file's packed float weights that also
    #: hold +0.0 (kept bit-exact: packing its unpacked file with ``positive_zeros`` makes them +0.0)
    packed_negative_zeros: tuple = (0, 0)

    @property
    def format_version(self) -> int | None:
        """The newest packed format version (FORMAT.md §10) of the "packed" rows (a packed file) or
        of the "packable" ones as ``pack`` writes them (an unpacked file): a decoder must read that
        version (its ``DC_VERSION_MAX`` at least this) to run the packed file; None when no row packs.

        Example:
          >>> dc_keras.export.inspect(dc_keras.export.pack(data)).format_version  # clustered weights
          2
        """
        versions = [r.version for r in self.rows if r.version is not None]
        return max(versions) if versions else None

    @property
    def raw_total(self) -> int:
        """Bytes of the constants' data, unpacked, each buffer once: the sum over the distinct buffers
        the rows read (``TensorRow.raw_buffer``) of their bytes, not over the rows. Several tensors
        may read one buffer (a weight read in several subgraphs or signatures; equal bytes the
        converter stores once for two constants of other types, shapes or quantization), and that
        buffer is stored once; a packed file counts what ``unpack`` writes (its raw total is the one
        of the file it was packed from)."""
        return _once(self.rows)

    @property
    def packed_total(self) -> int:
        """Their packed bytes (as they are, or as ``pack`` would write them): a buffer that stays raw
        once; a packed one once per type and shape reading it (``pack`` shares packed data only
        where the bytes are equal: a buffer read as float32 and as int32 packs twice), and equal
        packed bytes once, as ``pack`` stores them (two buffers holding the same data: one packed
        buffer; ``TensorRow.packed_key``)."""
        total, raw_seen, packed_seen = 0, set(), set()
        for i, r in enumerate(self.rows):
            buf = r.buffer if r.buffer > 0 else ("row", i)
            if r.status in ("packed", "packable") and r.packed_bytes is not None:
                key = r.packed_key or (buf, r.dtype, tuple(r.shape))
                if key not in packed_seen:
                    packed_seen.add(key)
                    total += r.packed_bytes
            elif buf not in raw_seen:
                raw_seen.add(buf)
                total += r.packed_bytes if r.packed_bytes is not None else r.raw_bytes
        return total

    def to_text(self) -> str:
        head = f"{'sg':>2} {'tensor':40} {'dtype':8} {'shape':18} {'density':>7} {'distinct':>8} " \
               f"{'raw bytes':>11} {'packed':>11} {'ratio':>6}  {'status':9} reason"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            name = fb.printable(r.label)
            name = name if len(name) <= 40 else "..." + name[-37:]
            packed = "-" if r.packed_bytes is None else str(r.packed_bytes)
            ratio = "-" if not r.packed_bytes else f"{r.raw_bytes / r.packed_bytes:.1f}x"
            density = "-" if r.density is None else f"{r.density:.3f}"
            distinct = "-" if r.distinct is None else str(r.distinct)
            lines.append(f"{r.subgraph:>2} {name:40} {r.dtype:8} {str(list(r.shape)):18} "
                         f"{density:>7} {distinct:>8} {r.raw_bytes:>11} {packed:>11} {ratio:>6}  {r.status:9} {fb.printable(r.reason)}")
        lines.append("-" * len(head))
        tot_ratio = f"{self.raw_total / self.packed_total:.1f}x" if self.packed_total else "-"
        lines.append(f"constant tensors: {len(self.rows)}   raw {self.raw_total} B   "
                     f"{'packed' if self.packed else 'packable to'} {self.packed_total} B ({tot_ratio})")
        groups = _shared_groups(self.rows)
        if groups:
            n = len(groups)
            named = "; ".join(" = ".join(f"{fb.printable(r.label) or '(unnamed)'} (sg {r.subgraph})" for r in g)
                              for g in groups[:3]) + (f"; and {n - 3} more" if n > 3 else "")
            lines.append(f"{sum(map(len, groups))} rows share {n} buffer{'s' if n > 1 else ''}: counted once in these "
                         "totals (one constant read by several tensors: in several subgraphs or signatures, or equal "
                         f"bytes the converter stores once): {named}")
            several = sum(1 for g in groups if len({(r.dtype, tuple(r.shape)) for r in g
                                                    if r.status in ("packed", "packable")}) > 1)
            if several:
                lines.append(f"{several} of them {'is' if several == 1 else 'are'} read as several types or shapes: "
                             f"{'packed' if self.packed else 'pack packs it'} once per type and shape, counted so "
                             "in the packed total")
        if self.format_version is not None:
            lines.append(format_version_line(self.rows, self.packed))
        refused = [r for r in self.rows if r.status == "refused"]
        if refused:
            lines.append(f"refused: {len(refused)} tensor(s), {_once(refused)} B stay raw "
                         "(the reason column says why)")
        skipped = [r for r in self.rows if r.status == "skipped"]
        if skipped:
            lines.append(f"skipped: {len(skipped)} tensor(s), {_once(skipped)} B below min_bytes "
                         "(left alone by design: too small for a packed header to pay off)")
        if self.unreferenced[0]:
            lines.append("note: " + unreferenced_note(*self.unreferenced))
        if self.not_rewritable:
            lines.append("note: " + self.not_rewritable)
        if self.unassigned_variables:
            lines.append("note: " + fb.unassigned_variables_note(self.unassigned_variables))
        where = "after the flatbuffer (Buffer.offset/size)" if self.external_buffers else "inline"
        lines.append(f"file: {self.file_bytes} B ({'packed' if self.packed else 'not packed'}; "
                     f"buffer data {where})")
        if self.associated_bytes:
            from dc_keras.export._zip import describe

            names, sizes = zip(*self.associated_files) if self.associated_files else ((), ())
            lines.append(f"ends with {describe(list(names), list(sizes), self.associated_bytes)} (TFLite "
                         "metadata's associated files; pack and unpack keep them)")
        if self.trailing_bytes and self.trailing_cut_zip:
            lines.append(f"{self.trailing_bytes} B after the model (it ends at byte {self.model_end}) {CUT_ZIP_TEXT}; "
                         "pack and unpack keep them unchanged after their model (TFLite ignores them)")
        elif self.trailing_bytes:
            lines.append(f"{self.trailing_bytes} B after the model (it ends at byte {self.model_end}) are neither "
                         "part of it nor a zip of associated files: pack and unpack keep them unchanged after their "
                         "model (TFLite ignores them)")
        if self.associated_error:
            lines.append(f"has a zip archive after the model that cannot be kept ({self.associated_error}): pack and "
                         f"unpack drop its {self.dropped_bytes} B (with a warning)")
        if self.negative_zeros[0]:
            lines.append("note: " + negative_zeros_note(*self.negative_zeros, "`dc-keras pack --positive-zeros` "
                                                        "(pack(data, positive_zeros=True))"))
        if self.packed_negative_zeros[0]:
            lines.append("note: " + negative_zeros_note(*self.packed_negative_zeros, "`dc-keras unpack` of this file, "
                                                        "then `dc-keras pack --positive-zeros` (pack(unpack(data), "
                                                        "positive_zeros=True))"))
        return "\n".join(lines)

    __str__ = to_text

    def plot(self, path) -> None:
        """Writes a bar chart of raw vs packed bytes per tensor (the paper's size breakdown).

        The format follows the extension of ``path`` (.png, .pdf, .svg, ...; PNG without one).
        Raises ``OSError`` / ``ValueError`` (see :func:`check_plot_path`) before drawing anything,
        and ``ValueError`` when ``path`` is the file the report was read from (``inspect(path)``):
        inputs are never written over.

        Example:
          >>> dc_keras.export.inspect(data).plot("sizes.png")
        """
        source = getattr(self, "_source", None)  # the file inspect(path) read: never written over
        if source is not None:
            from dc_keras.export.cli_commands import _check_paths

            _check_paths(source, os.fsdecode(path), ("the plot path", "the model inspected"))
        fmt = check_plot_path(path)
        # a Figure of its own, not pyplot's: matplotlib.use("Agg") here switched the caller's backend
        # (a notebook's inline plots stopped showing) and pyplot kept the figure until closed
        from matplotlib.figure import Figure

        rows = sorted(self.rows, key=lambda r: -r.raw_bytes)[:40]
        names = _bar_labels([r.label for r in rows])
        raw = np.array([r.raw_bytes for r in rows], float) / 1024
        packed = np.array([r.packed_bytes if r.packed_bytes is not None else r.raw_bytes for r in rows],
                          float) / 1024
        fig = Figure(figsize=(max(6, 0.35 * len(rows) + 2), 4))
        ax = fig.subplots()
        x = np.arange(len(rows))
        if not rows:  # no constant tensor: no bars, and an empty axis from -0.04 to 0.04 KiB said nothing
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no constant tensors (weights) in this model: nothing to pack", ha="center",
                    va="center", transform=ax.transAxes)
            write_figure(fig, path, fmt)
            return
        ax.bar(x - 0.2, raw, 0.4, label="raw")
        ax.bar(x + 0.2, packed, 0.4, label="packed")
        ax.set_xticks(x, names, rotation=70, ha="right", fontsize=7)
        ax.set_xlabel("constant tensor (layer/op), largest first" + (f" (40 of {len(self.rows)})"
                                                                     if len(self.rows) > 40 else ""))
        ax.set_ylabel("KiB")
        ax.set_title(f"constant tensors: {self.raw_total / 1024:.1f} KiB -> {self.packed_total / 1024:.1f} KiB")
        ax.legend()
        write_figure(fig, path, fmt)


def _bar_labels(labels) -> list:
    """Short, distinct tick labels for ``Report.plot``'s bars: the end of each tensor's name (of its
    last ``;``-separated part, for a fused name), two ``/`` parts (``fc1/MatMul``, ``fc1/BiasAdd``
    for a Dense layer's kernel and bias), more where two labels would be equal (MobileNetV2's
    depthwise kernels, all ``.../batchnorm/mul``, become ``block_16_depthwise_BN_1/batchnorm/mul``).
    The layer's name alone labelled a kernel and its bias both "fc1" (notebook 03's chart, review
    s55). Labels still equal when whole get `` #2``, `` #3``, ...

    Example:
      >>> _bar_labels(["m/fc1/MatMul", "m/Relu;m/fc1/BiasAdd", "a/bn/mul", "b/bn/mul", "x", "x"])
      ['fc1/MatMul', 'fc1/BiasAdd', 'a/bn/mul', 'b/bn/mul', 'x', 'x #2']
    """
    parts = [(label.split(";")[-1] or label).split("/") for label in labels]
    depth = [2] * len(parts)
    while True:
        short = ["/".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        groups = {}
        for i, text in enumerate(short):
            groups.setdefault(text, []).append(i)
        longer = [i for same in groups.values() if len(same) > 1 for i in same if depth[i] < len(parts[i])]
        if not longer:
            break
        for i in longer:
            depth[i] += 1
    out, seen = [], {}
    for text in short:
        text = text or "(unnamed)"
        seen[text] = seen.get(text, 0) + 1
        out.append(text if seen[text] == 1 else f"{text} #{seen[text]}")
    return out


def check_plot_path(path) -> str:
    """The matplotlib format ``Report.plot(path)`` writes, after checking ``path`` can be written.

    Call it before any work (``dc-keras inspect --plot`` does, before reading the model).

    Raises:
      OSError: the directory does not exist or is not writable, or ``path`` is a directory (the
        message names the path and the fix, as ``dc_keras._fileio.atomic_write`` would).
      ValueError: the extension is not a format matplotlib writes here (``.pgf`` needs LaTeX).
    """
    import shutil

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_writable(path, example="sizes.png")
    ext = os.path.splitext(path)[1]
    fmt = ext.lstrip(".").lower() or "png"
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if fmt not in formats:
        raise ValueError(f"{show_path(path)}: {ext!r} is not an image format matplotlib writes; end the plot path with "
                         f"one of " + ", ".join("." + f for f in sorted(formats) if f != "pgf")
                         + " (e.g. sizes.png)")
    if fmt == "pgf":
        import matplotlib

        tex = matplotlib.rcParams["pgf.texsystem"]
        if shutil.which(tex) is None:
            raise ValueError(f"{show_path(path)}: .pgf output needs LaTeX ({tex!r} is not installed); install it or "
                             "use .pdf / .svg / .png")
    return fmt


#: elements compared per step when counting the changes of a sorted array (a bool array of at most
#: this many bytes, not one of a byte per element: 64 MiB more for a 256 MiB float32 tensor)
_CHANGES_CHUNK = 1 << 22


def _distinct(words, in_place=False) -> int:
    """Number of distinct values of a 1-D unsigned array: sort + count changes. numpy 2's
    ``np.unique`` hashes, which took ~9 s per 16 M float32 weights with many distinct values
    (a 25 M-parameter float model: 14.5 s of ``inspect``); the sort takes ~0.25 s. ``in_place``:
    sort ``words`` itself (a decoded tensor nothing reads afterwards), not a copy of it."""
    if words.size == 0:
        return 0
    if in_place:
        words.sort()
        s = words
    else:
        s = np.sort(words)
    changes = 0
    for start in range(0, s.size - 1, _CHANGES_CHUNK):
        stop = min(start + _CHANGES_CHUNK, s.size - 1)
        changes += int(np.count_nonzero(s[start + 1:stop + 1] != s[start:stop]))
    return 1 + changes


def _stats(arr, in_place=False):
    """``(density, distinct values)`` of ``arr``; ``in_place``: ``arr`` may be reordered (a decoded
    tensor used for nothing else): the count then takes no copy of it (peak memory ~1x its size, not
    ~2.25x: ``dc-keras inspect`` of a packed 256 MiB float32 kernel took 600 MiB more, now ~260)."""
    flat = arr.reshape(-1)
    if flat.size == 0:
        return 0.0, 0
    bits = flat.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[flat.dtype.itemsize])
    density = float(np.count_nonzero(flat)) / flat.size
    return density, _distinct(bits, in_place=in_place and bits.flags.writeable)


def _tensors_with_progress(bar, model, tensors):
    """``enumerate(tensors)``, advancing ``bar`` by each tensor's bytes once it is handled."""
    for i, t in enumerate(tensors):
        yield i, t
        bar.update(fb.buffer_size(model, t.buffer))


def inspect(tflite_bytes, min_bytes: int = DEFAULT_MIN_BYTES) -> Report:
    """Per-tensor report of a ``.tflite``: dtype, shape, density, distinct values, raw vs packed bytes.

    ``tflite_bytes``: the model's bytes (or any bytes-like object), or the path of a ``.tflite``
    file (``str`` or ``os.PathLike``), as ``dc-keras inspect FILE``, ``runtime.Interpreter`` and
    ``pipeline.predict_tflite`` take it: read here, and errors about it name the file.

    For a packed model the packed sizes are the real ones (decoded to compute density and distinct
    values); for an ordinary model they are what ``pack`` would produce.
    Each row's ``status`` says what ``pack`` does with the tensor (see :class:`TensorRow`):
    constants smaller than ``min_bytes`` are "skipped" (reason ``below min_bytes = N``), apart from
    those pack looks at and cannot pack ("refused", with the reason). A zip of associated files
    after the model (TFLite metadata's labels, vocabularies) is listed in ``associated_files``
    (name, bytes) and ``associated_bytes`` (the zip's size), and in the text's last line; a zip
    that cannot be kept in ``associated_error`` (and ``dropped_bytes``); other bytes after the model
    (``model_end``: where it ends) in ``trailing_bytes``; buffers holding data that no tensor or
    metadata refers to in ``unreferenced`` (buffers, bytes), and in a note line; resource variables
    no operator assigns (the weights are not in the file, as pack and the runtime warn) in
    ``unassigned_variables``, and in a note line.
    Each packed or packable row's format version is in ``TensorRow.version`` and the newest in
    ``format_version``, with a line saying what a decoder must read (``DC_VERSION_MAX``) and how to
    pack for an older one; -0.0 kept in a packed file's float weights next to +0.0 is in
    ``packed_negative_zeros`` (an unpacked file's in ``negative_zeros``), with a note.

    Totals (``raw_total``, ``packed_total``, the text's "constant tensors:" line and its ratio)
    count each buffer once, not each row: several tensors may read one buffer (a weight read in
    several subgraphs or signatures, equal bytes the converter stores once for two constants), and
    the file holds it once. Raw is the sum of the distinct buffers' unpacked bytes (a packed file:
    what ``unpack`` writes, the same as its unpacked file's), packed the bytes of the packed buffers
    ``pack`` writes (one per type and shape reading a raw buffer). The rows stay one per tensor; a
    line after the table names the rows that share a buffer.

    Raises:
      ValueError: not a valid ``.tflite``, a packed tensor cannot be decoded, or ``min_bytes``
        is not an int >= 0.
      OSError: a path that cannot be read (missing, a directory, not readable), saying so.

    Example:
      >>> print(dc_keras.export.inspect("model.tflite"))
      >>> report = dc_keras.export.inspect(open("model.tflite", "rb").read())   # the same, from bytes
    """
    check_min_bytes(min_bytes)
    if isinstance(tflite_bytes, (str, os.PathLike)):  # bytes stay content (pack's and unpack's too)
        from dc_keras.export.cli_commands import _about, _read

        path = os.fsdecode(os.fspath(tflite_bytes))
        data = _read(path)  # `dc-keras inspect FILE`'s reading and wording
        with _about(path):
            report = inspect(data, min_bytes)
        report._source = path  # plot() refuses to write over it
        return report
    model = fb.read_model(tflite_bytes)
    check_constant_sizes(model)  # a file TFLite refuses is no model to report on
    codec = _codec()
    hd = {k for k, c in enumerate(model.operatorCodes or []) if fb.is_huffdecode_code(c)}
    users = _buffer_users(model)
    planned = _planned_constants(_offline_plans(model))
    all_facts = [_subgraph_facts(sg) for sg in model.subgraphs]
    rows, weight_only = [], None
    bar = _progress(model, "inspect")  # pack's bar: from _pack.PROGRESS_MIN_BYTES on, on a terminal
    for s, sg in enumerate(model.subgraphs):
        decoded_from = {}
        for op in sg.operators or []:
            if op.opcodeIndex in hd and op.inputs is not None and op.outputs is not None \
                    and len(op.inputs) == 1 and len(op.outputs) == 1:
                decoded_from[int(op.outputs[0])] = int(op.inputs[0])
        packed_inputs = set(decoded_from.values())
        facts = all_facts[s]
        from dc_keras.export import _sparse

        dense_of = {i: dense for _, i, dense in _sparse.densify_plans(model, s)}
        for i, t in _tensors_with_progress(bar, model, sg.tensors or []):
            if i in packed_inputs:
                continue
            if i in dense_of:
                rows.append(_sparse_row(model, codec, s, t, dense_of[i], min_bytes))
                rows[-1].buffer = rows[-1].raw_buffer = t.buffer
            elif i in decoded_from:
                rows.append(_packed_row(model, codec, s, t, sg.tensors[decoded_from[i]], i))
                rows[-1].buffer, rows[-1].raw_buffer = sg.tensors[decoded_from[i]].buffer, t.buffer
                if rows[-1].negative_zeros:  # pack(positive_zeros=True) of its unpacked file: +0.0?
                    if weight_only is None:
                        weight_only = weight_only_tensors(model)
                    rows[-1].negative_zeros *= (s, i) in weight_only
            elif fb.buffer_size(model, t.buffer):
                why = skip_reason(t, i, facts, users, planned, model) or shared_buffer_reason(
                    model, s, i, all_facts, users, planned)
                rows.append(_plain_row(model, codec, s, t, why, min_bytes))
                rows[-1].buffer = rows[-1].raw_buffer = t.buffer
            else:
                continue
            rows[-1].index = i
    bar.close()
    _keep_shared(rows, users)
    z, tail, dropped, model_end = after_model(tflite_bytes, model)
    return Report(file_bytes=len(tflite_bytes), rows=rows, packed=bool(hd),
                  external_buffers=fb.uses_external_buffers(model),
                  associated_files=list(zip(z.names, z.sizes)) if z else [],
                  associated_bytes=z.size(tflite_bytes) if z else 0,
                  associated_error=dropped[0] if dropped else None, dropped_bytes=dropped[1] if dropped else 0,
                  model_end=model_end, trailing_bytes=len(tail), trailing_cut_zip=is_cut_zip(tail),
                  negative_zeros=(0, 0) if hd else _signed_zeros(model, False),
                  packed_negative_zeros=_packed_negative_zeros(rows),
                  unreferenced=unreferenced_buffers(model, users), not_rewritable=_not_rewritable(model, "unpack" if hd else "pack"),
                  unassigned_variables=fb.unassigned_variables(model))


def _packed_negative_zeros(rows):
    """``Report.packed_negative_zeros``: (tensors, entries) of the packed rows' -0.0 entries, each
    packed buffer once (rows reading one packed buffer decode to the same data)."""
    per_buffer = {r.buffer if r.buffer > 0 else ("row", i): r.negative_zeros
                  for i, r in enumerate(rows) if r.status == "packed" and r.negative_zeros}
    return len(per_buffer), sum(per_buffer.values())


def _keep_shared(rows, users):
    """Turns the "packable" rows of a buffer several tensors read into "kept" ones when pack keeps
    that buffer raw (``buffer_keep_reason``: every tensor needs its own HuffDecode op, the saving is
    the buffer's, once)."""
    by_buffer = {}
    for row in rows:
        if row.status == "packable" and row.raw_buffer > 0:
            by_buffer.setdefault(row.raw_buffer, []).append(row)
    for b, group in by_buffer.items():
        tensors = sum(r[0] != "metadata" for r in users.get(b, []))
        if tensors < 2 or len(group) != tensors:
            continue
        sizes = list({(r.dtype, tuple(r.shape)): r.packed_bytes for r in group}.values())
        why = buffer_keep_reason(group[0].raw_bytes, sizes, tensors)
        if why is None:
            continue
        for row in group:
            others = ", ".join(f"{fb.printable(r.label)!r} (sg {r.subgraph})" for r in group if r is not row)
            row.status, row.packed_bytes, row.reason = "kept", None, f"{why} (with {others})"


def _not_rewritable(model, what):
    """``check_rewritable``'s message for ``model`` (as ``what``, the operation the file is ready for:
    ``unpack`` for a packed one, else ``pack``, words it), or None."""
    try:
        fb.check_rewritable(model, what)
    except ValueError as exc:
        return str(exc)
    return None


def _packed_row(model, codec, s, t, packed_tensor, i):
    name, dtype = fb.tensor_name(t), fb.TYPE_NAMES.get(t.type, str(t.type))
    label = fb.tensor_label(t, i, s)  # errors name a nameless tensor (strip_strings) by its index
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    data = fb.buffer_bytes(model, packed_tensor.buffer)
    mismatch = packed_shape_mismatch(packed_tensor, data)  # as unpack and the runtime refuse it
    if mismatch:
        what = (f"packed input {fb.printable(fb.tensor_name(packed_tensor))!r}" if fb.tensor_name(packed_tensor)
                else "packed input")
        raise ValueError(f"tensor {fb.printable(label)!r}: {what} {mismatch}: no runtime loads it; {fb.CORRUPT_FIX}")
    try:
        arr = np.asarray(codec.decode(data))
        head = codec.info(data)
    except ValueError as exc:
        raise ValueError(fb.with_corrupt_fix(f"tensor {label!r}: packed data is invalid: {exc}")) from None
    mismatch = header_mismatch(head, t)
    if mismatch:
        raise ValueError(f"tensor {label!r}: packed data is {mismatch}: no runtime loads it; {fb.CORRUPT_FIX}")
    negative = _negative_zeros(arr)
    density, distinct = _stats(arr, in_place=True)  # arr is this row's own decoded copy
    return TensorRow(s, name, dtype, shape, density, distinct, int(head["raw_bytes"]), len(data), "packed",
                     head["layout"], version=int(head["version"]), negative_zeros=negative)


def _sparse_row(model, codec, s, t, dense, min_bytes):
    """A TFLite-sparse constant read through DENSIFY: raw = values + index arrays as stored."""
    from dc_keras.export import _sparse

    name, dtype = fb.tensor_name(t), fb.TYPE_NAMES.get(t.type, str(t.type))
    stored = _sparse.stored_bytes(t, model)
    density, distinct = _stats(dense)
    if stored < max(min_bytes, 1):  # pack leaves it alone, as any constant below min_bytes
        return TensorRow(s, name, dtype, dense.shape, density, distinct, stored, None, "skipped",
                         f"below min_bytes = {min_bytes}")
    try:
        packed, size, bound = _encode_size(codec, dense, stored)
    except ValueError as exc:
        return TensorRow(s, name, dtype, dense.shape, density, distinct, stored, None, "refused",
                         f"TFLite-sparse, densified: codec: {exc}")
    why = keep_reason(size, stored, at_least=bound)
    if why is None:
        return TensorRow(s, name, dtype, dense.shape, density, distinct, stored, size, "packable",
                         "TFLite-sparse: DENSIFY becomes HuffDecode", packed_key=_packed_key(packed),
                         version=_version(packed))
    return TensorRow(s, name, dtype, dense.shape, density, distinct, stored, None, "kept",
                     f"TFLite-sparse, densified: {why}")


#: numpy dtypes of TensorTypes the packer refuses but whose data ``inspect`` can still read
#: (for the density and distinct columns); little-endian as TFLite stores them.
_READABLE = {"int64": "<i8", "uint64": "<u8", "float64": "<f8", "uint32": "<u4", "uint16": "<u2",
             "bool": "|u1", "complex64": "<c8"}


def _any_array(model, t, dtype, shape):
    """``_tensor_array``, plus the types the packer refuses but numpy reads (int64, ...); None when
    the data cannot be read as the declared dtype and shape (strings, sparse, size mismatch)."""
    arr = _tensor_array(model, t)
    if arr is not None or dtype not in _READABLE or t.sparsity is not None or any(d < 0 for d in shape):
        return arr
    raw = fb.buffer_bytes(model, t.buffer)
    want = np.dtype(_READABLE[dtype])
    if len(raw) != int(np.prod(shape, dtype=np.int64)) * want.itemsize:
        return None
    return np.frombuffer(raw, want).reshape(shape)


def _plain_row(model, codec, s, t, why, min_bytes):
    name, dtype = fb.tensor_name(t), fb.TYPE_NAMES.get(t.type, str(t.type))
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    raw = fb.buffer_view(model, t.buffer)  # only its length is used: no copy
    arr = _any_array(model, t, dtype, shape)
    if len(raw) < max(min_bytes, 1):  # pack does not look at it, whatever its type or use
        density, distinct = _stats(arr) if arr is not None else (None, None)
        return TensorRow(s, name, dtype, shape, density, distinct, len(raw), None, "skipped",
                         f"below min_bytes = {min_bytes}")
    if why is not None or arr is None:  # refused: say why; stats only when the data reads as declared
        why = why or f"buffer holds {len(raw)} B, not the {dtype}{list(shape)} the tensor declares"
        density, distinct = _stats(arr) if arr is not None else (None, None)
        return TensorRow(s, name, dtype, shape, density, distinct, len(raw), None, "refused", why)
    density, distinct = _stats(arr)
    nbytes = len(raw)
    try:
        packed, size, bound = _encode_size(codec, arr, nbytes)
    except ValueError as exc:
        return TensorRow(s, name, dtype, shape, density, distinct, nbytes, None, "refused",
                         f"codec: {exc}")
    why = keep_reason(size, nbytes, at_least=bound)
    if why is None:
        return TensorRow(s, name, dtype, shape, density, distinct, nbytes, size, "packable",
                         _layout_name(packed), packed_key=_packed_key(packed), version=_version(packed))
    return TensorRow(s, name, dtype, shape, density, distinct, nbytes, None, "kept", why)
