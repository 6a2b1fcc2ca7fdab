"""docs/models.md's KerasHub table: tiny KerasHub models built from their classes, through prune ->
strip -> cluster -> strip -> to_tflite -> pack, each in a fresh process.

keras_hub is not a dependency of dc_keras; install the version measured beside the venv, e.g.

    .venv/bin/python -m pip install --no-deps --target /tmp/kh keras-hub==0.32.0 regex kagglehub \
        kagglesdk==0.1.28 tokenizers sentencepiece
    PYTHONPATH=/tmp/kh nice .venv/bin/python benchmarks/keras_hub_models.py --json docs/results/keras_hub.json

(tensorflow-text, which keras-hub asks for, is not needed by these models.) The models and the chain
are those of the 2026-12-05 KerasHub red team (helper-145's scripts): 2 layers (BART: 1 + 1), hidden
32, 2 heads, intermediate 64, vocabulary 200, sequence 16 (ViT: 16x16x3 images, patches of 4), 256
random samples, ``keras.utils.set_random_seed(0)``; ``prune(PolynomialDecay(0, 0.7, 0, 6,
frequency=2))`` 1 epoch, ``strip``, ``cluster(bits=4)`` 1 epoch, ``strip``; ``.keras`` round trips of the
wrapped and the stripped model compared with the model's predictions; ``to_tflite(pack=False)``
(static ``input_signature`` for Gemma and Llama, which do not convert with a dynamic sequence) then
``pack``, packed vs unpacked outputs through ``dc_keras.runtime``. ``--quantized MODEL=MODE,...`` adds
quantized exports; ``--backend jax`` rows run the model under ``KERAS_BACKEND=jax``. Times are the
whole child run (building included) on whatever load the machine has: recorded with the load.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

V, L, N = 200, 16, 256

#: (key, label in docs/models.md)
MODELS = [("bert", "`BertTextClassifier`"), ("distilbert", "`DistilBertTextClassifier`"),
          ("roberta", "`RobertaTextClassifier`"), ("gpt2", "`GPT2CausalLM`"),
          ("gemma", "`GemmaCausalLM` (static signature)"),
          ("llama_fixed", "`LlamaCausalLM` (static signature, patched `get_config`)"),
          ("vit_fixed", "`ViTBackbone` + Dense head (patched `get_config`)"),
          ("hublayers", "`keras_hub.layers` in a Functional model"),
          ("bert_backbone_only", "`BertBackbone` alone (two outputs)"),
          ("bart", "`BartBackbone` (1 + 1 layers) + Dense head")]


# -- the models (built in the child; one fresh numpy generator per process) ------------------------

def build(name):
    import keras
    import keras_hub

    rng = np.random.default_rng(0)
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def tokens():
        return rng.integers(1, V, size=(N, L)).astype("int32"), np.ones((N, L), dtype="int32")

    def enc_inputs():
        ids, mask = tokens()
        return {"token_ids": ids, "padding_mask": mask}

    dims = dict(vocabulary_size=V, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                max_sequence_length=L)
    if name == "bert":
        clf = keras_hub.models.BertTextClassifier(keras_hub.models.BertBackbone(**dims), num_classes=3,
                                                  preprocessor=None)
        ids, mask = tokens()
        x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
        clf(x)
        return clf, x, rng.integers(0, 3, N), sce
    if name in ("distilbert", "roberta"):
        bb = {"distilbert": keras_hub.models.DistilBertBackbone, "roberta": keras_hub.models.RobertaBackbone}[name]
        task = {"distilbert": keras_hub.models.DistilBertTextClassifier,
                "roberta": keras_hub.models.RobertaTextClassifier}[name]
        clf = task(bb(**dims), num_classes=3, preprocessor=None)
        x = enc_inputs()
        clf(x)
        return clf, x, rng.integers(0, 3, N), sce
    if name == "gpt2":
        lm = keras_hub.models.GPT2CausalLM(keras_hub.models.GPT2Backbone(**dims), preprocessor=None)
        x = enc_inputs()
        lm(x)
        return lm, x, np.roll(x["token_ids"], -1, axis=1), sce
    if name in ("gemma", "llama_fixed"):
        if name == "gemma":
            bb = keras_hub.models.GemmaBackbone(vocabulary_size=V, num_layers=2, num_query_heads=2,
                                                num_key_value_heads=1, hidden_dim=32, intermediate_dim=64,
                                                head_dim=16)
            lm = keras_hub.models.GemmaCausalLM(bb, preprocessor=None)
        else:
            fix_keras_hub_configs()
            bb = keras_hub.models.LlamaBackbone(vocabulary_size=V, num_layers=2, num_query_heads=2,
                                                num_key_value_heads=1, hidden_dim=32, intermediate_dim=64)
            lm = keras_hub.models.LlamaCausalLM(bb, preprocessor=None)
        x = enc_inputs()
        lm(x)
        return lm, x, np.roll(x["token_ids"], -1, axis=1), sce
    if name == "vit_fixed":
        fix_keras_hub_configs()
        bb = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2,
                                          hidden_dim=32, mlp_dim=64)
        inp = keras.Input((16, 16, 3))
        m = keras.Model(inp, keras.layers.Dense(3)(bb(inp)[:, 0]))
        return m, rng.random((N, 16, 16, 3), dtype=np.float32), rng.integers(0, 3, N), sce
    if name == "hublayers":  # keras.io style: keras_hub.layers in a plain Functional model
        inp = keras.Input((L,), dtype="int32")
        h = keras_hub.layers.TokenAndPositionEmbedding(V, L, 32)(inp)
        h = h + keras_hub.layers.SinePositionEncoding()(h)
        h = keras_hub.layers.TransformerEncoder(64, 2)(h)
        h = keras_hub.layers.TransformerDecoder(64, 2)(h, h)
        m = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(h)))
        ids, _ = tokens()
        return m, ids, rng.integers(0, 3, N), sce
    if name == "bert_backbone_only":
        bb = keras_hub.models.BertBackbone(**dims)
        ids, mask = tokens()
        x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
        bb(x)
        y = {"sequence_output": rng.normal(size=(N, L, 32)).astype("float32"),
             "pooled_output": rng.normal(size=(N, 32)).astype("float32")}
        return bb, x, y, "mse"
    if name == "bart":
        bb = keras_hub.models.BartBackbone(**dict(dims, num_layers=1))
        ids, mask = tokens()
        x = {"encoder_token_ids": ids, "encoder_padding_mask": mask,
             "decoder_token_ids": np.roll(ids, 1, axis=1), "decoder_padding_mask": mask}
        inputs = {k: keras.Input((L,), dtype="int32", name=k) for k in x}
        m = keras.Model(inputs, keras.layers.Dense(3)(bb(inputs)["decoder_sequence_output"][:, 0]))
        return m, x, rng.integers(0, 3, N), sce
    raise ValueError(name)


def fix_keras_hub_configs():
    """A user's patches for two KerasHub 0.32 get_config() bugs (docs/models.md)."""
    from keras_hub.src.models.llama.llama_decoder import LlamaTransformerDecoder
    from keras_hub.src.models.vit.vit_layers import ViTPatchingAndEmbedding

    if getattr(ViTPatchingAndEmbedding, "_dc_patched", False):
        return
    vit_cfg = ViTPatchingAndEmbedding.get_config
    ViTPatchingAndEmbedding.get_config = lambda self: {k: v for k, v in vit_cfg(self).items()
                                                       if k not in ("num_patches", "num_positions")}
    ViTPatchingAndEmbedding._dc_patched = True
    LlamaTransformerDecoder.rope_scaling_factor = property(lambda self: self.rope_position_scaling_factor)
    llama_cfg = LlamaTransformerDecoder.get_config

    def cfg(self):
        c = llama_cfg(self)
        c["rope_position_scaling_factor"] = c.pop("rope_scaling_factor")
        c["rope_frequency_adjustment_factor"] = self.rope_frequency_adjustment_factor
        return c

    LlamaTransformerDecoder.get_config = cfg


def static_signature(name):
    import keras

    if name in ("gemma", "llama_fixed"):
        return [{"token_ids": keras.InputSpec(shape=(1, L), dtype="int32"),
                 "padding_mask": keras.InputSpec(shape=(1, L), dtype="int32")}]
    return None


# -- the chain (child) ----------------------------------------------------------------------------

def run_tflite(content, xs):
    import dc_keras

    it = dc_keras.runtime.Interpreter(model_content=content)
    runner = it.get_signature_runner()
    inputs = it.get_signature_list()["serving_default"]["inputs"]
    feed = {k: np.asarray(xs[k]) for k in inputs} if isinstance(xs, dict) else {inputs[0]: np.asarray(xs)}
    res = runner(**feed)
    return [res[k] for k in sorted(res)]


def chain(name, quants, tmp):
    import warnings

    import keras

    import dc_keras

    warnings.simplefilter("ignore")
    t0 = time.time()
    keras.utils.set_random_seed(0)
    model, x, y, loss = build(name)
    rec = {"model": name, "backend": keras.backend.backend(), "params": int(model.count_params())}

    def fit(m, callbacks=()):
        m.compile(keras.optimizers.Adam(1e-3), loss)
        m.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=list(callbacks))

    pruned = dc_keras.prune(model, dc_keras.schedules.PolynomialDecay(0.0, 0.7, 0, 6, frequency=2))
    report = pruned.compression_report
    rec["compressed_params"], rec["covered"] = int(report.covered_params), float(report.fraction)
    rec["left_dense"] = [{k: e[k] for k in ("layer", "type", "params")} for e in report.skipped]
    fit(pruned, [dc_keras.PruningCallback()])
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=4)
    fit(clustered)
    xs = {k: v[:8] for k, v in x.items()} if isinstance(x, dict) else x[:8]

    def round_trip(m, path):
        m.save(path)
        a = keras.tree.flatten(m.predict(xs, verbose=0))
        b = keras.tree.flatten(keras.saving.load_model(path).predict(xs, verbose=0))
        return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(a, b))

    rec["wrapped_round_trip_exact"] = round_trip(clustered, os.path.join(tmp, "clustered.keras"))
    final = dc_keras.strip(clustered)
    rec["stripped_round_trip_exact"] = round_trip(final, os.path.join(tmp, "final.keras"))
    sig = static_signature(name)
    if sig:
        xs = {k: v[:1] for k, v in xs.items()}
    for q in [None, *quants]:
        kw = {"input_signature": sig} if sig else {}
        if q == "int8":
            kw["representative_data"] = (
                (lambda: ({k: v[i:i + 1] for k, v in xs.items()} for i in range(len(next(iter(xs.values()))))))
                if isinstance(xs, dict) else xs)
        t1 = time.time()
        raw = dc_keras.export.to_tflite(final, pack=False, quantize=q, **kw)
        packed = dc_keras.export.pack(raw)
        a, b = run_tflite(raw, xs), run_tflite(packed, xs)
        rec[q or "float32"] = {"bytes": len(raw), "packed_bytes": len(packed), "ratio": len(raw) / len(packed),
                               "bit_exact": len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b)),
                               "seconds": round(time.time() - t1, 1)}
    rec["seconds"] = round(time.time() - t0, 1)
    return rec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(k for k, _ in MODELS))
    p.add_argument("--quantized", default="bert=float16+dynamic+int8,gpt2=dynamic",
                   help="MODEL=MODE+MODE,...: quantized exports besides float32")
    p.add_argument("--jax", default="hublayers,gpt2", help="models also run with KERAS_BACKEND=jax ('' for none)")
    p.add_argument("--json", default=None)
    p.add_argument("--child", nargs=3, metavar=("MODEL", "QUANTS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dc_keras-hub-") as tmp:
            rec = chain(args.child[0], [q for q in args.child[1].split("+") if q], tmp)
        with open(args.child[2], "w") as f:
            json.dump(rec, f)
        return rec
    import tempfile

    from _common import command_line, machine_info, record

    info = machine_info(frameworks=False)
    import keras_hub

    quants = dict(kv.split("=") for kv in args.quantized.split(",") if kv)
    runs = [(m, "tensorflow") for m in args.models.split(",")] + [(m, "jax") for m in args.jax.split(",") if m]
    rows, failures, t0 = [], [], time.time()
    for name, backend in runs:
        with tempfile.TemporaryDirectory(prefix="dc_keras-hub-") as d:
            out = os.path.join(d, "rec.json")
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
            q = quants.get(name, "") if backend == "tensorflow" else ""
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name, q, out], env=env,
                               capture_output=True, text=True, timeout=1800)
            if r.returncode != 0 or not os.path.exists(out):
                failures.append(f"{name} ({backend}): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
                print("FAILED", failures[-1], flush=True)
                continue
            with open(out) as f:
                rec = json.load(f)
        rec["label"] = dict(MODELS).get(name, name)
        rec["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(rec), flush=True)
        rows.append(rec)
    import keras

    result = {"benchmark": "keras_hub_models", "keras_hub": keras_hub.__version__, "keras": keras.__version__,
              "rows": rows, "failures": failures, "minutes": round((time.time() - t0) / 60, 1),
              "command": command_line(__file__, argv),
              "machine": dict(info, loadavg_after=[round(v, 2) for v in os.getloadavg()])}
    return record(args.json, result)


if __name__ == "__main__":
    main()
