"""Merge methods against hand computations, and incremental prefixes against from-scratch merges."""

import pytest
import torch

from lora_lab import catalog
from lora_lab.merges import MergeParams, accumulator, merge
from lora_lab.merges.lowrank import LowRank, densify, fused_sum
from lora_lab.merges.lowrank import dense as dense_

T = torch.tensor


def _one(name, deltas, **p):
    return merge(name, [{"w": d} for d in deltas], [f"a{i}" for i in range(len(deltas))], MergeParams(**p))["w"]


def test_sum_is_task_arithmetic():
    got = _one("sum", [T([[1.0, 2.0], [3.0, 4.0]]), T([[-1.0, 0.0], [1.0, 1.0]])], lam=0.5)
    torch.testing.assert_close(got, T([[0.0, 1.0], [2.0, 2.5]]))


def test_mean():
    got = _one("mean", [T([2.0, 4.0]), T([0.0, -2.0]), T([1.0, 1.0])])
    torch.testing.assert_close(got, T([1.0, 1.0]))


def test_ties_by_the_papers_steps():
    # density 0.5 keeps the 2 largest-magnitude entries of each delta
    d1, d2, d3 = T([4.0, -3.0, 0.5, 1.0]), T([-2.0, -1.0, 3.0, 0.1]), T([1.0, -5.0, -0.2, 2.0])
    # trimmed: [4,-3,0,0], [-2,0,3,0], [0,-5,0,2]; summed [2,-8,3,2] elects signs [+,-,+,+]
    # disjoint mean of agreeing non-zeros: [4], [-3,-5], [3], [2]
    torch.testing.assert_close(_one("ties", [d1, d2, d3], density=0.5), T([4.0, -4.0, 3.0, 2.0]))
    torch.testing.assert_close(_one("ties", [d1, d2, d3], density=0.5, lam=2.0), T([8.0, -8.0, 6.0, 4.0]))


def test_ties_of_one_delta_at_full_density_is_that_delta():
    d = T([[0.3, -1.0], [2.0, 0.0]])
    torch.testing.assert_close(_one("ties", [d], density=1.0), d)


def test_dare_drops_and_rescales():
    d = torch.linspace(1, 2, 10000)
    got = _one("dare", [d], drop=0.7, seed=3)
    kept = got != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.02  # each entry dropped with probability 0.7
    torch.testing.assert_close(got[kept], d[kept] / 0.3)  # survivors rescaled by 1 / (1 - p)
    assert abs(got.mean().item() / d.mean().item() - 1) < 0.03  # unbiased in expectation
    torch.testing.assert_close(_one("dare", [d], drop=0.0), d)  # p = 0 is plain task arithmetic


def test_dare_masks_follow_the_adapter_not_the_order():
    a, b = T([1.0] * 64), T([2.0] * 64)
    p = MergeParams(drop=0.5, seed=1)
    ab = merge("dare", [{"w": a}, {"w": b}], ["x", "y"], p)["w"]
    ba = merge("dare", [{"w": b}, {"w": a}], ["y", "x"], p)["w"]
    torch.testing.assert_close(ab, ba)
    other_seed = merge("dare", [{"w": a}, {"w": b}], ["x", "y"], MergeParams(drop=0.5, seed=2))["w"]
    assert not torch.equal(ab, other_seed)


def test_svd_keeps_the_dominant_directions():
    u1, u2 = T([1.0, 0.0, 0.0]), T([0.0, 1.0, 0.0])
    v1, v2 = T([0.0, 0.6, 0.8]), T([1.0, 0.0, 0.0])
    big, small = 3.0 * torch.outer(u1, v1), 1.0 * torch.outer(u2, v2)
    torch.testing.assert_close(_one("svd", [big, small], rank=1), big, atol=1e-6, rtol=0)
    torch.testing.assert_close(_one("svd", [big, small], rank=2), big + small, atol=1e-6, rtol=0)


def test_weight_one_merge_of_one_adapter_reproduces_it():
    d = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    for name in ("sum", "mean", "svd"):
        torch.testing.assert_close(_one(name, [d], rank=7), d)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"valid: \['composite', 'dare', 'mean', 'sum', 'svd', 'switch', 'ties'\]"):
        accumulator("magic", MergeParams())


# every registered method that merges into one delta, a new one included (the compositions at
# sampling time keep the deltas whole: test_routed_prefixes_keep_every_delta_whole)
MERGING = sorted(n for n, m in catalog.merges().items() if not m.sampler)


@pytest.mark.parametrize("name", MERGING)
def test_incremental_prefixes_equal_from_scratch(name):
    g = torch.Generator().manual_seed(0)
    deltas = [{"a": torch.randn(6, 4, generator=g), "b": torch.randn(3, 5, generator=g)} for _ in range(7)]
    ids = [f"ad{i}" for i in range(7)]
    p = MergeParams(lam=0.7, density=0.3, drop=0.4, rank=2, seed=5)
    acc = accumulator(name, p)
    for k in range(1, 8):
        acc.add(deltas[k - 1], ids[k - 1])
        inc, scratch = acc.result(), merge(name, deltas[:k], ids[:k], p)
        for key in ("a", "b"):
            torch.testing.assert_close(inc[key], scratch[key], rtol=1e-5, atol=1e-6)


def test_fused_low_rank_sum_is_the_sum_of_the_products():
    g = torch.Generator().manual_seed(1)
    factors = [{"w": (torch.randn(6, 2, generator=g), torch.randn(2, 5, generator=g))} for _ in range(4)]
    by_hand = sum(left @ right for f in factors for left, right in f.values())
    torch.testing.assert_close(fused_sum(factors)["w"], by_hand, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="different modules"):
        fused_sum([factors[0], {"v": factors[1]["w"]}])


@pytest.mark.parametrize("name", sorted(n for n, m in catalog.merges().items() if m.lowrank))
def test_low_rank_prefixes_equal_dense_from_scratch(name):
    """LoRA factors added to the accumulator, read at uneven prefixes (a pow2 schedule), give the
    dense from-scratch merge of every module (one that only factors reach too); a module only
    factors reach stays unexpanded (`LowRank`); dense and low-rank adds may be mixed."""
    g = torch.Generator().manual_seed(2)
    factors = [{m: (torch.randn(12, 1, generator=g), torch.randn(1, 10, generator=g)) for m in "ab"} for _ in range(9)]
    dense = [densify(f) for f in factors]
    dense[2] = {"a": dense[2]["a"]}  # the dense add at k = 3 touches module a only
    ids = [f"ad{i}" for i in range(9)]
    p = MergeParams(lam=0.7)
    acc = accumulator(name, p)
    for k in range(1, 10):
        if k == 3:
            acc.add(dense[k - 1], ids[k - 1])
        else:
            acc.add_lowrank(factors[k - 1], ids[k - 1])
        if k in (1, 2, 4, 6, 7, 8, 9):
            got = acc.result()
            assert set(got) == {"a", "b"}
            # a: dense from the k = 3 add on; b: factors only
            assert isinstance(got["a"], LowRank) == (k < 3) and isinstance(got["b"], LowRank)
            for m in "ab":
                expect = merge(name, [{m: d[m]} for d in dense[:k] if m in d], [i for d, i in zip(dense[:k], ids) if m in d], p)[m]
                if name == "mean":  # the mean is over all k adds, a module missing from one of them included
                    expect = expect * sum(m in d for d in dense[:k]) / k
                torch.testing.assert_close(dense_(got[m]), expect, rtol=1e-5, atol=1e-5)
            assert got["a"].shape == got["b"].shape == (12, 10)


def test_every_method_declares_where_it_applies_and_its_parameters():
    """The catalog's view: each space has sum; parameters shared by name agree on their default."""
    merges = catalog.merges()
    assert {"sum", "mean", "ties", "dare", "svd"} <= set(merges)
    assert catalog.methods_for("input") == ["sum"] and set(catalog.methods_for("output")) == {"sum", "mean"}
    assert {p.name: p.default for p in catalog.merge_params()} == {"lam": 1.0, "drop": 0.5, "rank": 16, "density": 0.2}
    assert MergeParams(rank=3).rank == 3 and MergeParams().density == 0.2
    with pytest.raises(TypeError, match="unknown merge parameters"):
        MergeParams(rnak=3)


def test_a_method_with_a_conflicting_default_is_refused():
    from lora_lab.catalog import MergeMethodSpec, Param

    bad = MergeMethodSpec("half", ("weight",), lambda d, i, p: d[0], lambda p: None, (Param("lam", 0.5, "λ"),))
    with pytest.raises(ValueError, match="parameter lam defaults to 0.5"):
        with catalog.registered(bad):
            pass
    assert "half" not in catalog.merges()


@pytest.mark.parametrize("lam", [1.0, "1/k"])
def test_sum_leave_one_out_is_the_stack_minus_lambda_k_times_the_delta(lam):
    """Leaving adapter i out of a task-arithmetic k-stack is exactly the stack minus λ_k·Δ_i (λ_k of
    all k, not of k - 1), which is λ_k times the sum of the others; dense and LoRA factors alike."""
    from lora_lab.merges.sum import lam_at

    g = torch.Generator().manual_seed(3)
    factors = [{"w": (torch.randn(5, 2, generator=g), torch.randn(2, 4, generator=g))} for _ in range(4)]
    dense = [densify(f) for f in factors]
    ids = [f"ad{i}" for i in range(4)]
    p = MergeParams(lam=lam)
    acc = accumulator("sum", p)
    for f, i in zip(factors, ids):
        acc.add_lowrank(f, i)
    stack, lam_k = dense_(acc.result()["w"]), lam_at(lam, 4)
    for i in range(4):
        loo = acc.without(dense[i], ids[i])["w"]
        assert torch.equal(loo, stack - lam_k * dense[i]["w"])  # exactly
        others = sum(d["w"] for j, d in enumerate(dense) if j != i)
        torch.testing.assert_close(loo, lam_k * others, rtol=1e-5, atol=1e-5)
    assert torch.equal(dense_(acc.result()["w"]), stack)  # the state is as it was


@pytest.mark.parametrize("name", MERGING)
def test_leave_one_out_is_the_others_merged_at_the_k_stacks_parameters(name):
    """Every method's `without`: the other k - 1 deltas merged from scratch with λ_k (the
    k-stack's λ); the mean keeps its 1/k, so it is (k - 1)/k times the others' mean."""
    from lora_lab.merges.sum import lam_at

    g = torch.Generator().manual_seed(4)
    deltas = [{"a": torch.randn(6, 4, generator=g)} for _ in range(5)]
    ids = [f"ad{i}" for i in range(5)]
    p = MergeParams(lam="1/sqrt(k)", density=0.3, drop=0.4, rank=2, seed=5)
    acc = accumulator(name, p)
    for d, i in zip(deltas, ids):
        acc.add(d, i)
    at_k = MergeParams(lam=lam_at(p.lam, 5), density=0.3, drop=0.4, rank=2, seed=5)
    for i in range(5):
        rest = [d for j, d in enumerate(deltas) if j != i]
        rest_ids = [x for j, x in enumerate(ids) if j != i]
        want = merge(name, rest, rest_ids, at_k)["a"] * (4 / 5 if name == "mean" else 1.0)
        torch.testing.assert_close(acc.without(deltas[i], ids[i])["a"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["switch", "composite"])
def test_routed_prefixes_keep_every_delta_whole(name):
    """A composition at sampling time: prefix k is the k deltas themselves, in order, under the
    method's rule, as from scratch; leaving one out keeps the others in order; the switch rotates."""
    from lora_lab.merges.routed import Routed

    g = torch.Generator().manual_seed(5)
    deltas = [{"a": torch.randn(3, 2, generator=g)} for _ in range(4)]
    ids = [f"ad{i}" for i in range(4)]
    acc = accumulator(name, MergeParams())
    for k in range(1, 5):
        acc.add(deltas[k - 1], ids[k - 1])
        r = acc.result()
        assert r == merge(name, deltas[:k], ids[:k], MergeParams()) and r.rule == name and r.k == k
        assert all(x is d for x, d in zip(r.deltas, deltas))  # whole, not summed or copied
    assert acc.without(deltas[1], "ad1").ids == ["ad0", "ad2", "ad3"]
    assert [acc.result().active(s) for s in range(6)] == [0, 1, 2, 3, 0, 1]
    with pytest.raises(KeyError):
        acc.result().without("ad9")
    with pytest.raises(ValueError, match="valid"):
        Routed("blend", deltas, ids)
    assert catalog.merge_method(name).sampler and catalog.merge_method(name).spaces == ("weight",)


def test_a_low_rank_sum_goes_into_linear_and_conv_weights_as_its_dense_sum():
    """`add_into` and `weight_edit` add a `LowRank` (a conv kernel's as [out, in·k·k]) as its
    expanded product, scale included, and never need it expanded; `weight_edit` restores exactly."""
    from lora_lab.interventions import add_into, weight_edit

    g = torch.Generator().manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Conv2d(3, 5, 3))
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    terms = {"0": [(torch.randn(6, 2, generator=g), torch.randn(2, 4, generator=g)) for _ in range(3)],
             "1": [(torch.randn(5, 2, generator=g), torch.randn(2, 27, generator=g)) for _ in range(3)]}
    lowrank = {n: LowRank(tuple(l for l, _ in t), tuple(r for _, r in t), 0.5) for n, t in terms.items()}
    by_hand = {n: 0.5 * sum(l @ r for l, r in t) for n, t in terms.items()}
    with weight_edit(model, lowrank):
        torch.testing.assert_close(model[0].weight - w0["0.weight"], by_hand["0"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close((model[1].weight - w0["1.weight"]).reshape(5, 27), by_hand["1"], rtol=1e-5, atol=1e-5)
    assert all(torch.equal(p, w0[n]) for n, p in model.named_parameters())
    add_into(model, {"0": lowrank["0"] / 0.5})
    torch.testing.assert_close(model[0].weight - w0["0.weight"], 2 * by_hand["0"], rtol=1e-5, atol=1e-5)
    assert torch.equal(dense_(lowrank["0"] * 2), 2 * lowrank["0"].dense())
