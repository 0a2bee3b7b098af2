"""Every layer of a trained head predicted from its weights over the analysis batches (S8-S12).

``layer_predictions(head, caps)`` runs ``experiments.layer_prediction.predict_layer`` on each block
with each captured batch's layer inputs, averages over batches, and sets the measured masses and
spread ratios beside the predictions, each prediction with the statement it comes from.
"""

from __future__ import annotations

import numpy as np

from deepfusion.experiments import metrics as mt
from deepfusion.experiments.block_params import block_params
from deepfusion.experiments.layer_prediction import SOURCES, predict_layer


def layer_predictions(head, caps: list[dict]) -> dict:
    """S8-S12 predictions of every layer from the head's weights and each batch's layer inputs
    (``experiments.layer_prediction``), averaged over batches, beside what was measured."""
    blocks = [block_params(b) for b in head.blocks]
    keys = (
        "predicted_mass",
        "predicted_mass_disp",
        "measured_mass",
        "predicted_r_ratio",
        "predicted_r_ratio_chain",
        "measured_r_ratio",
        "alpha",
        "margin",
    )
    per_head = ("beta_mu", "beta_e", "lambda_mu", "lambda_e")
    rows = {k: [] for k in keys + per_head}
    for cap in caps:
        T = np.asarray(cap["tokens"], dtype=np.float64)
        preds = [predict_layer(T[l], cap["labels"], cap["inst"], cap["visible"], blocks[l]) for l in range(len(blocks))]
        rows["predicted_mass"].append([p["same_class_mass"]["sym"] for p in preds])
        rows["predicted_mass_disp"].append([p["same_class_mass"]["disp"] for p in preds])
        rows["measured_mass"].append([p["same_class_mass"]["exact"] for p in preds])
        rows["predicted_r_ratio"].append([p["r_ratio"]["closed"] for p in preds])
        rows["predicted_r_ratio_chain"].append([p["r_ratio"]["chain"] for p in preds])
        rows["measured_r_ratio"].append(
            [
                mt.relative_spread(T[l + 1], cap["labels"]) / mt.relative_spread(T[l], cap["labels"])
                for l in range(len(preds))
            ]
        )
        rows["alpha"].append([p["alpha"] for p in preds])
        rows["margin"].append([p["margin"] for p in preds])
        for k in per_head:
            rows[k].append([[h[k] for h in p["heads"]] for p in preds])
    out = {k: np.mean(np.asarray(v, dtype=np.float64), axis=0).tolist() for k, v in rows.items()}
    out["sources"] = {
        "predicted_mass": SOURCES["same_class_mass.sym"],
        "predicted_mass_disp": SOURCES["same_class_mass.disp"],
        "predicted_r_ratio": SOURCES["r_ratio.closed"],
        "predicted_r_ratio_chain": SOURCES["r_ratio.chain"],
        **{k: SOURCES[k] for k in per_head + ("alpha", "margin")},
    }
    return out
