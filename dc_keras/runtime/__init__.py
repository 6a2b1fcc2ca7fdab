"""Running packed ``.tflite`` models: an interpreter with the ``HuffDecode`` op available.

``Interpreter`` takes the same arguments as LiteRT's ``ai_edge_litert.interpreter.Interpreter``
plus ``backend`` (``"auto"``, ``"litert"`` or ``"tensorflow"``) and ``decode``:

* ``decode="delegate"`` (default, both backends): the library's external delegate
  (``tflite_plugin_create_delegate``) is applied first. Its Prepare decodes every packed tensor
  into memory it owns and hands it back as an ordinary constant (read-only, like a weight of the
  unpacked model) before the default XNNPACK delegate looks at the graph, so XNNPACK and every
  other kernel see the same constant weights as in the unpacked model (same kernels, same speed,
  bit-identical outputs).
* ``decode="op"`` (``backend="tensorflow"`` only): the plain custom op, registered with
  ``InterpreterWithCustomOps(custom_op_registerers=[REGISTERER])``; decoding happens in the op's
  Prepare into persistent read-only memory. XNNPACK is applied before that Prepare and then skips
  layers fed by decoded weights (they are not constants when it looks).

A corrupt packed buffer makes ``allocate_tensors()`` fail with ``RuntimeError`` naming the model,
the tensor, the decoder's reason and the fix, also where TFLite defers HuffDecode's Prepare to the
first ``invoke()`` (ops after a dynamic output shape, e.g. a SHAPE -> RESHAPE of a dynamic batch):
with ``decode="delegate"`` the delegate has decoded every packed tensor by then and
``allocate_tensors()`` asks it for its first error (``DcKerasHuffDecodeDelegateError``, no extra
pass over the weights); with ``decode="op"`` the constructor checks every packed tensor's header and CRC-32
(FORMAT.md §8) first, since that op decodes in its own, deferred Prepare. A signature runner
(``get_signature_runner``) allocates on its own: there the same error comes at its first call.

Using the library without this module:

* LiteRT / TF Python: ``load_delegate(dc_keras.runtime.library_path())`` in
  ``experimental_delegates``.
* TFLite C API: ``TfLiteInterpreterOptionsAddCustomOp(opts, "HuffDecode",
  DcKerasHuffDecodeRegistration(), 1, 1)``; C++: ``resolver.AddCustom("HuffDecode",
  DcKerasHuffDecodeRegistration())``.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import mmap
import numbers
import os
import re
import stat
import struct
import threading
import warnings

from dc_keras._fileio import content_bytes
from dc_keras._native import library_path as _native_library_path
from dc_keras._native import load_library
from dc_keras._compat import delegate_pointer, tflite_add_custom_address

__all__ = ["Interpreter", "library_path", "REGISTERER", "OP_NAME", "prepare_tensorflow_registerer",
           "available_backends", "unpack", "compiled_model"]

OP_NAME = "HuffDecode"
REGISTERER = "DcKerasRegisterHuffDecode"
_BACKENDS = ("auto", "litert", "tensorflow")
_WEIGHTS = ("decoded", "compressed")
_BACKEND_MODULES = (("litert", "ai_edge_litert"), ("tensorflow", "tensorflow"))  # "auto" order
_lock = threading.Lock()
_registerer_ready = False


def library_path() -> str:
    """Absolute path of ``libdc_huffdecode.so`` (op registration + external delegate).

    Example:
      >>> from ai_edge_litert.interpreter import Interpreter, load_delegate
      >>> it = Interpreter(model_path="m.packed.tflite",
      ...                  experimental_delegates=[load_delegate(library_path())])
    """
    return _native_library_path()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> list:
    """Backends installed here, in ``"auto"`` preference order (imports neither of them)."""
    return [name for name, module in _BACKEND_MODULES if _installed(module)]


def prepare_tensorflow_registerer() -> str:
    """Makes ``REGISTERER`` usable by TF's ``InterpreterWithCustomOps`` and returns its name.

    Loads the library with ``RTLD_GLOBAL`` (TF looks the registerer up by name) and hands it the
    address of TF's ``MutableOpResolver::AddCustom`` (the library itself links only libc/libm).

    Example:
      >>> from tensorflow.lite.python.interpreter import InterpreterWithCustomOps
      >>> it = InterpreterWithCustomOps(model_content=packed,
      ...          custom_op_registerers=[prepare_tensorflow_registerer()])
    """
    global _registerer_ready
    with _lock:
        if _registerer_ready:
            return REGISTERER
        import tensorflow.lite.python.interpreter  # noqa: F401  (loads the TF runtime)

        lib = load_library()
        addr = tflite_add_custom_address()
        lib.DcKerasSetHuffDecodeAddCustom.argtypes = [ctypes.c_void_p]
        lib.DcKerasSetHuffDecodeAddCustom.restype = None
        lib.DcKerasSetHuffDecodeAddCustom(addr)
        _registerer_ready = True
        return REGISTERER


def _check_model(model_path, model_content, caller="Interpreter") -> str:
    """Cheap checks before LiteRT/TF sees the model, whose errors name neither the file nor a fix:
    the path exists and is a file, and the first bytes are a .tflite header (size, identifier).
    Nothing heavier runs on the load path (the schema module alone costs ~25 ms to import); a model
    LiteRT then refuses is diagnosed by ``_load_errors``. Returns how errors name the model.
    ``caller``: the function the fix for bytes given as ``model_path`` names."""
    if model_path is None:
        if model_content is None:
            return "model_content"  # LiteRT/TF say that one of the two is needed
        _check_header("model_content", memoryview(model_content)[:16].tobytes())
        return "model_content"
    if isinstance(model_path, (bytearray, memoryview, mmap.mmap)) or (
            isinstance(model_path, bytes) and (len(model_path) > 4096 or b"\0" in model_path)):
        raise TypeError(f"model_path got {memoryview(model_path).nbytes} bytes of model content, not a path: pass them as "
                        f"model_content=, e.g. {caller}(model_content=data)")
    path = os.fspath(model_path)
    from dc_keras._fileio import check_path, directory_fix, show_path

    check_path(path, "model_path")  # a null byte: named, not os's bare "embedded null byte"
    if not os.path.exists(path):
        if path.startswith("~") and os.path.exists(os.path.expanduser(path)):  # the shell's, not Python's
            raise FileNotFoundError(f"{show_path(path)}: no such file: Python does not expand '~' (a shell does), so "
                                    f"pass os.path.expanduser({path!r})")
        raise FileNotFoundError(f"{show_path(path)}: no such file: check the path (model_path is a .tflite "
                                "file, e.g. written by dc_keras.export.pack or dc-keras pack)")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{show_path(path)} is a directory: {directory_fix(path)}")
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):  # a FIFO's open waited forever for a writer; a pipe ended in a bare OSError
        if caller == "compiled_model":  # it reads the file: as `dc-keras inspect` does (_read_path)
            return path
        from dc_keras._fileio import special_file_kind

        kind = special_file_kind(mode)
        fix = (f"; to load a model from a pipe, read it and pass its bytes, e.g. {caller}(model_content=open(path, "
               "'rb').read())" if stat.S_ISFIFO(mode) else "")
        raise ValueError(f"{show_path(path)} is a {kind}, not a regular file: model_path takes a .tflite file (LiteRT maps "
                         f"it into memory){fix}")
    with open(path, "rb") as f:
        _check_header(show_path(path), f.read(16))
    return path


def _read_path(path) -> bytes:
    """The bytes of the file ``path``; a FIFO, a pipe (``<(cmd)``) or a device as ``dc-keras inspect``
    reads them (a FIFO nothing writes to is refused, not waited on: ``OSError`` saying what to do)."""
    if stat.S_ISREG(os.stat(path).st_mode):
        with open(path, "rb") as f:
            return f.read()
    from dc_keras._fileio import read_input

    return read_input(path)


def _backend_path(model_path):
    """``model_path`` as the backends take it: bytes (``os.fsencode``). Both take a str or bytes, but
    a str holding a name that is not UTF-8 (``caf\\udce9.tflite``: Python keeps the undecodable
    byte as a surrogate) failed in pybind with "incompatible function arguments"."""
    return None if model_path is None else os.fsencode(model_path)


def _check_header(label, head: bytes) -> None:
    if len(head) < 16 or head[4:8] != b"TFL3":
        from dc_keras import _flatbuffer as fb

        _named(fb.check_model, label, head)


def _model_bytes(model_path, model_content):
    """The model's bytes (a read-only map of a file), for diagnostics only."""
    if model_path is None:
        return contextlib.nullcontext(model_content if hasattr(model_content, "find") else bytes(model_content))
    with open(model_path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _mentions_huffdecode(model_path, model_content) -> bool:
    """Whether the model holds the op name ``HuffDecode`` (every packed model does): a byte scan,
    run only to decide the warning of ``weights="compressed"`` on an unpacked model. The name sits
    in the flatbuffer's tables: near the start of a packed file (the packed data are its tail) or,
    in files packed before that layout, in its last bytes; so the first 64 KiB are looked at
    first, then the file from its end (a forward scan of a 2 MB old-layout file took 1.2 ms of
    the 4096^2 layer's ~10 ms load)."""
    with _model_bytes(model_path, model_content) as data:
        return data.find(b"HuffDecode", 0, 1 << 16) >= 0 or data.rfind(b"HuffDecode") >= 0


def _full_check(label, model_path, model_content) -> None:
    """Our parser's whole-model check (bounds of every table and buffer), named, with the fix."""
    if model_path is None and model_content is None:
        return
    from dc_keras._flatbuffer import check_model

    with _model_bytes(model_path, model_content) as data:
        _named(check_model, label, data)


_VAR_HANDLE = 142  # schema.BuiltinOperator.VAR_HANDLE (the schema module is not imported here)
_I8, _I32, _U16, _U32 = (struct.Struct(f) for f in ("<b", "<i", "<H", "<I"))  # flatbuffer scalars


def _builtin_codes(data) -> list:
    """The builtin operator of each ``OperatorCode`` of the model ``data`` (the larger of its
    ``builtin_code`` and ``deprecated_builtin_code``, as ``_flatbuffer.builtin_code``), read with
    ``struct`` alone, the flatbuffer's offsets followed by hand: the load path does not import the
    schema module (~25 ms). [] when an offset points outside ``data`` (read after the runtime
    loaded the model, which its verifier checked)."""
    size = len(data)

    def read(scalar, at):
        if not 0 <= at <= size - scalar.size:
            raise ValueError(at)
        return scalar.unpack_from(data, at)[0]

    def field(table, slot):  # where the table's field ``slot`` is, None when absent (its default)
        vtable = table - read(_I32, table)
        entry = 4 + 2 * slot
        off = read(_U16, vtable + entry) if entry < read(_U16, vtable) else 0
        return table + off if off else None

    try:
        codes = []
        vec = field(read(_U32, 0), 1)  # Model.operator_codes
        if vec is not None:
            vec += read(_U32, vec)
            for k in range(read(_U32, vec)):
                table = vec + 4 + 4 * k
                table += read(_U32, table)
                old, new = field(table, 0), field(table, 3)  # deprecated_builtin_code (int8), builtin_code (int32)
                codes.append(max(0 if old is None else read(_I8, old), 0 if new is None else read(_I32, new)))
        return codes
    except ValueError:
        return []


def _warn_if_weights_missing(label, model_path, model_content) -> None:
    """``pack``'s UserWarning (``_flatbuffer.unassigned_variables_note``) for a model that reads
    resource variables (``VAR_HANDLE`` ops) no operator assigns: its weights are not in the file,
    and TFLite runs a Dense model on uninitialized memory (NaN, inf or arbitrary outputs) without an
    error (review s56). Said by ``Interpreter`` and ``compiled_model``, at the line that called them.
    The schema module is imported only when a ``VAR_HANDLE`` code is there."""
    if model_path is None and model_content is None:
        return
    with _model_bytes(model_path, model_content) as data:
        if _VAR_HANDLE not in _builtin_codes(data):
            return
    from dc_keras import _flatbuffer as fb

    try:
        count = fb.unassigned_variables(_content(model_path, model_content))
    except Exception:  # noqa: BLE001 -- only a warning: the model loaded
        return
    if count:
        warnings.warn(f"{label}: {fb.unassigned_variables_note(count)}", UserWarning, stacklevel=3)


class _HuffDecodeOp(ctypes.Structure):  # dc_huffdecode_op (dc_unpack.h)
    _fields_ = [("packed", ctypes.c_void_p), ("packed_size", ctypes.c_size_t),
                ("output_bytes", ctypes.c_size_t), ("rank", ctypes.c_uint32),
                ("dims", ctypes.c_int32 * 8), ("name", ctypes.c_char * 96)]


_DC_ERR_CHECKSUM = 11
_DC_UNPACK_BAD_PACKED = 2  # dc_unpack_status (dc_unpack.h): a HuffDecode op or its packed tensor is invalid
# how dc_list_huffdecode words a packed tensor whose header dc_peek refused (DC_PEEK_FAILURE, dc_codec.h)
_PEEK_FAILURES = ("invalid packed tensor", "packed tensor not readable here")


def _packed_model_view(model_path, model_content):
    """The model's bytes for the C library: ``model_content`` itself, or a private map of the file
    (copy-on-write, never written: nothing is copied)."""
    if model_path is None:
        return contextlib.nullcontext(model_content)
    with open(model_path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size == 0 or not stat.S_ISREG(st.st_mode):  # not mappable: left to the runtime
            return contextlib.nullcontext(b"")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def _verify_packed(label, model_path, model_content) -> None:
    """Checks every packed tensor's CRC-32 (FORMAT.md §8) before the runtime sees the model, so
    corrupt packed data fails here, naming the tensor, and not only at the first
    ``invoke()``: TFLite defers the Prepare (where HuffDecode decodes) of every op after one with a
    dynamic output shape (e.g. a SHAPE -> RESHAPE kept by a dynamic batch). For ``decode="op"``
    only: the delegate routes ask the delegate after ``allocate_tensors()`` instead (it has decoded
    everything by then), which costs no second pass over the weights (this one: ~0.5 ms on
    MobileNetV2's 3.6 MB packed file, ~3 % of its load). Uses the C library's
    ``dc_list_huffdecode`` (the flatbuffer walk, each op's header and shape checked, nothing decoded)
    and ``dc_verify`` (the decoder's own header and CRC check, nothing decoded): a fraction of a millisecond per
    MB of packed data. Version-1 tensors (checksum over the decoded output) are not checked here. A
    packed tensor whose header the walk's ``dc_peek`` refuses (damaged magic, dtype, rank or layout, a
    newer format version) raises here too, in the library's words (the delegate's), with the fix:
    left to the runtime, it surfaced only at the first ``invoke()`` where TFLite defers HuffDecode's
    Prepare. Other walk failures (an op's wiring, a shape that disagrees with its packed tensor, a model
    it cannot read) are left to the runtime, whose errors say more precisely what is wrong."""
    if model_path is None and model_content is None:
        return
    lib = load_library()
    lst, verify, free = lib.dc_list_huffdecode, lib.dc_verify, lib.dc_unpack_free  # free(), the library's own
    free.argtypes, free.restype = [ctypes.c_void_p], None
    lst.restype = ctypes.c_int
    lst.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(_HuffDecodeOp)),
                    ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    verify.restype = ctypes.c_int
    verify.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.dc_strerror.restype = ctypes.c_char_p
    lib.dc_strerror.argtypes = [ctypes.c_int]
    with _packed_model_view(model_path, model_content) as data:
        n = len(data)
        if n == 0:
            return
        if isinstance(data, bytes):
            keep, base = data, ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
        else:  # the private map: writable for ctypes, never written
            keep = (ctypes.c_ubyte * n).from_buffer(data)
            base = ctypes.addressof(keep)
        ops, count = ctypes.POINTER(_HuffDecodeOp)(), ctypes.c_size_t(0)
        why = ctypes.create_string_buffer(512)
        status = lst(base, n, ctypes.byref(ops), ctypes.byref(count), why, len(why))
        msg = why.value.decode(errors="backslashreplace") if status == _DC_UNPACK_BAD_PACKED else ""
        if any(f"): {failure}: " in msg for failure in _PEEK_FAILURES):  # a header dc_peek refused
            del keep
            from dc_keras._flatbuffer import printable  # only on errors: it imports the schema

            raise RuntimeError(f"{label}: {printable(msg)}")
        try:
            bad = next((ops[i].name.decode(errors="replace")  # a nameless one: "(unnamed tensor N)", the C's
                        for i in range(count.value if status == 0 else 0)
                        if verify(ops[i].packed, ops[i].packed_size) == _DC_ERR_CHECKSUM), None)
        finally:
            if ops:
                free(ctypes.cast(ops, ctypes.c_void_p))
            del keep
        if bad is not None:
            from dc_keras._flatbuffer import CORRUPT_FIX  # only on errors: it imports the schema

            reason = lib.dc_strerror(_DC_ERR_CHECKSUM).decode()  # worded as the decoder's own error
            raise RuntimeError(f"{label}: HuffDecode({bad}): decoding failed: {reason}; {CORRUPT_FIX}")


def _named(check, label, data):
    try:
        return check(data)
    except ValueError as e:
        raise ValueError(f"{label}: {e}") from None


@contextlib.contextmanager
def _load_errors(label, model_path=None, model_content=None):
    """LiteRT/TF's load errors with the model's name, the cause our parser finds and the fix."""
    try:
        yield
    except UnicodeDecodeError as e:  # a signature key / tensor name that is not UTF-8 (LiteRT decodes them)
        from dc_keras._flatbuffer import CORRUPT_FIX

        _full_check(label, model_path, model_content)
        raise ValueError(f"{label}: a signature or tensor name in it is not valid UTF-8 ({e}), so LiteRT's "
                         f"Python API cannot load it; {CORRUPT_FIX}") from None
    except ValueError as e:
        from dc_keras._flatbuffer import CORRUPT_FIX

        _full_check(label, model_path, model_content)  # raises with the cause when our parser sees one
        msg = " ".join(str(e).split())
        if not any(s in msg for s in ("Could not open", "not a valid Flatbuffer", "invalidly specified in schema")):
            raise
        raise ValueError(f"{label}: LiteRT cannot load it ({msg}); {CORRUPT_FIX}") from None


def _resolver_type_for(backend, kwargs):
    """``kwargs`` with an ``experimental_op_resolver_type`` of the other runtime's ``OpResolverType``
    (LiteRT's ``ai_edge_litert.interpreter`` and TF's ``tf.lite.experimental`` each have one, with the
    same members) replaced by the member of the same name of ``backend``'s. Each runtime refused the
    other's with "Unrecognized passed in op resolver type: OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    which names the very member passed: with ``backend="auto"`` a TF user's enum reached LiteRT."""
    value = kwargs.get("experimental_op_resolver_type")
    if value is None or type(value).__name__ != "OpResolverType":
        return kwargs
    if backend == "litert":
        from ai_edge_litert.interpreter import OpResolverType
    else:
        from tensorflow.lite.python.interpreter import OpResolverType
    member = getattr(OpResolverType, "__members__", {}).get(getattr(value, "name", None))
    if isinstance(value, OpResolverType) or member is None:
        return kwargs  # the backend's own, or no such member: the backend says what it takes
    return dict(kwargs, experimental_op_resolver_type=member)


class _InitSignature:
    """``Interpreter.__signature__``: what ``inspect.signature(Interpreter)`` (``help()``, notebooks'
    and IDEs' call tips) shows, the parameters of ``__init__``; inspect prefers ``__new__``'s catch-all
    ones when a class defines both. Computed when asked (inspect is not imported on the load path);
    None for a subclass with an ``__init__`` or ``__new__`` of its own (inspect then reads those)."""

    def __get__(self, obj, owner):
        if obj is not None:
            raise AttributeError("__signature__")
        for klass in owner.__mro__:
            if klass is Interpreter:
                break
            if "__init__" in vars(klass) or "__new__" in vars(klass):
                return None
        import inspect

        sig = inspect.signature(Interpreter.__init__)
        return sig.replace(parameters=list(sig.parameters.values())[1:])  # without self


class Interpreter:
    """A TFLite interpreter that runs packed models (``HuffDecode`` ops) and ordinary ones.

    Same keyword arguments as ``ai_edge_litert.interpreter.Interpreter`` (``model_path``,
    ``model_content``, ``experimental_delegates``, ``num_threads``,
    ``experimental_op_resolver_type``, ``experimental_preserve_all_tensors``, ...), plus:

    Args:
      backend: ``"auto"`` (LiteRT when installed, else TF), ``"litert"`` or ``"tensorflow"``
        (TF's ``InterpreterWithCustomOps``).
      decode: ``"delegate"`` (default; keeps XNNPACK on the packed weights) or ``"op"``
        (TF backend only: the plain custom op, decoding in its Prepare; refuses packed INT4 filters
        of a dynamic-range FULLY_CONNECTED, which TFLite would run on another kernel).
      weights: ``"decoded"`` (default: packed weights are decoded to dense constants at load and
        run on the ordinary kernels, XNNPACK included) or ``"compressed"`` (FULLY_CONNECTED layers
        with packed float32 / int8 weights, clustered or not, and EMBEDDING_LOOKUP / GATHER (axis 0) on packed
        float32 / int8 tables, run from a compact sparse form built at load -- the dense weights
        are never kept; every other op is decoded as with ``"decoded"``; lookups are bit-exact). Float
        results then differ from dense kernels by summation order (~1e-6 relative); int8 is exact.
        The same option for C/Android users: ``load_delegate(path, {"weights": "compressed"})``.
        When none of the packed tensors runs compressed, the first ``allocate_tensors()`` (or
        signature runner call) warns so with the reasons (``compressed_report()`` lists each).
      release_decoded: ``True`` frees each decoded weight once XNNPACK has packed its own copy
        (saves the decoded copy's memory; delegate option ``keep_decoded=0``, so ``decode="delegate"``
        only). This Interpreter
        then refuses ``get_tensor`` / ``tensor`` on the weights it may free (ValueError naming
        them); TFLite's own APIs would return freed memory, so it is off by default; see
        docs/android.md.
      max_density: with ``weights="compressed"``, a fraction in (0, 1] (whole percent, e.g.
        ``0.5``): FULLY_CONNECTED layers with a larger share of non-zero weights stay decoded,
        reported with their density and the limit (delegate option ``max_density=50``; the limit's
        count of non-zeros is rounded up, so a layer pruned to 90 % keeps its 10 %); it applies
        to every weight type and form. Default ``None``: by the form the layer runs in -- 0.3 for
        float32 weights on the row form (ARM CPUs, layers of > 32 values or 1-3 output units:
        denser layers run faster on the dense kernels, at 40 % 1.5x slower at batch 8, unpruned
        up to 8x), 0.05 for float32 weights with the AVX2 kernels (x86-64 CPUs without AVX-512:
        the row form; a 1024x1024 layer at 10 % took 1.06x of XNNPACK's time at batch 1, a
        4096x4096 one 0.39x: pass a larger value for large layers), 0.1 for unclustered float32
        weights (pruned, not clustered: more than 255 distinct non-zero values, packed as float
        planes; they run on the value form, 6 bytes per non-zero, on every CPU: at 15 % a 1024x1024
        layer took 1.12x of XNNPACK's time at batch 1), 0.4 for float32 weights on
        the tile form (AVX-512 CPUs,
        layers of <= 32 values and >= 4 output units: the densest density measured where it is
        faster than the dense kernels at batch 1 and 8, at a third of their memory; at batch 16
        and more it is slower from ~30 %: pass ``0.2`` for batched serving), 0.25 for int8
        (chosen for memory: up to there the compact form takes <= ~0.75x of the int8 weights;
        on the tile form of AVX-512 CPUs it is faster than XNNPACK's int8 kernel at 5 % and
        about even at 10 %, with the AVX2 kernels (1.2-1.5x the AVX-512 ones' time) faster at
        5 % at batch 1, on the row form slower at every density measured);
        docs/android.md. ``1.0`` runs every FC layer it can compressed.

    With ``experimental_default_delegate_latest_features=True`` (LiteRT/TF's flag: XNNPACK with every
    feature) TFLite applies XNNPACK as the interpreter is built, before this delegate decodes anything:
    a packed model is then unpacked in memory first (``unpack``), so XNNPACK runs it exactly as the
    unpacked file (``weights="compressed"`` and ``release_decoded=True`` are refused with that flag).

    It is an instance of the backend's interpreter class (``ai_edge_litert.interpreter.Interpreter``
    with LiteRT; TensorFlow's ``InterpreterWithCustomOps``, a ``tf.lite.Interpreter``, with
    ``backend="tensorflow"``): a subclass made per backend class, so code typed for that class takes
    it. Every method it does not document here (``resize_tensor_input``, ``get_tensor_details``,
    ``get_signature_list``, ...) is the backend's own. ``.backend`` names the backend used. It cannot
    be pickled or copied (it holds a loaded model): create one per process or thread.
    Like TFLite's, one interpreter is not thread-safe: use one per thread (several threads, each
    with its own interpreter, may share a model file and the delegate library); a call of
    ``invoke()`` or of a signature runner while another thread runs the same interpreter raises a
    RuntimeError saying so (TFLite ran some such calls, mixing the threads' outputs).

    Example:
      >>> it = dc_keras.runtime.Interpreter(model_content=packed)
      >>> it.allocate_tensors()
      >>> it.set_tensor(it.get_input_details()[0]["index"], x)
      >>> it.invoke(); y = it.get_tensor(it.get_output_details()[0]["index"])
    """

    __signature__ = _InitSignature()

    def __new__(cls, *_args, backend="auto", decode="delegate", weights="decoded", **_kwargs):
        """An instance of ``_interpreter_class(cls, <the backend's interpreter class>)``; the backend
        is picked (and imported) here, as ``__init__`` picks it."""
        concrete = _check_args(backend, decode, weights)
        return object.__new__(_interpreter_class(cls.__dict__.get("_dc_public", cls), _backend_module(concrete)[1]))

    def __init__(self, model_path=None, model_content=None, *, backend="auto", decode="delegate",
                 weights="decoded", release_decoded=False, max_density=None, **kwargs):
        backend = _check_args(backend, decode, weights)
        self._dc_running = threading.Lock()  # held by invoke(), set_tensor(), ... (_exclusive): one thread at a time
        _check_environment()
        density_pct = _check_max_density(max_density, weights)
        model_content = _content_bytes(model_content)
        label = _check_model(model_path, model_content)
        if decode == "op":  # decodes in its own Prepare, which TFLite may defer to the first invoke
            _verify_packed(label, model_path, model_content)
        if backend == "tensorflow":  # TF's loader does not bound-check buffers stored past the flatbuffer
            _full_check(label, model_path, model_content)  # (LiteRT does); TF's import dwarfs this one
        if weights == "compressed" and not _mentions_huffdecode(model_path, model_content):
            warnings.warn(f"{label} has no packed tensors (no HuffDecode op), so weights='compressed' "
                          "has nothing to do and the model runs as it is: pack it first with "
                          "dc_keras.export.pack or dc-keras pack", UserWarning, stacklevel=2)
        if not isinstance(release_decoded, bool):
            raise ValueError(f"release_decoded must be True or False, got {release_decoded!r}")
        if release_decoded and decode == "op":  # it is the delegate's keep_decoded=0: nothing would be freed
            raise ValueError("release_decoded=True needs decode='delegate' (the default): it is the delegate's "
                             "keep_decoded=0, and with decode='op' XNNPACK does not pack the decoded weights, "
                             "so nothing could be freed")
        if kwargs.get("experimental_default_delegate_latest_features") and decode == "delegate" \
                and _mentions_huffdecode(model_path, model_content):
            model_path, model_content = _unpacked_for_latest_features(
                label, model_path, model_content, weights, release_decoded)
        kwargs = _resolver_type_for(backend, kwargs)
        user_delegates = kwargs.pop("experimental_delegates", None) or []
        if not isinstance(user_delegates, (list, tuple)):  # list() of one Delegate: "'Delegate' object is not iterable"
            raise TypeError(f"experimental_delegates must be a list of delegates, got one "
                            f"{type(user_delegates).__name__}: pass [delegate]")
        user_delegates = list(user_delegates)
        options = dict({"weights": weights} if weights != "decoded" else {},
                       **({"keep_decoded": "0"} if release_decoded else {}),
                       **({"max_density": str(density_pct)} if density_pct is not None else {})) or None
        self._delegate = None
        load_library()  # a library the loader refuses: said with the fix, before the backend's load_delegate
        mod, base, _ = _backend_module(backend)
        public = type(self).__dict__.get("_dc_public")
        if public is not None and not isinstance(self, base):
            # __new__ picked the backend from the arguments it saw; a subclass's __init__ may pass
            # another (super().__init__(backend="tensorflow", ...)): this object becomes that one's
            self.__class__ = _interpreter_class(public, base)
        if not isinstance(self, base):  # Interpreter.__init__ called on an object __new__ did not make
            raise TypeError(f"this object is not a {base.__module__}.{base.__qualname__}: create the "
                            "interpreter as dc_keras.runtime.Interpreter(...)")
        if backend == "litert":
            self._delegate = mod.load_delegate(library_path(), options)
            delegates = [self._delegate] + user_delegates
            with _load_errors(label, model_path, model_content):
                super().__init__(model_path=_backend_path(model_path), model_content=model_content,
                                 experimental_delegates=delegates, **kwargs)
        else:
            if decode == "op":
                _check_op_route(model_path, model_content)
            registerers = list(kwargs.pop("custom_op_registerers", None) or [])
            registerers.append(prepare_tensorflow_registerer())
            delegates = user_delegates
            if decode == "delegate":
                self._delegate = mod.load_delegate(library_path(), options)
                delegates = [self._delegate] + user_delegates
            with _load_errors(label, model_path, model_content):
                super().__init__(model_path=_backend_path(model_path), model_content=model_content,
                                 custom_op_registerers=registerers, experimental_delegates=delegates, **kwargs)
        self.backend = backend
        self.decode = decode
        self.weights = weights
        self._label = label
        self._source = (model_path, model_content)  # for error messages only (model_content: kept by the runtime too)
        # weights the delegate may free (release_decoded): read through get_tensor / tensor, refused
        self._releasable = _releasable_weights(model_path, model_content) if release_decoded else {}
        self._dc_route_said = weights != "compressed"  # _say_nothing_compressed, once
        _warn_if_weights_missing(label, model_path, model_content)

    def allocate_tensors(self):
        """The backend's ``allocate_tensors()``; a packed tensor that failed to decode raises here
        (``RuntimeError`` naming the model, the tensor, the reason and the fix) even where TFLite
        defers the delegate kernel's Prepare, which reports it, to the first ``invoke()`` (ops
        after a dynamic output shape).

        Example:
          >>> it = dc_keras.runtime.Interpreter(model_content=packed)
          >>> it.allocate_tensors()
        """
        with self._exclusive("allocate_tensors()"):  # TFLite refused it with words about tensor() views
            with self._prepare_errors():
                super().allocate_tensors()
        self._raise_delegate_error()
        self._say_nothing_compressed()

    def _say_nothing_compressed(self):
        """Once, after the first allocation that succeeded (the delegate's report is then complete:
        a packed tensor that failed to decode has no row, and raised instead): the UserWarning of
        ``_warn_if_nothing_compressed``. Not at load, where asking the delegate for its errors would
        wait for the decodes its helpers run while the load goes on."""
        if not getattr(self, "_dc_route_said", True):
            self._dc_route_said = True
            _warn_if_nothing_compressed(self._label, self.compressed_report())

    @contextlib.contextmanager
    def _exclusive(self, call):
        """Holds the interpreter for ``call`` (``invoke()``, ``set_tensor()``, ...), or raises a
        RuntimeError if another thread holds it: a TFLite interpreter is not thread-safe."""
        running = self.__dict__.get("_dc_running")
        if running is None:  # an object whose __init__ was not ours: nothing to guard with
            running = self.__dict__.setdefault("_dc_running", threading.Lock())
        if not running.acquire(blocking=False):
            raise RuntimeError(_concurrent_text(self._label, call))
        try:
            yield
        finally:
            running.release()

    @contextlib.contextmanager
    def _prepare_errors(self, inputs=None):
        """A Prepare the runtime ran inside failed: the error said naming the model, and the fix.
        ``inputs``: for a signature runner's call, a function giving ``(what, shape given, shape the
        model takes)`` per input, called only on an error (else the interpreter's own inputs, those
        of subgraph 0, are checked)."""
        try:
            yield
        except RuntimeError as exc:
            self._strip_earlier_errors(exc)
            self._raise_id_out_of_range(exc)
            self._raise_delegate_error(exc)
            self._raise_op_error(exc)
            self._raise_inconsistent(exc)
            self._raise_bad_resize(exc, inputs)
            self._raise_zero_scale(exc)
            self._raise_sparse(exc)
            self._raise_flex(exc)
            self._raise_missing_weights(exc)
            raise

    def _strip_earlier_errors(self, exc):
        """Leaves in ``exc``, a RuntimeError of the backend, only this call's text: the backend's error
        reporter (TFLite's ``PythonErrorReporter``) never empties its buffer, so each error's text began
        with every earlier one's (a compressed GATHER's "indices[0] = 5000", said again ahead of this
        call's "indices[0] = -1"; "Invoke called on model that is not ready." ahead of a failed resize),
        and the explanations below matched words of those. ``exc`` itself is changed (not replaced: a
        new exception chained to the old one kept its ever longer text alive in a reference cycle)."""
        text = str(exc)
        # the length and last characters of the text seen before, not the text: the buffer only grows
        seen, tail = self.__dict__.get("_dc_reported", (0, ""))
        self.__dict__["_dc_reported"] = (len(text), text[-256:])
        if len(exc.args) == 1 and 0 < seen < len(text) and text[seen - len(tail):seen] == tail:
            exc.args = (text[seen:],)

    def get_signature_runner(self, signature_key=None):
        """The backend's signature runner; it allocates and prepares on its own at its first call,
        where a packed tensor that failed to decode (or a model with TensorFlow ops) raises as in
        ``allocate_tensors`` -- naming the model, the tensor, the reason and the fix -- instead of
        TFLite's text ("... Node number 6 (DcKerasHuffDecodeDelegate) failed to prepare.").

        It is an instance of the backend's ``SignatureRunner`` class
        (``ai_edge_litert.interpreter.SignatureRunner`` with LiteRT, TensorFlow's with
        ``backend="tensorflow"``): a subclass whose call also refuses, before running, an input array
        whose rank differs from the signature's, or whose size differs in a dimension past the first that the signature
        fixes.

        Example:
          >>> run = dc_keras.runtime.Interpreter(model_content=packed).get_signature_runner()
          >>> (name,) = run.get_input_details()  # the signature's one input
          >>> outputs = run(**{name: x})
        """
        key = signature_key
        if key is None:
            keys = list(self.get_signature_list())
            if len(keys) != 1:  # the backend's error: a key is needed
                return super().get_signature_runner(None)
            key = keys[0]
        # a key the model does not have: the backend's SignatureRunner's own error, from its constructor
        return _signature_runner_class(_backend_module(self.backend)[2])(self, key, signature_key)

    def set_tensor(self, tensor_index, value, *args, **kwargs):
        """The backend's ``set_tensor``; an array whose batch (first dimension) is not the one the
        input is allocated for is a ValueError that says how to feed it (TFLite says only "Dimension
        mismatch. Got 100 but expected 1 for dimension 0 of input 0"): ``resize_tensor_input`` then
        ``allocate_tensors()`` when the model's batch is dynamic (its ``shape_signature`` has -1
        there) or when this interpreter was resized from the model's fixed batch (which then runs other
        batches), else the fixed batch the model was exported with and the fixes. An array of another
        rank (one sample without its batch dimension) or dtype (numpy's float64; floats for an int8
        input) is a ValueError naming the input, what it takes and the fix, TFLite's words kept.

        Example:
          >>> it = dc_keras.runtime.Interpreter(model_content=packed)
          >>> i = it.get_input_details()[0]["index"]
          >>> it.resize_tensor_input(i, x.shape)  # a batch of len(x)
          >>> it.allocate_tensors()
          >>> it.set_tensor(i, x)
        """
        # another thread's invoke() read the input while it was being written (outputs of a mix, silently)
        with self._exclusive("set_tensor()"):
            try:
                return super().set_tensor(tensor_index, value, *args, **kwargs)
            except ValueError as exc:
                if not args and not kwargs:  # subgraph 0's inputs (those get_input_details lists)
                    self._raise_batch_mismatch(exc, tensor_index, value)
                    self._raise_wrong_array(exc, tensor_index, value)
                raise

    def resize_tensor_input(self, input_index, tensor_size, *args, **kwargs):
        """The backend's ``resize_tensor_input``; while another thread runs this interpreter, a
        RuntimeError saying so (TFLite's words were "There is at least 1 reference to internal
        data ... tensor()")."""
        with self._exclusive("resize_tensor_input()"):
            return super().resize_tensor_input(input_index, tensor_size, *args, **kwargs)

    def _raise_wrong_array(self, cause, tensor_index, value):
        """Runs only after ``set_tensor`` failed, past ``_raise_batch_mismatch``: an array of another
        rank (TFLite: "Dimension mismatch. Got 1 but expected 2 for input 0.", the ranks, for one
        sample given without its batch dimension) or of another dtype ("Got value of type FLOAT64 but
        expected type FLOAT32"; numpy makes float64 by default) said naming the model, the input,
        what it takes and the fix."""
        import numpy as np

        try:
            d = next(d for d in super().get_input_details() if d["index"] == tensor_index)
            arr = np.asarray(value)
            want = [int(v) for v in d["shape_signature"]] or [int(v) for v in d["shape"]]
        except Exception:  # noqa: BLE001 -- only a hint: the original error stands
            return
        what = f"{self._label}: input {tensor_index} ({d['name']!r})"
        if arr.ndim != len(d["shape"]):
            theirs = _tflite_words(cause)
            one = " (for one sample, add the batch dimension: array[None])" if arr.ndim + 1 == len(want) else ""
            raise ValueError(f"{what} takes an array of rank {len(want)}, shape {want} (-1: any size), but was given "
                             f"one of rank {arr.ndim}, shape {list(arr.shape)} (TFLite: {theirs}): give it an array of that "
                             f"rank{one}") from cause
        wanted = np.dtype(d["dtype"])
        if arr.dtype != wanted:
            raise ValueError(_wrong_dtype_text(what, wanted, arr.dtype, d.get("quantization"), cause)) from cause

    def _raise_batch_mismatch(self, cause, tensor_index, value):
        """Runs only after ``set_tensor`` failed; see ``set_tensor``."""
        if "for dimension 0 of input" not in str(cause):
            return
        import numpy as np

        try:
            d = next(d for d in super().get_input_details() if d["index"] == tensor_index)
            got, have = int(np.shape(value)[0]), int(d["shape"][0])
            # the file's batch: TFLite reports a resized shape as the shape_signature of a file storing none
            stored = _input_signatures(*self._source).get(int(tensor_index), [int(v) for v in d["shape_signature"]])
            exported = int(stored[0]) if len(stored) > 0 else have
        except Exception:  # noqa: BLE001 -- only a hint: the original error stands
            return
        what = f"{self._label}: input {tensor_index} ({d['name']!r}) holds a batch of {have}, the array a batch of {got}"
        if exported == -1 or exported != have:  # a dynamic batch, or a fixed one this interpreter was resized from
            why = ("its batch is dynamic" if exported == -1 else
                   f"it was resized to that batch (the model was exported with a fixed batch of {exported})")
            raise ValueError(
                f"{what}: {why}, so call resize_tensor_input({tensor_index}, {list(np.shape(value))}) "
                "and allocate_tensors() before set_tensor (or use get_signature_runner(), which resizes for you)"
            ) from cause
        raise ValueError(
            f"{what}: the model was exported with a fixed batch of {have} (dc_keras.export.to_tflite exports "
            "recurrent layers with batch 1: TFLite converts them only with a static batch), so feed "
            f"{have} sample(s) at a time (dc_keras.pipeline.predict_tflite does), or export it with "
            "to_tflite(model, batch_size=N)") from cause

    def invoke(self):
        """The backend's ``invoke()``; with ``decode="op"`` a HuffDecode Prepare TFLite deferred to
        it that fails raises as in ``allocate_tensors``. Called before ``allocate_tensors()`` (or
        after a ``resize_tensor_input`` without it), or while another thread runs this interpreter,
        it raises a RuntimeError saying so and what to do (TFLite's words were "Invoke called on
        model that is not ready." and "There is at least 1 reference to internal data ... tensor()").

        Example:
          >>> it = dc_keras.runtime.Interpreter(model_content=packed)
          >>> it.allocate_tensors()  # before the first invoke(), and after each resize_tensor_input
          >>> it.invoke()
        """
        with self._exclusive("invoke()"):
            try:
                super().invoke()
            except RuntimeError as exc:
                self._strip_earlier_errors(exc)
                self._raise_id_out_of_range(exc)
                self._raise_op_error(exc)
                self._raise_zero_scale(exc)
                self._raise_sparse(exc)
                self._raise_missing_weights(exc)
                if "Invoke called on model that is not ready" in " ".join(str(exc).split()):
                    raise RuntimeError(
                        f"{self._label}: invoke() before the tensors are allocated: call allocate_tensors() first, "
                        "and again after each resize_tensor_input (if allocate_tensors() raised, its error says what "
                        "to fix); or use get_signature_runner(), which allocates for you") from exc
                raise

    def _raise_missing_weights(self, cause):
        """A READ_VARIABLE that found no variable (TFLite: "variable != nullptr was not true ... Node
        number 0 (READ_VARIABLE) failed to invoke", an LSTM's loop) in a file whose weights are not in it
        (``_warn_if_weights_missing``, which warned at construction): said as that, in ``pack``'s words
        with the fix, TFLite's error kept."""
        msg = " ".join(str(cause).split())
        if "(READ_VARIABLE)" not in msg:
            return
        from dc_keras import _flatbuffer as fb  # only on errors: it imports the schema

        try:
            count = fb.unassigned_variables(_content(*self._source))
        except Exception:  # noqa: BLE001 -- only a better message: the runtime's error stands
            return
        if count:
            raise RuntimeError(f"{self._label}: {fb.unassigned_variables_note(count)}; TFLite's error: {msg}") from cause

    def _raise_inconsistent(self, cause):
        """An operator reading a tensor the model does not have (TFLite: "Invalid tensor index N in
        node inputs ... AllocateTensors() called on inconsistent model"): only a damaged file has
        one (TFLite accepts it at load and fails here); said as a corrupt file, naming the model."""
        msg = " ".join(str(cause).split())
        if "Invalid tensor index" in msg:
            from dc_keras._flatbuffer import CORRUPT_FIX

            raise RuntimeError(f"{self._label}: LiteRT cannot run it ({msg}); {CORRUPT_FIX}") from cause

    def _raise_bad_resize(self, cause, inputs=None):
        """An input resized where the model's signature has a fixed size (``resize_tensor_input(i,
        [1, 100])`` on a ``[-1, 256]`` input, or a signature runner called with such an array)
        makes a kernel's Prepare fail with a message about the kernel ("XNNPack delegate failed to
        reshape runtime", "compressed FC(...): input size is not a multiple of 256"): say which
        input, its shape and the one the model takes. Runs only after a Prepare failed.
        ``inputs``: see ``_prepare_errors``.

        The shape the model takes is the file's (``_input_signatures``): for a file that stores no
        ``shape_signature`` (a fixed shape throughout, e.g. a recurrent model's batch of 1), TFLite
        reports the resized shape as the signature too, so a resize of its batch went unexplained."""
        if inputs is None:
            try:
                details = super().get_input_details()
            except Exception:  # noqa: BLE001 -- only a hint: the original error stands
                return
            stored = _input_signatures(*self._source)
            inputs = [(f"input {d['name']!r} was resized to", d["shape"], stored.get(int(d["index"]), d["shape_signature"]))
                      for d in details]
            failed = "allocate_tensors"
        else:
            inputs = inputs()
            failed = "the signature's Prepare"
        for what, shape, sig in inputs:
            shape, sig = [int(v) for v in shape], [int(v) for v in sig]
            if len(shape) != len(sig) or _fixed_dims_differ(shape, sig):
                if failed != "allocate_tensors":
                    fix = _SIGNATURE_SHAPE_FIX
                elif -1 in sig:
                    fix = "resize only its -1 dimensions, e.g. the batch"
                else:
                    fix = (f"a fixed shape, with no -1 (a fixed batch: dc_keras.export.to_tflite exports recurrent layers "
                           f"with batch 1), so resize it back to {sig} and feed {sig[0] if sig else 1} sample(s) at a time, "
                           "or export it with to_tflite(model, batch_size=N)")
                msg = " ".join(str(cause).split())
                raise RuntimeError(f"{self._label}: {what} {shape}, but the model takes {sig} (-1: any size): "
                                   f"{fix} ({failed} failed: {msg})") from cause

    def _raise_zero_scale(self, cause):
        """XNNPACK (LiteRT 2.3's and TF 2.21's default delegate) refuses a quantized weight with a
        scale of 0.0 ("unsupported scale value (0.000000) in channel N for INT4 tensor T in XNNPACK
        delegate ..."): blockwise INT4 from ai-edge-quantizer or litert-torch has one for each block
        of weights that are all zero, as a pruned model has many, packed or not. Said with the fix
        (TFLite's built-in kernels run it) instead of XNNPACK's run-together lines. Runs only after a
        Prepare or a run failed."""
        msg = " ".join(str(cause).split())
        found = re.search(r"unsupported scale value \(([^)]*)\) in channel (\d+) for (\w+) tensor (\d+) in XNNPACK",
                          msg)
        if not found:
            return
        value, channel, dtype, index = found.groups()
        name = ""
        try:  # the tensor's name in the first subgraph, where XNNPACK's index points in a one-graph model
            from dc_keras._flatbuffer import printable, schema

            sg = schema.Model.GetRootAs(_content(*self._source), 0).Subgraphs(0)
            if int(index) < sg.TensorsLength():
                name = printable((sg.Tensors(int(index)).Name() or b"").decode(errors="replace"))
        except Exception:  # noqa: BLE001 -- only a better message
            name = ""
        resolver = ("tf.lite.experimental.OpResolverType" if self.backend == "tensorflow"
                    else "ai_edge_litert.interpreter.OpResolverType")
        raise RuntimeError(
            f"{self._label}: XNNPACK, the {self.backend} interpreter's default delegate, cannot run the {dtype} weight "
            f"tensor {index}{f' {name!r}' if name else ''}: channel {channel} has quantization scale {value}, as "
            "blockwise INT4 from ai-edge-quantizer or litert-torch has for a block of weights that are all zero "
            "(pruned). The file is valid, packed or not. Fix: Interpreter(..., experimental_op_resolver_type="
            f"{resolver}.BUILTIN_WITHOUT_DEFAULT_DELEGATES) runs it on TFLite's built-in kernels "
            f"(docs/quantization.md). XNNPACK's error: {msg}") from cause

    def _raise_sparse(self, cause):
        """XNNPACK failed ("... (TfLiteXNNPackDelegate) failed to prepare") on a model holding TFLite
        sparse tensors: :func:`_sparse_error`, with this interpreter's fixes (no default delegates, the
        TF backend where it runs them). Runs only after a Prepare failed."""
        if "TfLiteXNNPackDelegate" not in " ".join(str(cause).split()):
            return
        resolver = ("tf.lite.experimental.OpResolverType" if self.backend == "tensorflow"
                    else "ai_edge_litert.interpreter.OpResolverType")
        error = _sparse_error(self._label, self._source, cause, f"the {self.backend} interpreter",
                              f"Interpreter(..., experimental_op_resolver_type={resolver}."
                              "BUILTIN_WITHOUT_DEFAULT_DELEGATES)", "Interpreter",
                              tf_backend=self.backend == "litert")
        if error is not None:
            raise error from cause

    def _raise_flex(self, cause):
        """A model with TensorFlow ops (``SELECT_TF_OPS``, custom ops named ``Flex...``) needs TFLite's
        Flex delegate, which neither the TensorFlow (``tensorflow``, ``tensorflow-cpu``: checked 2.19,
        2.21) nor the LiteRT (2.3) pip package links: their interpreters find no
        ``TF_AcquireFlexDelegate`` and fail with "Select TensorFlow op(s) ... not supported by this
        interpreter. Make sure you apply/link the Flex delegate", advice a Python user cannot follow.
        Said as what it is, packed or not, with what can be done."""
        msg = " ".join(str(cause).split())
        if "Select TensorFlow op" not in msg:
            return
        names = _flex_ops(*self._source) or sorted(set(re.findall(r"\((Flex\w+)\)", msg)))
        raise RuntimeError(f"{_flex_text(self._label, names, f'the {self.backend} interpreter here has')} "
                           f"Interpreter's error: {msg}") from cause

    def _raise_id_out_of_range(self, cause):
        """An id outside its embedding table (GATHER / EMBEDDING_LOOKUP): the compressed kernels said
        "dc_keras compressed GATHER(<table>): index out of bounds: indices[i] = v, the table has rows
        [0, n)" and TFLite's "gather index out of bounds" / "Embedding Lookup: index out of bounds",
        each followed by "Node number N (...) failed to invoke." without a space, naming neither the
        model nor the fix. Said as one sentence naming the model, with the fix; the kernel's words kept."""
        msg = " ".join(str(cause).split())
        ours = re.search(r"dc_keras compressed \w+\(.*?\): index out of bounds: indices\[\d+\] = -?\d+, "
                         r"the table has rows \[0, (\d+)\)", msg)
        if ours:
            said, rows = ours.group(0), ours.group(1)
        elif "gather index out of bounds" in msg or "Embedding Lookup: index out of bounds" in msg:
            said, rows = "TFLite: " + msg.split("Node number")[0].rstrip(" .;"), "the table's rows"
        else:
            return
        raise RuntimeError(f"{self._label}: an index is outside the table it looks up ({said}): give indices in "
                           f"[0, {rows}) -- for an Embedding layer, ids below its input_dim (Keras' graph maps a "
                           "negative id i to i + input_dim first) -- and map any other id (an unseen one) to a row "
                           "of its own before the model") from cause

    def _raise_op_error(self, cause):
        """``decode="op"``: the op's own Prepare error (TFLite appends "Node number N (HuffDecode)
        failed to prepare." without a space) as one sentence naming the model, with the fix."""
        msg = " ".join(str(cause).split())
        if self._delegate is not None or "HuffDecode(" not in msg:
            return
        from dc_keras._flatbuffer import printable, with_corrupt_fix

        ours = printable(msg[msg.index("HuffDecode("):].split("Node number")[0].rstrip(" .;"))
        raise RuntimeError(f"{self._label}: {with_corrupt_fix(ours)}") from cause

    def _raise_delegate_error(self, cause=None):
        """RuntimeError naming the model, with the delegate's first error and its fix, if it has one."""
        err = _delegate_error(self._delegate) if self._delegate is not None else ""
        if err:
            from dc_keras._flatbuffer import with_packed_fix  # only on errors: it imports the schema

            raise RuntimeError(f"{self._label}: {with_packed_fix(err)}") from cause

    def get_input_details(self, *args, **kwargs):
        """The backend's ``get_input_details``; a tensor name that is not UTF-8 (a damaged file;
        LiteRT decodes the names here) is a ValueError naming the model and the fix."""
        with self._utf8_names():
            return super().get_input_details(*args, **kwargs)

    def get_output_details(self, *args, **kwargs):
        """The backend's ``get_output_details``; non-UTF-8 names as in ``get_input_details``."""
        with self._utf8_names():
            return super().get_output_details(*args, **kwargs)

    @contextlib.contextmanager
    def _utf8_names(self):
        try:
            yield
        except UnicodeDecodeError as e:
            from dc_keras._flatbuffer import CORRUPT_FIX

            raise ValueError(f"{self._label}: a tensor name in it is not valid UTF-8 ({e}), so LiteRT's Python "
                             f"API cannot read its details; {CORRUPT_FIX}") from None

    def get_tensor(self, tensor_index, *args, **kwargs):
        """The backend's ``get_tensor``; with ``release_decoded=True`` a ValueError for a packed
        weight the delegate may have freed (reading it would return freed memory); with
        ``weights="compressed"`` a ValueError naming a weight that runs compressed (its dense
        values are never built; the backend's own error says to run ``allocate_tensors()``)."""
        self._refuse_released(tensor_index, *args, **kwargs)
        try:
            return super().get_tensor(tensor_index, *args, **kwargs)
        except ValueError as exc:
            self._raise_not_built(exc, tensor_index, *args, **kwargs)
            self._raise_not_decoded_yet(exc, tensor_index, *args, **kwargs)
            raise

    def tensor(self, tensor_index, *args, **kwargs):
        """The backend's ``tensor`` (a function returning a view); refused like ``get_tensor``."""
        self._refuse_released(tensor_index, *args, **kwargs)
        view = super().tensor(tensor_index, *args, **kwargs)
        if self.weights != "compressed" and self.decode != "op":
            return view

        def read():
            try:
                return view()
            except ValueError as exc:
                self._raise_not_built(exc, tensor_index, *args, **kwargs)
                self._raise_not_decoded_yet(exc, tensor_index, *args, **kwargs)
                raise

        return read

    def _raise_not_built(self, cause, tensor_index, subgraph_index=0, *_, **kwargs):
        """A ValueError naming a packed weight that ``weights="compressed"`` runs from its compact
        form, when the backend failed to read it (it has no data: TFLite says "Tensor data is null.
        Run allocate_tensors() first", which does not help). Runs only after such a failure."""
        if self.weights != "compressed":
            return
        sub = kwargs.get("subgraph_index", subgraph_index)
        try:
            details = self.get_tensor_details(subgraph_index=sub)
        except (TypeError, ValueError):
            return
        name = next((d["name"] for d in details if d["index"] == tensor_index), None)
        if name is not None and any(r["route"] == "compressed" and r["weights"] == name
                                    for r in self.compressed_report()):
            raise ValueError(
                f"{self._label}: tensor {tensor_index} ({name!r}) is a packed weight that "
                "weights='compressed' runs from its compact sparse form: its dense values are never "
                "built, so there is nothing to read; create the Interpreter with weights='decoded' "
                "(the default) to read weights, or decode the file with dc_keras.export.unpack") from cause

    def _raise_not_decoded_yet(self, cause, tensor_index, subgraph_index=0, *_, **kwargs):
        """With ``decode="op"``, a ValueError naming a packed weight the HuffDecode op has not
        decoded yet, when the backend failed to read it: the op decodes in its Prepare, which TFLite
        defers to the first ``invoke()`` for every operator after one whose output shape is known
        only at run time (a dynamic batch's SHAPE -> RESHAPE), and TFLite's own words then are
        "Tensor data is null. Run allocate_tensors() first", said after ``allocate_tensors()``. Runs
        only after such a failure."""
        if self.decode != "op" or "null" not in str(cause):
            return
        sub = kwargs.get("subgraph_index", subgraph_index)
        name = _decoded_weights(*self._source).get((sub, tensor_index))
        if name is not None:
            raise ValueError(
                f"{self._label}: tensor {tensor_index} ({name!r}) is a packed weight that decode='op' decodes "
                "in the HuffDecode op's Prepare, which TFLite defers to the first invoke() in this model (an "
                "operator before it has an output shape known only at run time), so it holds no data yet; "
                "run the model once (allocate_tensors(), then invoke()) before reading it, or create the Interpreter with decode='delegate' (the "
                "default), which decodes every packed weight at load") from cause

    def _refuse_released(self, tensor_index, subgraph_index=0, *_, **kwargs):
        sub = kwargs.get("subgraph_index", subgraph_index)
        name = self._releasable.get((sub, tensor_index))
        if name is not None:
            raise ValueError(
                f"{self._label}: tensor {tensor_index} ({name!r}) is a packed weight that "
                "release_decoded=True frees once XNNPACK has packed its own copy, so reading it would "
                "return freed memory; create the Interpreter with release_decoded=False (the default) "
                "to read weights, or decode the file with dc_keras.export.unpack")

    def compressed_report(self) -> list:
        """What ``weights="compressed"`` did with each packed tensor: its route and, when it is
        not run compressed, why.

        One dict per packed tensor: ``{"weights": tensor name ("(unnamed tensor N)", N its index, in a
        file packed with ``strip_strings=True``), "route": "compressed", "shape":
        (units, inputs) or (table rows, row width), "dtype", "nonzeros", "bytes": size of the
        compact form, "op": "FULLY_CONNECTED" | "EMBEDDING_LOOKUP" | "GATHER", "form": "codes" (rows of a
        1-byte code per non-zero: a codebook index, an int8 weight's byte) | "tiles" (the same codes
        in 16-row tiles, for the AVX2 / AVX-512 kernels) | "values" (rows of the float32 weights, 6 B
        per non-zero: pruned layers that are not clustered)}`` or ``{"weights",
        "route": "dense", "reason", "op"}``: weights decoded as with ``weights="decoded"``, e.g.
        a CONV_2D / DEPTHWISE_CONV_2D filter (no compressed kernel), weights read by several
        operators, or a layer the compressed kernels cannot run (``op``: the operator reading
        the tensor, the first one if several). Empty with ``weights="decoded"``. (A C delegate
        shared by many interpreters ends its report, past 1 MiB of lines, with one ``{"route":
        "more", "count": lines not kept, "reason", "weights": None}``; this Interpreter's delegate
        is its own.)

        Example:
          >>> it = Interpreter(model_content=packed, weights="compressed")
          >>> [r["route"] for r in it.compressed_report()]
          ['compressed', 'compressed', 'dense']
        """
        if self._delegate is None:
            return []
        lib = load_library()
        fn = lib.DcKerasHuffDecodeDelegateReport
        fn.restype = ctypes.c_size_t
        fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        ptr = delegate_pointer(self._delegate)
        buf = ctypes.create_string_buffer(fn(ptr, None, 0) + 1)
        fn(ptr, buf, len(buf))
        return [_report_row(line.split("\t")) for line in buf.value.decode().splitlines()]

    @property
    def interpreter(self):
        """This object itself: it is the backend's interpreter (an instance of its class; before, a
        separate object this one wrapped)."""
        return self

    def __reduce_ex__(self, protocol):
        raise TypeError(f"{self!r} cannot be pickled or copied: it holds a model loaded by the backend's "
                        "runtime; pass the model's path or bytes instead and create an Interpreter where it runs "
                        "(one per process or thread)")

    def __repr__(self):
        return (f"<dc_keras.runtime.Interpreter backend={self.backend!r} decode={self.decode!r} "
                f"weights={self.weights!r}>")


_SIGNATURE_SHAPE_FIX = "give it an array of that shape (any size only where -1)"


def _warn_if_nothing_compressed(label, report) -> None:
    """weights="compressed" on a packed model none of whose packed tensors runs compressed (a conv
    net, a float16 or dynamic-range export, dense layers and tables): it then runs as with
    "decoded" and saves no memory, which only ``compressed_report()`` said; a UserWarning now says so
    with the reasons (the first three) and what runs compressed (from ``allocate_tensors`` or a signature
    runner's first call: ``Interpreter._say_nothing_compressed``)."""
    rows = [r for r in report if r["route"] == "dense"]
    if not rows or len(rows) != len(report):
        return
    said = "; ".join(f"{r['weights']!r} ({r['op']}): {r['reason'].removesuffix('; decoded')}" for r in rows[:3])
    more = f"; and {len(rows) - 3} more" if len(rows) > 3 else ""
    warnings.warn(f"{label}: weights='compressed', but none of its {len(rows)} packed tensor(s) runs compressed, "
                  f"so the model runs as with weights='decoded' and saves no memory: {said}{more}. The "
                  "compressed kernels take pruned float32 weights (FULLY_CONNECTED and EMBEDDING_LOOKUP / GATHER "
                  "tables: clustered or not; unclustered tables up to 60 % kept) or full-integer int8 weights of those "
                  "operators (docs/runtime.md); "
                  "compressed_report() lists each tensor", UserWarning, stacklevel=4)


def _concurrent_text(label, call) -> str:
    """The error of ``call`` on an interpreter another thread is using (``Interpreter._exclusive``)."""
    return (f"{label}: {call} while another thread uses this interpreter (its invoke(), a signature runner's "
            "call, set_tensor(), resize_tensor_input() or allocate_tensors()): a TFLite interpreter is not "
            "thread-safe (TFLite refused some of these, saying \"There is at least 1 reference to internal data\", "
            "and ran others, mixing the threads' outputs); create one "
            "dc_keras.runtime.Interpreter per thread (they may share the model file), or guard this one with a "
            "threading.Lock")


def _tflite_words(cause) -> str:
    """TFLite's ``set_tensor`` error, one line, without its "Cannot set tensor: " prefix."""
    return " ".join(str(cause).split()).removeprefix("Cannot set tensor: ").rstrip(" .")


def _wrong_dtype_text(what, wanted, given, quantization, cause) -> str:
    """The error of an input array of dtype ``given`` where ``what`` takes ``wanted`` (``set_tensor``
    and a signature runner's call say it alike), TFLite's words (``cause``) kept."""
    return (f"{what} takes {wanted.name} values, but the array holds {given.name} (TFLite: {_tflite_words(cause)}): "
            f"{_dtype_fix(wanted, given, quantization)}")


def _dtype_fix(wanted, given, quantization) -> str:
    """How to make an array of dtype ``given`` one an input of dtype ``wanted`` takes: a cast, or for
    floats given to an integer input with ``quantization`` (scale, zero point) the quantization."""
    import numpy as np

    scale, zero = (quantization or (0.0, 0))[:2]
    if wanted.kind in "iu" and scale and given.kind == "f":
        return (f"quantize it first: np.clip(np.round(x / {scale!r} {'-' if zero < 0 else '+'} {abs(int(zero))}), "
                f"{np.iinfo(wanted).min}, {np.iinfo(wanted).max}).astype(np.{wanted.name}) (the input's scale and "
                "zero point)")
    return f"convert it first: x.astype(np.{wanted.name})"


def _fixed_dims_differ(shape, sig, start=0):
    """Does ``shape`` differ from ``sig`` (a ``shape_signature``: -1 = any size) in a dimension the
    signature fixes, from dimension ``start`` on?"""
    return any(w >= 0 and w != g for w, g in zip(sig[start:], shape[start:]))


class _CheckedSignatureRunner:
    """What ``Interpreter.get_signature_runner`` adds to the backend's ``SignatureRunner`` (the class
    after this one in the MRO, see ``_signature_runner_class``): its calls report a failed Prepare as
    ``Interpreter`` does, and refuse an input of the wrong size; everything else is the backend's."""

    def __init__(self, owner, key, named):
        """``key``: the signature; ``named``: as the caller gave it (None: the model's only one, whose
        key error messages leave out)."""
        # the backend's own construction (what its Interpreter.get_signature_runner does), keyword
        # arguments as both TF's and LiteRT's SignatureRunner take them
        super().__init__(interpreter=owner, signature_key=key)
        self._dc_owner = owner
        # the sizes the signature takes, read now: a call with another size changes the backend's
        # shape_signature to it (LiteRT 2.3 and TF 2.21 runners resize the input, fixed or not)
        try:
            self._dc_shapes = {n: [int(v) for v in d["shape_signature"]]
                               for n, d in self.get_input_details().items()}
        except Exception:  # noqa: BLE001 -- only for an error message's hint
            self._dc_shapes = {}
        self._dc_what = ("" if named is None else f"signature {named!r} ") + "input {!r} was given an array of shape"
        self._dc_key = key

    def __call__(self, **kwargs):
        # An array of the signature's rank whose size differs in a dimension past the first that
        # the signature fixes: refused before running. Left to the backend, TF 2.19's runner
        # resized the input and returned an empty output ([1, 5] for [1, 8]: y of shape (0, 256)),
        # silently; TF 2.21 / LiteRT 2.3 fail in Prepare (said below). The first (batch) dimension
        # is left to the backend: kernels that take any batch run a fixed-batch model on another.
        # An array of another rank is refused too: the runners resized the input to it, and a
        # FULLY_CONNECTED read it flattened, so x of shape [128] on a [-1, 64] input ran as 2 samples.
        for what, shape, sig in self._given_shapes(kwargs):
            shape = [int(v) for v in shape]
            if len(shape) != len(sig) and sig:
                one = " (for one sample, add the batch dimension: array[None])" if len(shape) + 1 == len(sig) else ""
                raise ValueError(f"{self._dc_owner._label}: {what} {shape} (rank {len(shape)}), but the model takes "
                                 f"{sig} (rank {len(sig)}, -1: any size): give it an array of that rank{one}")
            if len(shape) == len(sig) and _fixed_dims_differ(shape, sig, start=1):
                raise ValueError(f"{self._dc_owner._label}: {what} {shape}, but the model takes {sig} (-1: any "
                                 f"size): {_SIGNATURE_SHAPE_FIX}")
        # Two threads calling runners of one interpreter (or a runner and invoke()) at once: LiteRT and TF
        # ran them, and a call returned the other thread's outputs (a quarter of 2 x 300 calls), silently.
        owner = self._dc_owner
        with owner._exclusive("a signature runner's call"):
            with owner._prepare_errors(lambda: self._given_shapes(kwargs, stored=True)):
                try:
                    outputs = super().__call__(**kwargs)
                except ValueError as exc:  # TFLite's "Got value of type FLOAT64 but expected type FLOAT32 ..."
                    self._raise_wrong_dtype(exc, kwargs)
                    raise
        owner._say_nothing_compressed()
        return outputs

    def _raise_wrong_dtype(self, cause, kwargs):
        """An input array of another dtype than the signature's (numpy's float64 by default): said as
        ``Interpreter.set_tensor`` says it, naming the model, the input and the fix."""
        import numpy as np

        try:
            details = self.get_input_details()
            wrong = [(n, np.dtype(details[n]["dtype"]), np.asarray(v).dtype, details[n].get("quantization"))
                     for n, v in kwargs.items() if n in details and np.asarray(v).dtype != details[n]["dtype"]]
        except Exception:  # noqa: BLE001 -- only a hint: the original error stands
            return
        if wrong:
            name, wanted, given, quantization = wrong[0]
            what = f"{self._dc_owner._label}: {self._dc_what.format(name).split(' was given')[0]}"
            raise ValueError(_wrong_dtype_text(what, wanted, given, quantization, cause)) from cause

    def _given_shapes(self, kwargs, stored=False):
        """``(what, shape given, shape the signature takes)`` per input given (for the error of a
        call whose array has a size the signature fixes otherwise). ``stored``: the shapes the file
        stores (read on an error only): a runner made after another one's call on a file storing no
        ``shape_signature`` (fixed shapes) reads the shape that call resized to as the signature's."""
        import numpy as np

        shapes = dict(self._dc_shapes)
        if stored:
            shapes.update(_signature_input_signatures(*self._dc_owner._source, self._dc_key))
        return [(self._dc_what.format(name), np.shape(kwargs[name]), sig)
                for name, sig in shapes.items() if name in kwargs]


_SIGNATURE_RUNNER_CLASSES = {}


def _signature_runner_class(base):
    """``SignatureRunner``: a subclass of ``base`` (the backend's class: LiteRT's or TF's, known only
    once an Interpreter has picked its backend) with ``_CheckedSignatureRunner``'s call; one per
    base, so ``isinstance(run, base)`` holds and two runners of one backend share their class."""
    cls = _SIGNATURE_RUNNER_CLASSES.get(base)
    if cls is None:
        cls = _SIGNATURE_RUNNER_CLASSES[base] = type("SignatureRunner", (_CheckedSignatureRunner, base), {
            "__module__": __name__, "__qualname__": "SignatureRunner",
            "__doc__": f"{base.__module__}.{base.__qualname__} whose calls report a failed Prepare as "
                       "dc_keras.runtime.Interpreter does (Interpreter.get_signature_runner)."})
    return cls


def _backend_module(backend):
    """``(module, interpreter class, SignatureRunner class)`` of a concrete backend: LiteRT's
    ``ai_edge_litert.interpreter`` and its ``Interpreter``, or TensorFlow's
    ``tensorflow.lite.python.interpreter`` and its ``InterpreterWithCustomOps`` (HuffDecode's
    registerer); an ImportError saying what needs it and the fix when it is not installed."""
    if backend == "litert":
        with _needs("ai_edge_litert", "backend='litert'", "pip install ai-edge-litert, or use backend='tensorflow'"):
            from ai_edge_litert import interpreter as mod
        return mod, mod.Interpreter, mod.SignatureRunner
    with _needs("tensorflow", "backend='tensorflow'", "pip install tensorflow, or use backend='litert'"):
        from tensorflow.lite.python import interpreter as mod
    return mod, mod.InterpreterWithCustomOps, mod.SignatureRunner


_INTERPRETER_CLASSES = {}


def _interpreter_class(public, base):
    """``Interpreter`` (``public``: it or a user's subclass of it) as a subclass of ``base``, the
    backend's interpreter class (known only once the backend is picked); one per pair, so two
    interpreters of one backend share their class and ``isinstance(it, base)`` holds."""
    with _lock:
        cls = _INTERPRETER_CLASSES.get((public, base))
        if cls is None:
            cls = _INTERPRETER_CLASSES[(public, base)] = type(public.__name__, (public, base), {
                "__module__": public.__module__, "__qualname__": public.__qualname__, "__doc__": public.__doc__,
                "_dc_public": public})
    return cls


def _delegate_error(delegate) -> str:
    """The delegate's first error ("" if none), once its decode helpers are done (C:
    ``DcKerasHuffDecodeDelegateError``)."""
    fn = load_library().DcKerasHuffDecodeDelegateError
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    buf = ctypes.create_string_buffer(1024)
    fn(delegate_pointer(delegate), buf, len(buf))
    msg = buf.value.decode(errors="backslashreplace")
    if not msg.isprintable():  # a tensor name in it holding a newline or ESC: escaped, as every printer does
        from dc_keras._flatbuffer import printable

        msg = printable(msg)
    return msg


def _op_label(name: str) -> str:
    """The C report's ``BUILTIN_<code>`` (builtins it has no name for) as the schema's name."""
    if name.startswith("BUILTIN_") and name[8:].isdigit():
        from dc_keras._flatbuffer import schema

        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        return names.get(int(name[8:]), name)
    return name


_REPORT_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def _report_text(field) -> str:
    """A name or reason of the delegate's report as it is: the library writes tab, newline, carriage
    return and backslash in them as \\t, \\n, \\r and \\\\ (huffdecode_op.c report_field), so a tensor
    name holding one no longer splits its line or shifts its fields."""
    return re.sub(r"\\([tnr\\])", lambda m: _REPORT_ESCAPES[m.group(1)], field)


def _report_row(f) -> dict:
    if f[0] == "more":  # a delegate shared by interpreters: the lines past its report's 1 MiB, counted
        return {"weights": None, "route": "more", "count": int(f[1]), "reason": f[2]}
    if f[0] == "compressed":
        rows, cols = (int(v) for v in f[2].split("x"))
        return {"weights": _report_text(f[1]), "route": "compressed", "shape": (rows, cols), "dtype": f[3],
                "nonzeros": int(f[4]), "bytes": int(f[5]), "op": f[6], "form": f[7]}
    reason = re.sub(r"\bBUILTIN_\d+\b", lambda m: _op_label(m.group(0)), _report_text(f[2]))  # "BUILTIN_6 has no ..."
    return {"weights": _report_text(f[1]), "route": "dense", "reason": reason, "op": _op_label(f[3])}


def _schema():
    """TFLite's generated flatbuffer schema module (LiteRT's, or TensorFlow's without LiteRT)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _content(model_path, model_content) -> bytes:
    """The model's bytes: ``model_content``, or the file's."""
    if model_content is None and model_path is not None:
        with open(model_path, "rb") as f:
            return f.read()
    return bytes(model_content) if model_content is not None else b""


def _flex_text(label, names, runner):
    """Why a model with TensorFlow (Flex) ops ``names`` does not run here, and what can be done;
    ``runner``: who has no Flex delegate ("the litert interpreter here has")."""
    shown = f" ({', '.join(names)})" if names else ""
    # TensorList ops: a recurrent layer converted with a dynamic batch, as keras's model.export(format="litert")
    # does unless given a fixed batch (it allows SELECT_TF_OPS, so the conversion succeeds with them)
    loop = ("The TensorList ops come from a recurrent layer (LSTM, GRU, SimpleRNN) converted with a dynamic "
            "batch, as keras's model.export(path, format='litert') does without input_signature: export with a "
            "fixed batch, model.export(path, format='litert', input_signature=[keras.InputSpec(shape=(1, "
            "timesteps, features), dtype='float32')]), or with dc_keras.export.to_tflite (a fixed batch of 1 "
            "by default, builtin ops only); both run here. "
            if any(n.startswith("FlexTensorList") for n in names) else "")
    return (f"{label}: it holds TensorFlow ops{shown} (converted with SELECT_TF_OPS), which run only through "
            f"TFLite's Flex delegate, and {runner} none (the tensorflow and ai-edge-litert pip packages do not "
            f"link it), so this model does not run in Python, packed or unpacked. {loop}Convert it with TFLite "
            "builtin ops only (without SELECT_TF_OPS), or run it in an app built with the Flex delegate (Android: "
            "org.tensorflow:tensorflow-lite-select-tf-ops) plus the HuffDecode op or delegate, or unpack it there "
            "first with dc_unpack (not tested here).")


def _flex_ops(model_path, model_content) -> list:
    """The names of the model's TensorFlow (Flex) custom ops, sorted; [] if it cannot be read (the
    runtime's message names the first one it met)."""
    try:
        from dc_keras._flatbuffer import schema

        m = schema.Model.GetRootAs(_content(model_path, model_content), 0)
        codes = (m.OperatorCodes(i).CustomCode() for i in range(m.OperatorCodesLength()))
        return sorted({c.decode(errors="replace") for c in codes if c and c.startswith(b"Flex")})
    except Exception:  # noqa: BLE001 -- only a better message: the runtime's error stands
        return []


def _sparse_error(label, source, cause, runner, fix, who, tf_backend=False):
    """The RuntimeError for a model holding TFLite sparse tensors (``Tensor.sparsity``: what the
    converter's ``Optimize.EXPERIMENTAL_SPARSITY`` writes; ``pack`` keeps those it does not pack) on
    which the XNNPACK delegate ``runner`` applies by default failed, or None when it holds no such
    int8 ones. LiteRT 2.3's XNNPACK fails on int8 sparse weights, full-integer and dynamic-range, and
    TF 2.21's on the dynamic-range ones, packed or not; float32 and float16 ones run (so they are not
    named as the cause). Said as that, with the fixes that run them here (tests/test_sparse_tensors_runtime.py):
    ``fix`` (the runner's option for TFLite's built-in kernels), with ``tf_backend`` also the TF
    backend for a full-integer file, or a conversion without the option. ``source``: ``(model_path,
    model_content)``; ``who`` names the runner whose error (``cause``) is kept."""
    found = _unrunnable_sparse(source)
    if not found:
        return None
    names = ", ".join(f"{name!r} ({kind})" for name, kind, _ in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    also = ""
    if tf_backend and not any(hybrid for *_, hybrid in found) and "tensorflow" in available_backends():
        also = ("; or backend='tensorflow', whose XNNPACK runs these full-integer sparse weights "
                "(TensorFlow 2.21 here; not dynamic-range ones)")
    msg = " ".join(str(cause).split())
    return RuntimeError(
        f"{label}: it holds {len(found)} TFLite sparse tensor(s) ({names}{more}: Tensor.sparsity, what "
        f"the converter's Optimize.EXPERIMENTAL_SPARSITY writes), and the XNNPACK delegate {runner} applies "
        "by default cannot run them (a limitation of that delegate: the file is valid). Fix: run it on "
        f"TFLite's built-in kernels instead (slower than XNNPACK): {fix}{also}; or convert the model again "
        "without Optimize.EXPERIMENTAL_SPARSITY (dc_keras.export.pack then compresses its pruned weights, and "
        f"XNNPACK runs the file). {who}'s error: {msg}")


def _unrunnable_sparse(source) -> list:
    """``_sparse_tensors`` of ``source`` (``(model_path, model_content)``) but the float32 / float16
    ones, which XNNPACK runs (measured): those it cannot."""
    return [f for f in _sparse_tensors(*source) if f[1] not in ("float32", "float16")]


def _sparse_tensors(model_path, model_content) -> list:
    """``(name, type name, hybrid)`` of each TFLite sparse tensor (``Tensor.sparsity``) of the model,
    read in place with the schema module; ``hybrid``: an integer one read (itself or through
    ``DENSIFY``) by an operator whose first input is float32 (dynamic-range weights). [] if the
    model cannot be read (the runtime's error then stands as it is)."""
    try:
        from dc_keras._flatbuffer import TYPE_NAMES, printable, schema

        found = []
        for _, sg, ops in _operators(schema, _content(model_path, model_content)):
            sparse = {ti for ti in range(sg.TensorsLength()) if sg.Tensors(ti).Sparsity() is not None}
            if not sparse:
                continue
            source = {}  # tensor -> the sparse tensor it is (itself, or a DENSIFY of it)
            for op, builtin, _ in ops:
                if builtin == schema.BuiltinOperator.DENSIFY and op.InputsLength() and op.OutputsLength() \
                        and op.Inputs(0) in sparse:
                    source[op.Outputs(0)] = op.Inputs(0)
            source.update({ti: ti for ti in sparse})
            hybrid = set()
            for op, _, _ in ops:
                inputs = [op.Inputs(k) for k in range(op.InputsLength())]
                if inputs and inputs[0] >= 0 and sg.Tensors(inputs[0]).Type() == schema.TensorType.FLOAT32:
                    hybrid.update(source[i] for i in inputs[1:] if i in source
                                  and sg.Tensors(source[i]).Type() != schema.TensorType.FLOAT32)
            for ti in sorted(sparse):
                t = sg.Tensors(ti)
                name = printable((t.Name() or b"").decode(errors="replace")) or f"tensor {ti}"
                found.append((name, TYPE_NAMES.get(t.Type(), str(t.Type())), ti in hybrid))
        return found
    except Exception:  # noqa: BLE001 -- only a better message: the runtime's error stands
        return []


def _operators(schema, content):
    """``(subgraph index, subgraph, [(operator, builtin code, is HuffDecode)])`` of each subgraph
    of ``content``, read in place (no object tree)."""
    m = schema.Model.GetRootAs(content, 0)
    for si in range(m.SubgraphsLength()):
        sg, ops = m.Subgraphs(si), []
        for oi in range(sg.OperatorsLength()):
            op = sg.Operators(oi)
            code = m.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            ops.append((op, builtin, builtin == schema.BuiltinOperator.CUSTOM and code.CustomCode() == OP_NAME.encode()
                        and op.OutputsLength() > 0))
        yield si, sg, ops


def _stored_shape(tensor) -> list:
    """A tensor's ``shape_signature`` (-1: any size) as the file stores it, else its ``shape``."""
    if tensor.ShapeSignatureLength():
        return [tensor.ShapeSignature(j) for j in range(tensor.ShapeSignatureLength())]
    return [tensor.Shape(j) for j in range(tensor.ShapeLength())]


def _input_signatures(model_path, model_content) -> dict:
    """``{tensor index: shape}`` of subgraph 0's inputs as the file stores them (``_stored_shape``;
    a file converted with fixed shapes stores no signature, and then TFLite's ``get_input_details``
    reports a resized shape as ``shape_signature`` as well). Read only after a failure; {} if the
    model cannot be read (the reported signature is used instead)."""
    try:
        sg = _schema().Model.GetRootAs(_content(model_path, model_content), 0).Subgraphs(0)
        return {sg.Inputs(k): _stored_shape(sg.Tensors(sg.Inputs(k))) for k in range(sg.InputsLength())}
    except Exception:  # noqa: BLE001 -- only a better message: the runtime's error stands
        return {}


def _signature_input_signatures(model_path, model_content, key) -> dict:
    """``{input name: shape}`` of signature ``key``'s inputs as the file stores them, as
    ``_input_signatures``; {} if the model cannot be read or has no such signature."""
    try:
        m = _schema().Model.GetRootAs(_content(model_path, model_content), 0)
        for i in range(m.SignatureDefsLength()):
            sd = m.SignatureDefs(i)
            if (sd.SignatureKey() or b"").decode() == key:
                sg = m.Subgraphs(sd.SubgraphIndex())
                return {(sd.Inputs(k).Name() or b"").decode(): _stored_shape(sg.Tensors(sd.Inputs(k).TensorIndex()))
                        for k in range(sd.InputsLength())}
        return {}
    except Exception:  # noqa: BLE001 -- only a better message: the runtime's error stands
        return {}


def _op_route_int4_hybrids(content) -> list:
    """Names of packed INT4 weights that ``decode="op"`` cannot run as the unpacked model does:
    HuffDecode outputs read as the filter of a FULLY_CONNECTED with a float input (dynamic range).

    TFLite's optimized FULLY_CONNECTED takes its 4-bit hybrid kernel only for a constant filter
    (``IsConstantTensor``: kTfLiteMmapRo); the op route's decoded output is kTfLitePersistentRo, so
    the layer runs the generic int8 hybrid kernel instead and its outputs differ in the last bits.
    The delegate route hands decoded weights back as constants (same kernel, bit-exact).
    """
    schema = _schema()
    T, Op = schema.TensorType, schema.BuiltinOperator
    try:
        names = []
        for _, sg, ops in _operators(schema, content):
            decoded = set()
            for op, builtin, huffdecode in ops:
                if huffdecode:
                    decoded.add(op.Outputs(0))
                elif builtin == Op.FULLY_CONNECTED and op.InputsLength() >= 2 and op.Inputs(1) in decoded:
                    x, w = sg.Tensors(op.Inputs(0)), sg.Tensors(op.Inputs(1))
                    if x.Type() == T.FLOAT32 and w.Type() == T.INT4:
                        names.append((w.Name() or b"").decode("utf-8", "replace"))
        return names
    except Exception:  # not a readable flatbuffer: the interpreter reports it
        return []


def _unpacked_for_latest_features(label, model_path, model_content, weights, release_decoded):
    """``(model_path, model_content)`` for the backend when ``experimental_default_delegate_latest_features``
    is set on the delegate route: the model unpacked in memory by the C library (``unpack``).

    With that flag TFLite applies its default delegate (XNNPACK) when the interpreter is built, before
    ``experimental_delegates``: XNNPACK then finds every packed weight still a HuffDecode output, not a
    constant, and leaves the layers reading them to TFLite's builtin kernels, which are slower and
    whose float outputs differ from the unpacked model's (by ~1e-6 relative: 3.8e-6 on a two-layer
    MLP). The unpacked model runs as the unpacked file does, XNNPACK included. ``release_decoded``
    (XNNPACK then holds the only copy of a weight) and ``weights="compressed"`` (run by the delegate)
    have no such form: refused, with the fix."""
    if weights == "compressed" or release_decoded:
        what = "weights='compressed'" if weights == "compressed" else "release_decoded=True"
        raise ValueError(
            f"{what} cannot be combined with experimental_default_delegate_latest_features=True: with that "
            "flag TFLite applies XNNPACK when the interpreter is built, before the HuffDecode delegate decodes "
            "the packed weights, so XNNPACK cannot take the layers that read them. Drop one of the two (without "
            f"{what}, this Interpreter unpacks the model in memory and XNNPACK runs it as the unpacked file)")
    return None, _named(unpack, label, _content(model_path, model_content))


def _decoded_weights(model_path, model_content) -> dict:
    """``{(subgraph, tensor): name}`` of every ``HuffDecode`` output (a packed weight); {} if the
    model cannot be read (the interpreter has reported it)."""
    schema = _schema()
    found = {}
    try:
        for si, sg, ops in _operators(schema, _content(model_path, model_content)):
            for op, _, huffdecode in ops:
                if huffdecode:
                    t = op.Outputs(0)
                    found[(si, t)] = (sg.Tensors(t).Name() or b"").decode("utf-8", "replace")
    except Exception:
        return {}
    return found


def _releasable_weights(model_path, model_content) -> dict:
    """``{(subgraph, tensor): name}`` of the ``HuffDecode`` outputs that ``keep_decoded=0`` may free:
    read only as the filter (input 1) of FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D operators
    (the delegate's own rule, huffdecode_op.c ``note_consumers``; it frees those XNNPACK took)."""
    schema = _schema()
    Op = schema.BuiltinOperator
    filters = (Op.FULLY_CONNECTED, Op.CONV_2D, Op.DEPTHWISE_CONV_2D)
    found = {}
    try:
        for si, sg, ops in _operators(schema, _content(model_path, model_content)):
            decoded, readers = {}, {}
            for op, builtin, huffdecode in ops:
                if huffdecode:
                    t = op.Outputs(0)
                    decoded[t] = (sg.Tensors(t).Name() or b"").decode("utf-8", "replace")
                    continue
                for j in range(op.InputsLength()):
                    readers.setdefault(op.Inputs(j), []).append(builtin in filters and j == 1)
            found.update({(si, t): name for t, name in decoded.items() if readers.get(t) and all(readers[t])})
    except Exception:  # not a readable flatbuffer: the interpreter has reported it
        return {}
    return found


def _check_op_route(model_path, model_content):
    names = _op_route_int4_hybrids(_content(model_path, model_content))
    if names:
        raise ValueError(
            f"decode='op' cannot run this model bit-exactly: {len(names)} packed INT4 weight(s) of a "
            f"dynamic-range FULLY_CONNECTED ({', '.join(repr(n) for n in names[:3])}). TFLite takes its "
            "4-bit kernel only for constant filters and the op's decoded output is not one, so the "
            "outputs would differ from the unpacked model's. Use decode='delegate' (the default), which "
            "hands the decoded weights back as constants.")


def _check_max_density(max_density, weights):
    """``max_density`` (a fraction in (0, 1], whole percent) as the delegate option's percent."""
    if max_density is None:
        return None
    if weights != "compressed":
        raise ValueError("max_density applies to weights='compressed' only (it keeps dense FC layers "
                         f"decoded); got it with weights={weights!r}")
    # numpy scalars too (np.float32(0.3): a density computed with numpy); 1e-4: float32's 0.3 is
    # 30.0000012 percent
    ok = (isinstance(max_density, numbers.Real) and not isinstance(max_density, bool)
          and 0 < max_density <= 1)  # NaN fails the range
    pct = round(float(max_density) * 100) if ok else 0
    if not ok or pct < 1 or abs(pct - float(max_density) * 100) > 1e-4:
        hint = ""
        if (isinstance(max_density, numbers.Integral) and not isinstance(max_density, bool)
                and 1 < max_density <= 100):  # the delegate option's percent
            hint = (f": {max_density} looks like the delegate option's percent; here it is a "
                    f"fraction, max_density={max_density / 100}")
        raise ValueError(f"max_density must be a fraction in (0, 1] in whole percent (e.g. 0.9), "
                         f"got {max_density!r}{hint}")
    return pct


def _content_bytes(model_content):
    """``model_content`` as the ``bytes`` LiteRT and TF take: a bytearray or memoryview (which
    ``dc_keras.export.pack`` accepts too) or an mmap is copied; anything else is a ``TypeError``
    saying what to give."""
    if model_content is None or isinstance(model_content, bytes):
        return model_content
    if isinstance(model_content, (bytearray, memoryview, mmap.mmap)):
        return bytes(model_content)
    hint = ": give a file's path as model_path" if isinstance(model_content, (str, os.PathLike)) else (
        ": an open file: pass f.read() (its bytes), or the file's path as model_path"
        if callable(getattr(model_content, "read", None)) else "")
    raise TypeError(f"model_content must be the .tflite's bytes, got {type(model_content).__name__}{hint}")


@contextlib.contextmanager
def _needs(module, what, fix):
    """An ImportError of ``module`` (not installed) as one saying what needs it and the fix; the
    lookup costs nothing when it is there (``available_backends`` scans sys.path)."""
    try:
        yield
    except ImportError as e:
        if e.name is not None and e.name != module and not e.name.startswith(module + "."):
            raise  # something the package itself imports: its own error says more
        raise ImportError(f"{what} needs {e.name or module}, which this Python cannot import ({e}): {fix}") from e


def _check_environment():
    """The C library's environment variables, checked as it checks them, in the same words (the
    delegate at its creation, ``dc_unpack`` and the LiteRT kernel's create through
    ``dc_decode_threads_check``): ``DC_KERAS_DECODE_THREADS`` a whole number from 0 to 64 (0 = one
    thread per CPU), ``DC_KERAS_DECODE_ASYNC`` 0 or 1; empty counts as unset."""
    threads = os.environ.get("DC_KERAS_DECODE_THREADS", "")
    if threads and not (threads.isascii() and threads.isdigit() and len(threads.lstrip("0")) <= 2 and int(threads) <= 64):
        raise ValueError(f"environment variable DC_KERAS_DECODE_THREADS={threads!r} is not a whole number from 0 "
                         "to 64: set it to the number of decode threads (0 = one per CPU), or unset it")
    lazy = os.environ.get("DC_KERAS_DECODE_ASYNC", "")
    if lazy not in ("", "0", "1"):
        raise ValueError(f"environment variable DC_KERAS_DECODE_ASYNC={lazy!r} must be 0 (decode while the "
                         "model loads) or 1 (the default: decode in the background); or unset it")


def _check_args(backend, decode, weights) -> str:
    """Validates the wrapper's own arguments; returns the concrete backend (imports nothing)."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if decode not in ("delegate", "op"):
        raise ValueError(f"decode must be 'delegate' or 'op', got {decode!r}")
    if weights not in _WEIGHTS:
        raise ValueError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
    if backend == "auto":  # the first installed one; TF is not even looked up when LiteRT is there
        backend = next((name for name, module in _BACKEND_MODULES if _installed(module)), None)
        if backend is None:
            raise ImportError("neither ai_edge_litert nor tensorflow is installed: "
                              "pip install ai-edge-litert")
    if decode == "op" and backend != "tensorflow":
        raise ValueError(
            "decode='op' needs backend='tensorflow' (LiteRT's Python API cannot register a "
            "C custom op; its route is the delegate)"
        )
    if decode == "op" and weights == "compressed":
        raise ValueError("weights='compressed' runs inside the delegate: use decode='delegate'")
    return backend


def _c_unpack_fn():
    lib = load_library()
    fn = lib.dc_unpack
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)),
                   ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    lib.dc_unpack_free.argtypes = [ctypes.POINTER(ctypes.c_uint8)]
    lib.dc_unpack_free.restype = None
    return fn, lib.dc_unpack_free


def unpack(packed) -> bytes:
    """A packed ``.tflite`` (bytes) as a plain one, by the C library's ``dc_unpack``.

    The same code an Android/C app runs at first launch (``dc_unpack.h``; no TensorFlow, no
    Python needed there): HuffDecode ops removed, weights restored as constants, packed tensors
    decoded in parallel. Every tensor holds the bytes ``dc_keras.export.unpack`` gives, so
    outputs are bit-identical. The C code patches the packed file in place, drops the packed data
    (the file's tail, as ``pack`` writes it) and appends the decoded weights, so the result is
    ``dc_keras.export.unpack``'s size plus ~90 B of tables per packed tensor (+0.3 % on
    MobileNetV2-0.35); files packed before 2026-11-30 or with ``buffers="external"`` also keep
    their packed data as unused constants (docs/FORMAT.md §15, docs/android.md). A zip of
    associated files after the model (TFLite metadata's labels) follows the result, offsets
    rewritten for its new position.

    Raises:
      ValueError: not a ``.tflite`` (its file identifier and schema version are checked), a
        malformed packed tensor, or a model this unpacker cannot rewrite (the message names the
        tensor and says to use ``dc_keras.export.unpack``).
      TypeError: ``packed`` is not bytes-like (bytes, bytearray, memoryview, mmap, ...).

    Example:
      >>> plain = dc_keras.runtime.unpack(open("m.packed.tflite", "rb").read())
    """
    data = content_bytes(packed, "packed .tflite content", ", or give the path to compiled_model")
    _check_environment()
    fn, free = _c_unpack_fn()
    out = ctypes.POINTER(ctypes.c_uint8)()
    size = ctypes.c_size_t(0)
    why = ctypes.create_string_buffer(512)
    status = fn(data, len(data), ctypes.byref(out), ctypes.byref(size), why, len(why))
    if status != 0:
        msg = why.value.decode(errors="backslashreplace")  # with its fix: the library names it (dc_unpack.h)
        if "HuffDecode(" in msg:  # a tensor name, as the Interpreter escapes it
            from dc_keras._flatbuffer import printable  # only on errors: it imports the schema

            msg = printable(msg)
        raise ValueError(f"dc_unpack: {msg}")
    try:
        return ctypes.string_at(out, size.value)
    finally:
        free(out)


def compiled_model(model_path=None, model_content=None, **kwargs):
    """LiteRT ``CompiledModel`` of a packed (or plain) ``.tflite``.

    ``CompiledModel`` takes no custom op from Python, so the packed file is unpacked in memory
    by the C library (``unpack``) and handed to ``CompiledModel.from_buffer``: the model then
    runs exactly as its unpacked file does (same kernels, XNNPACK on constant weights,
    bit-identical outputs; GPU/NPU ``hardware_accel`` work too). ``kwargs`` go to
    ``from_buffer`` (``hardware_accel``, ``environment``, ``options``). On a file with int8 TFLite
    sparse tensors (``Optimize.EXPERIMENTAL_SPARSITY``), which LiteRT 2.3's XNNPACK cannot run, the
    call that allocates or runs (``create_output_buffers``, ``run_by_index``, ...) raises a
    RuntimeError naming them and the fixes, as :class:`Interpreter` does (``options`` with
    ``CpuKernelMode.BUILTIN``: TFLite's built-in kernels).

    Example:
      >>> cm = dc_keras.runtime.compiled_model("m.packed.tflite")
      >>> ins, outs = cm.create_input_buffers(0), cm.create_output_buffers(0)
      >>> cm.run_by_index(0, ins, outs)
    """
    if (model_path is None) == (model_content is None):
        raise ValueError("give exactly one of model_path and model_content")
    with _needs("ai_edge_litert", "compiled_model", "pip install -U ai-edge-litert (a version with CompiledModel)"):
        from ai_edge_litert.compiled_model import CompiledModel

    label = _check_model(model_path, model_content, "compiled_model")  # a missing path or a non-.tflite, named
    if model_path is not None:
        model_content = _read_path(model_path)
    plain = _named(unpack, label, model_content)
    flex = _flex_ops(None, plain)
    if flex:  # LiteRT 2.3's CompiledModel took it and failed at the first run: "Failed to allocate tensors"
        raise RuntimeError(_flex_text(label, flex, "LiteRT's CompiledModel here has"))
    cm = CompiledModel.from_buffer(plain, **kwargs)
    cm._dc_keras_model = plain  # the runtime may read the flatbuffer in place: keep it alive
    _warn_if_weights_missing(label, None, plain)
    _name_sparse_failures(cm, label, kwargs.get("options"))
    return cm


#: the CompiledModel methods where LiteRT allocates (output buffers) or runs the model, lazily: where
#: XNNPACK's failure on int8 TFLite sparse weights surfaces ("Failed to allocate tensors", "Failed to invoke")
_COMPILED_LAZY = ("create_output_buffers", "create_output_buffer_by_name", "run_by_index", "run_by_name")


def _name_sparse_failures(cm, label, options):
    """When XNNPACK runs ``cm`` (``options`` sets no other CPU kernel mode), its methods that allocate
    or run, on LiteRT's "Failed to allocate tensors" / "Failed to invoke", raise :func:`_sparse_error`
    (naming the model's int8 TFLite sparse tensors and the fixes) if the model holds any, else LiteRT's
    error as it is. The model is read for them only then, after such a failure (as ``Interpreter``
    does): no scan on the load path. ``cm`` becomes an instance of a subclass of its class whose
    methods do this (closures over ``cm``'s bound methods stored on ``cm`` made a reference cycle, so
    each CompiledModel, the unpacked model with it, lived until the cyclic GC ran: RSS +127 MiB over
    200 loads of a 3 MB model)."""
    mode = getattr(getattr(options, "cpu_options", None), "kernel_mode", None)
    if mode is not None and int(mode) != 0:
        return  # (0: CpuKernelMode.DELEGATE, XNNPACK)
    cm._dc_label = label
    cm.__class__ = _sparse_checked_class(type(cm))


def _sparse_checked_class(base):
    """``base`` (LiteRT's ``CompiledModel``) with :data:`_COMPILED_LAZY` methods that name int8 TFLite
    sparse tensors on failure (:func:`_name_sparse_failures`); one per base class."""
    cls = _SPARSE_CHECKED.get(base)
    if cls is not None:
        return cls
    fix = ("compiled_model(..., options=ai_edge_litert.options.Options(cpu_options=ai_edge_litert.cpu_options."
           "CpuOptions(kernel_mode=ai_edge_litert.cpu_options.CpuKernelMode.BUILTIN)))")

    def named(method):
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except RuntimeError as exc:
                if not re.search(r"Failed to (allocate tensors|invoke)", str(exc)):
                    raise
                error = _sparse_error(self._dc_label, (None, self._dc_keras_model), exc, "LiteRT's CompiledModel", fix,
                                      "CompiledModel")
                if error is None:  # no int8 sparse tensor: LiteRT's error stands
                    raise
                raise error from exc
        call.__name__, call.__qualname__, call.__doc__ = method.__name__, method.__qualname__, method.__doc__
        return call

    methods = {name: named(getattr(base, name)) for name in _COMPILED_LAZY if hasattr(base, name)}
    cls = _SPARSE_CHECKED[base] = type(base.__name__, (base,), dict(
        methods, __module__=base.__module__, __qualname__=base.__qualname__, __doc__=base.__doc__))
    return cls


_SPARSE_CHECKED = {}

