"""Writes the .tflite fixtures of tests/test_litert_torch_files.py with litert-torch (the
PyTorch -> LiteRT converter; ai-edge-torch 0.7.2 is only a renamed shim of it). Run it in a venv of
its own, never in the project's (README.md beside this file):

    python make_files.py OUT_DIR

Each model is PyTorch, seeded, with weights set here (no download): 90 % of every Linear weight
zero and the rest drawn from 16 values, as a pruned + clustered model has them."""
import os
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

import litert_torch
from litert_torch.generative.quantize import quant_attrs, quant_recipes
from litert_torch.hlfb import StableHLOCompositeBuilder


def pruned_clustered(lin, seed, zero=0.9, k=16):
    rng = np.random.default_rng(seed)
    w = lin.weight.detach().numpy()
    values = np.linspace(w.min(), w.max(), k).astype(np.float32)
    new = values[rng.integers(0, k, w.shape)]
    new[rng.random(w.shape) < zero] = 0
    lin.weight.data = torch.from_numpy(new)


class CompositeMLP(nn.Module):
    """32 -> 64 (inside a custom StableHLO composite: a STABLEHLO_COMPOSITE op whose weights live in
    its decomposition subgraph's caller) -> gelu -> 8."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 8)

    def forward(self, x):
        b = StableHLOCompositeBuilder(name="dc_test.linear_gelu", attr={"alpha": 0.5})
        x = b.mark_inputs(x)
        y = b.mark_outputs(F.gelu(self.fc1(x)))
        return self.fc2(y)


class MLP(nn.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(i, h), nn.Linear(h, o)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    comp = CompositeMLP().eval()
    pruned_clustered(comp.fc1, 1)
    pruned_clustered(comp.fc2, 2)
    # float32, two signatures of the same model (batch 1 and 2): three subgraphs (two signatures,
    # one decomposition) whose weights the converter stores once
    edge = (litert_torch.signature("b1", comp, (torch.randn(1, 32),))
            .signature("b2", comp, (torch.randn(2, 32),)).convert())
    edge.export(os.path.join(out, "composite_two_signatures.tflite"))
    # INT4 blockwise (32) dynamic-range weights, the recipe litert-torch offers for int4
    torch.manual_seed(1)
    big = MLP(64, 128, 16).eval()
    pruned_clustered(big.fc1, 5)
    pruned_clustered(big.fc2, 6)
    cfg = quant_recipes.full_dynamic_recipe(weight_dtype=quant_attrs.Dtype.INT4,
                                            granularity=quant_attrs.Granularity.BLOCKWISE_32)
    litert_torch.convert(big, (torch.randn(1, 64),), quant_config=cfg).export(
        os.path.join(out, "int4_blockwise32.tflite"))


if __name__ == "__main__":
    main(sys.argv[1])
