"""Session 52's review fixes (lead)."""
import os
import subprocess
import sys
import textwrap

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_ONE_PROCESS_JOB = """
    import jax, keras, numpy as np
    import dc_keras
    from dc_keras.train import _base
    def called(rows):
        raise AssertionError(f"processes_disagree called in a one-process job with {rows}")
    _base.processes_disagree = called
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    assert jax.process_count() == 1 and not _base.multi_process()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32"); y = rng.integers(0, 3, size=64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="d1"), keras.layers.Dense(3)])
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=3)
    print("OK", _base.multi_process())
"""


# make test runs it in the JAX pass (Makefile's BACKEND_TESTS), in that process: a child here imported
# TensorFlow and JAX again (8 CPU s); elsewhere (the TensorFlow and PyTorch passes) it is make test-long's.
@(pytest.mark.long if keras.backend.backend() != "jax" else lambda f: f)
def test_one_process_distribution_job_runs_no_cross_process_check(monkeypatch):
    """A single-process JAX ``keras.distribution`` job: prune's and cluster's cross-process checks
    (``_base.processes_disagree``, an all-gather of hashes) return before building their rows —
    cluster() hashed every weight of the model first, then learned there was one process. Here
    ``processes_disagree`` raises if called: prune + fit + strip + cluster must not reach it."""
    code = textwrap.dedent(_ONE_PROCESS_JOB)
    if keras.backend.backend() == "jax":  # the JAX pass: in this process (JAX and dc_keras imported)
        import contextlib
        import io

        from dc_keras.train import _base

        monkeypatch.setattr(_base, "processes_disagree", _base.processes_disagree)  # restored after the job's stub
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<_ONE_PROCESS_JOB>", "exec"), {"__name__": "__job__"})
        finally:
            keras.distribution.set_distribution(None)
        assert "OK False" in out.getvalue(), out.getvalue()
        return
    code = 'import os\nos.environ["KERAS_BACKEND"] = "jax"\n' + code
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "OK False" in r.stdout, r.stderr[-3000:]


@pytest.mark.long  # builds the C library and one test program into a new directory (~30 s CPU)
def test_kernel_tests_run_from_an_absolute_build_directory(tmp_path):
    """``make -C tflite_kernels BUILD=/abs/path test`` (helper-198's finding in session 51) ran each
    test program as ``.//abs/path/test_x``: "No such file or directory". Now absolute and relative
    BUILD directories both run."""
    build = tmp_path / "kb"
    one = build / "test_pages"
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels"), f"BUILD={build}",
                        f"TEST_BINS={one}", "test"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"== {one}" in r.stdout and "No such file" not in r.stderr


def _notebook_cells(name):
    import json

    nb = json.load(open(os.path.join(ROOT, "examples", name), encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("kind", ["int8_image", "float_vector"])
def test_notebook_02_runs_on_a_tflite_of_your_own_from_the_pack_cell_on(kind, tmp_path, monkeypatch, capsys):
    """Notebook 02 says to start from your own .tflite's bytes at the pack cell; its run cells fed the
    packed model 160x160x3 images whatever the model (helper-197's s51 finding: LiteRT's raw RESHAPE
    error on any other input shape). They now make inputs of the file's own shape and type: the pack,
    run and unpack cells as written, on an int8-in/int8-out 28x28x1 CNN and on a float 1-D model,
    print bit-identical outputs."""
    import warnings

    import keras
    import numpy as np

    from dc_keras import export

    keras.utils.set_random_seed(0)
    if kind == "int8_image":
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                                  keras.layers.Flatten(), keras.layers.Dense(10)])
        calibration = np.random.default_rng(0).uniform(-1, 1, size=(4, 28, 28, 1)).astype(np.float32)
        options = {"inference_input_type": "int8", "inference_output_type": "int8"}
        kwargs = dict(quantize="int8", representative_data=calibration, converter_options=options)
    else:
        model = keras.Sequential([keras.Input((48,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(3)])
        for layer in model.layers:  # shared values by hand: the kernels pack
            k = layer.kernel.numpy()
            layer.kernel.assign(np.where(np.abs(k) < 0.1, 0, np.sign(k) * 0.2).astype(np.float32))
        kwargs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = export.to_tflite(model, pack=False, **kwargs)
    cells = _notebook_cells("02_pack_existing_tflite.ipynb")
    pack_cell = next(c for c in cells if "export.pack(int8_tflite" in c)
    run_cell = next(c for c in cells if "def predict(" in c)
    unpack_cell = next(c for c in cells if "export.unpack(packed)" in c)
    monkeypatch.chdir(tmp_path)
    scope = {"export": export, "int8_tflite": own}
    for cell in (pack_cell, run_cell, unpack_cell):
        exec(cell, scope)
    out = capsys.readouterr().out
    assert "bit-identical: True" in out and "same outputs after unpack: True" in out, out
    if kind == "int8_image":
        assert scope["images"].dtype == np.int8 and scope["images"].shape == (4, 28, 28, 1)
    else:
        assert scope["images"].shape == (4, 48)


def test_inference_io_types_given_as_strings_or_numpy_types_are_taken():
    """``converter_options={"inference_input_type": "int8"}`` (or ``np.int8``) failed with TF's
    "Unsupported TensorFlow type `int8` provided for the." under the advice about missing ops; the
    converter wants ``tf.int8``. Now a string or numpy type is taken as that dtype; a value that is
    no dtype at all gets the message naming the two options and what they take."""
    import warnings

    import keras
    import numpy as np

    from dc_keras import export
    from dc_keras.runtime import Interpreter

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    x = np.random.default_rng(0).uniform(-1, 1, size=(8, 8)).astype(np.float32)
    files = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind in ("int8", np.int8):
            files.append(export.to_tflite(model, pack=False, quantize="int8", representative_data=x,
                                          converter_options={"inference_input_type": kind,
                                                             "inference_output_type": kind}))
        with pytest.raises(ValueError, match=r"inference_input_type / inference_output_type: the converter refused "
                                             r"them \(The inference_input_type and .*\)\. With quantize='int8' they may be tf\.int8 or tf\.uint8"):
            export.to_tflite(model, pack=False, quantize="int8", representative_data=x,
                             converter_options={"inference_input_type": "eight"})
    assert files[0] == files[1]
    details = Interpreter(model_content=files[0]).get_input_details()[0]
    assert details["dtype"] == np.int8


def test_partly_clustered_model_per_channel_keeps_the_shared_codes_but_pays_the_scales():
    """docs/quantization.md's figures for a partly clustered model (session 51's design question):
    the default per-channel int8 keeps the clustered kernel's 16 codes (no ClusterSpreadWarning) and
    costs the 12 B per output channel of scales and zero points that per_channel=False saves."""
    import warnings

    import keras
    import numpy as np

    import dc_keras
    from dc_keras import _flatbuffer as fb
    from dc_keras import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, name="big"), keras.layers.Dense(10, name="small")])
    clustered = dc_keras.strip(dc_keras.cluster(model, bits=4, layers=["big"]))
    x = np.random.default_rng(0).normal(size=(16, 64)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        per_channel = export.to_tflite(clustered, quantize="int8", representative_data=x)
        per_tensor = export.to_tflite(clustered, quantize="int8", representative_data=x, per_channel=False)
        plain = export.to_tflite(clustered, quantize="int8", representative_data=x, pack=False)
    assert not [w for w in caught if issubclass(w.category, export.ClusterSpreadWarning)]
    tfl = fb.read_model(plain)
    big = next(t for t in tfl.subgraphs[0].tensors if "big" in fb.tensor_name(t) and "MatMul" in fb.tensor_name(t))
    assert len(big.quantization.scale) == 256
    data = np.frombuffer(fb.buffer_bytes(tfl, big.buffer), np.int8)
    assert np.unique(data).size <= 16
    # docs: 15,760 vs 12,576 B in a fresh process; Keras's name counters (sequential_N) move both by a few bytes
    assert 12 * 256 <= len(per_channel) - len(per_tensor) <= 12 * 256 + 256, (len(per_channel), len(per_tensor))
    assert abs(len(per_tensor) - 12576) <= 64


def test_uint8_calibration_data_for_a_subclassed_model_names_the_cast():
    """A subclassed model's inputs are unknown before the conversion, so its uint8 images were not cast
    as a functional model's are (helper-199's s51 finding): TF's calibrator refused them after the
    whole conversion, reported as a conversion failure with advice about missing ops. Now one
    ValueError naming the input, both dtypes and the cast; the cast data converts."""
    import warnings

    import keras
    import numpy as np

    from dc_keras import export

    class Small(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv, self.flat, self.out = keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(3)

        def call(self, x):
            return self.out(self.flat(self.conv(x)))

    model = Small()
    model(np.zeros((1, 8, 8, 1), "float32"))
    x = np.random.default_rng(0).integers(0, 255, size=(8, 8, 8, 1)).astype("uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"^to_tflite: representative_data for the model's input 0 \('[^']+'\) is "
                                             r"uint8, but the converted model takes float32: cast it, e\.g\. "
                                             r"representative_data=x\.astype\('float32'\)"):
            export.to_tflite(model, quantize="int8", representative_data=x)
        assert export.to_tflite(model, quantize="int8", representative_data=x.astype("float32"))


def test_pack_refuses_to_replace_an_unpacked_model_but_replaces_its_own_output(tmp_path, capsys):
    """``dc-keras pack *.tflite`` in a folder of two models packed the first INTO the second, whose
    model was lost (helper-201's finding: OUT is replaced without asking). pack now refuses an OUT that
    is an unpacked .tflite, naming the likely cause and the way out; a packed OUT (a re-run) and a
    file that is no model, and a re-run's own earlier output of a model that packed nothing (the same
    bytes again), are replaced as before."""
    import _export_models as em

    from dc_keras import cli, export

    plain, other = em.tflite("dense", None), em.tflite("conv", None)
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    a.write_bytes(plain)
    b.write_bytes(other)  # a second model
    assert cli.main(["pack", str(a), str(b)]) == 1
    err = capsys.readouterr().err
    assert (f"OUT {b} is an existing .tflite model that is not packed and holds other weights than IN: pack "
            "replaces an OUT it wrote before, never another model, which would be lost (did a shell pattern such as "
            f"*.tflite expand to two models? pack takes one IN and one OUT). Choose a new OUT, or delete {b} first") \
        in " ".join(err.split()), err
    assert b.read_bytes() == other and a.read_bytes() == plain
    b.unlink()
    assert cli.main(["pack", str(a), str(b), "--min-bytes", str(len(plain))]) == 0  # nothing packed: a's model
    assert cli.main(["pack", str(a), str(b), "--no-compact", "--min-bytes", str(len(plain))]) == 0  # again
    assert cli.main(["pack", str(a), str(b)]) == 0  # packed over it
    assert cli.main(["pack", str(a), str(b)]) == 0  # a re-run over its own packed output
    assert "replaced the existing" in capsys.readouterr().out
    assert b.read_bytes() == export.pack(plain)


def test_inspect_plot_without_an_extension_writes_the_png_its_help_names(tmp_path, capsys):
    """--help said "format from the extension" and a path without one got a PNG without a word
    (helper-201's finding): the help now says so, and the file is a PNG."""
    import _export_models as em

    from dc_keras import cli

    assert cli.main(["inspect", "--help"]) == 0
    assert "PNG without one" in " ".join(capsys.readouterr().out.split())
    src, chart = tmp_path / "m.tflite", tmp_path / "chart"
    src.write_bytes(em.tflite("dense", None))
    assert cli.main(["inspect", str(src), "--plot", str(chart)]) == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pack_command_takes_min_saving(tmp_path, capsys):
    """The CLI had no --min-saving, though its kept-raw line named pack's min_saving (helper-201's
    finding; notebook 02 said it was "an option of the Python call only"). Now --min-saving F (or a
    percent) gives pack's min_saving; the kept-raw line names the option; 1 or text is refused."""
    import warnings

    import keras
    import numpy as np

    from dc_keras import cli, export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, name="fc")])
    k = model.get_layer("fc").kernel.numpy()
    model.get_layer("fc").kernel.assign(np.where(k > 0, 0.25, -0.25).astype("float32"))  # 2 values: packs ~95 %
    src, out = tmp_path / "m.tflite", tmp_path / "p.tflite"
    warnings.simplefilter("ignore")  # pack's own kept-raw warnings (pytest restores the filters)
    src.write_bytes(export.to_tflite(model, pack=False))
    plain = src.read_bytes()
    assert cli.main(["pack", str(src), str(out), "--min-saving", "0.99"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert out.read_bytes() == export.pack(plain, min_saving=0.99)
    assert "packing saves less than --min-saving" in text and "min_saving" not in text, text
    out.unlink()
    assert cli.main(["pack", str(src), str(out), "--min-saving", "50%"]) == 0
    assert out.read_bytes() == export.pack(plain, min_saving=0.5) == export.pack(plain) != export.pack(plain, min_saving=0.99)
    for bad in ("1", "eight"):
        assert cli.main(["pack", str(src), str(tmp_path / "q.tflite"), "--min-saving", bad]) == 2
        assert "argument --min-saving/--min_saving: " in capsys.readouterr().err


def test_runtime_interpreter_given_an_open_file_says_to_read_it(tmp_path):
    """``Interpreter(model_content=open(path, "rb"))`` said only "must be the .tflite's bytes, got
    BufferedReader" (helper-201's finding; export.pack / inspect already name f.read())."""
    import io

    from dc_keras import runtime

    path = tmp_path / "m.tflite"
    path.write_bytes(b"\0" * 16)
    for f in (open(path, "rb"), io.BytesIO(b"\0" * 16)):
        with f, pytest.raises(TypeError, match=r"^model_content must be the \.tflite's bytes, got \w+: an open file: "
                                               r"pass f\.read\(\) \(its bytes\), or the file's path as model_path$"):
            runtime.Interpreter(model_content=f)


def test_schedule_refuses_an_infinite_power_and_keeps_float32_sparsities_as_written():
    """PolynomialDecay(power=inf) was accepted (every step then at the final sparsity at once, the
    NaN-free corner of 0 ** inf); np.float32(0.8) became 0.800000011920929 in the config and messages
    (helper-203's findings)."""
    import numpy as np

    from dc_keras import schedules

    for power in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"^`power` must be a positive, finite number, got"):
            schedules.PolynomialDecay(0.0, 0.8, 0, 100, power=power)
    s = schedules.PolynomialDecay(np.float32(0.1), np.float32(0.8), np.int64(0), np.int64(100))
    assert (s.initial_sparsity, s.final_sparsity) == (0.1, 0.8)
    assert s.get_config()["final_sparsity"] == 0.8
    assert schedules.ConstantSparsity(np.float64(0.75)).get_config()["target_sparsity"] == 0.75
