"""The zip archive of associated files appended after a ``.tflite`` model (TFLite metadata's label
maps and vocabularies, as tflite_support's ``MetadataPopulator``, Model Maker and MediaPipe Tasks
models carry them), found and moved byte for byte so that ``pack`` / ``unpack`` keep it.

Offsets (docs/FORMAT.md §15): a zip stores where its local headers and central directory are as
byte offsets. ``MetadataPopulator`` appends the zip with Python's ``zipfile`` in mode "a", which
counts them from the start of the whole file (the model bytes before the zip included). Readers
differ on what they accept: Python's ``zipfile`` and minizip (tflite_support's C++
``MetadataExtractor``, MediaPipe Tasks) infer a shift from where the end record really is and
accept both conventions, as long as the archive did not move *backwards* (minizip refuses a
central directory that claims to lie past its real position); tflite_support's Java ``ZipFile``
(Android's ``MetadataExtractor``) reads the offsets literally and needs them counted from the file
start. A zip copied unchanged to a new position (the packed model is smaller) breaks both, so
:func:`moved` rewrites every offset for the new position, always counted from the start of the
file (what every one of these readers takes), whatever convention the input used. The members'
local headers, data and names, the central directory's other fields and the archive comment are
copied unchanged.

Zip64 (an end record with a zip64 locator, zip64 extra fields) is handled; an archive split over
several disks, a zip64 end record with extensible data or a central directory that does not parse
raises :class:`ZipTailError` (a ``ValueError``) saying why: callers report it, never drop the files
silently. tflite_kernels/src/dc_unpack.c implements the same rules in C.
"""
import dataclasses
import struct

EOCD = b"PK\x05\x06"
LOCATOR64 = b"PK\x06\x07"
EOCD64 = b"PK\x06\x06"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
EOCD_SIZE, LOCATOR64_SIZE, EOCD64_SIZE, CENTRAL_SIZE, LOCAL_SIZE = 22, 20, 56, 46, 30
U32_MAX = 0xFFFF_FFFF


class ZipTailError(ValueError):
    """The file ends with a zip end record whose archive cannot be read or moved (the reason)."""


@dataclasses.dataclass
class TrailingZip:
    """A zip archive at the end of a file: ``data[start:]`` (``start``: its first byte in the file)."""

    start: int
    names: list  # member names, central directory order
    sizes: list  # their uncompressed sizes
    patches: list  # offset fields: (position in the file, width in bytes, target - start)

    def size(self, data) -> int:
        """Bytes the archive takes at the end of ``data``."""
        return len(data) - self.start


def _u16(data, pos):
    return struct.unpack_from("<H", data, pos)[0]


def _u32(data, pos):
    return struct.unpack_from("<I", data, pos)[0]


def _u64(data, pos):
    return struct.unpack_from("<Q", data, pos)[0]


def _end_record(data):
    """Position of the end of central directory record that ends exactly at the end of ``data``
    (its comment length says so), or -1."""
    n = len(data)
    lowest = max(0, n - EOCD_SIZE - 0xFFFF)
    pos = data.rfind(EOCD, lowest, n - EOCD_SIZE + 4)
    while pos >= lowest:
        if pos + EOCD_SIZE <= n and pos + EOCD_SIZE + _u16(data, pos + 20) == n:
            return pos
        pos = data.rfind(EOCD, lowest, pos + 3)
    return -1


def find(data) -> "TrailingZip | None":
    """The zip at the end of ``data`` (bytes), None when there is none (no end record at the very
    end). Raises :class:`ZipTailError` when there is an end record but the archive is malformed or of
    a form this module cannot move."""
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    eocd = _end_record(data)
    if eocd < 0:
        return None
    disk, cd_disk, n_disk, n_total, cd_size, cd_offset = struct.unpack_from("<HHHHII", data, eocd + 4)
    fields = []  # (position, width, "cd" / "zip64 end" / local header file position)
    cd_end = eocd  # where the central directory really ends (the zip64 end record, if any)
    z64 = eocd - LOCATOR64_SIZE
    if z64 >= 0 and data[z64:z64 + 4] == LOCATOR64:
        if _u32(data, z64 + 4) != 0 or _u32(data, z64 + 16) not in (0, 1):
            raise ZipTailError("a zip split over several disks")
        rec = z64 - EOCD64_SIZE
        if rec < 0 or data[rec:rec + 4] != EOCD64 or _u64(data, rec + 4) != EOCD64_SIZE - 12:
            raise ZipTailError("a zip64 end record that is not just before its locator or has extensible data")
        disk, cd_disk = _u32(data, rec + 16), _u32(data, rec + 20)
        n_disk, n_total, cd_size, cd_offset = struct.unpack_from("<QQQQ", data, rec + 24)
        cd_end = rec
        fields += [(z64 + 8, 8, "zip64 end"), (rec + 48, 8, "cd")]
        if _u32(data, eocd + 16) != U32_MAX:
            fields.append((eocd + 16, 4, "cd"))
    else:
        fields.append((eocd + 16, 4, "cd"))
    if disk != 0 or cd_disk != 0 or n_disk != n_total:
        raise ZipTailError("a zip split over several disks")
    shift = cd_end - cd_size - cd_offset  # file position = stored offset + shift
    cd = cd_offset + shift
    if cd < 0:
        raise ZipTailError("its central directory would start before the file")
    start, pos, names, sizes = cd, cd, [], []
    for k in range(n_total):
        if pos + CENTRAL_SIZE > cd_end or data[pos:pos + 4] != CENTRAL:
            raise ZipTailError(f"central directory entry {k} is missing or truncated")
        usize, name_len, extra_len, comment_len = struct.unpack_from("<I HHH", data, pos + 24)
        csize, disk_start, local = _u32(data, pos + 20), _u16(data, pos + 34), _u32(data, pos + 42)
        name_end = pos + CENTRAL_SIZE + name_len
        end = name_end + extra_len + comment_len
        if end > cd_end:
            raise ZipTailError(f"central directory entry {k} runs past the central directory")
        where = pos + 42
        if U32_MAX in (usize, csize, local) or disk_start == 0xFFFF:
            usize, local, where = _zip64_extra(data, name_end, name_end + extra_len, usize, csize, local,
                                               disk_start, where, k)
        at = local + shift
        fields.append((where, 4 if where == pos + 42 else 8, at))
        if at < 0 or at + LOCAL_SIZE > cd or data[at:at + 4] != LOCAL:
            raise ZipTailError(f"the local header of {bytes(data[pos + 46:name_end]).decode(errors='replace')!r} "
                               "is not where the central directory says")
        start = min(start, at)
        names.append(bytes(data[pos + CENTRAL_SIZE:name_end]).decode("utf-8" if _u16(data, pos + 8) & 0x800
                                                                      else "cp437", errors="replace"))
        sizes.append(usize)
        pos = end
    if pos != cd_end:
        raise ZipTailError("its central directory size does not match its entries")
    target = {"cd": cd, "zip64 end": cd_end}
    patches = [(p, w, target.get(t, t) - start) for p, w, t in fields]  # targets from the archive's start
    return TrailingZip(start=start, names=names, sizes=sizes, patches=patches)


def _zip64_extra(data, pos, end, usize, csize, local, disk_start, where, k):
    """(uncompressed size, local header offset, position of that offset's field) from the zip64
    extra field of central directory entry ``k`` (fields present only where the 32-bit ones are
    saturated, in the order size, compressed size, offset, disk)."""
    while pos + 4 <= end:
        tag, size = _u16(data, pos), _u16(data, pos + 2)
        if pos + 4 + size > end:
            break
        if tag == 1:
            at = pos + 4
            for name in ("usize", "csize", "local"):
                value = {"usize": usize, "csize": csize, "local": local}[name]
                if value != U32_MAX:
                    continue
                if at + 8 > pos + 4 + size:
                    raise ZipTailError(f"central directory entry {k}: its zip64 extra field is too short")
                if name == "usize":
                    usize = _u64(data, at)
                elif name == "local":
                    local, where = _u64(data, at), at
                at += 8
            if disk_start == 0xFFFF and (at + 4 > pos + 4 + size or _u32(data, at) != 0):
                raise ZipTailError("a zip split over several disks")
            return usize, local, where
        pos += 4 + size
    raise ZipTailError(f"central directory entry {k} has saturated fields but no zip64 extra field")


def moved(data, z: TrailingZip, new_start: int) -> bytes:
    """The archive ``data[z.start:]`` as it must be written at ``new_start`` of another file:
    every offset counted from that file's start (see the module docstring). Raises
    :class:`ZipTailError` if an offset does not fit its 32-bit field there."""
    out = bytearray(data[z.start:])
    for pos, width, rel in z.patches:
        value = new_start + rel
        if width == 4 and value >= U32_MAX:
            raise ZipTailError(f"an offset ({value}) would not fit the zip's 32-bit field (no zip64 there)")
        struct.pack_into("<I" if width == 4 else "<Q", out, pos - z.start, value)
    return bytes(out)


def split(data):
    """``(model bytes, zip or None, error or None)``: the bytes before an appended zip, the zip
    (:class:`TrailingZip`, positions in ``data``) and, when the file ends with a zip end record
    whose archive cannot be moved, the :class:`ZipTailError` (then the model is all of ``data``)."""
    try:
        z = find(data)
    except ZipTailError as exc:
        return data, None, exc
    except struct.error:
        return data, None, ZipTailError("its records are truncated")
    return (data if z is None else data[:z.start]), z, None


def describe(names, sizes, total, shown=5) -> str:
    """``N associated file(s) (a, b, ...), T B``: for notes and ``inspect``."""
    from dc_keras._flatbuffer import printable

    listed = ", ".join(f"{printable(n)} ({s} B)" for n, s in zip(names[:shown], sizes[:shown]))
    if len(names) > shown:
        listed += f" and {len(names) - shown} more"
    return f"{len(names)} associated file(s) in a zip of {total} B after the model" + (f": {listed}" if names else "")
