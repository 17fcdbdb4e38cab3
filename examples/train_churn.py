"""Train a scikit-learn churn model and export it as mlmesh takes it: ONNX (skl2onnx) plus a CSV sample.

    .venv/bin/python examples/train_churn.py [OUT_DIR]      # writes churn.onnx and churn_sample.csv

The pipeline (a scaler and gradient boosting) is the kind a team already has; skl2onnx writes it as a
graph that runs without scikit-learn, and the sample gives mlmesh the statistics its input rules use.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract_months"]


def churn_data(rows: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 20, rows).clip(15, 150)
    calls = rng.poisson(1.5, rows)
    contract = rng.choice([1, 12, 24], rows)
    risk = 0.04 * calls + 0.01 * (charges - 70) / 20 - 0.02 * tenure / 12 - 0.03 * (contract > 1)
    churned = (risk + rng.normal(0, 0.05, rows) > 0).astype(int)
    return np.column_stack([tenure, charges, calls, contract]).astype(np.float32), churned


def train(rows: int = 2000):
    """The fitted pipeline and its training rows."""
    x, y = churn_data(rows)
    model = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0))
    return model.fit(x, y), x


def main(out: Path) -> None:
    model, x = train()
    out.mkdir(parents=True, exist_ok=True)
    onnx_model = to_onnx(model, x[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    (out / "churn.onnx").write_bytes(onnx_model.SerializeToString())
    np.savetxt(out / "churn_sample.csv", x[:500], delimiter=",", header=",".join(FEATURES), comments="", fmt="%.4f")
    print(f"wrote {out / 'churn.onnx'} and {out / 'churn_sample.csv'} (features: {', '.join(FEATURES)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
