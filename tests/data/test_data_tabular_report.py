"""Nothing silently coerced in tables: each reinterpretation is a warning naming file, column and count,
and an entry of the data report; a one-class target and a file in the wrong encoding are errors.

Each test failed on the code before the data report (a one-class target trained to accuracy 1.0,
"forty" in a number column became the median without a word, a non-UTF-8 file failed with a bare
``UnicodeDecodeError``).
"""

from __future__ import annotations

import pandas as pd
import pytest

from epochal.data import FileEncodingError
from epochal.data.tabular import UNKNOWN, TabularPreprocessor
from epochal.data.tabular_loaders import read_table, tabular_loaders


def _table(path, rows: list[str], header: str = "colour,size,y"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _rows(n: int = 40) -> list[str]:
    colours = ("red", "green", "blue")
    return [f"{colours[i % 3]},{i / 10:.1f},{'yes' if i % 2 else 'no'}" for i in range(n)]


def test_single_class_target_is_refused_naming_column_and_value(tmp_path):
    path = _table(tmp_path / "one.csv", [f"red,{i},yes" for i in range(10)])
    with pytest.raises(ValueError, match=r"one\.csv: target column 'y' has the single value 'yes' in all 10"):
        tabular_loaders(path, target="y")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": [1, 1, 1]})
    with pytest.raises(ValueError, match="'label' has the single value '1'.*at least two classes"):
        tabular_loaders(frame, target="label")
    assert tabular_loaders(frame, target="label", task="regression", valid_pct=0.34).info["task"] == "regression"


def test_text_in_a_number_column_is_warned_with_file_column_and_count(tmp_path):
    rows = _rows()
    rows[3] = "red,forty,yes"
    path = _table(tmp_path / "t.csv", rows)
    expected = r"t\.csv \(train rows\): 1 text value\(s\) in number columns.*'size': 1 \(forty\)"
    with pytest.warns(UserWarning, match=expected):
        dls = tabular_loaders(path, target="y", continuous=["size"], valid_pct=0.25, seed=0)
    finding = next(f for f in dls.info["data_report"].tables if f.kind == "text_in_numeric")
    assert (finding.source, finding.column, finding.count, finding.part, finding.examples) == (
        str(path), "size", 1, "train", ("forty",))


def test_numbers_with_text_read_as_categories_are_warned(tmp_path):
    rows = _rows()
    rows[5] = "red,forty,no"
    path = _table(tmp_path / "t.csv", rows)
    with pytest.warns(UserWarning, match=r"column 'size' holds numbers and 1 text value\(s\) \(forty\).*continuous="):
        dls = tabular_loaders(path, target="y", valid_pct=0.25)
    assert "size" in dls.info["categorical"]  # inferred as before, but no longer silently
    kinds = [f.kind for f in dls.info["data_report"].tables]
    assert kinds == ["numbers_as_categories", "unseen_categories"]  # validation sizes are new "categories"


def test_an_all_missing_column_is_warned_and_reported(tmp_path):
    path = _table(tmp_path / "t.csv", [row + ",?" for row in _rows()], header="colour,size,y,notes")
    with pytest.warns(UserWarning, match=r"column 'notes' is empty \(all 30 values missing\)"):
        dls = tabular_loaders(path, target="y", valid_pct=0.25)
    finding = dls.info["data_report"].tables[0]
    assert (finding.kind, finding.column, finding.count, finding.source) == ("all_missing", "notes", 30, str(path))


def test_unseen_categories_at_evaluation_name_the_file(tmp_path):
    path = _table(tmp_path / "train.csv", _rows())
    prep = TabularPreprocessor(target="y").fit(read_table(path)[0])
    new = _table(tmp_path / "new.csv", ["purple,1.0,yes", "red,2.0,no", "purple,3.0,no", "teal,1.0,no"])
    frame, _ = read_table(new)
    expected = r"new\.csv: 3 value\(s\) of categories not seen.*'colour': 3 \(purple, teal\)"
    with pytest.warns(UserWarning, match=expected):
        cat, _cont = prep.transform(frame)
    assert cat[:, 0].tolist()[0] == 0 and prep.vocab["colour"][0] == UNKNOWN
    assert prep.findings[-1].kind == "unseen_categories" and prep.findings[-1].source == str(new)


def test_unseen_categories_of_the_validation_split_go_to_the_report(tmp_path):
    train = _table(tmp_path / "train.csv", _rows())
    valid = _table(tmp_path / "valid.csv", ["purple,1.0,yes", "red,2.0,no"])
    with pytest.warns(UserWarning, match=r"valid\.csv \(valid rows\): 1 value\(s\) of categories not seen"):
        dls = tabular_loaders(train, target="y", valid_data=valid)
    [finding] = dls.info["data_report"].tables
    assert (finding.kind, finding.part, finding.column, finding.count) == ("unseen_categories", "valid", "colour", 1)


def test_malformed_and_unlabelled_rows_are_in_the_report(tmp_path):
    rows = _rows()
    rows[7] = "red,1.0,yes,extra"
    rows[9] = "blue,2.0,"
    path = _table(tmp_path / "t.csv", rows)
    with pytest.warns(UserWarning, match="malformed"), pytest.warns(UserWarning, match=r"t\.csv: dropped 1 row"):
        dls = tabular_loaders(path, target="y", valid_pct=0.25)
    counts = dls.info["data_report"].table_counts()
    assert counts == {"malformed_rows": 1, "dropped_no_target": 1}
    assert dls.info["data_report"].tables[0].lines == (9,)  # the header is line 1


def test_a_non_utf8_file_names_its_line_and_the_option(tmp_path):
    path = tmp_path / "latin.csv"
    lines = ["colour,size,y", *_rows(6), "rouge,1.0,caf\xe9", "red,2.0,no"]
    path.write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    with pytest.raises(FileEncodingError, match=r"latin\.csv: line 8 is not valid utf-8 \(byte 0xe9") as info:
        tabular_loaders(path, target="y")
    assert info.value.line == 8 and "file_encoding" in str(info.value)
    dls = tabular_loaders(path, target="y", file_encoding="cp1252", valid_pct=0.3)
    assert "café" in dls.classes
    with pytest.raises(ValueError, match="'utf-9' is not known"):
        read_table(path, file_encoding="utf-9")


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(["colour,size,y", *_rows(10)]).encode())
    frame, _ = read_table(path)
    assert list(frame.columns) == ["colour", "size", "y"]
