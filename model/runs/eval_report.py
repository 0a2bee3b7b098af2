"""An evaluation in words: each accuracy with its 95% interval beside its baseline, and the settings used.

``deepfusion train`` and ``deepfusion eval`` print the :class:`EvalResult` they got with
:func:`format_table`; nothing here reads a file.
"""

from __future__ import annotations

from deepfusion.model.runs.eval_result import BASELINE, LABELS, EvalResult
from deepfusion.model.runs.intervals import compare_intervals


def fmt_score(ev: EvalResult, name: str) -> str:
    """``0.9120 [0.8800, 0.9350]``: an accuracy and its Wilson 95% interval ("-" when missing)."""
    value = ev.score(name)
    if value is None:
        return "-"
    ci = ev.interval_of(name)
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{value:.4f}"


def reading(ev: EvalResult, name: str) -> str:
    """``above random backbone`` / ``tied with random backbone (95% intervals overlap)`` / ``BELOW ...``;
    empty when either interval is missing."""
    what = LABELS[name][1]
    word = compare_intervals(ev.interval_of(name), ev.interval_of(BASELINE[name]))
    return {
        "above": f"above {what}",
        "below": f"BELOW {what}",
        "tied": f"tied with {what} (95% intervals overlap)",
    }.get(word, "")


def format_table(ev: EvalResult) -> str:
    """Metric, trained model and baseline columns (with 95% intervals), the reading in words, then the
    settings used."""
    lines = [f"{'metric':<25} {'trained [95% CI]':<24} {'baseline [95% CI]':<24} reading"]
    for name, (label, what) in LABELS.items():
        base_text = fmt_score(ev, BASELINE[name])
        lines.append(
            f"{label:<25} {fmt_score(ev, name):<24} {base_text:<24} "
            f"{reading(ev, name) or (what if base_text != '-' else '')}".rstrip()
        )
    fraction = 1.0 if ev.linear_fraction is None else ev.linear_fraction
    lines.append(
        f"kNN k={ev.knn_k} t={ev.knn_t}; linear probe on {100 * fraction:g}% of train, {ev.linear_epochs} "
        f"L-BFGS iterations, the same for the trained and the random backbone; head 1-NN over "
        f"{ev.head_batches} test batches of {ev.head_batch_min}-{ev.head_batch_max}"
    )
    lines.append(
        f"{ev.n_train} train / {ev.n_test} test samples; offline, final epoch, test split; intervals: Wilson score, 95%"
    )
    return "\n".join(lines)


def format_lines(ev: EvalResult) -> list[str]:
    """One line per measured accuracy of the trained model, its baseline and the reading beside it."""
    lines = []
    for name, (label, what) in LABELS.items():
        if ev.score(name) is None:
            continue
        beside = (
            f"   {what} {fmt_score(ev, BASELINE[name])}   {reading(ev, name)}"
            if ev.score(BASELINE[name]) is not None
            else ""
        )
        lines.append(f"  {label:<25} {fmt_score(ev, name)}{beside}")
    return lines
