"""The native library's TFLite entry points, checked at the ABI level with ctypes (no TF needed)."""
import ctypes

import pytest

from dc_keras import runtime


class Registration(ctypes.Structure):  # TfLiteRegistration prefix (tflite_abi.h, LP64)
    _fields_ = [("init", ctypes.c_void_p), ("free", ctypes.c_void_p), ("prepare", ctypes.c_void_p),
                ("invoke", ctypes.c_void_p), ("profiling_string", ctypes.c_void_p),
                ("builtin_code", ctypes.c_int32), ("custom_name", ctypes.c_char_p),
                ("version", ctypes.c_int), ("registration_external", ctypes.c_void_p),
                ("async_kernel", ctypes.c_void_p), ("inplace_operator", ctypes.c_uint64),
                ("reserved", ctypes.c_uint64 * 16)]


class Delegate(ctypes.Structure):  # TfLiteDelegate
    _fields_ = [("data_", ctypes.c_void_p), ("Prepare", ctypes.c_void_p),
                ("CopyFromBufferHandle", ctypes.c_void_p), ("CopyToBufferHandle", ctypes.c_void_p),
                ("FreeBufferHandle", ctypes.c_void_p), ("flags", ctypes.c_int64),
                ("opaque_delegate_builder", ctypes.c_void_p)]


REPORT = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL(runtime.library_path())
    lib.DcKerasHuffDecodeRegistration.restype = ctypes.POINTER(Registration)
    lib.tflite_plugin_create_delegate.restype = ctypes.POINTER(Delegate)
    lib.tflite_plugin_create_delegate.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p),
                                                  ctypes.c_size_t, REPORT]
    lib.tflite_plugin_destroy_delegate.argtypes = [ctypes.POINTER(Delegate)]
    lib.tflite_plugin_destroy_delegate.restype = None
    return lib


def test_registration_for_the_c_api(lib):
    reg = lib.DcKerasHuffDecodeRegistration().contents
    assert reg.custom_name == b"HuffDecode"
    assert reg.builtin_code == 32 and reg.version == 1  # BuiltinOperator_CUSTOM
    assert reg.init and reg.free and reg.prepare and reg.invoke
    assert not reg.profiling_string and not reg.registration_external and not reg.async_kernel
    assert reg.inplace_operator == 0 and not any(reg.reserved)


def test_delegate_plugin_create_destroy(lib):
    messages = []
    cb = REPORT(lambda m: messages.append(m))
    d = lib.tflite_plugin_create_delegate(None, None, 0, cb)
    assert d and d.contents.Prepare and d.contents.flags == 1  # kTfLiteDelegateFlagsAllowDynamicTensors
    assert not d.contents.opaque_delegate_builder and not d.contents.CopyFromBufferHandle
    lib.tflite_plugin_destroy_delegate(d)
    lib.tflite_plugin_destroy_delegate(None)  # tolerated
    assert messages == []


def test_delegate_plugin_rejects_unknown_options(lib):
    messages = []
    cb = REPORT(lambda m: messages.append(m))
    keys = (ctypes.c_char_p * 1)(b"num_threads")
    values = (ctypes.c_char_p * 1)(b"4")
    assert not lib.tflite_plugin_create_delegate(keys, values, 1, cb)
    assert messages and b"unknown option num_threads=4" in messages[0]
    assert b"weights=decoded|compressed" in messages[0]  # names the options it takes


def test_litert_load_delegate_with_options_gives_clear_error():
    from ai_edge_litert.interpreter import load_delegate

    with pytest.raises(ValueError, match="unknown option|Failed to load delegate"):
        load_delegate(runtime.library_path(), options={"foo": "bar"})


def test_delegate_plugin_without_error_callback_prints_the_reason():
    """docs/android.md's C snippet passes NULL as report_error: a bad option must not then give a
    NULL delegate with the reason lost; it goes to stderr (one line naming the option and the
    valid ones)."""
    import subprocess
    import sys

    code = ("import ctypes, sys\n"
            "lib = ctypes.CDLL(sys.argv[1])\n"
            "lib.tflite_plugin_create_delegate.restype = ctypes.c_void_p\n"
            "k = (ctypes.c_char_p * 1)(b'weights'); v = (ctypes.c_char_p * 1)(b'compresed')\n"
            "print(lib.tflite_plugin_create_delegate(k, v, ctypes.c_size_t(1), None) or 0)\n")
    r = subprocess.run([sys.executable, "-c", code, runtime.library_path()], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "0", (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if "HuffDecode delegate" in ln]
    assert len(lines) == 1, r.stderr
    assert "bad value in option weights=compresed" in lines[0] and "weights=decoded|compressed" in lines[0]


def test_litert_kernel_refuses_packed_bytes_litert_cannot_wrap():
    """LiteRT's CompiledModel wraps a custom op's constant input as a host buffer and refuses one
    that is not 64-byte aligned, at the first run, with only "Unaligned host memory pointer" in its
    log and status 3. DcKerasLiteRtHuffDecodeCreate sees the model first: it refuses such bytes
    naming the tensor and the fix (dc_align_packed + 64-byte aligned memory)."""
    import os

    import numpy as np

    from dc_keras.runtime import _litert_c

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "conv_int8_tail.packed.tflite")
    with open(path, "rb") as f:
        model = f.read()
    lib = _litert_c._dc()
    fn = ctypes.cast(lib.dc_unpack_free, ctypes.c_void_p)  # any non-NULL function for the API table
    api = _litert_c._Api(fn, fn, fn)

    def create(content, offset):
        raw = np.zeros(len(content) + 128, np.uint8)
        at = (-raw.ctypes.data) % 64 + offset
        raw[at:at + len(content)] = np.frombuffer(content, np.uint8)
        why = ctypes.create_string_buffer(512)
        state = lib.DcKerasLiteRtHuffDecodeCreate(raw.ctypes.data + at, len(content), ctypes.byref(api), why,
                                                  len(why))
        if state:
            lib.DcKerasLiteRtHuffDecodeDestroy(state)
        return state, why.value.decode()

    aligned = _litert_c._align_packed(lib, model)
    state, why = create(aligned, 0)
    assert state and why == ""
    for content, offset in [(model, 0), (aligned, 16)]:
        state, why = create(content, offset)
        assert not state, offset
        assert why.startswith("HuffDecode(") and "not 64-byte aligned" in why, why
        assert "dc_align_packed(model, n, 64" in why and "64-byte aligned memory" in why, why
