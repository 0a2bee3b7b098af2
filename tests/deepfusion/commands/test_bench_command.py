"""The benchmark compares one function two ways: our head and the nn.TransformerEncoderLayer reference agree."""

import argparse
import json

import pytest
import torch

from deepfusion.experiments.bench_head import reference_head
from deepfusion.model.network.transformer_head import TransformerHead


@pytest.mark.parametrize("m", [4, 30, 64])
def test_reference_head_computes_our_function_and_gradients(m):
    torch.manual_seed(m)
    ours = TransformerHead(24, dim=32, depth=3, heads=4, ffn_dim=48, out_dim=16).double()
    for p in ours.parameters():  # move off the initial values (zero biases, unit norms)
        p.data.add_(0.1 * torch.randn_like(p))
    ref = reference_head(ours).double()
    x = torch.randn(m, 24, dtype=torch.float64)
    out, out_ref = ours(x), ref(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (out_ref * w).sum().backward()
    torch.testing.assert_close(ours.blocks[1].attn.qkv.weight.grad, ref.layers[1].self_attn.in_proj_weight.grad)
    torch.testing.assert_close(ours.blocks[2].fc1.weight.grad, ref.layers[2].linear1.weight.grad)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reference_head_agrees_in_bf16_on_cuda():
    torch.manual_seed(0)
    ours = TransformerHead(512, dim=256, depth=6, heads=8, ffn_dim=1024, out_dim=512).cuda()
    ref = reference_head(ours)
    x = torch.randn(2048, 512, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = ours(x).float(), ref(x).float()
    assert (a - b).abs().max() < 0.1 * b.abs().max()  # bf16: a few units in the last place per layer


def test_bench_cli_quick_theory_writes_json(tmp_path, capsys):
    from deepfusion.commands import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["theory", "--quick", "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "b.json")]
    )
    assert bench.run(args) == 0
    data = json.loads((tmp_path / "b.json").read_text())
    th = data["theory"]
    assert data["machine"]["device"] == "cpu" and th["simulation_method"] == "blas" and th["blas_threads"] == 1
    # syrk M^2 d + symm 2 M^2 (d + 1) per layer instead of 4 M^2 d: 0.826 of 1.100 TFLOP
    assert th["simulation_tflop"] == pytest.approx(0.8263, rel=1e-3)
    assert th["simulation_general_tflop"] == pytest.approx(1.0995, rel=1e-3)
    out = capsys.readouterr().out
    assert "mean_field" in out and "TFLOP" in out


def _bench_args(argv):
    from deepfusion.commands import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench, parser.parse_args(argv)


def test_bench_train_config_times_the_presets_step_and_its_epochs(tmp_path, capsys):
    bench, args = _bench_args(
        [
            "train",
            "--config",
            "synthetic",
            "--set",
            "train.batch_size=64",
            "--set",
            "train.epochs=3",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--out",
            str(tmp_path / "b.json"),
        ]
    )
    assert bench.run(args) == 0
    row = json.loads((tmp_path / "b.json").read_text())["train_config"]
    assert (row["config"], row["backbone"], row["head"], row["batch"], row["threads"]) == (
        "synthetic",
        "mlp",
        "transformer",
        64,
        1,
    )
    assert row["steps_per_epoch"] == row["train_images"] // 64 and row["step_s"] > 0
    assert row["train_s"] == pytest.approx(3 * row["steps_per_epoch"] * row["step_s"])
    assert "train" not in json.loads((tmp_path / "b.json").read_text())  # the built-in models are not timed
    assert "synthetic (mlp, transformer head) batch 64" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["head", "--config", "synthetic"], "use it with 'train'"),
        (["train", "--set", "train.epochs=2"], "--config PRESET"),
        (["train", "--config", "no_such_preset"], "no_such_preset"),
        (["train", "--config", "synthetic", "--set", "train.no_such_key=1"], "no_such_key"),
    ],
)
def test_bench_config_refuses_bad_input_before_timing(tmp_path, argv, words):
    from deepfusion.errors import DeepFusionError

    bench, args = _bench_args(argv + ["--out", str(tmp_path / "b.json")])
    with pytest.raises(DeepFusionError, match=words):
        bench.run(args)
    assert not (tmp_path / "b.json").exists()
