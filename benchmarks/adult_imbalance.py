"""Imbalance remedies and baselines on the UCI Adult census table (24% positive), on one held-out split.

Rows, every one trained by the ``tabular-adult`` recipe with a few overrides, on the same training
rows, validation split and seed:

* ``plain``: cross-entropy, natural class frequencies, default output bias, argmax decisions;
* ``class_weights``: cross-entropy with ``loss.weight: balanced`` (King and Zeng 2001);
* ``oversample``: minority rows repeated until the classes are even (``data.balance: oversample``);
* ``focal_prior``: focal loss with gamma=2 (Lin et al. 2017) and the output bias at the class
  priors (``model.init_bias: priors``);
* ``recipe``: the recipe as shipped: its threshold chosen on the validation split for accuracy.

References fitted in the same run on the same training rows: one-hot logistic regression and
scikit-learn's ``HistGradientBoostingClassifier`` (native categorical splits). Every model is scored
on the held-out rows (a stratified, seeded share of the CSV no model sees) by AUROC, accuracy,
balanced accuracy and the F1 of the minority class ``>50K``. Prints one JSON object.

    python benchmarks/adult_imbalance.py [--csv ../shared/data/adult/adult.csv] [--rows plain,recipe]
        [--limit ROWS] [--set KEY=VALUE ...]

``--limit`` keeps a stratified, seeded share of the CSV (a quick check), ``--set`` overrides the
recipe for every row (e.g. ``epochs=3``), ``--jobs`` trains that many rows at once (one torch
thread each; on a shared machine it is the difference between minutes and an hour, and the
rows' ``wall_s`` then overlap).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "adult" / "adult.csv"
TARGET, POSITIVE = "income", ">50K"

#: Row name -> overrides of the ``tabular-adult`` recipe.
ROWS: dict[str, list[str]] = {
    "plain": ["data.balance=null", "model.init_bias=default", "trainer.decision=null"],
    "class_weights": ["data.balance=null", "loss.weight=balanced", "model.init_bias=default", "trainer.decision=null"],
    "oversample": ["data.balance=oversample", "model.init_bias=default", "trainer.decision=null"],
    "focal_prior": ["data.balance=null", "loss.name=focal", "loss.gamma=2.0", "model.init_bias=priors",
                    "trainer.decision=null"],
    "recipe": [],
}


def held_out_split(csv: Path, test_pct: float, seed: int, limit: int | None = None):
    """``(train_frame, test_frame)``: a stratified, seeded split of the CSV's labelled rows.

    Args:
        limit: keep only this many rows (a stratified, seeded sample) before splitting.
    """
    from sklearn.model_selection import train_test_split

    from epochal.data import read_table

    frame, _ = read_table(csv)
    label = frame[TARGET].astype(str).str.strip().str.rstrip(".")
    frame = frame.assign(**{TARGET: label})
    if limit is not None and limit < len(frame):
        frame, _ = train_test_split(frame, train_size=limit, stratify=label, random_state=seed)
        label = frame[TARGET]
    return train_test_split(frame, test_size=test_pct, stratify=label, random_state=seed)


def scores(y_true, p_positive, predicted) -> dict[str, float]:
    """AUROC of ``p_positive``; accuracy, balanced accuracy and minority F1 of ``predicted``."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    return {
        "auroc": round(float(roc_auc_score(y_true, p_positive)), 4),
        "accuracy": round(float(accuracy_score(y_true, predicted)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(y_true, predicted)), 4),
        "f1_minority": round(float(f1_score(y_true, predicted)), 4),
    }


def baselines(train, test, seed: int = 0) -> dict[str, dict[str, float]]:
    """One-hot logistic regression and HistGradientBoosting, fitted on ``train``, scored on ``test``."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, x_test = train.drop(columns=TARGET), test.drop(columns=TARGET)
    y, y_test = (train[TARGET] == POSITIVE).to_numpy(), (test[TARGET] == POSITIVE).to_numpy()
    categorical = [c for c in x if not pd.api.types.is_numeric_dtype(x[c])]
    numeric = [c for c in x if c not in categorical]
    onehot = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
    )
    logistic = make_pipeline(
        ColumnTransformer([("categorical", onehot, categorical), ("numeric", StandardScaler(), numeric)]),
        LogisticRegression(max_iter=2000),
    )
    out = {}
    start = time.perf_counter()
    p = logistic.fit(x, y).predict_proba(x_test)[:, 1]
    out["logistic_regression"] = {**scores(y_test, p, p > 0.5), "wall_s": round(time.perf_counter() - start, 1)}
    as_category = {c: x[c].astype("category") for c in categorical}
    x_cat = x.assign(**as_category)
    x_test_cat = x_test.assign(**{c: pd.Categorical(x_test[c], categories=as_category[c].cat.categories)
                                  for c in categorical})
    start = time.perf_counter()
    boosted = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    p = boosted.fit(x_cat, y).predict_proba(x_test_cat)[:, 1]
    out["hist_gradient_boosting"] = {**scores(y_test, p, p > 0.5), "wall_s": round(time.perf_counter() - start, 1)}
    return out


def recipe_row(train_csv: Path, test, overrides: list[str], out: Path, seed: int = 0) -> dict[str, float]:
    """Train ``tabular-adult`` with ``overrides`` on ``train_csv``; its scores on the ``test`` rows.

    Decisions are the run's own: its saved threshold when the recipe sets ``trainer.decision``,
    else argmax (``p > 0.5``).
    """
    from epochal.config import load_config
    from epochal.config.decision import decide, read_decision
    from epochal.config.experiment import train
    from epochal.config.inference import restore_model
    from epochal.data import TabularPreprocessor

    start = time.perf_counter()
    settings = [f"data.path={train_csv}", f"seed={seed}", "callbacks.progress_bar=null", "trainer.plots=false"]
    result = train(load_config("tabular-adult", [*settings, *overrides]), out=out, progress=False, device="cpu")
    model, _, info, _ = restore_model(result["run_dir"])
    prep = TabularPreprocessor().load_state_dict(info["preprocessor"])
    inputs = prep.transform(test)
    with torch.no_grad():
        probs = model(*inputs).float().softmax(-1)
    positive = info["classes"].index(POSITIVE)
    decision = read_decision(result["run_dir"])
    predicted = decide(probs, decision) == positive if decision else probs.argmax(-1) == positive
    y_test = (test[TARGET] == POSITIVE).to_numpy()
    row = scores(y_test, probs[:, positive].numpy(), predicted.numpy())
    row["threshold"] = round(float(decision["threshold"]), 4) if decision else 0.5
    return {**row, "epochs": result["epochs"], "wall_s": round(time.perf_counter() - start, 1)}


def _row_in_worker(*args) -> dict[str, float]:
    torch.set_num_threads(1)
    return recipe_row(*args)


def run(
    csv: Path, rows: list[str], test_pct: float = 0.2, seed: int = 0, limit: int | None = None,
    overrides: tuple[str, ...] = (), jobs: int = 1,
) -> dict:
    """The whole comparison: the split, the references, then each recipe row (``overrides`` last)."""
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    train, test = held_out_split(csv, test_pct, seed, limit)
    report = {
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "split": {
            "train": len(train),
            "held_out": len(test),
            "positive_share": round(float((test[TARGET] == POSITIVE).mean()), 4),
            "seed": seed,
        },
        "references": baselines(train, test, seed),
        "rows": {},
    }
    with tempfile.TemporaryDirectory(prefix="adult-imbalance-") as folder:
        train_csv = Path(folder) / "train.csv"
        train.to_csv(train_csv, index=False)
        work = {name: (train_csv, test, [*ROWS[name], *overrides], Path(folder) / name, seed) for name in rows}
        if jobs > 1:
            with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
                futures = {name: pool.submit(_row_in_worker, *args) for name, args in work.items()}
                report["rows"] = {name: future.result() for name, future in futures.items()}
        else:
            report["rows"] = {name: recipe_row(*args) for name, args in work.items()}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {list(ROWS)}")
    parser.add_argument("--test-pct", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="keep this many rows of the CSV (stratified)")
    parser.add_argument("--jobs", type=int, default=1, help="rows trained at once")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override, every row")
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    if not args.csv.is_file():
        parser.error(f"--csv {args.csv} does not exist (the shared Adult CSV lives in ../shared/data/adult/)")
    print(json.dumps(run(args.csv, rows, args.test_pct, args.seed, args.limit, tuple(args.overrides), args.jobs)))


if __name__ == "__main__":
    main()
