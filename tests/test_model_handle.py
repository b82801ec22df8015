"""A model that is not a Hugging Face text LM plugs in through a handle, families and merges untouched.

The model here is a tiny image network (convolutions, a channel-wise block output, a linear head),
wrapped by a handle written in this test. The LoRA and steering families train, store, load, apply
and remove adapters on it through the handle alone; merge methods take its conv-kernel deltas.
"""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lora_lab import catalog
from lora_lab.config import AdaptersConfig
from lora_lab.contracts import TRAINED_DIR, ModelHandle
from lora_lab.families.lora import LoraFamilyConfig, unmerged
from lora_lab.families.steer import SteerFamilyConfig
from lora_lab.merges import MergeParams, merge
from lora_lab.merges.svd import truncate

IMAGES = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(0))


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block(torch.relu(self.conv(x))).mean((2, 3)))


class ConvHandle:
    """The handle of an image model: inputs are image tensors, LoRA adapts the convolutions and the
    head, steering adds a per-channel vector to the block's feature map."""

    def __init__(self, module):
        self.module = module

    @property
    def device(self):
        return next(self.module.parameters()).device

    def encode(self, inputs):
        return {"x": torch.stack(list(inputs)).to(self.device)}

    def tokens(self, inputs):
        return len(inputs) * 6 * 6  # pixels

    def hidden(self, inputs):
        return self.module.block(torch.relu(self.module.conv(self.encode(inputs)["x"]))).flatten(1)

    def lora_targets(self):
        return ["conv", "block.0", "head"], False

    def steer_sites(self):
        return {"block": (4, 1, 1)}  # broadcasts over [batch, channels, height, width]

    def latency_step(self, inputs, rewrite=None, module=None):
        model = module or self.module
        return lambda: model(**self.encode(inputs))


class Regress:
    """A training objective (`training.Objective`): move the net's outputs towards a fixed target."""

    def batches(self, batch_size, steps, seed):
        for _ in range(steps):
            yield IMAGES

    def loss(self, model, batch):
        return ((model(batch) - torch.tensor([1.0, -1.0])) ** 2).mean()


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyConvNet()


def _train(family, fcfg, net, tmp_path: Path, seed=0):
    handle = ConvHandle(net)
    acfg = AdaptersConfig(steps=30, batch_size=8)
    meta = family.train(SimpleNamespace(handle=handle), fcfg, Regress(), acfg, seed, tmp_path, False, "test")
    tensors, factors = family.load(tmp_path)
    return handle, meta, tensors, factors


def test_the_handle_meets_the_contract(net):
    assert isinstance(ConvHandle(net), ModelHandle)


def test_steering_trains_and_applies_per_channel_on_a_conv_block(net, tmp_path):
    family = catalog.family("steer")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plain = net(IMAGES).detach()
    handle, meta, tensors, _ = _train(family, SteerFamilyConfig(lr=0.1), net, tmp_path)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {"block": (4, 1, 1)} and meta["n_params"] == 4
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # training left the base alone
    loss = Regress().loss
    with family.apply(handle, tensors):
        seen = {}
        h = net.block.register_forward_hook(lambda m, a, out: seen.__setitem__("out", out))
        steered = net(IMAGES).detach()
        h.remove()
        assert loss(net, IMAGES) < loss(lambda x: plain, IMAGES)  # trained towards the target
    torch.testing.assert_close(net(IMAGES).detach(), plain)  # removed: the hooks are gone
    # the vector is added per channel, at every pixel: the hooked output is the raw one plus v
    raw = net.block(torch.relu(net.conv(IMAGES))).detach()
    torch.testing.assert_close(seen["out"].detach(), raw + tensors["block"])
    assert not torch.allclose(steered, plain)


def test_lora_on_convolutions_merged_equals_peft_unmerged(net, tmp_path):
    """LoRA through the family on conv and linear layers: its factors' product, reshaped to each
    kernel and merged into the weights, gives what PEFT computes with the adapter unmerged."""
    family = catalog.family("lora")
    handle, meta, tensors, factors = _train(family, LoraFamilyConfig(rank=2, alpha=4.0, lr=1e-2), net, tmp_path)
    assert set(tensors) == {"conv", "block.0", "head"}
    assert tensors["conv"].shape == (4, 3 * 3 * 3)  # the kernel's delta as [out, in·k·k]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with family.apply(handle, tensors):
        merged = net(IMAGES).detach()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # restored bit-exactly
    adapter = SimpleNamespace(path=tmp_path, scale=1.0)
    with unmerged(net, [adapter]) as activate:
        peft_out = activate(1)(IMAGES).detach()
    torch.testing.assert_close(merged, peft_out, rtol=1e-5, atol=1e-5)
    # stacked: the second copy goes in through each conv and linear layer's own update_layer
    with family.apply(handle, {m: 2.5 * t for m, t in tensors.items()}):
        merged_twice = net(IMAGES).detach()
    with unmerged(net, [adapter, SimpleNamespace(path=tmp_path, scale=1.5)]) as activate:
        torch.testing.assert_close(activate(2)(IMAGES).detach(), merged_twice, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(merged, net(IMAGES).detach())
    # the sum of two adapters' conv deltas, re-compressed by SVD, applies as well
    summed = merge("svd", [tensors, tensors], ["a", "b"], MergeParams(rank=1))
    with family.apply(handle, summed):
        net(IMAGES)


def test_null_lora_on_convolutions_keeps_each_kernels_delta_norm(net, tmp_path):
    """The null control through the same handle: LoRA's adapter, trained alike, then random conv and
    linear factors whose delta has each module's trained norm; PEFT still loads it unmerged."""
    cfg = dict(rank=2, alpha=4.0, lr=1e-2)
    handle, _, real, _ = _train(catalog.family("lora"), LoraFamilyConfig(**cfg), net, tmp_path / "lora")
    family = catalog.family("null_lora")
    shutil.copytree(tmp_path / "lora", tmp_path / "null" / TRAINED_DIR)  # as the adapter stage hands it over
    family.derive(tmp_path / "null", 0)
    null, factors = family.load(tmp_path / "null")
    assert set(null) == set(real) == {"conv", "block.0", "head"}
    for m in real:
        assert null[m].shape == real[m].shape
        assert float(null[m].norm()) == pytest.approx(float(real[m].norm()), rel=1e-5), m
        assert abs(float(null[m].flatten() @ real[m].flatten() / (null[m].norm() * real[m].norm()))) < 0.5, m
    with family.apply(handle, null):
        merged = net(IMAGES).detach()
    with unmerged(net, [SimpleNamespace(path=tmp_path / "null", scale=1.0)]) as activate:
        torch.testing.assert_close(activate(1)(IMAGES).detach(), merged, rtol=1e-5, atol=1e-5)


def test_svd_takes_a_conv_kernel_as_a_matrix_and_refuses_a_vector():
    g = torch.Generator().manual_seed(1)
    kernel = torch.randn(6, 4, 3, 3, generator=g)
    low = truncate(kernel, 2, "conv.weight")
    assert low.shape == kernel.shape
    assert torch.linalg.matrix_rank(low.reshape(6, -1)) == 2
    u, s, vh = torch.linalg.svd(kernel.reshape(6, -1).double(), full_matrices=False)
    torch.testing.assert_close(low.reshape(6, -1).double(), (u[:, :2] * s[:2]) @ vh[:2])  # Eckart-Young, per filter row
    with pytest.raises(ValueError, match=r"svd: block\.bias has shape \(4,\)"):
        merge("svd", [{"block.bias": torch.ones(4)}], ["a"], MergeParams(rank=1))


def test_lora_needs_target_modules_only_where_the_handle_knows_none(net):
    class Unknown(ConvHandle):
        def lora_targets(self):
            return [], False  # an architecture the handle has no default for

    family = catalog.family("lora")
    assert family.peft_config(Unknown(net), LoraFamilyConfig(target_modules=["head"])).target_modules == {"head"}
    with pytest.raises(ValueError, match="family.target_modules: no default for TinyConvNet; set it explicitly"):
        family.peft_config(Unknown(net), LoraFamilyConfig())
