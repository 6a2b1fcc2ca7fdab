"""Export from the JAX and PyTorch Keras backends.

TFLite's converter traces TensorFlow graphs. Per backend:

- ``tensorflow``: the converter runs in this process (:func:`dc_keras.export.to_tflite`).
- ``jax``: the TF-backend child below, like torch, so a JAX user gets the file a TF user gets.
  The in-process route (Keras exports the JAX model as a TF SavedModel through jax2tf, which the
  converter reads) gives a correct but unfused graph: bias adds, activations and the softmax as
  separate ops plus shape-polymorphism ops. Measured on LeNet-300-100 (2026-11-30, load ~10):
  61 ops instead of 11, packed file 73,056 B instead of 65,888 B (+11 %), 50 us instead of 30 us
  CPU per batch-1 invoke. It is still used when the call needs this process (``configure=``,
  ``converter_options=``, a generator as ``representative_data``) and, with a warning, when the
  child fails (e.g. a custom layer that does not load from ``.keras``); without one for a model
  with layers quantized by Keras (``model.quantize("int8")``), which only this route lowers.
- ``torch``: Keras 3.15's ``model.export(path, format="litert")`` needs the separate
  ``litert-torch`` package and replaces every dynamic dimension (the batch) by 1, so the model is
  instead saved as ``.keras`` and converted by a child Python process running the TensorFlow
  backend (``KERAS_BACKEND=tensorflow``): same converter, same ``.tflite`` as on the TF backend.

The child is given the saved model, the arguments and (for ``quantize="int8"``) the
representative data as ``.npy`` files; a generator function cannot cross the process boundary,
so it is rejected with an error saying what to pass instead. Custom classes and functions the
model refers to (custom layers, ...) are imported in the child from their modules, which it also
searches on this process's ``sys.path`` (a script's directory, the working directory), and passed
to ``keras.saving.load_model`` as ``custom_objects`` (registered or not). One it cannot import
(defined in ``__main__``: the running script, a notebook; or inside a function) is named with the
fix before the child starts (:func:`child_imports`; on JAX: converted through jax2tf instead, with
that warning); a model the child cannot load is one message with Keras's cause and the fix.

The temporary directory holding them is made by the child's janitor (a fork of the child, made
before anything heavy is imported), once it ignores SIGTERM, SIGHUP and SIGINT, which reports its
path to this process. This process removes it on return or any exception; the janitor waits on a
pipe whose write end only this process holds (closed in the processes it forks) and, at its end of
file without the final byte (this process killed without its clean-up), kills the conversion and
removes the directory (see :func:`to_tflite_in_tensorflow`). No signal handler is installed here.
Both hold a lock on the directory's lock file while they live: when both are killed outright, the
next export removes the directory (dc_keras/_exportdir.py).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from dc_keras import _exportdir

_CHILD = r"""
import json, os, signal, sys, time
import dc_keras._exportdir as exportdir  # (no dependencies: cheap)

parent, alive, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def remove(tmp):
    for _ in range(100):  # a process that was writing there may still be ending
        if exportdir.remove(tmp):
            return
        time.sleep(0.05)


if alive >= 0 and os.fork() == 0:
    # The janitor (first, before anything heavy is imported or any thread started). It makes the
    # temporary directory itself, once a SIGTERM can no longer end it, so no moment exists where
    # the directory is there and nobody left to remove it; it reports the path on `report` and
    # waits on the pipe whose write end only the caller holds (closed in what it forks). One byte: the caller is alive and
    # has cleaned up itself. End of file without it: the caller died (kill, SIGKILL, ...) with its
    # temporary directory, so the conversion it waited for is ended and the directory removed here.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # a SIGTERM to every process of a
        signal.signal(sig, signal.SIG_IGN)  # service (systemd's stop): it outlives the caller at most
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the caller reads this process's stdout/stderr to their end
        os.dup2(null, fd)
    child = os.getppid()
    tmp = None
    try:
        tmp, _lock = exportdir.make(parent)  # its lock, held until this process ends (dc_keras/_exportdir.py)
        line = json.dumps({"dir": tmp})
    except OSError as exc:
        line = json.dumps({"errno": exc.errno, "error": exc.strerror or str(exc), "path": parent})
    try:
        os.write(report, (line + "\n").encode())  # a few hundred bytes: one write to a pipe
    except OSError:
        pass  # the caller is gone: the end of file below says so
    os.close(report)
    try:
        done = os.read(alive, 1)
    except OSError:
        done = b""
    if not done:
        if os.getppid() == child:  # still converting (not yet reparented: no PID reuse)
            os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while os.getppid() == child and time.monotonic() < deadline:
            time.sleep(0.02)
        if tmp is not None:
            remove(tmp)
    os._exit(0)
if alive >= 0:
    os.close(alive)
    os.close(report)  # the caller sees its end of file when the janitor has reported (or died)

import numpy as np
import keras
import dc_keras.train  # registers the wrapper layers (unstripped models load too)
import dc_keras.export._convert as convert
from dc_keras.export._convert import _signature_specs, to_tflite

convert._SWEEP_TMPDIR = False  # the caller swept $TMPDIR before starting this process (once per export)

text = sys.stdin.read()  # the arguments, once the caller has saved the model (it started this process first)
if not text:
    sys.exit(3)  # the caller failed or died before: nothing to convert
args = json.loads(text)


def fail(message, kind="RuntimeError", cause=None):  # one clear message for the caller instead of a traceback
    with open(args["error"], "w") as f:  # on stderr; cause: the exception it was raised from, relayed
        json.dump({"message": message, "type": kind, "cause": cause}, f)
    sys.exit(4)


for entry in args["sys_path"]:  # where the caller imports from (its script's directory, ...), after ours
    if entry not in sys.path:
        sys.path.append(entry)
import importlib
custom = {}
for module, attr, registered in args["custom"]:  # the modules defining the model's custom classes
    try:
        found = getattr(importlib.import_module(module), attr, None)  # (the import registers them)
    except Exception as exc:
        fail(f"to_tflite: the TensorFlow-backend subprocess that converts the model cannot import module "
             f"{module!r}, which defines its {attr!r} ({type(exc).__name__}: {exc}). Fix: make that module "
             "importable without side effects from a fresh Python process (on PYTHONPATH, or in the "
             "current directory)")
    if found is not None:
        custom[registered] = found
try:
    model = keras.saving.load_model(args["model"], compile=False, custom_objects=custom)
except Exception as exc:
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    first = (lines or [type(exc).__name__])[0][:300]
    inner = [line for line in lines if line.startswith("Exception encountered:")]  # Keras: the cause
    if inner:
        first += " " + inner[-1][:300]
    fail(f"to_tflite: the model, saved as .keras, does not load in the TensorFlow-backend subprocess that "
         f"converts it ({type(exc).__name__}: {first}). Fix: make it load in a fresh process with "
         "KERAS_BACKEND=tensorflow (keras.saving.load_model(path)): custom classes in an importable "
         "module, decorated with @keras.saving.register_keras_serializable(), with a get_config() that "
         "returns their __init__ arguments")
rep = None
if args["representative"] is not None:
    rep = [np.load(p) for p in args["representative"]]
    rep = rep[0] if len(rep) == 1 else rep
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        to_tflite(model, pack=args["pack"], quantize=args["quantize"], path=args["out"],
                  representative_data=rep, min_bytes=args["min_bytes"], batch_size=args["batch_size"],
                  per_channel=args["per_channel"], positive_zeros=args["positive_zeros"],
                  pack_options=args["pack_options"], input_signature=_signature_specs(args["signature"]) if args["signature"] is not None else None)
    except (ValueError, RuntimeError) as exc:  # to_tflite's own errors: the same in the caller, not a traceback tail
        cause = exc.__cause__  # e.g. the ConverterError "TFLite conversion failed ... chained above." names
        fail(str(exc), "ValueError" if isinstance(exc, ValueError) else "RuntimeError",
             None if cause is None else {"type": type(cause).__name__, "message": str(cause)})
relay = [{"category": w.category.__name__, "message": str(w.message)} for w in caught
         if issubclass(w.category, UserWarning) and str(w.message).startswith("to_tflite")]
with open(args["warnings"], "w") as f:
    json.dump(relay, f)
"""

# Seconds the TF child may take (TF start-up + conversion of a large model on a slow machine).
CHILD_TIMEOUT = 1800


def needs_tensorflow_child():
    """True when ``to_tflite`` must convert in a TF-backend child process (torch backend)."""
    import keras

    return keras.backend.backend() == "torch"


def prefers_tensorflow_child(configure=None, converter_options=None, representative_data=None):
    """True when ``to_tflite`` should convert in a TF-backend child though this process could (JAX:
    the child's graph is the TF backend's, fused; see the module docstring), i.e. on the JAX backend
    when nothing in the call needs this process."""
    import keras

    return (keras.backend.backend() == "jax" and configure is None and not converter_options
            and not callable(representative_data))


def to_tflite_in_tensorflow(model, pack, quantize, *, representative_data, min_bytes, batch_size=None,
                            converter_options=None, configure=None, per_channel=None, positive_zeros=False,
                            signature=None, pack_options=None):
    """Save ``model`` as ``.keras`` and convert it in a ``KERAS_BACKEND=tensorflow`` child.

    Returns the ``.tflite`` bytes (packed when ``pack``, with ``pack_options``: JSON-able, as
    ``_convert._pack_options`` makes them).
    """
    if configure is not None or converter_options:
        raise ValueError(
            "configure= and converter_options= cannot be used when exporting from the torch backend: the "
            "conversion runs in a TensorFlow-backend subprocess. Save the model (model.save('m.keras')) and "
            "call to_tflite on it in a process with KERAS_BACKEND=tensorflow."
        )
    if callable(representative_data):
        raise ValueError(
            "representative_data must be an array or a list of arrays (not a generator function) "
            "when exporting from the torch backend: the conversion runs in a TensorFlow-backend "
            "subprocess. Pass e.g. x_train[:200]."
        )
    # The temporary directory (the saved model, the result) belongs to this process and the child
    # together: whichever ends normally removes it. This process removes it on any return or
    # exception (also KeyboardInterrupt, or the SIGTERM/SIGHUP that `dc-keras` turns into one);
    # if it is killed outright instead (a plain `kill` of a script: Python's default SIGTERM runs
    # no clean-up, and a library installs no signal handlers; SIGKILL; the OOM killer), the
    # child's janitor sees the pipe below close, ends the conversion and removes the directory.
    # The janitor makes the directory itself, once a SIGTERM can no longer end it, and reports its
    # path here: no moment exists where the directory is there and no process left that removes
    # it, whatever SIGTERM/SIGHUP/SIGINT reaches this process, its group or every process of the
    # export (an error or Ctrl-C before the path arrived: this process waits for it, then removes
    # the directory). The child runs in its own session, so that a signal to this process's group
    # (a closed terminal, `kill -- -PGID`, timeout(1)) does not end it with the directory left
    # behind. The descriptors only this process may hold (the pipe's write end, the child's arguments,
    # the lock below) are closed in any process it forks (os.fork, multiprocessing), which would
    # otherwise keep the janitor waiting as long as it lives. Left only when the janitor is ended
    # by SIGKILL (which nothing can catch) and this process dies too without its clean-up (SIGKILL
    # of every process, or a plain kill of a script after the janitor's SIGKILL): then the next
    # export in the same $TMPDIR removes it, since no process holds its lock any more
    # (dc_keras/_exportdir.py; this process and the janitor hold it while they live; killed while
    # making or removing it, the janitor or this process leaves nothing the next export keeps).
    custom = child_imports(model)  # a class the child cannot import: UnimportableClassError, before it starts
    parent = tempfile.gettempdir()  # (none usable: FileNotFoundError naming the places tried)
    if not (os.name == "posix" and hasattr(os, "fork")):  # no janitor: this process makes the directory
        with _exportdir.directory() as tmp:
            data = _convert_in_child(*_start_child(parent), tmp, model, pack, quantize, representative_data,
                                     min_bytes, batch_size, per_channel, custom, positive_zeros, signature,
                                     pack_options)
            _relay_warnings(os.path.join(tmp, "warnings.json"))  # here: its stacklevel counts from this frame
            return data
    alive_r, alive_w = _pipe_above_stdio()
    _exportdir.caller_only(alive_w)  # a fork of this process (multiprocessing) must not keep the janitor waiting
    try:
        report_r, report_w = _pipe_above_stdio()
    except BaseException:
        os.close(alive_r)
        _exportdir.close(alive_w)
        raise
    tmp = proc = lock = None
    try:
        try:
            proc, args_w = _start_child(parent, alive_r, report_w)
        finally:
            os.close(alive_r)
            os.close(report_w)
        try:
            tmp = _read_directory(report_r)
        finally:
            if tmp is None:
                _exportdir.close(args_w)  # the child, if still there, reads no arguments and ends
        if tmp is None:
            _, stderr = proc.communicate()
            raise RuntimeError("to_tflite: the TensorFlow-backend subprocess ended at its start (exit status "
                               f"{proc.returncode}):\n" + "\n".join(stderr.strip().splitlines()[-8:]))
        lock = _exportdir.hold(tmp)  # in use while this process lives, even if the janitor is killed
        data = _convert_in_child(proc, args_w, tmp, model, pack, quantize, representative_data, min_bytes,
                                 batch_size, per_channel, custom, positive_zeros, signature, pack_options)
        _relay_warnings(os.path.join(tmp, "warnings.json"))
        return data
    finally:
        # on an error or Ctrl-C the child is ended before the directory goes (_convert_in_child, or
        # here); one not yet reported is waited for (the janitor reports it at once, or has ended)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        if tmp is None and proc is not None:
            with contextlib.suppress(OSError, ValueError):
                tmp = _read_directory(report_r)
        os.close(report_r)
        if tmp is not None and _exportdir.remove(tmp):  # the janitor: this process cleaned up itself
            with contextlib.suppress(OSError):
                os.write(alive_w, b"x")
        _exportdir.close(lock)
        _exportdir.close(alive_w)  # without that byte the janitor removes the directory it made, if any


def _pipe_above_stdio():
    """``os.pipe()`` with both ends above 2. In a process started with descriptor 0, 1 or 2 closed (a
    daemon, ``>&-``) a pipe end there, passed to the child by number, would be the child's stdin,
    stdout or stderr instead: its janitor read its own /dev/null, took the caller for dead and
    ended the conversion at once."""
    import fcntl

    ends = list(os.pipe())
    try:
        for i, fd in enumerate(ends):
            if fd <= 2:
                ends[i] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                os.close(fd)
    except BaseException:
        for fd in ends:
            os.close(fd)
        raise
    return ends


def _start_child(parent, alive_r=-1, report_w=-1):
    """The TF-backend child and the write end of its stdin. Started before the model is saved: it
    imports TensorFlow meanwhile, then reads its arguments (JSON) there."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    janitor = alive_r >= 0
    args_r, args_w = os.pipe()
    _exportdir.caller_only(args_w)  # a fork of this process would keep the child waiting for their end
    try:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, parent, str(alive_r), str(report_w)], stdin=args_r,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                pass_fds=(alive_r, report_w) if janitor else (), start_new_session=janitor)
    except BaseException:
        _exportdir.close(args_w)
        raise
    finally:
        os.close(args_r)
    return proc, args_w


def _read_directory(report_r):
    """The temporary directory the child's janitor made (its one JSON line on ``report_r``), or None
    when the child ended before its janitor reported; ``OSError`` (place, reason, fix) when the
    janitor could not make it."""
    text = b""
    while not text.endswith(b"\n"):
        chunk = os.read(report_r, 4096)
        if not chunk:
            return None
        text += chunk
    reply = json.loads(text)
    if "dir" not in reply:
        full = reply["errno"] in (errno.ENOSPC, errno.EDQUOT)
        fix = ("free some space there or set TMPDIR to a directory on another disk" if full
               else "set TMPDIR to an existing directory you may write")
        raise OSError(reply["errno"], f"to_tflite: cannot make a temporary directory in {reply['path']} "
                      f"({reply['error']}); {fix}")
    return reply["dir"]


def _convert_in_child(proc, args_w, tmp, model, pack, quantize, representative_data, min_bytes, batch_size,
                      per_channel, custom, positive_zeros=False, signature=None, pack_options=None):
    """The bytes the child converted: ``model`` and its arguments saved in ``tmp`` and sent on ``args_w``."""
    try:
        try:
            args = _save_inputs(tmp, model, pack, quantize, representative_data, min_bytes, batch_size, per_channel,
                                custom, positive_zeros, signature, pack_options)
            data = json.dumps(args).encode()
            while data:
                data = data[os.write(args_w, data):]
        except BrokenPipeError:
            pass  # the child has ended already: its error is reported below
        finally:
            _exportdir.close(args_w)  # on an error before the arguments, the child reads nothing and ends
        try:
            stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"to_tflite: the TensorFlow-backend conversion did not finish in "
                               f"{CHILD_TIMEOUT} s") from None
    finally:
        if proc.poll() is None:  # an error, a timeout, Ctrl-C: the child ends before the directory goes
            proc.kill()
            proc.communicate()
    out = args["out"]
    if os.path.exists(args["error"]):
        with open(args["error"]) as f:
            error = json.load(f)
        relayed = (ValueError if error.get("type") == "ValueError" else RuntimeError)(error["message"])
        if error.get("cause"):  # chained in the caller as in the child ("... chained above." is then true)
            raise relayed from ChildError(error["cause"]["type"], error["cause"]["message"])
        raise relayed
    if proc.returncode != 0 or not os.path.exists(out):
        tail = "\n".join((stderr or stdout).strip().splitlines()[-8:])
        raise RuntimeError(
            "to_tflite: converting in a TensorFlow-backend subprocess failed (the model was saved "
            f"as .keras and loaded with KERAS_BACKEND=tensorflow):\n{tail}"
        )
    with open(out, "rb") as f:
        return f.read()


class ChildError(Exception):
    """The exception a TensorFlow-backend child's error was raised from (a ``ConverterError``), relayed
    as text: the caller's error is chained from it, as the child's was. Its message: the original
    class's name and its text, the first ``CAUSE_CHARS`` characters."""

    CAUSE_CHARS = 20000

    def __init__(self, kind, message):
        cut = len(message) - self.CAUSE_CHARS
        text = message[:self.CAUSE_CHARS] + (f"\n... ({cut} more characters)" if cut > 0 else "")
        super().__init__(f"{kind}, raised in the TensorFlow-backend subprocess that converted the model:\n{text}")
        self.kind = kind


class UnimportableClassError(ValueError):
    """The model refers to a custom class (or function) the TensorFlow-backend child cannot import:
    defined in ``__main__`` (the running script, a notebook) or inside a function."""


_KERAS_PACKAGES = ("keras", "keras_hub", "keras_nlp", "keras_cv", "dc_keras", "builtins")


#: Modules Keras's config gives a class or function of the script itself (None: Keras writes it for __main__).
_MAIN_MODULES = (None, "__main__", "__mp_main__")
_IN_MAIN = "is defined in __main__ (the script or notebook that runs)"


def _not_top_level(module):
    return f"is not a top-level name of module {module!r} (defined inside a function?)"


def _model_functions(model):
    """The plain Python functions the layers of ``model`` hold as attributes (a ``Lambda`` layer's
    ``function``, a custom ``activation``, ...), every layer at any depth."""
    import types

    from dc_keras import _compat

    for layer in _compat.flatten_layers(model, include_self=True):
        for value in vars(layer).values():
            if isinstance(value, types.FunctionType):
                yield value


def child_imports(model):
    """``[(module, name, registered name)]`` of the custom classes and functions ``model``'s saved
    config refers to (outside Keras and dc_keras), which the TensorFlow-backend child imports before
    loading the model (the import registers them; the rest are passed as ``custom_objects``).

    Keras 3.15 saves a plain function (a ``Lambda`` layer's, a custom activation) by its name
    under ``module: "builtins"``, registered or not, so the file alone does not say where it comes
    from: its module is read from the function the model holds. A Python lambda is saved as
    bytecode, which Keras loads only with ``safe_mode=False``.

    Raises :class:`UnimportableClassError` naming those the child cannot import or load, and the fix.
    """
    import keras

    try:
        config = keras.saving.serialize_keras_object(model)
    except Exception:
        return []  # model.save reports it
    found, bad, lambdas, bad_functions = {}, {}, [], set()
    functions = {}
    for fn in _model_functions(model):
        if fn.__name__ != "<lambda>":
            functions.setdefault(keras.saving.get_registered_name(fn), fn)

    def function_node(name):
        fn = functions.get(name)
        if fn is None:
            return  # not one the model holds (Keras's own load error names it, if the child fails)
        module = getattr(fn, "__module__", None)
        if module in _MAIN_MODULES:
            bad[name] = _IN_MAIN
            bad_functions.add(name)
        elif module.split(".")[0] in _KERAS_PACKAGES:
            return  # (Keras's, KerasHub's, dc_keras's: left to the child, as their classes are)
        elif "<locals>" in fn.__qualname__ or getattr(sys.modules.get(module), fn.__name__, None) is not fn:
            bad[name] = _not_top_level(module)
            bad_functions.add(name)
        else:
            found[(module, fn.__name__, name)] = None

    def walk(node, layer=None):
        if isinstance(node, dict):
            module, cls = node.get("module", "-"), node.get("class_name")
            if isinstance(node.get("config"), dict) and isinstance(node["config"].get("name"), str):
                layer = node["config"]["name"]
            value = node.get("value")
            if cls == "__lambda__" or (set(node) == {"value"} and isinstance(value, (list, tuple)) and len(value) == 3
                                       and isinstance(value[0], str)):  # (Keras's func_dump of a lambda)
                lambdas.append(repr(layer))
            elif cls == "function" and module == "builtins" and isinstance(node.get("config"), str):
                function_node(node["config"])
            elif isinstance(cls, str) and "config" in node and "registered_name" in node:
                name = node["config"] if cls == "function" and isinstance(node["config"], str) else cls
                if module in _MAIN_MODULES:
                    bad[name] = _IN_MAIN
                elif isinstance(module, str) and module.split(".")[0] not in _KERAS_PACKAGES:
                    found[(module, name, node.get("registered_name") or name)] = None
            for value in node.values():
                walk(value, layer)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value, layer)

    walk(config)
    for module, name, _ in found:
        loaded = sys.modules.get(module)
        if loaded is not None and getattr(loaded, name, None) is None:  # (registered when a function ran)
            bad[name] = _not_top_level(module)
    found = {key: None for key in found if key[1] not in bad}
    problems = []
    if bad:
        named = "; ".join(f"{name!r} {where}" for name, where in bad.items())
        problems.append(
            f"this model's custom class(es){' or function(s)' if bad_functions else ''} cannot be loaded by the TensorFlow-backend subprocess "
            f"that converts it on the {keras.backend.backend()} backend: {named}. Fix: move "
            f"{'it' if len(bad) == 1 else 'them'} to the top level of a module (a .py file, e.g. next to your "
            "script), decorated with @keras.saving.register_keras_serializable(), and import "
            f"{'it' if len(bad) == 1 else 'them'} from there")
    if lambdas:
        problems.append(
            f"this model holds Python lambda(s) (in layer {', '.join(dict.fromkeys(lambdas))}), which Keras saves as bytecode and loads "
            "only with safe_mode=False, so the TensorFlow-backend subprocess that converts it on the "
            f"{keras.backend.backend()} backend cannot load the model. Fix: call keras.ops on the Functional "
            "model's tensors instead of a Lambda layer (e.g. h = keras.ops.multiply(h, 2.0)), or give the "
            "function a name at the top level of a module (a .py file, e.g. next to your script), decorated "
            "with @keras.saving.register_keras_serializable(), and import it from there")
    if problems:
        raise UnimportableClassError("to_tflite: " + "; and ".join(problems))
    return [list(key) for key in found]


def _child_sys_path():
    """The caller's ``sys.path``, absolute (``''``: its working directory): the child looks there too."""
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str)]


def _save_inputs(tmp, model, pack, quantize, representative_data, min_bytes, batch_size, per_channel, custom,
                 positive_zeros=False, signature=None, pack_options=None):
    """Saves the model (and representative data) in ``tmp``; the child's arguments."""
    model_path = os.path.join(tmp, "model.keras")
    model.save(model_path)
    rep_paths = None
    if representative_data is not None:
        arrays = representative_data if isinstance(representative_data, (list, tuple)) else [representative_data]
        rep_paths = []
        for i, a in enumerate(arrays):
            rep_paths.append(os.path.join(tmp, f"rep{i}.npy"))
            a = np.asarray(a)  # float data as float32; integer inputs (token ids) keep their type
            np.save(rep_paths[-1], a.astype(np.float32) if a.dtype.kind == "f" else a)
    return {"model": model_path, "pack": bool(pack), "quantize": quantize, "out": os.path.join(tmp, "model.tflite"),
            "representative": rep_paths, "min_bytes": int(min_bytes), "warnings": os.path.join(tmp, "warnings.json"),
            "batch_size": None if batch_size is None else int(batch_size),
            # the caller warned of a per_channel its quantize ignores: not again from the child
            "per_channel": None if per_channel is None or quantize not in ("int8", "dynamic") else bool(per_channel),
            "positive_zeros": bool(positive_zeros),
            "error": os.path.join(tmp, "error.json"), "sys_path": _child_sys_path(), "custom": custom,
            "signature": signature, "pack_options": pack_options or {}}


def _relay_warnings(path):
    """Re-issues here the ``to_tflite`` warnings the child recorded (static batch, ClusterSpreadWarning,
    ...): without this they would stay in the child's captured stderr."""
    import warnings

    from dc_keras.export._convert import ClusterSpreadWarning

    if not os.path.exists(path):
        return
    with open(path) as f:
        relayed = json.load(f)
    for w in relayed:
        category = ClusterSpreadWarning if w["category"] == "ClusterSpreadWarning" else UserWarning
        warnings.warn(w["message"], category, stacklevel=5)  # the caller of to_tflite
