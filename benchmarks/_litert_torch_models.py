"""The PyTorch models of benchmarks/litert_torch_files.py, converted by litert-torch. Runs in
litert-torch's venv (benchmarks/_venv.py's ``litert_torch_venv``), never in the project's, with
tests/data/litert_torch/ (make_files.py: ``MLP``, ``pruned_clustered``) and torchvision's files on
PYTHONPATH:

    python _litert_torch_models.py OUT_DIR [NAME ...]

writes OUT_DIR/<name>.tflite for each model (all but ``big`` when no NAME is given) and
OUT_DIR/convert.json: per model its note, conversion seconds or error, and the packages' versions.
Every model seeds torch itself (``torch.manual_seed``), so each file is the same whichever others
are converted with it.

torchvision's PyPI wheel is built against CUDA torch (its ``_C`` extension needs
``libtorch_cuda.so``) while this venv has torch's CPU wheel; its model definitions are pure Python,
so ``_torchvision_models`` imports them with ``torchvision.extension`` stubbed out (no C ops: none
of resnet18's or mobilenet_v3_small's layers need one).
"""
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
import types

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

import litert_torch
from litert_torch.generative.quantize import quant_attrs, quant_recipes
from litert_torch.hlfb import StableHLOCompositeBuilder
from make_files import MLP, pruned_clustered

PACKAGES = ("litert-torch", "torch", "torchvision", "torchao", "ai-edge-litert", "litert-converter", "ai-edge-quantizer")


def _torchvision_models():
    """torchvision.models without torchvision's C extension (see the module's docstring)."""
    if "torchvision" not in sys.modules:
        spec = importlib.util.find_spec("torchvision")
        pkg = types.ModuleType("torchvision")
        pkg.__path__, pkg.__file__ = list(spec.submodule_search_locations), spec.origin
        ext = types.ModuleType("torchvision.extension")
        ext._has_ops = lambda: False

        def _assert_has_ops():
            raise RuntimeError("torchvision's C ops are not loaded (CPU torch, CUDA torchvision wheel)")

        ext._assert_has_ops = _assert_has_ops
        pkg.extension = ext
        sys.modules.update({"torchvision": pkg, "torchvision.extension": ext})
    import torchvision.models

    return torchvision.models


def _sparse_mlp(seed=1, i=256, h=512, o=10):
    """MLP(i, h, o), 90 % of each weight zero and the rest 16 values (one generator for both)."""
    torch.manual_seed(seed)
    m = MLP(i, h, o).eval()
    rng = np.random.default_rng(seed)  # default_rng(rng) is rng: both layers draw from it in turn
    for lin in (m.fc1, m.fc2):
        pruned_clustered(lin, rng)
    return m


class Attn(nn.Module):
    """Causal self-attention through F.scaled_dot_product_attention."""

    def __init__(self, d=32, h=4):
        super().__init__()
        self.h, self.qkv, self.o = h, nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class RNNNet(nn.Module):
    """``cell`` (nn.LSTM or nn.GRU)(16, 32), attribute ``lstm`` / ``gru``, over 10 steps, then Linear(32, 4)."""

    cell = None

    def __init__(self):
        super().__init__()
        self.attr = self.cell.__name__.lower()
        setattr(self, self.attr, self.cell(16, 32, batch_first=True))
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        y, _ = getattr(self, self.attr)(x)
        return self.fc(y[:, -1])


class LSTMNet(RNNNet):  # the class names are in the tensor names, so in the file's bytes
    cell = nn.LSTM


class GRUNet(RNNNet):
    cell = nn.GRU


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.c2(F.max_pool2d(F.relu(self.c1(x)), 2)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Comp(nn.Module):
    """Linear(64, 128) + gelu inside a custom StableHLO composite, then Linear(128, 8)."""

    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(64, 128), nn.Linear(128, 8)

    def forward(self, x):
        b = StableHLOCompositeBuilder(name="dc_test.linear_gelu", attr={"alpha": 0.5, "k": 3})
        return self.out(b.mark_outputs(F.gelu(self.fc(b.mark_inputs(x)))))


class BigMask(nn.Module):
    """Attention with a 128x128 bool causal mask, a zero position table and an int32 index constant."""

    def __init__(self, t=128):
        super().__init__()
        self.qkv = nn.Linear(32, 96)
        self.register_buffer("mask", torch.tril(torch.ones(t, t, dtype=torch.bool)))
        self.pos = nn.Parameter(torch.zeros(t, 32))
        self.idx = nn.Parameter(torch.arange(t, dtype=torch.int32).flip(0), requires_grad=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x + self.pos).view(b, t, 3, 4, 8).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        return y.transpose(1, 2).reshape(b, t, d)[:, self.idx]


class BigEmbedding(nn.Module):
    """Embedding(135000, 4096) (2.2 GB float32), mean over the ids, Linear(4096, 8)."""

    def __init__(self):
        super().__init__()
        self.e, self.fc = nn.Embedding(135000, 4096), nn.Linear(4096, 8)

    def forward(self, ids):
        return self.fc(self.e(ids).mean(1))


def _pt2e(m, args, per_channel, dynamic):
    """PT2E int8 (symmetric; static: calibrated on 4 random batches) through litert-torch's quantizer."""
    from torchao.quantization.pt2e import quantize_pt2e
    from litert_torch.quantize import pt2e_quantizer, quant_config

    q = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=dynamic))
    pm = quantize_pt2e.prepare_pt2e(torch.export.export(m, args).module(), q)
    for _ in range(4):
        pm(*[torch.randn_like(a) for a in args])
    qm = quantize_pt2e.convert_pt2e(pm, fold_quantize=False)
    return litert_torch.convert(qm, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=q))


def _int4_blockwise32():
    return quant_recipes.full_dynamic_recipe(weight_dtype=quant_attrs.Dtype.INT4,
                                             granularity=quant_attrs.Granularity.BLOCKWISE_32)


def _toy_llm(quant):
    """litert-torch's ToyModelWithKVCache, prefill + decode signatures, 90 % of each 2-D weight zero.
    Its generative layers import tensorflow.lite.python.schema_py_generated, which litert-torch does
    not install: ai_edge_litert's schema module is put in its place."""
    from ai_edge_litert import schema_py_generated as schema

    for name in ("tensorflow", "tensorflow.lite", "tensorflow.lite.python"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["tensorflow.lite.python.schema_py_generated"] = schema
    sys.modules["tensorflow.lite.python"].schema_py_generated = schema
    from litert_torch.generative.examples.test_models import toy_model_with_kv_cache as tm
    from litert_torch.generative.layers import kv_cache

    torch.manual_seed(0)
    config = tm.get_model_config()
    model = tm.ToyModelWithKVCache(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p[torch.rand(p.shape) < 0.9] = 0
    kv = kv_cache.KVCache.from_model_config(config.max_seq_len, config)
    tokens, pos = tm.get_sample_prefill_inputs()
    dt, dp = tm.get_sample_decode_inputs()
    return (litert_torch.signature("prefill", model, sample_kwargs={"tokens": tokens, "input_pos": pos, "kv_cache": kv})
            .signature("decode", model, sample_kwargs={"tokens": dt, "input_pos": dp, "kv_cache": kv})
            .convert(quant_config=quant))


def _convert(m, *shapes, **kw):
    args = tuple(torch.randn(*s) for s in shapes)
    return litert_torch.convert(m.eval(), args, **kw)


def _big():
    m = BigEmbedding().eval()
    with torch.no_grad():
        m.e.weight.mul_((torch.rand(m.e.weight.shape) < 0.1).float())
    return litert_torch.convert(m, (torch.randint(0, 135000, (1, 4)),), lightweight_conversion=True)


def _two_signatures():
    a, b = MLP(64, 256, 10).eval(), CNN().eval()
    return (litert_torch.signature("mlp", a, (torch.randn(1, 64),))
            .signature("cnn", b, (torch.randn(1, 3, 16, 16),)).convert())


def _transformer():
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    return _convert(nn.Sequential(nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)), (1, 8, 32))


#: name -> (note, builder). The builders run after torch.manual_seed(0).
MODELS = {
    "resnet18": ("torchvision resnet18(weights=None), 1x3x32x32, float32",
                 lambda: _convert(_torchvision_models().resnet18(weights=None), (1, 3, 32, 32))),
    "mobilenet_v3_small": ("torchvision mobilenet_v3_small(weights=None), 1x3x64x64, float32",
                           lambda: _convert(_torchvision_models().mobilenet_v3_small(weights=None), (1, 3, 64, 64))),
    "mobilenet_v3_small_dynamic": ("the same, quant_recipes.full_dynamic_recipe() (int8 per channel)",
                                   lambda: _convert(_torchvision_models().mobilenet_v3_small(weights=None), (1, 3, 64, 64),
                                                    quant_config=quant_recipes.full_dynamic_recipe())),
    "transformer_encoder": ("nn.TransformerEncoder, 2 layers, d_model 32, 4 heads, ff 64, 1x8x32", _transformer),
    "attention": ("F.scaled_dot_product_attention (causal), d 32, 4 heads, 1x8x32", lambda: _convert(Attn(), (1, 8, 32))),
    "lstm": ("nn.LSTM(16, 32) over 10 steps + Linear(32, 4)", lambda: _convert(LSTMNet(), (1, 10, 16))),
    "gru": ("nn.GRU(16, 32) over 10 steps + Linear(32, 4)", lambda: _convert(GRUNet(), (1, 10, 16))),
    "cnn_pt2e_static_per_channel": ("small CNN, PT2E static int8 per channel",
                                    lambda: _pt2e(CNN().eval(), (torch.randn(1, 3, 16, 16),), True, False)),
    "cnn_pt2e_static_per_tensor": ("small CNN, PT2E static int8 per tensor",
                                   lambda: _pt2e(CNN().eval(), (torch.randn(1, 3, 16, 16),), False, False)),
    "mlp_pt2e_dynamic": ("MLP 64-256-10, PT2E dynamic int8 per channel",
                         lambda: _pt2e(MLP(64, 256, 10).eval(), (torch.randn(1, 64),), True, True)),
    "mlp_dynamic": ("MLP 64-256-10, quant_recipes.full_dynamic_recipe()",
                    lambda: _convert(MLP(64, 256, 10), (1, 64), quant_config=quant_recipes.full_dynamic_recipe())),
    "mlp_weight_only": ("MLP 64-256-10, quant_recipes.full_weight_only_recipe()",
                        lambda: _convert(MLP(64, 256, 10), (1, 64), quant_config=quant_recipes.full_weight_only_recipe())),
    "mlp_fp16": ("MLP 64-256-10, quant_recipes.full_fp16_recipe()",
                 lambda: _convert(MLP(64, 256, 10), (1, 64), quant_config=quant_recipes.full_fp16_recipe())),
    "two_signatures": ("two signatures: mlp (MLP 64-256-10) and cnn (small CNN)", _two_signatures),
    "composite": ("custom StableHLO composite (dc_test.linear_gelu) around Linear(64, 128) + gelu, then Linear(128, 8)",
                  lambda: _convert(Comp(), (1, 64))),
    "sparse_mlp": ("MLP 256-512-10, 90 % of each weight zero, the rest 16 values, float32",
                   lambda: _convert(_sparse_mlp(), (1, 256))),
    "sparse_mlp_fp16": ("the same, quant_recipes.full_fp16_recipe()",
                        lambda: _convert(_sparse_mlp(), (1, 256), quant_config=quant_recipes.full_fp16_recipe())),
    "sparse_mlp_dynamic": ("the same, quant_recipes.full_dynamic_recipe() (int8 per channel)",
                           lambda: _convert(_sparse_mlp(), (1, 256), quant_config=quant_recipes.full_dynamic_recipe())),
    "sparse_mlp_pt2e_static": ("the same, PT2E static int8 per tensor",
                               lambda: _pt2e(_sparse_mlp(), (torch.randn(1, 256),), False, False)),
    "sparse_mlp_int4_blockwise32": ("the same, full_dynamic_recipe(INT4, BLOCKWISE_32)",
                                    lambda: _convert(_sparse_mlp(), (1, 256), quant_config=_int4_blockwise32())),
    "sparse_mlp_1024_dynamic": ("MLP 1024-1024-64, 90 % zeros, 16 values, quant_recipes.full_dynamic_recipe()",
                                lambda: _convert(_sparse_mlp(3, 1024, 1024, 64), (1, 1024),
                                                 quant_config=quant_recipes.full_dynamic_recipe())),
    "toy_llm": ("litert-torch's ToyModelWithKVCache (prefill + decode), 90 % of each 2-D weight zero, float32",
                lambda: _toy_llm(None)),
    "toy_llm_dynamic": ("the same, quant_recipes.full_dynamic_recipe()",
                        lambda: _toy_llm(quant_recipes.full_dynamic_recipe())),
    "bool_mask_attention": ("attention with a 128x128 bool causal mask, a zero position table, an int32 index constant",
                            lambda: _convert(BigMask(), (1, 128, 32))),
    "big": ("Embedding(135000, 4096) + Linear(4096, 8), 90 % of the embedding zero, unclustered, "
            "lightweight_conversion=True (2.2 GB)", _big),
}


def main(out, names):
    os.makedirs(out, exist_ok=True)
    rows = {}
    for name in names or [n for n in MODELS if n != "big"]:
        note, build = MODELS[name]
        t = time.time()
        torch.manual_seed(0)
        try:
            build().export(os.path.join(out, name + ".tflite"))
            rows[name] = {"note": note, "convert_seconds": round(time.time() - t, 1)}
        except Exception as exc:  # recorded, the others still run
            traceback.print_exc()
            rows[name] = {"note": note, "error": f"{type(exc).__name__}: {str(exc)[:1000]}"}
        print(name, rows[name], flush=True)
    versions = {p: importlib.metadata.version(p) for p in PACKAGES}
    versions["python"] = platform.python_version()
    with open(os.path.join(out, "convert.json"), "w") as f:
        json.dump({"versions": versions, "models": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
