"""Tabular preprocessing and loaders: inference, missing values, unknown levels, storage, bad rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from epochal.data.tabular import MISSING, UNKNOWN, TabularPreprocessor
from epochal.data.tabular_loaders import MalformedRowsError, read_table, tabular_loaders


def _frame():
    return pd.DataFrame(
        {
            "color": [" red", "blue ", "red", "?", "green", "blue"],
            "size": [1.0, None, 3.0, 4.0, 5.0, 6.0],
            "count": [10, 20, 30, 40, 50, 60],
            "label": ["yes", "no.", " yes", "no", "yes.", "no"],
        }
    )


def test_columns_are_inferred_and_cleaned():
    prep = TabularPreprocessor(target="label").fit(_frame())
    assert prep.categorical == ["color"] and prep.continuous == ["size", "count"]
    assert prep.vocab["color"] == [UNKNOWN, MISSING, "blue", "green", "red"]
    assert prep.indicators == ["size"] and prep.categorical_columns == ["color", "size_na"]
    assert prep.cardinalities == [5, 3] and prep.n_continuous == 2
    assert prep.classes == ["no", "yes"] and prep.task == "classification"
    assert prep.transform_target(_frame()["label"]).tolist() == [1, 0, 1, 0, 1, 0]


def test_missing_values_are_filled_flagged_and_scaled():
    prep = TabularPreprocessor(target="label").fit(_frame())
    cat, cont = prep.transform(_frame())
    assert cat[:, 0].tolist() == [4, 2, 4, 1, 3, 2]  # '?' is the missing level
    assert cat[:, 1].tolist() == [1, 2, 1, 1, 1, 1]  # size_na: 2 where missing
    filled = torch.tensor([1.0, 4.0, 3.0, 4.0, 5.0, 6.0])  # median 4 fills the gap
    expected = (filled - filled.mean()) / filled.std(unbiased=False)
    assert torch.allclose(cont[:, 0], expected, atol=1e-6)
    assert torch.allclose(cont.mean(0), torch.zeros(2), atol=1e-6)


def test_minmax_scaling_reaches_minus_one_and_one():
    prep = TabularPreprocessor(target="label", scale="minmax").fit(_frame())
    _, cont = prep.transform(_frame())
    assert cont[:, 1].tolist() == pytest.approx([-1.0, -0.6, -0.2, 0.2, 0.6, 1.0])


def test_unseen_categories_and_text_in_numbers_are_handled_and_counted():
    prep = TabularPreprocessor(target="label").fit(_frame())
    new = pd.DataFrame({"color": ["purple", "red", None], "size": ["abc", 2.0, 3.0], "count": [1, 2, 3]})
    cat, _cont = prep.transform(new)
    assert cat[:, 0].tolist() == [0, 4, 1]  # unseen -> unknown level 0; missing -> its level
    assert prep.report["unseen"] == {"color": 1} and prep.report["coerced"] == {"size": 1}
    assert cat[0, 1] == 2  # text in a number column is treated as missing
    with pytest.raises(ValueError, match=r"\['count'\] are missing"):
        prep.transform(new.drop(columns=["count"]))
    with pytest.raises(ValueError, match="not seen when fitting"):
        prep.transform_target(pd.Series(["maybe"]))


def test_onehot_encoding():
    prep = TabularPreprocessor(target="label", encoding="onehot").fit(_frame())
    out = prep.transform(_frame())
    assert out.shape == (6, 5 + 3 + 2)
    assert torch.equal(out[:, :8].sum(1), torch.full((6,), 2.0))


def test_state_round_trip_gives_the_same_transform(tmp_path):
    prep = TabularPreprocessor(target="label", scale="minmax").fit(_frame())
    prep.save(tmp_path / "prep.json")
    loaded = TabularPreprocessor.load(tmp_path / "prep.json")
    json.loads((tmp_path / "prep.json").read_text())
    for a, b in zip(prep.transform(_frame()), loaded.transform(_frame())):
        assert torch.equal(a, b)
    assert loaded.state_dict() == prep.state_dict()
    with pytest.raises(RuntimeError, match="not fitted"):
        TabularPreprocessor().transform(_frame())


def test_explicit_columns_and_bad_choices():
    prep = TabularPreprocessor(categorical=["count", "color"], target="label").fit(_frame())
    assert prep.categorical == ["count", "color"] and prep.continuous == ["size"]
    assert prep.vocab["count"][1:] == ["10", "20", "30", "40", "50", "60"]
    only_cont = TabularPreprocessor(continuous=["size"], target="label").fit(_frame())
    assert only_cont.categorical == ["color", "count"]
    with pytest.raises(ValueError, match=r"\['color'\] hold text"):
        TabularPreprocessor(categorical=["count"], target="label").fit(_frame())
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        TabularPreprocessor(categorical=["nope"], target="label").fit(_frame())
    with pytest.raises(ValueError, match="scale="):
        TabularPreprocessor(scale="robust")


def test_regression_target():
    frame = _frame().assign(price=[1.5, 2.25, 3.1, 4.7, 5.2, 6.9])
    prep = TabularPreprocessor(target="price").fit(frame.drop(columns=["label"]))
    assert prep.task == "regression" and prep.num_classes is None
    assert prep.transform_target(frame["price"]).dtype == torch.float32


def test_malformed_csv_rows_are_skipped_or_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a, b, y\n1, x, yes\n2, y\n3, z, no, extra\n4, x, no.\n\n5, y, yes\n")
    with pytest.warns(UserWarning, match="malformed"):
        frame, skipped = read_table(path)
    assert skipped == [3, 4] and frame["a"].tolist() == [1, 4, 5]
    assert frame["b"].tolist() == ["x", "x", "y"]
    with pytest.raises(MalformedRowsError, match="line\\(s\\) 3, 4"):
        read_table(path, strict=True)


def test_tabular_loaders_from_a_frame():
    frame = pd.concat([_frame()] * 10, ignore_index=True)
    frame.loc[5, "label"] = "?"
    with pytest.warns(UserWarning, match="dropped 1 row"):
        dls = tabular_loaders(frame, "label", valid_pct=0.2, batch_size=8, seed=1)
    info = dls.info
    assert info["cardinalities"] == [5, 3] and info["n_continuous"] == 2 and info["num_classes"] == 2
    assert info["dropped_no_target"] == 1 and info["train_size"] + info["valid_size"] == 59
    assert dls.classes == ["no", "yes"]
    (cat, cont), y = next(iter(dls.train.iter_epoch(0)))
    assert cat.dtype == torch.long and cont.dtype == torch.float32 and y.dtype == torch.long
    assert sum(len(t) for _, t in dls.valid) == info["valid_size"]
    with pytest.warns(UserWarning, match="dropped 1 row"):
        again = tabular_loaders(frame, "label", valid_pct=0.2, batch_size=8, seed=1)
    assert torch.equal(next(iter(again.train.iter_epoch(0)))[1], y)
    with pytest.raises(ValueError, match="target='nope'"):
        tabular_loaders(frame.dropna(), "nope")


@pytest.mark.realdata
def test_adult_csv_as_is(adult_csv):
    dls = tabular_loaders(adult_csv, "income", valid_pct=0.2, seed=0, batch_size=512)
    info = dls.info
    assert dls.classes == ["<=50K", ">50K"]
    assert info["n_continuous"] == 6 and len(info["cardinalities"]) == 8
    assert info["train_size"] + info["valid_size"] == 32_561
    prep = info["preprocessor"]
    assert MISSING in prep.vocab["workclass"]  # '?' read as missing
    test_style = pd.DataFrame(
        {
            c: [" " + str(v)]
            for c, v in zip(
                [
                    "age",
                    "workclass",
                    "fnlwgt",
                    "education",
                    "education_num",
                    "marital_status",
                    "occupation",
                    "relationship",
                    "race",
                    "sex",
                    "capital_gain",
                    "capital_loss",
                    "hours_per_week",
                    "native_country",
                    "income",
                ],
                [
                    25,
                    "Private",
                    226802,
                    "11th",
                    7,
                    "Never-married",
                    "Machine-op-inspct",
                    "Own-child",
                    "Black",
                    "Male",
                    0,
                    0,
                    40,
                    "United-States",
                    ">50K.",
                ],
            )
        }
    )
    cat, _cont = prep.transform(test_style)
    assert (cat > 1).all() and prep.report["unseen"] == {}
    assert prep.transform_target(test_style["income"]).tolist() == [1]
    positives = torch.cat([y for _, y in dls.valid]).float().mean()
    assert 0.22 < float(positives) < 0.26


def _skewed_frame(n: int = 400):
    generator = torch.Generator().manual_seed(0)
    spiky = torch.where(torch.rand(n, generator=generator) < 0.9, 0.0, torch.rand(n, generator=generator) * 1e5)
    return pd.DataFrame({"spiky": spiky.numpy(), "normal": torch.randn(n, generator=generator).numpy(),
                         "y": ["a", "b"] * (n // 2)})


def test_quantile_scaling_maps_ranks_to_normal_scores():
    frame = pd.DataFrame({"x": [float(v) for v in range(1, 101)] * 3, "y": ["a", "b", "c"] * 100})
    prep = TabularPreprocessor(target="y", scale="quantile").fit(frame)
    _, cont = prep.transform(pd.DataFrame({"x": [50.5, 1.0, 100.0, 1e9, -1e9], "y": ["a"] * 5}))
    normal = torch.distributions.Normal(0.0, 1.0)
    assert cont[0, 0].item() == pytest.approx(0.0, abs=0.01)  # the median
    # the lowest and highest values, three rows each: the middle of their tied ranks (1.5 / 600 from the ends)
    assert normal.cdf(cont[1:3, 0]).tolist() == pytest.approx([1.5 / 597, 1 - 1.5 / 597], rel=0.02)
    # beyond the training range: clipped ranks (1e-7 from the ends), finite and past the extremes
    assert torch.isfinite(cont).all() and cont[3, 0] == -cont[4, 0] and cont[3, 0] > cont[2, 0]


def test_auto_scaling_picks_quantile_for_spiky_columns_and_keeps_it_in_the_state():
    frame = _skewed_frame()
    prep = TabularPreprocessor(target="y", scale="auto").fit(frame)
    assert prep.scales == {"spiky": "quantile", "normal": "standard"}
    _, cont = prep.transform(frame)
    assert cont[:, 1].mean().item() == pytest.approx(0.0, abs=1e-5)  # standard scores
    zeros = torch.tensor(frame["spiky"].to_numpy() == 0)
    # the 90% of zeros share one score, the middle of their ranks (about 0.45 -> -0.13), not -0.33 sd
    assert cont[zeros, 0].unique().numel() == 1
    assert torch.distributions.Normal(0.0, 1.0).cdf(cont[zeros, 0][0]).item() == pytest.approx(0.45, abs=0.01)
    again = TabularPreprocessor.from_json(prep.to_json())
    assert again.scales == prep.scales and torch.equal(again.transform(frame)[1], cont)


def test_a_state_saved_before_per_column_scales_still_loads():
    prep = TabularPreprocessor(target="label").fit(_frame())
    state = prep.state_dict()
    old = {k: v for k, v in state.items() if k not in ("scales", "bins")}
    assert torch.equal(TabularPreprocessor().load_state_dict(old).transform(_frame())[1], prep.transform(_frame())[1])


def test_piecewise_linear_bins_encode_the_position_inside_each_bin():
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": ["a", "b", "a", "b", "a"]})
    prep = TabularPreprocessor(target="y", bins=4, scale=None).fit(frame)
    assert prep.stats["x"]["edges"] == [0.0, 1.0, 2.0, 3.0, 4.0] and prep.n_continuous == 1 + 4
    _, cont = prep.transform(pd.DataFrame({"x": [2.5, -1.0, 9.0], "y": ["a"] * 3}))
    assert cont.tolist() == [[2.5, 1, 1, 0.5, 0], [-1.0, 0, 0, 0, 0], [9.0, 1, 1, 1, 1]]
    constant = TabularPreprocessor(target="y", bins=8).fit(pd.DataFrame({"x": [2.0] * 6, "y": ["a", "b"] * 3}))
    assert constant.n_continuous == 1  # one distinct value: no bin
    with pytest.raises(ValueError, match="bins=1 is not valid"):
        TabularPreprocessor(bins=1)
