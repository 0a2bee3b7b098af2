"""The sanity study behind ``deepfusion sanity``: (a) idealised layers against the theory, judged;
(b) the transformer and feed-forward heads trained on the synthetic mixture, measured, never judged.

(a) is ``experiments.sanity.idealised_layers``. (b) gets each head's run through the run cache under
``<out>/runs`` (``experiments.runs.get_run``: a finished run of the same config is reused), measures
every block's tokens (``experiments.sanity.block_statistics``) and, for the transformer, its attention
layer by layer with its one-seed verdict (``experiments.analyze.analyze_run``). ``run_sanity`` returns
the typed, versioned ``SanityResult`` and writes it as ``sanity.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from deepfusion.errors import CheckFailed, ConfigError
from deepfusion.experiments.analyze import analyze_run
from deepfusion.experiments.pooling import quiet_nanmean
from deepfusion.experiments.runs import RunSpec, get_run
from deepfusion.experiments.sanity import block_statistics, idealised_layers
from deepfusion.experiments.sanity_record import (
    SANITY_FILE,
    AttentionLayer,
    HeadEval,
    SanityResult,
    TrainedHead,
    TrainedHeads,
)
from deepfusion.model.runs.layout import write_text_atomic
from deepfusion.model.runs.loading import load_run

PRESET = "synthetic"
# (b): budgets. Overrides apply to the synthetic preset; eval is cut to what the summary shows.
BUDGETS = {
    "quick": {"overrides": ["train.epochs=6", "eval.linear_epochs=20"], "batches": 3, "per_class": 8},
    "full": {"overrides": ["train.epochs=15", "model.depth=4"], "batches": 5, "per_class": 8},
}


def _attention_layers(record) -> list[AttentionLayer]:
    """The transformer's attention per layer (heads averaged) from its analysis record."""
    v = record.verdict
    return [
        AttentionLayer(
            v.layers[l],
            v.layers_ci[l],
            float(np.mean(e.heads["same_class_mass"])),
            quiet_nanmean(e.heads["predicted_same_class_mass"]),
            float(np.mean(e.heads["self_mass"])),
            float(np.mean(e.heads["positive_mass"])),
            quiet_nanmean(e.heads["beta_eff"]),
            quiet_nanmean(e.heads["beta_r2"]),
        )
        for l, e in enumerate(record.layers)
    ]


def trained_head(head: str, out_dir, budget: dict) -> TrainedHead:
    """One head of (b): its run from the cache (trained when missing), every block measured; the
    transformer's attention analysed as well."""
    spec = RunSpec(PRESET, (*budget["overrides"], f"model.head={head}", "train.device=cpu"))
    run = get_run(spec, Path(out_dir) / "runs")
    loaded = load_run(run.run_dir, "cpu")
    ev = HeadEval(*(run.eval.score(k) for k in ("knn", "linear", "head_loo1nn", "random_knn")))
    blocks = block_statistics(loaded.model, loaded.augment, loaded.test_ds, budget["batches"], budget["per_class"])
    if head != "transformer":
        return TrainedHead(run.eval.train_wall_s, ev, blocks)
    rec = analyze_run(run.run_dir, batches=budget["batches"], per_class=budget["per_class"], force=True)
    return TrainedHead(
        run.eval.train_wall_s,
        ev,
        blocks,
        _attention_layers(rec),
        rec.chance["same_class_mass"],
        rec.verdict.label,
        rec.verdict.decided_by,
    )


def trained_heads(out_dir, budget: dict) -> TrainedHeads:
    """(b): the transformer and ffn heads on the synthetic mixture, measured block by block."""
    return TrainedHeads(
        PRESET,
        list(budget["overrides"]),
        budget["batches"],
        budget["per_class"],
        trained_head("transformer", out_dir, budget),
        trained_head("ffn", out_dir, budget),
    )


def run_sanity(
    out_dir, quick: bool = False, check: bool = True, budget: dict | None = None, with_trained: bool = True
) -> SanityResult:
    """Run (a) and (b), write ``sanity.json`` into ``out_dir`` and return its record.

    ``check``: raise :class:`CheckFailed` (after writing the JSON) when (a) disagrees with the theory.
    ``budget``: override the (b) budget (keys of ``BUDGETS``' entries), e.g. for tests."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create output folder {out_dir} ({err.strerror}); pass a writable --out") from None
    start = time.perf_counter()
    idealised = idealised_layers(quick)
    trained = trained_heads(out_dir, budget or BUDGETS["quick" if quick else "full"]) if with_trained else None
    result = SanityResult(bool(quick), idealised, trained, time.perf_counter() - start, idealised.passed)
    write_text_atomic(out_dir / SANITY_FILE, json.dumps(result.to_json(), indent=1))
    if check and not result.passed:
        bad = [f"{r.regime} (seed {r.seed}): {'; '.join(r.failures)}" for r in idealised.rows if not r.passed]
        raise CheckFailed(
            "idealised layers disagree with the mean-field recursion: "
            + " | ".join(bad)
            + f"; details in {out_dir / SANITY_FILE}"
        )
    return result
