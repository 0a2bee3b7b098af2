"""layer_prediction against a real TransformerBlock (torch, float64).

Symmetric case: weights built so that S8/S9 hold exactly (scores beta_mu, beta_e and values lambda_mu,
lambda_e on the class-mean and deviation spans, constant LayerNorm gain, no biases, FFN off) and tokens
in the symmetric configuration: the S8 prediction equals the block's attention and the closed-form r
ratio equals the block's, to rounding, for post-LN and pre-LN.

Random weights (PyTorch's initialisation, D = 32, 4 heads, post-LN, tokens not normalised: 3 Gaussian
classes of 12 samples, two noisy views, positives visible; 5 seeds): the block's same-class mass is
0.24-0.34 (chance 0.31). `sym` (S8(b)) misses it by at most 6.5e-3, `block` (S8(a), no dispersion) by
up to 2.7e-2, `disp` (S8(d)) by at most 4.5e-3; the closed-form r ratio is within 5% of the block's
and the `chain` ratio within 1.1%. test_random_weights_report asserts these with margin.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from deepfusion.errors import DataError
from deepfusion.experiments import metrics as mt
from deepfusion.experiments.block_params import block_params
from deepfusion.experiments.layer_prediction import LEVELS, predict_layer
from deepfusion.model.network.attention import scope_mask
from deepfusion.model.network.transformer_head import TransformerBlock
from deepfusion.theory import configurations as cf
from deepfusion.theory import learned

C, N, D, H = 3, 4, 48, 2
HEADS = [(0.02, 0.05, 0.8, -0.4), (-0.01, 0.03, 0.5, 0.9)]  # (beta_mu, beta_e, lambda_mu, lambda_e) per head
GAMMA = 1.3


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def symmetric_block(cfg, norm):
    """A TransformerBlock whose heads satisfy S8/S9 on the configuration's spans; FFN and biases off."""
    blk = TransformerBlock(D, H, 16, norm, "both_views", 2, 0.0).double().eval()
    dh = D // H
    Wq, Wk, Wv, Wo = (np.zeros((D, D)) for _ in range(4))
    for h, (bm, be, lm, le) in enumerate(HEADS):
        L, R = cf.factorise(cf.symmetric_map(cfg, bm, be), dh)
        Wq[h * dh : (h + 1) * dh], Wk[h * dh : (h + 1) * dh] = L.T * dh**0.25, R * dh**0.25
        O, V = cf.factorise(cf.symmetric_map(cfg, lm, le), dh)
        Wo[:, h * dh : (h + 1) * dh], Wv[h * dh : (h + 1) * dh] = O, V
    with torch.no_grad():
        blk.attn.qkv.weight.copy_(_t(np.concatenate([Wq, Wk, Wv])))
        blk.attn.qkv.bias.zero_()
        blk.attn.proj.weight.copy_(_t(Wo))
        blk.attn.proj.bias.zero_()
        for ln in (blk.ln1, blk.ln2):
            ln.weight.fill_(GAMMA)
            ln.bias.zero_()
            ln.eps = 0.0
        blk.fc2.weight.zero_()
        blk.fc2.bias.zero_()
    return blk


def _run(blk, X):
    with torch.no_grad():
        out, w = blk(_t(X), need_weights=True)
    return out.numpy(), w.numpy()


@pytest.mark.parametrize("norm, nu", [("post", GAMMA * np.sqrt(D)), ("pre", 3.0)])
def test_symmetric_block_is_predicted_exactly(norm, nu):
    cfg = cf.symmetric_configuration(C, N, 0.7, D, nu, seed=1)
    blk = symmetric_block(cfg, norm)
    out, attn = _run(blk, cfg.X)
    y, inst = cfg.labels, np.arange(C * N)
    pred = predict_layer(cfg.X, y, inst, None, block_params(blk))
    nu_attn = GAMMA * np.sqrt(D)  # both norms: the heads see tokens of norm gamma sqrt(D) (S10)
    for h, (bm, be, lm, le) in enumerate(HEADS):
        hd = pred["heads"][h]
        want = learned.learned_block_weights(C, N, bm, be, 0.7, nu=nu_attn)
        assert np.allclose([hd["a_self"], hd["a_same"], hd["a_out"]], want, atol=1e-12)
        assert hd["beta_mu"] == pytest.approx(bm) and hd["beta_e"] == pytest.approx(be)
        assert hd["lambda_mu"] == pytest.approx(lm) and hd["lambda_e"] == pytest.approx(le)
        for lv in LEVELS:
            assert hd["same_class_mass"][lv] == pytest.approx(mt.same_class_mass(attn[h], y, inst), abs=1e-12)
    measured = mt.relative_spread(out, y) / mt.relative_spread(cfg.X, y)
    for kind in ("closed", "chain", "exact"):
        assert pred["r_ratio"][kind] == pytest.approx(measured, rel=1e-9), kind
    assert pred["alpha"] == pytest.approx(1.0 if norm == "post" else GAMMA * np.sqrt(D) / nu)


def _random_case(scope="both_views", seed=0):
    torch.manual_seed(seed)
    blk = TransformerBlock(32, 4, 64, "post", scope, 2, 0.0).double().eval()
    rng = np.random.default_rng(seed)
    n_inst, Cr = 36, 3
    labels = np.repeat(np.arange(Cr), n_inst // Cr)
    base = rng.standard_normal((Cr, 32))[labels] + 0.8 * rng.standard_normal((n_inst, 32))
    X = np.concatenate([base + 0.3 * rng.standard_normal(base.shape) for _ in range(2)])
    mask = scope_mask(scope, n_inst, 2)
    vis = np.ones((2 * n_inst,) * 2, bool) if mask is None else mask.numpy()
    return blk, X, np.tile(labels, 2), np.arange(2 * n_inst) % n_inst, vis


@pytest.mark.parametrize("scope", ["both_views", "per_view", "mask_pair"])
def test_block_params_reads_the_block(scope):
    blk, X, y, inst, vis = _random_case(scope)
    out, attn = _run(blk, X)
    pred = predict_layer(X, y, inst, vis, block_params(blk))
    for h in range(4):
        assert pred["heads"][h]["same_class_mass"]["exact"] == pytest.approx(
            mt.same_class_mass(attn[h], y, inst, vis), abs=1e-12
        )
        assert pred["heads"][h]["masses"]["exact"]["self"] == pytest.approx(mt.self_mass(attn[h]), abs=1e-12)
    assert pred["r_ratio"]["exact"] == pytest.approx(mt.relative_spread(out, y) / mt.relative_spread(X, y), rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_random_weights_report(seed):
    """The numbers of the module docstring, asserted with margin."""
    blk, X, y, inst, vis = _random_case(seed=seed)
    pred = predict_layer(X, y, inst, vis, block_params(blk))
    mass, ratio = pred["same_class_mass"], pred["r_ratio"]
    assert abs(mass["sym"] - mass["exact"]) < 1e-2 and abs(mass["disp"] - mass["exact"]) < 1e-2
    assert ratio["closed"] == pytest.approx(ratio["exact"], rel=0.1)
    assert ratio["chain"] == pytest.approx(ratio["exact"], rel=0.02)


def test_every_quantity_names_its_statement():
    blk, X, y, inst, vis = _random_case()
    pred = predict_layer(X, y, inst, vis, block_params(blk))
    keys = set(pred["heads"][0]) - {"masses", "a_self", "a_same", "a_out", "m", "n_class"}
    for k in keys | {"alpha", "ln", "margin", "ffn_lipschitz", "ffn_bounds"}:
        assert any(s == k or s.startswith(k + ".") for s in pred["sources"]), k


def test_bad_shapes_raise():
    blk, X, y, inst, vis = _random_case()
    with pytest.raises(DataError):
        predict_layer(X[:, :5], y, inst, vis, block_params(blk))
    with pytest.raises(DataError):
        predict_layer(X, y[:-1], inst, vis, block_params(blk))


def test_module_does_not_import_torch():
    code = "import sys, deepfusion.experiments.layer_prediction; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _pre_ln_ffn_case(scale, seed=0):
    """A pre-LN block with its attention output switched off (the FFN stage sees the block's input)
    and tokens whose residual stream is `scale` times LN's output norm: 3 classes, small deviations."""
    torch.manual_seed(seed)
    blk = TransformerBlock(D, H, 4 * D, "pre", "both_views", 2, 0.0).double().eval()
    with torch.no_grad():
        blk.attn.proj.weight.zero_()
        blk.attn.proj.bias.zero_()
        blk.attn.qkv.bias.zero_()
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((3, D)) * scale
    X = np.repeat(means, 8, 0) + rng.standard_normal((24, D)) * 0.01 * scale
    y = np.repeat(np.arange(3), 8)
    return blk, X, y, np.arange(24) % 12


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_pre_ln_ffn_factor_includes_layernorm(scale):
    """S12 in pre-LN: the FFN reads LN2(z) while the residual stream keeps its own norm, so the
    first-order FFN factor must scale the FFN's Jacobian by LN's; it then matches the exact stage to
    first order at any stream norm (the unscaled factor misses it once the stream is not LN-sized)."""
    blk, X, y, inst = _pre_ln_ffn_case(scale)
    pred = predict_layer(X, y, inst, None, block_params(blk))
    closed, exact = pred["r_stages"]["closed"]["ffn"], pred["r_stages"]["exact"]["ffn"]
    assert closed == pytest.approx(exact, rel=2e-3)
