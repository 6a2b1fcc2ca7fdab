"""TFLite metadata's associated files (labels, vocabularies) live in a zip appended after the
model's flatbuffer (tflite_support's MetadataPopulator, Model Maker, MediaPipe Tasks models):
``pack``, ``unpack``, the CLI and the C ``dc_unpack`` keep it, with the same members, its offsets
counted from the new file's start (docs/FORMAT.md §15); ``inspect`` names it; a trailing zip that
cannot be moved is reported, never dropped silently; other bytes after the model are kept."""
import io
import struct
import subprocess
import warnings
import zipfile

import numpy as np
import pytest

import _export_models as em
from dc_keras import cli, export, runtime

LABELS = "\n".join(f"class_{i}" for i in range(10)).encode()
FILES = {"labels.txt": LABELS, "vocab/words.txt": bytes(range(256)) * 9}


def appended(model, files=FILES, zip64=False):
    """``model`` with ``files`` appended as MetadataPopulator does it: the model copied, then a
    zip written after it with zipfile's mode "a" (offsets counted from the file start)."""
    f = io.BytesIO(model)
    f.seek(0, 2)
    limits = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    if zip64:  # zip64 records on a small archive, as zipfile writes them past 4 GiB / 65,535 files
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 8, 1
    try:
        with zipfile.ZipFile(f, "a") as z:
            for name, data in files.items():
                z.writestr(name, data)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = limits
    return f.getvalue()


def concatenated(model, files=FILES):
    """``model`` + a zip made on its own (offsets counted from the zip's start): `cat m z`."""
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        for name, data in files.items():
            f.writestr(name, data)
    return model + z.getvalue()


def members(data):
    """{name: bytes} of the zip at the end of ``data``, read by Python's zipfile (which also
    checks every member's CRC)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return {n: z.read(n) for n in z.namelist()}


def literal_members(data):
    """{name: bytes}, read as tflite_support's Java ZipFile (Android's MetadataExtractor) reads
    them: end record in the last 22 bytes, every offset taken literally from the file start, stored
    members only (MediaPipe needs them uncompressed too)."""
    assert data[-22:-18] == b"PK\x05\x06"
    count, _, cd = struct.unpack_from("<HII", data, len(data) - 12)
    out = {}
    for _ in range(count):
        assert data[cd:cd + 4] == b"PK\x01\x02", "central directory not at its stored offset"
        method, size, nl, xl, cl, local = (struct.unpack_from("<H", data, cd + 10)[0],
                                           *struct.unpack_from("<I", data, cd + 20),
                                           *struct.unpack_from("<HHH", data, cd + 28),
                                           *struct.unpack_from("<I", data, cd + 42))
        assert method == 0 and data[local:local + 4] == b"PK\x03\x04", "no local header at its stored offset"
        lnl, lxl = struct.unpack_from("<HH", data, local + 26)
        name = data[cd + 46:cd + 46 + nl].decode()
        out[name] = data[local + 30 + lnl + lxl:local + 30 + lnl + lxl + size]
        cd += 46 + nl + xl + cl
    return out


def zip_start(data):
    """Where the zip at the end of ``data`` starts (its first local header)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return min(i.header_offset for i in z.infolist())


@pytest.fixture(scope="module")
def plain():
    return em.tflite("conv", None)


@pytest.fixture(scope="module")
def xs():
    return em.inputs("conv", 4)


def _outputs(model, xs, packed):
    it = runtime.Interpreter(model_content=model, backend="tensorflow") if packed else \
        em.reference_interpreter("tensorflow", model)
    return em.run(it, xs)


@pytest.mark.parametrize("make", [appended, concatenated], ids=["file_offsets", "zip_offsets"])
def test_pack_keeps_the_zip_and_the_model_runs_bit_exact(plain, xs, make):
    """pack writes the input's zip after the packed model: the same members byte for byte, read by
    Python's zipfile and by a reader that takes the offsets literally; the packed model (zip and
    all) loads in TF's interpreter and gives the unpacked model's outputs bit for bit."""
    src = make(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: the files are kept
        packed = export.pack(src)
    bare = export.pack(plain)
    assert packed[:len(bare)] == bare and zip_start(packed) == len(bare)
    assert len(packed) - len(bare) == len(src) - zip_start(src)  # the zip itself, nothing more
    assert members(packed) == FILES and literal_members(packed) == FILES
    with zipfile.ZipFile(io.BytesIO(src)) as z:  # local headers and data: copied unchanged
        end_of_data = z.start_dir
    assert packed[len(bare):len(bare) + end_of_data - zip_start(src)] == src[zip_start(src):end_of_data]
    np.testing.assert_array_equal(_outputs(packed, xs, True), _outputs(plain, xs, False))


def test_unpack_keeps_the_zip(plain, xs):
    """unpack(pack(x)) has x's zip members; the Python unpacked file runs bit-exact."""
    packed = export.pack(appended(plain))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unpacked = export.unpack(packed)
    assert unpacked[:zip_start(unpacked)] == export.unpack(export.pack(plain))
    assert members(unpacked) == FILES and literal_members(unpacked) == FILES
    np.testing.assert_array_equal(_outputs(unpacked, xs, False), _outputs(plain, xs, False))


def test_cli_pack_and_unpack_keep_the_zip(tmp_path, plain, capsys):
    src, out, back = tmp_path / "m.tflite", tmp_path / "p.tflite", tmp_path / "u.tflite"
    src.write_bytes(appended(plain))
    assert cli.main(["pack", str(src), str(out)]) == 0
    text = capsys.readouterr().out
    assert f"associated files kept: 2 (labels.txt, vocab/words.txt), in the zip after {out}'s model" in text, text
    assert "note:" not in text
    assert out.read_bytes() == export.pack(src.read_bytes())
    assert cli.main(["unpack", str(out), str(back)]) == 0
    text = capsys.readouterr().out
    assert f"associated files kept: 2 (labels.txt, vocab/words.txt), in the zip after {back}'s model" in text, text
    assert members(back.read_bytes()) == FILES and literal_members(back.read_bytes()) == FILES


def test_zip64_records_are_rebased(plain):
    """A zip with zip64 end records and extra fields (zipfile writes them past 4 GiB or 65,535
    members) keeps its members too, through pack, unpack and dc_unpack: the 64-bit offsets are
    the ones rewritten, all counting from the file start."""
    from dc_keras.export import _zip

    src = appended(plain, zip64=True)
    assert b"PK\x06\x06" in src[-200:]
    packed = export.pack(src)
    for out in (packed, export.unpack(packed), runtime.unpack(packed)):
        assert b"PK\x06\x06" in out[-200:] and members(out) == FILES
        z = _zip.find(out)
        assert len(z.patches) == 3 + len(FILES)  # locator, zip64 end record, end record, members
        assert _zip.moved(out, z, z.start) == out[z.start:]  # every offset is a file position already


def test_dc_unpack_keeps_the_zip(tools, tmp_path, plain, xs):
    """The C dc_unpack (tool and library) moves the zip after the model it writes: the output is
    what it writes for the file without a zip (packed data still cut off), then the zip, offsets
    from the new file's start; it runs bit-exact in TF's interpreter without any custom op."""
    packed = export.pack(appended(plain))
    src, out = tmp_path / "p.tflite", tmp_path / "u.tflite"
    src.write_bytes(packed)
    r = subprocess.run([tools["dc_unpack"], str(src), str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    c = out.read_bytes()
    assert c == runtime.unpack(packed)
    bare = runtime.unpack(export.pack(plain))
    assert c[:len(bare)] == bare and len(c) == len(bare) + len(packed) - zip_start(packed)
    assert members(c) == FILES and literal_members(c) == FILES
    np.testing.assert_array_equal(_outputs(c, xs, False), _outputs(plain, xs, False))


def test_inspect_names_the_associated_files(tmp_path, plain, capsys):
    src = tmp_path / "m.tflite"
    src.write_bytes(appended(plain))
    size = len(src.read_bytes()) - zip_start(src.read_bytes())
    for path in (src, tmp_path / "p.tflite"):
        if path != src:
            assert cli.main(["pack", str(src), str(path)]) == 0
            capsys.readouterr()
        assert cli.main(["inspect", str(path)]) == 0
        text = capsys.readouterr().out
        assert f"ends with 2 associated file(s) in a zip of {size} B after the model: labels.txt " \
               f"({len(LABELS)} B), vocab/words.txt (2304 B)" in text, text
    report = export.inspect(src.read_bytes())
    assert report.associated_files == [("labels.txt", len(LABELS)), ("vocab/words.txt", 2304)]
    assert report.associated_bytes == size
    assert "associated" not in export.inspect(plain).to_text()


def test_a_zip_that_cannot_be_moved_is_reported(tmp_path, plain, capsys, tools):
    """A zip end record whose central directory points at no local header: the output cannot keep
    the archive, and pack / unpack / inspect / dc_unpack say so (a warning, a note, an error)."""
    src = bytearray(appended(plain, {"labels.txt": LABELS}))
    cd = len(src) - 22 - 46 - len("labels.txt")
    assert src[cd:cd + 4] == b"PK\x01\x02"
    struct.pack_into("<I", src, cd + 42, 7)  # the local header offset
    src = bytes(src)
    with pytest.warns(UserWarning, match=r"the input has a zip archive after the model, but it could not be kept "
                                         r"in the output \(the local header of 'labels.txt' is not where the central "
                                         rf"directory says\): {len(src) - len(plain)} B after the model were dropped"):
        packed = export.pack(src)
    assert packed == export.pack(plain)
    path = tmp_path / "m.tflite"
    path.write_bytes(src)
    assert cli.main(["pack", str(path), str(tmp_path / "p.tflite")]) == 0
    assert f"note: {path} has a zip archive after the model, but it could not be kept" in capsys.readouterr().out
    assert cli.main(["inspect", str(path)]) == 0
    assert "has a zip archive after the model that cannot be kept (the local header" in capsys.readouterr().out
    broken = export.pack(plain) + src[len(plain):]
    with pytest.warns(UserWarning, match="could not be kept"):
        export.unpack(broken)
    with pytest.raises(ValueError, match=r"dc_unpack: the file ends with a zip end record but its archive "
                                         r"\(TFLite metadata's associated files\) cannot be moved: a local header"):
        runtime.unpack(broken)


# Bytes after the model that are not a zip of associated files: a signature, a file appended by
# mistake, an archive cut short before its end record. pack / unpack write them unchanged after
# their model (before the zip, if any); a zip end record among them is dropped with a warning.
JUNK = bytes(range(7, 250)) * 5


def cut_zip(files=FILES):
    """A zip cut short before its central directory (local headers and data only)."""
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        for name, data in files.items():
            f.writestr(name, data)
    with zipfile.ZipFile(io.BytesIO(z.getvalue())) as f:
        return z.getvalue()[:f.start_dir]


@pytest.mark.parametrize("tail", ["junk", "cut_zip", "model"])
def test_bytes_after_the_model_are_kept(tmp_path, plain, xs, capsys, tail):
    """The bytes follow the packed / unpacked model unchanged, nothing is warned in Python, the CLI
    and inspect name them; the packed file (its C dc_unpack output too) runs bit-exact."""
    from dc_keras.export._pack import pack_with_stats

    extra = {"junk": JUNK, "cut_zip": cut_zip(), "model": plain}[tail]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        packed, stats = pack_with_stats(plain + extra)
        unpacked = export.unpack(packed)
    bare = export.pack(plain)
    assert packed == bare + extra and stats["kept_bytes"] == len(extra) and stats["dropped_zip"] is None
    assert unpacked == export.unpack(bare) + extra
    assert pack_with_stats(plain)[1]["kept_bytes"] == 0
    want = _outputs(plain, xs, False)
    np.testing.assert_array_equal(_outputs(packed, xs, True), want)
    np.testing.assert_array_equal(_outputs(unpacked, xs, False), want)
    np.testing.assert_array_equal(_outputs(runtime.unpack(packed), xs, False), want)
    src, out = tmp_path / "m.tflite", tmp_path / "p.tflite"
    src.write_bytes(plain + extra)
    assert cli.main(["pack", str(src), str(out)]) == 0
    # a zip cut short (a truncated file) is named so, with the fix (review s55)
    what = ("start like a zip of associated files (a local header) but have no end record: an archive cut short, so "
            "the file was probably truncated" if tail == "cut_zip" else
            "are neither part of it nor a zip of associated files")
    printed = " ".join(capsys.readouterr().out.split())
    assert f"note: {src} has {len(extra)} B after the model that {what}" in printed, printed
    assert f"kept unchanged after {out}'s model (TFLite ignores them)" in printed, printed
    assert out.read_bytes() == packed
    assert cli.main(["inspect", str(src)]) == 0
    assert f"{len(extra)} B after the model (it ends at byte {len(plain)}) {what}" in capsys.readouterr().out
    report = export.inspect(plain + extra)
    assert (report.trailing_bytes, report.model_end) == (len(extra), len(plain))


def test_bytes_between_the_model_and_its_zip_are_kept(plain, xs):
    """A zip appended (MetadataPopulator's way) after a file that already had bytes after its
    model: both follow the packed model in their order, the zip's offsets counted for its new
    place; padding (a few zero bytes) is not data."""
    src = appended(plain + JUNK)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        packed = export.pack(src)
    bare = export.pack(plain)
    assert packed[:len(bare) + len(JUNK)] == bare + JUNK and zip_start(packed) == len(bare) + len(JUNK)
    assert members(packed) == FILES and literal_members(packed) == FILES
    np.testing.assert_array_equal(_outputs(packed, xs, True), _outputs(plain, xs, False))
    from dc_keras.export._pack import pack_with_stats

    _, stats = pack_with_stats(appended(plain + bytes(15)))
    assert stats["kept_bytes"] == 0 and stats["kept_files"] == list(FILES)


def test_bytes_after_a_model_with_buffers_after_its_flatbuffer(plain, xs):
    """Buffer data stored after the flatbuffer (Buffer.offset/size, as ai-edge-quantizer and the
    converter for > 2 GB models write it) are part of the model, not bytes after it: only what
    follows them is kept, after the output's own buffer data."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export._pack import pack_with_stats

    external = fb.write_model(fb.read_model(plain), "external")
    assert fb.read_model(external).buffers[1].offset == 0 and fb.uses_external_buffers(fb.read_model(external))
    head = fb.schema.Model.GetRootAs(external, 0)
    data_start = min(head.Buffers(i).Offset() for i in range(head.BuffersLength()) if head.Buffers(i).Offset() > 1)
    assert fb.model_extent(external) == len(external) > data_start  # the flatbuffer alone ends earlier
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        packed, stats = pack_with_stats(external + JUNK, buffers="external")
        unpacked = export.unpack(packed, buffers="external")
    bare, _ = pack_with_stats(external, buffers="external")
    assert packed == bare + JUNK and stats["kept_bytes"] == len(JUNK)
    assert pack_with_stats(external, buffers="external")[1]["kept_bytes"] == 0
    assert unpacked == export.unpack(bare, buffers="external") + JUNK
    want = _outputs(plain, xs, False)
    np.testing.assert_array_equal(_outputs(packed, xs, True), want)
    np.testing.assert_array_equal(_outputs(unpacked, xs, False), want)


@pytest.mark.parametrize("how", ["bytes_after_the_zip", "cut_in_its_comment"])
def test_a_zip_end_record_that_does_not_end_the_file_is_dropped_with_a_warning(tmp_path, plain, capsys, how):
    """A zip with bytes after it, or cut short in its end record's comment: copied unchanged to a
    new place its offsets would be wrong (readers that search for the end record would find it),
    so pack / unpack drop it and say so, naming the bytes; the model is packed as without it."""
    from dc_keras.export._pack import pack_with_stats

    if how == "bytes_after_the_zip":
        src = appended(plain) + b"signature"
    else:
        z = io.BytesIO()
        with zipfile.ZipFile(z, "w") as f:
            f.comment = b"c" * 40
            f.writestr("labels.txt", LABELS)
        src = plain + z.getvalue()[:-10]
    n = len(src) - len(plain)
    with pytest.warns(UserWarning, match=rf"the input has a zip archive after the model, but it could not be kept in "
                                         rf"the output \(a zip end record that does not end the file: bytes follow "
                                         rf"its archive, or it was cut short\): {n} B after the model were dropped; "
                                         r"if the app reads associated files"):
        packed = export.pack(src)
    assert packed == export.pack(plain)
    assert pack_with_stats(src)[1]["dropped_zip"][1] == n
    with pytest.warns(UserWarning, match=f"{n} B after the model were dropped"):
        assert export.unpack(export.pack(plain) + src[len(plain):]) == export.unpack(export.pack(plain))
    path = tmp_path / "m.tflite"
    path.write_bytes(src)
    assert cli.main(["pack", str(path), str(tmp_path / "p.tflite")]) == 0
    assert f"note: {path} has a zip archive after the model, but it could not be kept in the output (a zip end " \
           f"record that does not end the file" in capsys.readouterr().out
    assert cli.main(["inspect", str(path)]) == 0
    assert f"has a zip archive after the model that cannot be kept (a zip end record that does not end the file: " \
           f"bytes follow its archive, or it was cut short): pack and unpack drop its {n} B" in capsys.readouterr().out
