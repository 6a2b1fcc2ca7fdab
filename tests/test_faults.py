"""Failing environments (issue 10, s14 audit): a process out of memory, a file-size limit, a
signal in the middle of a write, a fork between loading and running a model, an interrupted
fit(). Each must end in one clear error naming the problem and the fix (or the right result),
never a crash, a hang or a silent wrong result, and nothing the user had may be lost: no
partial or temporary file left next to the output, inputs untouched.

What other files already cover is not repeated here: atomic writes, umask and modes
(test_fileio.py, test_c_tools.py), disk full and read-only outputs (test_cli_errors.py),
hostile sizes (test_reliability.py), corrupt models (test_corruption.py), SIGKILL + resume
(test_training_faults.py, test_multi_worker.py).
"""
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


def _child(code, *args, timeout=300, **kw):
    """Runs ``code`` in a fresh Python (dc_keras of this checkout) with ``args``."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV, **kw)


@pytest.fixture(scope="module")
def big_packed(tmp_path_factory):
    """The path of a packed model whose 2048x2048 float kernel decodes to 16 MiB (a small one
    beside it)."""
    import keras

    from dc_keras import export

    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.Input((2048,)), keras.layers.Dense(2048, name="a"), keras.layers.Dense(16, name="b")])
    for layer in m.layers:
        k, b = layer.get_weights()
        k[np.abs(k) < np.quantile(np.abs(k), 0.9)] = 0
        layer.set_weights([np.round(k * 64) / 64, b])
    path = tmp_path_factory.mktemp("big") / "big.packed.tflite"
    path.write_bytes(export.pack(export.to_tflite(m, pack=False)))
    return path


# ------------------------------------------------------------------------------------------
# memory: a low RLIMIT_AS while loading a large packed model
# ------------------------------------------------------------------------------------------
_LOW_MEMORY = """
    import resource, sys
    import numpy as np
    from dc_keras import runtime
    path, extra_mib = sys.argv[1], int(sys.argv[2])
    small = runtime.Interpreter(model_content=open(path.replace("big.packed", "small.packed"), "rb").read())
    small.allocate_tensors()  # everything imported and initialised first
    size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (extra_mib << 20),) * 2)
    try:
        it = runtime.Interpreter(model_path=path)
        it.allocate_tensors()
        print("LOADED")
    except (RuntimeError, MemoryError) as exc:
        print("ERROR", " ".join(str(exc).split()))
"""


def test_out_of_memory_while_decoding_says_out_of_memory(big_packed, tmp_path):
    """A process that cannot get the 16 MiB a decoded weight needs (RLIMIT_AS 8 MiB above what it
    uses): the delegate said 'decoding failed: invalid argument (NULL pointer)' (its out-of-memory
    check compared the failed allocation, NULL, with the absent arena block, NULL, and handed the
    decoder a NULL output); now 'out of memory' with the size and the fix, and no crash."""
    import shutil

    from dc_keras import export

    path = big_packed
    work = tmp_path / "big.packed.tflite"
    shutil.copy(path, work)
    import _export_models as em

    (tmp_path / "small.packed.tflite").write_bytes(export.pack(em.tflite("dense", None)))
    r = _child(_LOW_MEMORY, work, 8)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR"), r.stdout
    assert "NULL pointer" not in line, line
    assert "out of memory" in line and "memory limit" in line, line


# ------------------------------------------------------------------------------------------
# writing outputs: a file-size limit, a signal mid-write, the longest name (CLI and C tools)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs of every writer: a plain and a packed .tflite, a packed tensor (all > 16 KiB out)."""
    import _export_models as em

    from dc_keras import codec, export

    d = tmp_path_factory.mktemp("inputs")
    plain = em.tflite("dense", None)
    (d / "m.tflite").write_bytes(plain)
    (d / "p.tflite").write_bytes(export.pack(plain))
    (d / "w.dcp").write_bytes(codec.encode(np.repeat(np.arange(-8, 8, dtype=np.float32), 512)))
    return d


def _commands(tools, inputs):
    """name -> argv without OUT: every command that writes an output file."""
    py = [sys.executable, "-m", "dc_keras"]
    return {"dc-keras pack": py + ["pack", inputs / "m.tflite"],
            "dc-keras unpack": py + ["unpack", inputs / "p.tflite"],
            "dc_unpack": [tools["dc_unpack"], inputs / "p.tflite"],
            "dc_decode": [tools["dc_decode"], inputs / "w.dcp"]}


WRITERS = ["dc-keras pack", "dc-keras unpack", "dc_unpack", "dc_decode"]


def _listing(d):
    return sorted(os.listdir(d))


@pytest.mark.parametrize("name", WRITERS)
def test_file_size_limit_is_one_clear_error(tools, inputs, tmp_path, name):
    """RLIMIT_FSIZE (ulimit -f) below the output's size: the C tools were killed by SIGXFSZ
    ('File size limit exceeded', no error line of theirs) with their OUT.tmp.PID file left behind,
    and dc-keras said only 'File too large'. Now each exits 1 with one line naming OUT, the cause
    and the fix; the old OUT and the directory are as they were."""
    argv = _commands(tools, inputs)[name]
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    limit = 2 << 10  # below the smallest output (the packed model: ~6 KB)

    def low_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([str(a) for a in argv + [out]], capture_output=True, text=True, timeout=300,
                       env=ENV, preexec_fn=low_limit)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(out) in lines[0] and "File too large" in lines[0] and "ulimit -f" in lines[0], lines[0]
    assert out.read_bytes() == b"old" and _listing(tmp_path) == ["out.bin"]


_FSYNC_SIGNAL_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
/* fsync of the output's temporary file: the signal named by SHIM_SIGNAL arrives right then
 * (deterministically: while the temporary file is complete but not yet renamed) */
int fsync(int fd) {
  static int (*real)(int);
  const char* sig = getenv("SHIM_SIGNAL");
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (sig) raise(atoi(sig));
  return real(fd);
}
"""

_PY_FSYNC_SIGNAL = """
    import os, signal, sys
    real = os.fsync
    def fsync(fd):  # the signal arrives while the temporary file is complete but not renamed
        os.kill(os.getpid(), int(os.environ["SHIM_SIGNAL"]))
        return real(fd)
    os.fsync = fsync
    from dc_keras import cli
    cli.run(sys.argv[1:])
"""


def _shim(tmp_path_factory, source):
    """``source`` compiled as an LD_PRELOAD library; its path."""
    d = tmp_path_factory.mktemp("shim")
    (d / "shim.c").write_text(source)
    r = subprocess.run(["cc", "-shared", "-fPIC", "-o", str(d / "shim.so"), str(d / "shim.c"), "-ldl"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return str(d / "shim.so")


@pytest.fixture(scope="module")
def fsync_shim(tmp_path_factory):
    return _shim(tmp_path_factory, _FSYNC_SIGNAL_SHIM)


def _default_signal_actions():
    """The child starts with the default action of the signals the tests send: a run under
    ``nohup`` (as CI may be) inherits SIGHUP ignored, and exec keeps ignored signals ignored."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _write_with_signal_at_fsync(tools, inputs, fsync_shim, name, sig, out, preexec):
    """Runs writer `name` into `out` with `sig` raised in its fsync of the temporary file."""
    argv = _commands(tools, inputs)[name]
    env = dict(ENV, SHIM_SIGNAL=str(int(sig)))
    if name.startswith("dc-keras"):
        argv = [sys.executable, "-c", textwrap.dedent(_PY_FSYNC_SIGNAL)] + argv[3:]
    else:
        env["LD_PRELOAD"] = fsync_shim
    return subprocess.run([str(a) for a in argv + [out]], capture_output=True, text=True, timeout=300, env=env,
                          preexec_fn=preexec)


def _ignore_sighup():
    _default_signal_actions()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@pytest.mark.parametrize("name", WRITERS)
def test_a_hangup_under_nohup_is_ignored_as_asked(tools, inputs, fsync_shim, tmp_path, name):
    """Under ``nohup`` (SIGHUP ignored) a closed terminal does not stop the writers: no handler of
    ours takes SIGHUP back, the output is written whole and no temporary file is left."""
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    r = _write_with_signal_at_fsync(tools, inputs, fsync_shim, name, signal.SIGHUP, out, _ignore_sighup)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert _listing(tmp_path) == ["out.bin"] and out.read_bytes() != b"old" and out.stat().st_size > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM] + [pytest.param(s, marks=pytest.mark.long) for s in (signal.SIGHUP, signal.SIGINT)],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("name", WRITERS)
def test_a_signal_mid_write_leaves_no_temporary_file(tools, inputs, fsync_shim, tmp_path, name, sig):
    """kill (SIGTERM), a closed terminal (SIGHUP) or Ctrl-C (SIGINT) while the output is being
    written: the temporary file was left next to OUT (dc-keras: '.OUT.xxxx.tmp' for SIGTERM and
    SIGHUP, which Python does not turn into an exception; the C tools: 'OUT.tmp.PID' for all
    three). Now it is removed, the old OUT is intact, and the process still ends as that signal
    says (killed by it; dc-keras on Ctrl-C: 'interrupted', status 130)."""
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    r = _write_with_signal_at_fsync(tools, inputs, fsync_shim, name, sig, out, _default_signal_actions)
    if name.startswith("dc-keras") and sig == signal.SIGINT:
        assert r.returncode == 130 and r.stderr.strip().endswith("interrupted"), (r.returncode, r.stderr[-2000:])
    else:
        assert r.returncode == -sig, (r.returncode, r.stderr[-2000:])
    assert _listing(tmp_path) == ["out.bin"] and out.read_bytes() == b"old"
    assert (inputs / "m.tflite").exists() and _listing(inputs) == ["m.tflite", "p.tflite", "w.dcp"]


@pytest.mark.parametrize("name", ["dc_unpack", "dc_decode"])
def test_c_tools_write_the_longest_name_the_file_system_allows(tools, inputs, tmp_path, name):
    """A 250-byte OUT name (NAME_MAX is 255): the C tools' temporary name, OUT + '.tmp.PID', was
    too long ('File name too long; choose another output path' for a valid name); dc-keras's
    writer keeps at most 200 bytes of the name in its temporary one (test_user_journey.py), and
    now so do they."""
    argv = _commands(tools, inputs)[name]
    out = tmp_path / ("m" * 246 + ".bin")
    r = subprocess.run([str(a) for a in argv + [out]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _listing(tmp_path) == [out.name] and out.stat().st_size > 0


# ------------------------------------------------------------------------------------------
# output paths: symbolic links, directories, read-only directories (the same in both families)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["dangling", "loop"])
@pytest.mark.parametrize("name", WRITERS)
def test_an_output_link_that_leads_to_no_file_is_refused(tools, inputs, tmp_path, name, case):
    """OUT a dangling symbolic link (OUT -> new.bin, absent) or a loop (OUT -> OUT): the C tools
    replaced the link by a regular file, dc-keras created new.bin through the dangling link and
    replaced the loop by a file. One rule for both now, as GNU cp ('not writing through dangling
    symlink'): refused before any work with one line saying what the link is and the fix; the
    link stays as it was and no file is created."""
    argv = _commands(tools, inputs)[name]
    out = tmp_path / "out.bin"
    to = "new.bin" if case == "dangling" else "out.bin"
    out.symlink_to(to)
    r = subprocess.run([str(a) for a in argv + [out]], capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    line = r.stderr.strip()
    assert str(out) in line, line
    if case == "dangling":
        assert ("a symbolic link to new.bin, which does not exist: outputs are not written through a dangling "
                "link (as cp does not); create new.bin first, remove the link, or choose another output path") in line
    else:
        assert ("symbolic link loop (Too many levels of symbolic links): remove or fix the link, or choose "
                "another output path") in line, line
    assert out.is_symlink() and os.readlink(out) == to and _listing(tmp_path) == ["out.bin"]


def _as_nobody():
    """preexec_fn: the child runs as `nobody` when the tests run as root (root may write any
    directory, so a read-only one would not be refused)."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)


_PY_AS_NOBODY = """
    import contextlib, io, os, sys
    from dc_keras import cli
    if os.geteuid() == 0:  # the interpreter may live where nobody cannot read: every import first,
        with contextlib.redirect_stderr(io.StringIO()):  # by the command failing on IN as root
            cli.main(sys.argv[1:2] + [sys.argv[2], os.path.join(os.path.dirname(sys.argv[2]), "warm.bin")])
        os.setgid(65534)
        os.setuid(65534)
    cli.run(sys.argv[1:])
"""


@pytest.mark.parametrize("name", WRITERS)
def test_bad_output_paths_are_refused_before_the_work_alike_in_both_families(tools, shared_dir, name):
    """OUT a directory, a symbolic link to IN, in a read-only directory, or a link (in a writable
    directory) to a file in a read-only directory, with an IN that is no model: every writer
    refuses OUT first, with one line naming the problem and the fix. The C tools found a read-only
    directory only when writing, after the work (here: they reported IN instead), and dc-keras
    said the link's directory was not writable, not the one its file is in."""
    import pathlib

    d = pathlib.Path(shared_dir)
    src = d / "in.bin"
    src.write_bytes(b"not a model, " * 100)
    (d / "dir").mkdir()
    ro = d / "ro"
    ro.mkdir()
    (ro / "f.bin").write_bytes(b"keep me")
    os.chmod(ro / "f.bin", 0o666)
    os.chmod(ro, 0o555)
    (d / "to_in").symlink_to("in.bin")
    (d / "to_ro").symlink_to(os.path.join("ro", "f.bin"))
    for p in (d, src):
        os.chmod(p, 0o777 if p == d else 0o644)
    before = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
    argv = _commands(tools, d)[name][:-1] + [src]
    if name.startswith("dc-keras"):
        argv = [sys.executable, "-c", textwrap.dedent(_PY_AS_NOBODY)] + argv[3:]
    cases = {d / "dir": ["Is a directory; give a file name for the output"],
             d / "to_in": ["is the same file as", "choose a different output path"],
             ro / "new.bin": [f"{ro} is not writable: choose an output path in a writable directory"],
             d / "to_ro": [f"{ro} is not writable: choose an output path in a writable directory"]}
    try:
        for out, wanted in cases.items():
            r = subprocess.run([str(a) for a in argv + [out]], capture_output=True, text=True, timeout=300, env=ENV,
                               preexec_fn=None if name.startswith("dc-keras") else _as_nobody)
            line = r.stderr.strip()
            assert r.returncode == 1 and len(line.splitlines()) == 1, (out, r.returncode, r.stderr[-2000:])
            assert str(out) in line and all(w in line for w in wanted), (out, line)
        assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == before
        assert (ro / "f.bin").read_bytes() == b"keep me" and (d / "to_in").is_symlink()
    finally:
        os.chmod(ro, 0o755)


# ------------------------------------------------------------------------------------------
# training: Ctrl-C in the middle of a pruning fit(), then fit() again
# ------------------------------------------------------------------------------------------
def _pruned_mlp():
    """The data (8 batches of 32) and a compiled pruned MLP (PolynomialDecay 0.2 -> 0.8 by step
    24, every 2 steps; plain SGD): (x, y, model)."""
    import keras

    import dc_keras.train as dt
    from dc_keras.train import schedules

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 20)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(20, 10)).astype(np.float32), axis=1).astype(np.int32)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                              keras.layers.Dense(10, name="fc2")])
    pruned = dt.prune(model, schedules.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=24, frequency=2))
    pruned.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    return x, y, pruned


def _pruning_run(interrupt_at=None):
    """Prunes a small MLP over 3 epochs of 8 batches (PolynomialDecay 0.2 -> 0.8 by step 24, every
    2 steps; plain SGD, fixed data order). With ``interrupt_at=(epoch, batch)`` a KeyboardInterrupt
    ends the fit() after that batch, as Ctrl-C does, and a second fit() (a new PruningCallback)
    trains on the batches the first one did not reach. Returns (masks, pruning steps, weights, the
    optimizer's step count, warnings of the second fit())."""
    import warnings

    import keras

    import dc_keras.train as dt

    x, y, pruned = _pruned_mlp()

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == interrupt_at:
                raise KeyboardInterrupt

    fit = dict(batch_size=32, shuffle=False, verbose=0)
    caught = []
    if interrupt_at is None:
        pruned.fit(x, y, epochs=3, callbacks=[dt.PruningCallback()], **fit)
    else:
        with pytest.raises(KeyboardInterrupt):
            pruned.fit(x, y, epochs=3, callbacks=[dt.PruningCallback(), CtrlC()], **fit)
        trained = int(pruned.optimizer.iterations.numpy())
        assert trained == interrupt_at[0] * 8 + interrupt_at[1] + 1
        first = trained % 8  # the rest of that epoch, then the epochs it did not reach
        rest_x = np.concatenate([x[first * 32:]] + [x] * (2 - interrupt_at[0]))
        rest_y = np.concatenate([y[first * 32:]] + [y] * (2 - interrupt_at[0]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruned.fit(rest_x, rest_y, epochs=1, callbacks=[dt.PruningCallback()], **fit)
    state = {v.path.split("/", 1)[1]: np.array(v.numpy()) for v in pruned.weights}  # without the model name
    masks = {k: v for k, v in state.items() if "mask" in k}
    steps = {k: int(v) for k, v in state.items() if "pruning_step" in k}
    return masks, steps, state, int(pruned.optimizer.iterations.numpy()), [str(w.message) for w in caught]


def test_fit_again_after_ctrl_c_resumes_the_schedule_where_training_stopped():
    """Ctrl-C after step 11 (epoch 2, batch 3) of a pruning fit(): the step counters said 8 (they
    are written at epoch ends), so the next fit() repeated the mask updates of steps 8 and 10 (with
    a misleading 'weights tie at the threshold: is the kernel all zeros?' warning, the masks being
    sparser than step 8's target) and ended 3 steps behind the steps trained (21 of 24). Now the
    next fit() takes the interrupted one's count from the optimizer: masks, counters and weights
    equal an uninterrupted run's, bit for bit."""
    ref_masks, ref_steps, ref_state, ref_iters, _ = _pruning_run()
    assert ref_iters == 24 and set(ref_steps.values()) == {24} and len(ref_masks) == 2
    masks, steps, state, iters, caught = _pruning_run(interrupt_at=(1, 2))
    assert iters == 24
    assert steps == ref_steps, steps
    assert not [w for w in caught if "tie at or below the threshold" in w], caught
    for k in ref_masks:
        np.testing.assert_array_equal(masks[k], ref_masks[k], err_msg=k)
    assert sorted(state) == sorted(ref_state)
    for k in ref_state:
        np.testing.assert_array_equal(state[k], ref_state[k], err_msg=k)


# ------------------------------------------------------------------------------------------
# os.fork() between loading a packed model and running it
# ------------------------------------------------------------------------------------------
_FORK_CHILD = """
    import ctypes, os, sys
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter as LiteRT
    from dc_keras import runtime
    from dc_keras._compat import delegate_pointer

    packed, plain = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
    x = np.random.RandomState(1).rand(4, 256).astype(np.float32)
    helpers = ctypes.CDLL(runtime.library_path()).DcKerasHuffDecodeDelegateAsync
    helpers.restype, helpers.argtypes = ctypes.c_size_t, [ctypes.c_void_p]

    def run(it, allocate=True):
        if allocate:
            it.allocate_tensors()
        it.resize_tensor_input(it.get_input_details()[0]["index"], x.shape)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"]).tobytes()

    want = run(LiteRT(model_content=plain))
    for case, kwargs in (("loaded", {}), ("allocated+release", {"release_decoded": True}),
                         ("compressed", {"weights": "compressed"})):
        it = runtime.Interpreter(model_content=packed, **kwargs)
        if case == "allocated+release":
            it.allocate_tensors()  # the release task (keep_decoded=0) may still be running
        print(case, "helpers", helpers(delegate_pointer(it._delegate)), flush=True)
        pid = os.fork()
        if pid == 0:  # the interpreter made before the fork, then a new one
            ok = True
            try:
                mine = run(it)
                ok = case == "compressed" or mine == want
                fresh = run(runtime.Interpreter(model_content=packed, **kwargs))
                ok = ok and fresh == mine
                print(case, "child", ok, flush=True)
            except BaseException as exc:
                print(case, "child error", repr(exc), flush=True)
                ok = False
            os._exit(0 if ok else 3)
        parent = run(it)
        _, status = os.waitpid(pid, 0)
        assert case == "compressed" or parent == want, case
        print(case, "status", status, flush=True)
"""


def test_fork_between_loading_and_running_a_packed_model(tmp_path):
    """A process that forks after runtime.Interpreter(...) (multiprocessing's fork start method,
    a server's pre-fork workers): where the delegate decodes on helper threads while the load
    goes on (decode_async, two or more CPUs, userfaultfd), the weights' memory was not inherited
    before allocate_tensors() joins the helpers (MADV_DONTFORK), so the child's allocate_tensors()
    died with SIGSEGV (or waited forever in pthread_join on a helper the child does not have).
    Now fork() waits for the helpers: the child runs the interpreter made before the fork and a
    new one, bit-identical to the unpacked model (also after allocate_tensors with
    release_decoded=True, whose release task runs on, and with weights='compressed')."""
    import keras

    from dc_keras import export

    keras.utils.set_random_seed(7)
    m = keras.Sequential([keras.Input((256,))] + [keras.layers.Dense(256, activation="relu") for _ in range(5)])
    for layer in m.layers:  # 1.25 MiB of decoded weights in 5 tensors: what decode_async takes
        k, b = layer.get_weights()
        k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0
        layer.set_weights([np.round(k * 64) / 64, b])
    plain = export.to_tflite(m, pack=False)
    (tmp_path / "m.tflite").write_bytes(plain)
    (tmp_path / "m.packed.tflite").write_bytes(export.pack(plain))
    r = _child(_FORK_CHILD, tmp_path / "m.packed.tflite", tmp_path / "m.tflite", timeout=240)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-3000:])
    lines = r.stdout.split("\n")
    if "loaded helpers 0" in lines:
        pytest.skip("the delegate decodes without helper threads here (one CPU or no userfaultfd): "
                    "nothing runs across the fork")
    for case in ("loaded", "allocated+release", "compressed"):
        assert f"{case} child True" in lines and f"{case} status 0" in lines, r.stdout


# ------------------------------------------------------------------------------------------
# dc-keras demo: an out_dir it cannot write fails before the training
# ------------------------------------------------------------------------------------------
def test_demo_out_dir_it_cannot_write_fails_before_training(shared_dir, capsys):
    """`dc-keras demo --out_dir DIR` with DIR read-only trained for minutes and failed at its first
    file; with DIR a file it said only 'DIR: File exists'. Now both fail at once (nothing trained,
    nothing written), naming DIR and the fix. Run as root, the read-only case runs with the
    effective user id of `nobody` (root may write any directory)."""
    from dc_keras import cli

    a_file = os.path.join(shared_dir, "a_file")
    with open(a_file, "w") as f:
        f.write("keep me")
    read_only = os.path.join(shared_dir, "ro")
    os.mkdir(read_only, 0o555)
    os.chmod(read_only, 0o555)
    argv = ["demo", "--train_subset", "100", "--epochs", "1", "--out_dir"]
    capsys.readouterr()
    assert cli.main(argv + [a_file]) == 1
    out, err = capsys.readouterr()
    assert "[1/4]" not in out, out
    assert err.strip() == (f"dc-keras demo: error: {a_file}: a file, not a directory: give out_dir (--out_dir) "
                           "a directory you may write; it is created if missing"), err
    root = os.geteuid() == 0
    if root:
        os.seteuid(65534)
    try:
        assert cli.main(argv + [read_only]) == 1
    finally:
        if root:
            os.seteuid(0)
    out, err = capsys.readouterr()
    assert "[1/4]" not in out, out
    assert err.startswith("dc-keras demo: error: ") and read_only in err and "writable directory" in err, err
    assert os.listdir(read_only) == [] and open(a_file).read() == "keep me"


_CLI_LOW_MEMORY = """
    import resource, sys
    import numpy as np
    from dc_keras import cli, codec, export
    codec.decode(codec.encode(np.arange(1000, dtype=np.float32) % 7))  # imports and library loaded
    size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (12 << 20),) * 2)
    cli.run(sys.argv[1:])
"""


def test_cli_out_of_memory_is_one_line(big_packed, tmp_path):
    """`dc-keras unpack` of a model whose decoded weights do not fit in the process's memory limit
    (RLIMIT_AS 12 MiB above its size; a 16 MiB kernel): a MemoryError traceback. Now one line
    saying out of memory and the fix, status 1, no output file."""
    path = big_packed
    out = tmp_path / "plain.tflite"
    r = _child(_CLI_LOW_MEMORY, "unpack", path, out)
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().startswith("dc-keras unpack: error: out of memory"), r.stderr[-3000:]
    assert len(r.stderr.strip().splitlines()) == 1 and "ulimit -v" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


def test_model_checkpoint_mid_epoch_reloads_and_continues_the_schedule(tmp_path):
    """keras.callbacks.ModelCheckpoint(save_freq=11) saves the pruned model after step 11, in the
    middle of the second epoch (the step counters are written at epoch ends; PruningCallback
    writes them before any save). Reloaded -- as a .keras file with keras.saving.load_model, or as
    .weights.h5 into a new pruned model -- and trained on the batches after step 11, it ends with
    the masks, counters and weights of an uninterrupted run, bit for bit (guards the counter a
    mid-epoch save writes: no test saved mid-epoch before; no defect found)."""
    import keras

    import dc_keras.train as dt

    x, y, ref = _pruned_mlp()
    fit = dict(batch_size=32, shuffle=False, verbose=0)
    ref.fit(x, y, epochs=3, callbacks=[dt.PruningCallback()], **fit)
    want = [np.array(v.numpy()) for v in ref.weights]
    rest_x, rest_y = np.concatenate([x[3 * 32:], x]), np.concatenate([y[3 * 32:], y])
    for name in ("m.keras", "m.weights.h5"):
        x, y, pruned = _pruned_mlp()
        path = str(tmp_path / name)
        save = keras.callbacks.ModelCheckpoint(path, save_freq=11, save_weights_only=name.endswith(".h5"))
        pruned.fit(x, y, epochs=2, callbacks=[dt.PruningCallback(), save], **fit)  # 16 steps, saved at 11
        if name.endswith(".keras"):
            resumed = keras.saving.load_model(path)
        else:
            _, _, resumed = _pruned_mlp()
            resumed.optimizer.build(resumed.trainable_variables)
            resumed.load_weights(path)
        steps = [int(v.numpy()) for v in resumed.weights if "pruning_step" in v.path]
        assert steps == [11, 11] and int(resumed.optimizer.iterations.numpy()) == 11, (name, steps)
        resumed.fit(rest_x, rest_y, epochs=1, callbacks=[dt.PruningCallback()], **fit)
        got = [np.array(v.numpy()) for v in resumed.weights]
        assert len(got) == len(want)
        for v, a, b in zip(ref.weights, got, want):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: {v.path}")


# ------------------------------------------------------------------------------------------
# output errors that named no fix
# ------------------------------------------------------------------------------------------
def test_output_name_too_long_fails_before_packing_with_the_fix(tmp_path, monkeypatch, capsys):
    """An OUT name longer than the file system allows (300 bytes; NAME_MAX 255): dc-keras pack
    packed the model first and then said only 'File name too long'. Now check_writable refuses
    it before packing, saying the limit and the fix; nothing is written."""
    import _export_models as em

    from dc_keras import cli
    from dc_keras.export import _pack

    src = tmp_path / "m.tflite"
    src.write_bytes(em.tflite("dense", None))

    def not_now(*args, **kwargs):
        raise AssertionError("packed before the output path was checked")

    monkeypatch.setattr(_pack, "pack_with_stats", not_now)
    out = tmp_path / ("b" * 300 + ".tflite")
    capsys.readouterr()
    assert cli.main(["pack", str(src), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dc-keras pack: error: ") and len(err.splitlines()) == 1, err
    assert err.endswith("File name too long; the file system allows names of at most 255 bytes: choose a "
                        "shorter output name"), err
    assert _listing(tmp_path) == ["m.tflite"]


def test_disk_io_error_names_the_fix(tmp_path, monkeypatch):
    """EIO from the disk while the output is made durable: 'Input/output error' alone; now with
    what to do, naming the output (not the temporary file); the old output is intact."""
    import errno

    from dc_keras._fileio import atomic_write

    out = tmp_path / "out.bin"
    out.write_bytes(b"old")

    def failing_disk(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_disk)
    with pytest.raises(OSError) as info:
        atomic_write(out, b"new")
    assert info.value.filename == str(out) and info.value.errno == errno.EIO
    assert info.value.strerror == ("Input/output error; the disk reported an input/output error: check the disk "
                                   "or file system, or choose an output path on another disk (nothing was written)")
    assert _listing(tmp_path) == ["out.bin"] and out.read_bytes() == b"old"


def test_cli_entry_point_runs_in_a_thread():
    """cli.run() sets SIGTERM/SIGHUP handlers (test_a_signal_mid_write_leaves_no_temporary_file),
    which Python allows in the main thread only: run from another thread it must still work
    (without them) rather than fail with 'signal only works in main thread'."""
    import threading

    from dc_keras import cli

    result = []

    def call():
        try:
            cli.run(["--version"])
        except SystemExit as exc:
            result.append(exc.code)
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion)
            result.append(repr(exc))

    t = threading.Thread(target=call)
    t.start()
    t.join()
    assert result == [0], result
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _env(buffered):
    """ENV with Python's stdout block-buffered (as for a user: PYTHONUNBUFFERED unset) or not."""
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    return env if buffered else dict(env, PYTHONUNBUFFERED="1")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this platform")
@pytest.mark.parametrize("buffered", [True, pytest.param(False, marks=pytest.mark.long)], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("name", WRITERS)
def test_report_lost_on_a_full_stdout_is_an_error(tools, inputs, tmp_path, name, buffered):
    """Standard output on a full device (`> /dev/full`; a full disk): dc_unpack and dc_decode
    exited 0 with their report line lost (a script reading dc_decode's 'dtype=... bytes=N' got
    nothing); dc-keras said 'No space left on device', as if the output had failed. Now each exits
    1 with one line saying the report could not be written to standard output, and the output
    file is written. dc-keras with Python's stdout block-buffered (PYTHONUNBUFFERED unset, as a
    user runs it; the test environment had it set) failed at exit instead: status 120 and
    'Exception ignored in: <_io.TextIOWrapper name='<stdout>'...> OSError: [Errno 28]'."""
    argv = _commands(tools, inputs)[name]
    out = tmp_path / "out.bin"
    with open("/dev/full", "w") as full:
        r = subprocess.run([str(a) for a in argv + [out]], stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=300, env=_env(buffered))
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot write the report to standard output: No space left on device" in r.stderr, r.stderr
    assert _listing(tmp_path) == ["out.bin"] and out.stat().st_size > 0


def _close_stdout():
    os.close(1)


@pytest.mark.parametrize("name", WRITERS)
def test_report_to_a_closed_stdout_is_an_error(tools, inputs, tmp_path, name):
    """Standard output closed (`>&-`): the C tools said the report could not be written (status
    1); dc-keras, whose sys.stdout is then None, dropped its report silently and exited 0. Now
    both say so, and the output file is written."""
    argv = _commands(tools, inputs)[name]
    out = tmp_path / "out.bin"
    r = subprocess.run([str(a) for a in argv + [out]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=300, env=_env(True), preexec_fn=_close_stdout)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot write the report to standard output: Bad file descriptor" in r.stderr, r.stderr
    assert _listing(tmp_path) == ["out.bin"] and out.stat().st_size > 0


@pytest.fixture(scope="module")
def normal_outputs(tools, inputs, tmp_path_factory):
    """name -> the bytes a writer (or `dc-keras inspect --plot`) writes in a normal run, made on first use."""
    made = {}

    def output(name):
        if name not in made:
            out = tmp_path_factory.mktemp("normal") / _output_name(name)
            r = subprocess.run([str(a) for a in _closed_fd_commands(tools, inputs, name, out)], capture_output=True,
                               text=True, timeout=300, env=_env(True))
            assert r.returncode == 0 and r.stdout and not r.stderr, (r.returncode, r.stdout, r.stderr[-2000:])
            made[name] = out.read_bytes()
        return made[name]

    return output


def _output_name(name):
    return "out.png" if name == "dc-keras inspect --plot" else "out.bin"


def _closed_fd_commands(tools, inputs, name, out):
    if name == "dc-keras inspect --plot":
        return [sys.executable, "-m", "dc_keras", "inspect", inputs / "p.tflite", "--plot", out]
    return _commands(tools, inputs)[name] + [out]


# A library's stray line to stdout/stderr (TensorFlow's or XNNPACK's log, a C extension's printf)
# while the output is being written: at the fsync of its temporary file, on the descriptors STRAY_FDS.
_STRAY_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int fsync(int fd) {
  static int (*real)(int);
  const char* fds = getenv("STRAY_FDS");
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  for (; fds && *fds; ++fds)
    if (*fds >= '0' && *fds <= '2') (void)!write(*fds - '0', "stray log line\n", 15);
  return real(fd);
}
"""

_PY_STRAY = """
    import os, sys
    real = os.fsync
    def fsync(fd):
        for n in os.environ["STRAY_FDS"].split(","):
            try:
                os.write(int(n), b"stray log line\\n")
            except OSError:
                pass
        return real(fd)
    os.fsync = fsync
    from dc_keras import cli
    cli.run(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def stray_shim(tmp_path_factory):
    return _shim(tmp_path_factory, _STRAY_SHIM)


@pytest.mark.parametrize("closed", [(0, 1, 2)] + [pytest.param(c, marks=pytest.mark.long) for c in [(0,), (1,), (2,), (1, 2)]],
                         ids=lambda c: "closed " + ",".join(map(str, c)))
@pytest.mark.parametrize("name", WRITERS + ["dc-keras inspect --plot"])
def test_started_with_standard_descriptors_closed_the_output_is_as_usual(tools, inputs, normal_outputs, stray_shim,
                                                                         tmp_path, name, closed):
    """A writer started with descriptor 0, 1 and/or 2 closed (`<&-`, `>&-`, `2>&-`, a daemon), while a
    library writes a line to those descriptors as the output is written: the output's temporary file
    got the closed number (the lowest free one), and the line ended up in the output
    (`stray log line` in the written .tflite; the tools' own report and errors are written when no
    output is open). Now each program opens /dev/null on a closed 0-2 first (as gnulib's stdopen:
    stdout and stderr read-only, so a write there still fails as on a closed descriptor): the
    output is byte for byte the one of a normal run and the only file in its directory; with
    stdout closed the run says the report was lost (status 1, as
    test_report_to_a_closed_stdout_is_an_error), else status 0 and a silent stderr."""
    out = tmp_path / _output_name(name)
    argv = _closed_fd_commands(tools, inputs, name, out)
    env = dict(_env(True), STRAY_FDS=",".join(map(str, closed)))
    if name.startswith("dc-keras"):
        argv = [sys.executable, "-c", textwrap.dedent(_PY_STRAY)] + argv[3:]
    else:
        env["LD_PRELOAD"] = stray_shim

    def close():
        for fd in closed:
            os.close(fd)

    r = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=300, env=env, preexec_fn=close)
    assert r.returncode == (1 if 1 in closed else 0), (r.returncode, r.stderr[-2000:])
    if 2 not in closed:
        assert len(r.stderr.strip().splitlines()) == (1 if 1 in closed else 0), r.stderr
        assert ("cannot write the report to standard output: Bad file descriptor" in r.stderr) == (1 in closed)
    assert _listing(tmp_path) == [out.name]
    assert out.read_bytes() == normal_outputs(name)


@pytest.mark.parametrize("name", WRITERS)
def test_an_error_with_stderr_closed_is_not_printed_into_stdout(tools, inputs, tmp_path, name):
    """`dc-keras inspect bad.tflite > sizes.txt 2>&-`: with stderr closed Python's sys.stderr is None,
    and print(..., file=None) prints to sys.stdout, so dc-keras's error line went into the report
    on stdout (a script reading it took the error for the report). Now, as the C tools, the error
    is lost with stderr (status 1), and stdout holds nothing."""
    argv = _commands(tools, inputs)[name][:-1] + [tmp_path / "missing.tflite", tmp_path / "out.bin"]
    report = tmp_path / "report.txt"
    with open(report, "w") as f:
        r = subprocess.run([str(a) for a in argv], stdout=f, timeout=300, env=_env(True),
                           preexec_fn=lambda: os.close(2))
    assert r.returncode == 1
    assert report.read_text() == "" and _listing(tmp_path) == ["report.txt"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this platform")
def test_inspect_plot_is_written_when_stdout_is_full(inputs, tmp_path):
    """`dc-keras inspect M --plot sizes.png > /dev/full`: the table's print failed, the command
    stopped there and said '(the output files, if any, were written)' -- but the chart, drawn
    after the table, was not. Now a report that cannot be written stops nothing: the chart is
    written, and the one error line says the report was lost."""
    plot = tmp_path / "sizes.png"
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "dc_keras", "inspect", str(inputs / "p.tflite"), "--plot", str(plot)],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=300, env=_env(True))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr[-2000:])
    assert "cannot write the report to standard output: No space left on device" in r.stderr, r.stderr
    assert _listing(tmp_path) == ["sizes.png"] and plot.read_bytes().startswith(b"\x89PNG")


def test_an_error_without_a_file_name_is_not_blamed_on_stdout(tmp_path, monkeypatch, capsys):
    """The CLI took any OSError without a file name and errno ENOSPC, EIO or EFBIG for a failure
    to print the report ('cannot write the report to standard output: ... (the output files, if
    any, were written)') -- also one raised by the work itself (here: the packer), when nothing
    was written. Now only a failed write to stdout is reported so; other errors as they are."""
    import errno

    import _export_models as em

    from dc_keras import cli
    from dc_keras.export import _pack

    src = tmp_path / "m.tflite"
    src.write_bytes(em.tflite("dense", None))

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_pack, "pack_with_stats", full_disk)
    capsys.readouterr()
    assert cli.main(["pack", str(src), str(tmp_path / "out.tflite")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "dc-keras pack: error: No space left on device", err
    assert _listing(tmp_path) == ["m.tflite"]


@pytest.mark.parametrize("name", WRITERS)
def test_a_full_disk_for_the_output_names_the_output_not_stdout(tools, inputs, tmp_path, name):
    """OUT on a full file system (a 4 KiB tmpfs, mounted in a private mount namespace: unshare -m,
    root only) and the report on a working stdout: every writer names OUT, the cause and the fix
    (not standard output), writes nothing there and prints no report."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to mount a tmpfs")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not allowed here: {probe.stderr.decode()[-200:]}")
    argv = _commands(tools, inputs)[name]
    full = tmp_path / "full"
    full.mkdir()
    out = full / "out.bin"
    mount = 'mount -t tmpfs -o size=4k tmpfs "$1" && cd / && shift && "$@"; s=$?; ls -A "$0"; exit $s'
    r = subprocess.run(["unshare", "-m", "sh", "-c", mount, str(full), str(full)] + [str(a) for a in argv + [out]],
                       capture_output=True, text=True, timeout=300, env=_env(True))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(out) in lines[0] and "No space left on device" in lines[0], lines[0]
    assert "free some space or choose an output path on another disk" in lines[0], lines[0]
    assert "standard output" not in lines[0], lines[0]
    assert r.stdout == "", r.stdout  # no report, and `ls -A` of the tmpfs: nothing left there
    assert _listing(full) == []


# ------------------------------------------------------------------------------------------
# to_tflite on the JAX/torch backend (a TF-backend child converts): the caller killed mid-export
# ------------------------------------------------------------------------------------------
_JAX_EXPORT = """
    import keras
    from dc_keras import export
    m = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    export.to_tflite(m, pack=True)
    print("converted", flush=True)
"""


def _processes_naming(text):
    """PIDs of the processes whose command line contains ``text``."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


_EXPORT_CLOSED_STDIO = """
    import json, os, sys, warnings
    import keras
    from dc_keras import export
    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    relayed = {}
    for name in ("closed", "open"):  # started with 0-2 closed; then /dev/null there: the usual case
        if name == "open":
            for fd in (0, 1, 2):
                assert os.open(os.devnull, os.O_RDWR) == fd
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            export.to_tflite(m, path=os.path.join(sys.argv[1], name + ".tflite"))
        said = [str(w.message) for w in caught if str(w.message).startswith("to_tflite")]
        relayed[name] = [msg for msg in said if not msg.startswith("to_tflite: kept raw: ")]  # unclustered: said
        relayed[name + "_kept_raw"] = len(said) - len(relayed[name])
    with open(os.path.join(sys.argv[1], "warnings.json"), "w") as f:
        json.dump(relayed, f)
"""


def _close_stdio():
    for fd in (0, 1, 2):
        os.close(fd)


@pytest.mark.long
def test_an_export_with_stdin_stdout_stderr_closed_converts_as_usual(tmp_path):
    """A process started with descriptors 0, 1 and 2 closed (a daemon, `<&- >&- 2>&-`) exports on the
    JAX (or torch) backend: the pipes to the TF-backend child got numbers 0-2, which the child has as
    its stdin/stdout/stderr, so its janitor read its own /dev/null, took the caller for dead and
    ended the conversion at once; on JAX a warning and the unfused jax2tf graph followed (on torch
    an error). Now the file is byte for byte the one made with 0-2 open, with no warning but the
    child's note that the unclustered kernels are kept raw, relayed in both cases."""
    backend = os.environ.get("KERAS_BACKEND") if os.environ.get("KERAS_BACKEND") in ("jax", "torch") else "jax"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_EXPORT_CLOSED_STDIO), str(tmp_path)], timeout=600,
                       env=dict(ENV, KERAS_BACKEND=backend), preexec_fn=_close_stdio)
    assert r.returncode == 0, (r.returncode, _listing(tmp_path))
    assert json.loads((tmp_path / "warnings.json").read_text()) == {"closed": [], "open": [], "closed_kept_raw": 1,
                                                                      "open_kept_raw": 1}
    assert _listing(tmp_path) == ["closed.tflite", "open.tflite", "warnings.json"]
    assert (tmp_path / "closed.tflite").read_bytes() == (tmp_path / "open.tflite").read_bytes()


_EXPORT_NO_TMPDIR = """
    import sys, tempfile
    import keras
    from dc_keras import export
    tempfile.tempdir = sys.argv[1]  # as a program may set it; here a directory that is not there
    m = keras.Sequential([keras.Input((20,)), keras.layers.Dense(4)])
    try:
        export.to_tflite(m)
    except OSError as exc:
        print(type(exc).__name__, exc)
"""


def test_an_export_whose_temporary_directory_cannot_be_made_says_where_and_what_to_do(tmp_path):
    """On JAX/torch the child's clean-up process makes the temporary directory: when it cannot (here
    tempfile.tempdir names a missing directory) to_tflite raises one OSError naming the place, the
    reason and the fix (as the caller's own mkdtemp did: FileNotFoundError naming the path), and
    no process of the export is left."""
    import time

    backend = os.environ.get("KERAS_BACKEND") if os.environ.get("KERAS_BACKEND") in ("jax", "torch") else "jax"
    missing = tmp_path / "missing"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_EXPORT_NO_TMPDIR), str(missing)], capture_output=True,
                       text=True, timeout=600, env=dict(ENV, KERAS_BACKEND=backend))
    assert r.returncode == 0, r.stderr[-3000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("FileNotFoundError ") and str(missing) in line, line
    assert "cannot make a temporary directory" in line and "No such file or directory" in line, line
    assert line.endswith("; set TMPDIR to an existing directory you may write"), line
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _processes_naming(str(missing)):
        time.sleep(0.2)
    assert _processes_naming(str(missing)) == [] and _listing(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the converter by /proc/PID/cmdline")
@pytest.mark.parametrize("how,when", [("ctrl-c", "child started")] + [  # one case in `make test`, the rest in test-long
    pytest.param(how, when, marks=pytest.mark.long) for how, when in [
        ("kill", "child started"), ("kill", "model saved"), ("kill group", "child started"),
        ("kill group", "model saved"), ("kill all", "child started"), ("kill all", "directory made"),
        ("kill all", "model saved"), ("ctrl-c", "directory made"), ("ctrl-c", "model saved")]])
def test_a_killed_export_leaves_no_temporary_directory(tmp_path, how, when):
    """A script exporting on the JAX (or torch) backend (to_tflite converts in a TensorFlow-backend child,
    through a temporary directory holding the saved model) is killed: `kill PID` (SIGTERM: Python's
    default action runs no clean-up, and the library installs no signal handler), SIGTERM to its
    process group (a closed terminal, `kill -- -PGID`, timeout(1)) or to every process of the
    export, again and again for half a second (systemd stopping a service; here also the processes
    started meanwhile), or Ctrl-C (KeyboardInterrupt: the caller's own clean-up, which waits for a
    directory not yet reported). The dc_keras-export-* directory was left in $TMPDIR, and after `kill PID`
    the child went on converting for nobody; with the clean-up process (the child's janitor) it was
    still left when every process was killed in the child's first moments, the directory made by the
    caller before the janitor existed. Now the janitor makes the directory once it ignores SIGTERM:
    at every moment, from the child's start (`when`) to the conversion, the directory is removed and
    no process of the export is left."""
    import glob
    import time

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    ours = str(tmpdir / "dc_keras-export-*")  # (torch keeps its own torchinductor_root there)
    backend = os.environ.get("KERAS_BACKEND") if os.environ.get("KERAS_BACKEND") in ("jax", "torch") else "jax"
    env = dict(ENV, KERAS_BACKEND=backend, TMPDIR=str(tmpdir))  # the torch pass of make test: on torch
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_JAX_EXPORT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_signal_actions)
    try:
        reached = {"child started": lambda: _processes_naming(str(tmpdir)),  # its argv names $TMPDIR
                   "directory made": lambda: glob.glob(ours),
                   "model saved": lambda: glob.glob(os.path.join(ours, "model.keras"))}[when]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None and not reached():
            time.sleep(0.001)  # (a /proc scan takes a few ms more)
        assert proc.poll() is None, ("the export ended before it could be killed", proc.communicate())
        if how == "kill":
            os.kill(proc.pid, signal.SIGTERM)
        elif how == "ctrl-c":  # the terminal's SIGINT: the script's process group (the child has its own),
            end = time.monotonic() + 60  # again until it ends (Keras's model.save swallows one at its start)
            while proc.poll() is None and time.monotonic() < end:
                os.killpg(proc.pid, signal.SIGINT)
                time.sleep(0.2)
        elif how == "kill group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                for pid in [proc.pid] + _processes_naming(str(tmpdir)):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGTERM)
                time.sleep(0.01)
        out, _ = proc.communicate(timeout=60)
        sig = signal.SIGINT if how == "ctrl-c" else signal.SIGTERM  # (KeyboardInterrupt: Python ends by SIGINT)
        assert proc.returncode == -sig and "converted" not in out, (proc.returncode, out)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (glob.glob(ours) or _processes_naming(str(tmpdir))):
            time.sleep(0.2)
        assert glob.glob(ours) == [], os.listdir(tmpdir)
        assert _processes_naming(str(tmpdir)) == [], "a process of the export is still running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _processes_naming(str(tmpdir)):  # the ones this test made, if left
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------
# to_tflite's temporary directories left by exports killed outright: the next export removes them
# ------------------------------------------------------------------------------------------
_EXPORT_IN = """
    import os, sys
    import keras
    from dc_keras import export
    m = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    data = export.to_tflite(m, batch_size=1)  # (a fixed batch: on TensorFlow too through a SavedModel)
    print("converted", len(data), flush=True)
"""


def _export_backend(route):
    """``KERAS_BACKEND`` for an export converting in a TF-backend child ("child": the JAX or torch
    backend of this pass, JAX under TensorFlow) or in its own process ("in-process": TensorFlow)."""
    if route == "in-process":
        return "tensorflow"
    return os.environ.get("KERAS_BACKEND") if os.environ.get("KERAS_BACKEND") in ("jax", "torch") else "jax"


def _start_export(tmpdir, route, code=_EXPORT_IN, **more_env):
    env = dict(ENV, KERAS_BACKEND=_export_backend(route), TMPDIR=str(tmpdir), **more_env)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(proc, reached, what):
    import time

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not reached():
        time.sleep(0.001)
    assert proc.poll() is None and reached(), (f"the export ended before {what}", proc.communicate())


def _saved(tmpdir, route):
    """The export's temporary directory holds the saved model (the caller's .keras for the child; the
    SavedModel of the in-process conversion), so it is killed mid-conversion."""
    import glob

    name = "model.keras" if route == "child" else os.path.join("**", "saved_model.pb")
    return lambda: glob.glob(os.path.join(str(tmpdir), "dc_keras-export-*", name), recursive=True)


def _export_mid_conversion(tmp_path, route):
    """$TMPDIR, the pattern of the export directories there, and an export started there, once its
    model was saved in its directory."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    first = _start_export(tmpdir, route)
    try:
        _wait_for(first, _saved(tmpdir, route), "its model was saved")
    except BaseException:
        _end_all([first], tmpdir)
        raise
    return tmpdir, str(tmpdir / "dc_keras-export-*"), first


def _parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _wait_gone(tmpdir, timeout=120):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _processes_naming(str(tmpdir)):
        time.sleep(0.05)
    assert _processes_naming(str(tmpdir)) == [], "a process of the export is still running"


def _end_all(procs, tmpdir):
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in _processes_naming(str(tmpdir)):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# Records in $SWEEP_LOG, one line per listing, which process listed $TMPDIR (what a sweep does first,
# and nothing else of an export does): imported by every Python started with this directory on its
# PYTHONPATH, so also by the TF-backend child that to_tflite starts (its PYTHONPATH extends the caller's).
_LISTING_RECORDER = """
import os, sys

def _record(event, args, _dirs=("os.scandir", "os.listdir")):
    if event in _dirs and args and isinstance(args[0], str) and os.environ.get("TMPDIR") \\
            and os.path.realpath(args[0]) == os.path.realpath(os.environ["TMPDIR"]):
        with open(os.environ["SWEEP_LOG"], "a") as f:
            f.write(f"{os.getpid()}\\n")

sys.addaudithook(_record)
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the converter by /proc/PID/cmdline")
@pytest.mark.long  # both routes (~40 s each): make test keeps test_an_export_leaves_what_it_did_not_make_in_tmpdir
@pytest.mark.parametrize("route", ["child", "in-process"])
def test_a_directory_left_by_an_export_killed_outright_is_removed_by_the_next_export(tmp_path, route):
    """Every process of an export SIGKILLed mid-conversion (`kill -9` of all of them, the OOM killer, a
    container stopped; on TensorFlow, in-process, a plain kill does the same): nothing could remove its
    dc_keras-export-* directory, holding the saved model, and each such export left one more in $TMPDIR
    for good. Now the next export in that $TMPDIR removes it (its owners' locks died with them) and says
    so on the dc_keras logger (stderr when logging is not configured). It lists $TMPDIR once: on the
    child route the TF-backend child swept it again, in its own call of to_tflite (one more listing of
    a possibly large /tmp and lock attempt per directory; what it removed was said on its stderr,
    which nobody reads); now the caller alone sweeps."""
    import glob

    tmpdir, ours, first = _export_mid_conversion(tmp_path, route)
    second = None
    try:
        for pid in _processes_naming(str(tmpdir)):  # the child and its janitor first: no clean-up can run
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
        assert first.returncode == -signal.SIGKILL
        _wait_gone(tmpdir)
        left = glob.glob(ours)
        assert len(left) == 1, os.listdir(tmpdir)  # nothing could remove it
        (tmp_path / "hooks").mkdir()  # a record of who lists $TMPDIR (a sweep's first step)
        (tmp_path / "hooks" / "sitecustomize.py").write_text(_LISTING_RECORDER)
        log = tmp_path / "listings"
        second = _start_export(tmpdir, route, SWEEP_LOG=str(log),
                               PYTHONPATH=os.pathsep.join([str(tmp_path / "hooks"), ROOT]))
        out, err = second.communicate(timeout=600)
        assert second.returncode == 0 and "converted" in out, err[-3000:]
        assert glob.glob(ours) == [], os.listdir(tmpdir)
        assert log.read_text().split() == [str(second.pid)], log.read_text()  # once, by the caller (not its child)
        said = [line for line in err.splitlines() if "to_tflite removed" in line]
        assert len(said) == 1 and said[0].startswith("dc_keras: to_tflite removed 1 temporary directory ("), err[-3000:]
        assert said[0].endswith(f" left in {tmpdir} by exports that were killed: {os.path.basename(left[0])}"), said
    finally:
        _end_all([first] + ([second] if second else []), tmpdir)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the converter by /proc/PID/cmdline")
@pytest.mark.long  # both routes (~40 s each): make test keeps test_an_export_leaves_what_it_did_not_make_in_tmpdir
@pytest.mark.parametrize("route", ["child", "in-process"])
def test_the_directory_of_a_live_export_is_kept_by_another_export(tmp_path, route):
    """Two exports at once in two processes, one $TMPDIR: the second removes only what exports that
    were killed left, never the first one's directory. The first is stopped (SIGSTOP) mid-conversion
    and, on the child route, its janitor (which made the directory) is SIGKILLed: the caller alone
    says the directory is in use. The second converts and keeps it; the first, continued, converts
    too (the same file) and removes its directory."""
    import glob

    tmpdir, ours, first = _export_mid_conversion(tmp_path, route)
    second = None
    try:
        os.kill(first.pid, signal.SIGSTOP)
        if route == "child":
            pids = _processes_naming(str(tmpdir))
            janitors = [pid for pid in pids if _parent_pid(pid) in pids]
            assert len(janitors) == 1, pids
            os.kill(janitors[0], signal.SIGKILL)
        kept = glob.glob(ours)
        assert len(kept) == 1, os.listdir(tmpdir)
        inside = sorted(os.listdir(kept[0]))
        second = _start_export(tmpdir, route)
        out2, err2 = second.communicate(timeout=600)
        assert second.returncode == 0 and "converted" in out2, err2[-3000:]
        assert glob.glob(ours) == kept and sorted(os.listdir(kept[0])) == inside, os.listdir(tmpdir)
        assert "to_tflite removed" not in err2, err2[-3000:]
        os.kill(first.pid, signal.SIGCONT)
        out1, err1 = first.communicate(timeout=600)
        assert first.returncode == 0 and out1 == out2, (out1, err1[-3000:])
        warned = [ln for ln in err1.splitlines() if "to_tflite" in ln and "to_tflite: kept raw: " not in ln]
        assert "jax2tf" not in err1 and not warned, err1[-3000:]  # no fallback, no warning (but unclustered: kept raw)
        _wait_gone(tmpdir)
        assert glob.glob(ours) == [], os.listdir(tmpdir)
    finally:
        if first.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(first.pid, signal.SIGCONT)
        _end_all([first] + ([second] if second else []), tmpdir)


def test_an_export_leaves_what_it_did_not_make_in_tmpdir(tmp_path, monkeypatch):
    """Next to the directories it removes, $TMPDIR holds things with similar names that are not a killed
    export's: a directory without the marker a to_tflite directory holds (another program's, or an
    older dc_keras's), a file, a link to a directory that has an unlocked marker, a marker that is a
    link, and (when the tests run as root) another user's directory with an unlocked marker. The
    export leaves each untouched and says nothing about them."""
    import logging
    import tempfile

    import keras

    from dc_keras import export
    from dc_keras._exportdir import MARKER

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    (tmpdir / "dc_keras-export-foreign").mkdir()
    (tmpdir / "dc_keras-export-foreign" / "data.bin").write_bytes(b"x" * 100)
    (tmpdir / "dc_keras-export-file").write_text("a file")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / MARKER).write_text("")
    (tmpdir / "dc_keras-export-link").symlink_to(elsewhere)
    (tmpdir / "dc_keras-export-linked-marker").mkdir()
    (tmpdir / "dc_keras-export-linked-marker" / MARKER).symlink_to(elsewhere / MARKER)
    if os.geteuid() == 0:
        other = tmpdir / "dc_keras-export-nobody"
        other.mkdir()
        (other / MARKER).write_text("")
        for p in (other, other / MARKER):
            os.chown(p, 65534, 65534)
    before = {p: sorted(os.listdir(tmpdir / p)) if (tmpdir / p).is_dir() else None for p in os.listdir(tmpdir)}
    said = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("dc_keras").addHandler(handler)
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))  # this process's $TMPDIR (the sweep's and the export's)
    try:  # (in this process: an export of its own sweeps as every export does, whatever the backend)
        data = export.to_tflite(keras.Sequential([keras.Input((20,)), keras.layers.Dense(4)]))
    finally:
        logging.getLogger("dc_keras").removeHandler(handler)
    assert data[4:8] == b"TFL3"
    after = {p: sorted(os.listdir(tmpdir / p)) if (tmpdir / p).is_dir() else None for p in os.listdir(tmpdir)
             if p.startswith("dc_keras-export-")}
    assert after == before and (elsewhere / MARKER).exists(), (before, after)
    assert not [m for m in said if "dc_keras-export" in m], said


_EXPORT_FORKING = """
    import glob, os, sys, threading, time, warnings
    import keras
    from dc_keras import export
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a process with threads
    def fork_once_the_directory_is_made():
        while not glob.glob(os.path.join(os.environ["TMPDIR"], "dc_keras-export-*")):
            time.sleep(0.001)
        pid = os.fork()  # as multiprocessing's "fork" start method does
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        print("forked", pid, flush=True)
    threading.Thread(target=fork_once_the_directory_is_made, daemon=True).start()
    m = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    export.to_tflite(m)
    print("converted", flush=True)
"""


@pytest.mark.long
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the converter by /proc/PID/cmdline")
def test_a_killed_export_is_cleaned_up_while_a_process_it_forked_lives(tmp_path):
    """A script exporting on the JAX (or torch) backend forks while the TF-backend child converts
    (os.fork, a multiprocessing pool with the "fork" start method: no exec, so close-on-exec closes
    nothing) and is then killed. The forked process held the write end of the pipe the janitor waits
    on, so the janitor saw no end of file: the conversion went on for nobody and the directory stayed
    as long as the forked process lived. Now the pipe (and the export's other caller-only descriptors)
    are closed in forked children: the janitor ends the conversion and removes the directory while the
    forked process still runs."""
    import glob
    import time

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    ours = str(tmpdir / "dc_keras-export-*")
    proc = _start_export(tmpdir, "child", _EXPORT_FORKING)
    forked = None
    try:
        line = proc.stdout.readline()
        assert line.startswith("forked "), (line, proc.communicate())
        forked = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)  # (its stdout and stderr stay open in the forked process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (glob.glob(ours) or _processes_naming(str(tmpdir))):
            time.sleep(0.05)
        os.kill(forked, 0)  # (still running: it is not what ended the wait)
        assert glob.glob(ours) == [], os.listdir(tmpdir)
        assert _processes_naming(str(tmpdir)) == [], "a process of the export is still running"
    finally:
        if forked is not None:
            with contextlib.suppress(OSError):
                os.kill(forked, signal.SIGKILL)
        _end_all([proc], tmpdir)
