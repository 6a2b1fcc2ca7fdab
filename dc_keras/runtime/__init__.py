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

A corrupt packed buffer makes ``allocate_tensors()`` fail with ``RuntimeError`` naming the tensor
and the decoder's reason.

Using the library without this module:

* LiteRT / TF Python: ``load_delegate(dc_keras.runtime.library_path())`` in
  ``experimental_delegates``.
* TFLite C API: ``TfLiteInterpreterOptionsAddCustomOp(opts, "HuffDecode",
  DcKerasHuffDecodeRegistration(), 1, 1)``; C++: ``resolver.AddCustom("HuffDecode",
  DcKerasHuffDecodeRegistration())``.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading

from dc_keras._native import library_path as _native_library_path
from dc_keras._native import load_library

__all__ = ["Interpreter", "library_path", "REGISTERER", "OP_NAME", "prepare_tensorflow_registerer",
           "available_backends"]

OP_NAME = "HuffDecode"
REGISTERER = "DcKerasRegisterHuffDecode"
_ADD_CUSTOM = "_ZN6tflite17MutableOpResolver9AddCustomEPKcPK18TfLiteRegistrationii"
_BACKENDS = ("auto", "litert", "tensorflow")
_lock = threading.Lock()
_registerer_ready = False


def library_path() -> str:
    """Absolute path of ``libdc_huffdecode.so`` (op registration + external delegate).

    Example:
      >>> from ai_edge_litert.interpreter import Interpreter, load_delegate   # doctest: +SKIP
      >>> it = Interpreter(model_path="m.packed.tflite",
      ...                  experimental_delegates=[load_delegate(library_path())])  # doctest: +SKIP
    """
    return _native_library_path()


def available_backends() -> list:
    """Backends importable here, in ``"auto"`` preference order."""
    out = []
    try:
        import ai_edge_litert.interpreter  # noqa: F401

        out.append("litert")
    except ImportError:
        pass
    try:
        import tensorflow.lite.python.interpreter  # noqa: F401

        out.append("tensorflow")
    except ImportError:
        pass
    return out


def prepare_tensorflow_registerer() -> str:
    """Makes ``REGISTERER`` usable by TF's ``InterpreterWithCustomOps`` and returns its name.

    Loads the library with ``RTLD_GLOBAL`` (TF looks the registerer up by name) and hands it the
    address of TF's ``MutableOpResolver::AddCustom`` (the library itself links only libc/libm).

    Example:
      >>> from tensorflow.lite.python.interpreter import InterpreterWithCustomOps   # doctest: +SKIP
      >>> it = InterpreterWithCustomOps(model_content=packed,
      ...          custom_op_registerers=[prepare_tensorflow_registerer()])          # doctest: +SKIP
    """
    global _registerer_ready
    with _lock:
        if _registerer_ready:
            return REGISTERER
        import tensorflow.lite.python.interpreter  # noqa: F401  (loads the TF runtime)

        lib = load_library()
        addr = _find_add_custom()
        lib.DcKerasSetHuffDecodeAddCustom.argtypes = [ctypes.c_void_p]
        lib.DcKerasSetHuffDecodeAddCustom.restype = None
        lib.DcKerasSetHuffDecodeAddCustom(addr)
        _registerer_ready = True
        return REGISTERER


def _find_add_custom() -> int:
    import tensorflow

    root = os.path.dirname(os.path.abspath(tensorflow.__file__))
    candidates = sorted(glob.glob(os.path.join(root, "libtensorflow_cc.so*"))) + sorted(
        glob.glob(os.path.join(root, "lite", "python", "*.so"))
    )
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            return ctypes.cast(getattr(lib, _ADD_CUSTOM), ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    raise RuntimeError(
        "this TensorFlow exports no tflite::MutableOpResolver::AddCustom; use "
        "dc_keras.runtime.Interpreter(..., decode='delegate') instead"
    )


class Interpreter:
    """A TFLite interpreter that runs packed models (``HuffDecode`` ops) and ordinary ones.

    Same keyword arguments as ``ai_edge_litert.interpreter.Interpreter`` (``model_path``,
    ``model_content``, ``experimental_delegates``, ``num_threads``,
    ``experimental_op_resolver_type``, ``experimental_preserve_all_tensors``, ...), plus:

    Args:
      backend: ``"auto"`` (LiteRT when installed, else TF), ``"litert"`` or ``"tensorflow"``
        (TF's ``InterpreterWithCustomOps``).
      decode: ``"delegate"`` (default; keeps XNNPACK on the packed weights) or ``"op"``
        (TF backend only: the plain custom op, decoding in its Prepare).

    Every other attribute (``allocate_tensors``, ``get_input_details``, ``set_tensor``,
    ``invoke``, ``get_tensor``, ``get_signature_runner``, ...) is the backend interpreter's.
    ``.backend`` names the backend used, ``.interpreter`` is the backend object.

    Example:
      >>> it = dc_keras.runtime.Interpreter(model_content=packed)       # doctest: +SKIP
      >>> it.allocate_tensors()                                         # doctest: +SKIP
      >>> it.set_tensor(it.get_input_details()[0]["index"], x)          # doctest: +SKIP
      >>> it.invoke(); y = it.get_tensor(it.get_output_details()[0]["index"])   # doctest: +SKIP
    """

    def __init__(self, model_path=None, model_content=None, *, backend="auto", decode="delegate",
                 **kwargs):
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if decode not in ("delegate", "op"):
            raise ValueError(f"decode must be 'delegate' or 'op', got {decode!r}")
        if backend == "auto":
            found = available_backends()
            if not found:
                raise ImportError("neither ai_edge_litert nor tensorflow is installed")
            backend = found[0]
        if decode == "op" and backend != "tensorflow":
            raise ValueError(
                "decode='op' needs backend='tensorflow' (LiteRT's Python API cannot register a "
                "C custom op; its route is the delegate)"
            )
        user_delegates = list(kwargs.pop("experimental_delegates", None) or [])
        if backend == "litert":
            from ai_edge_litert import interpreter as mod

            delegates = [mod.load_delegate(library_path())] + user_delegates
            self._interpreter = mod.Interpreter(
                model_path=model_path, model_content=model_content,
                experimental_delegates=delegates, **kwargs,
            )
        else:
            from tensorflow.lite.python import interpreter as mod

            registerers = list(kwargs.pop("custom_op_registerers", None) or [])
            registerers.append(prepare_tensorflow_registerer())
            delegates = user_delegates
            if decode == "delegate":
                delegates = [mod.load_delegate(library_path())] + user_delegates
            self._interpreter = mod.InterpreterWithCustomOps(
                model_path=model_path, model_content=model_content,
                custom_op_registerers=registerers, experimental_delegates=delegates, **kwargs,
            )
        self.backend = backend
        self.decode = decode

    @property
    def interpreter(self):
        """The backend interpreter object."""
        return self._interpreter

    def __getattr__(self, name):
        if name == "_interpreter":
            raise AttributeError(name)
        return getattr(self._interpreter, name)

    def __repr__(self):
        return f"<dc_keras.runtime.Interpreter backend={self.backend!r} decode={self.decode!r}>"
