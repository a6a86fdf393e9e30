"""The table of expected values: complete for every data set, used by the notebooks, and strict where measured."""
import json
import re
from pathlib import Path

import pytest

from vae_lib import expected
from vae_lib.data import DATASETS
from vae_lib.expected import MEASURED, TABLE, Range, expect

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _notebook_keys() -> list[str]:
    """The keys of every expect(...) call in the notebooks; an f-string key becomes a regular expression."""
    keys = []
    for path in NOTEBOOKS:
        source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        for is_f, key in re.findall(r'expect\((f?)"([^"]+)"', source):
            keys.append(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(key)) if is_f else re.escape(key))
    return keys


def test_every_key_has_a_range_for_every_data_set():
    for key, entry in TABLE.items():
        assert set(entry.ranges) == set(DATASETS), f"{key}: ranges for {sorted(entry.ranges)}"
        assert entry.what and entry.margin, f"{key} must say what it is and why its ranges are as wide as they are"
        assert re.fullmatch(r"\d\d\.[a-z0-9_]+", key), key


def test_measured_values_lie_in_their_ranges_and_only_measured_data_sets_claim_a_measurement():
    for key, entry in TABLE.items():
        for name, r in entry.ranges.items():
            if name in MEASURED:
                assert r.measured is not None, f"{key} on {name}: measured data set without a measured value"
                assert r.contains(r.measured), f"{key} on {name}: the measured {r.measured} lies outside {r}"
                assert r.low is not None or r.high is not None, f"{key} on {name}: a range that checks nothing"
            else:
                assert r.measured is None, f"{key} on {name}: {name} was not measured (not in MEASURED)"
    assert "mnist" not in MEASURED and {"fashion-mnist", "mnist-5k"} <= set(MEASURED)


def test_the_notebooks_and_the_table_name_the_same_numbers():
    patterns = _notebook_keys()
    assert patterns, "no notebook calls expect()"
    for pattern in patterns:
        assert any(re.fullmatch(pattern, key) for key in TABLE), f"a notebook checks {pattern!r}, which the table lacks"
    for key in TABLE:
        assert any(re.fullmatch(p, key) for p in patterns), f"{key} is in the table but no notebook checks it"


def test_expect_asserts_where_measured_and_prints_elsewhere(monkeypatch, capsys):
    key = next(iter(TABLE))
    monkeypatch.setitem(TABLE, key, expected.Entry("a number", "a margin", {
        "fashion-mnist": Range(1.0, 2.0, 1.5), "mnist-5k": Range(None, 0.0, -1.0), "mnist": Range(1.0, 2.0)}))
    assert expect(key, 1.2, "fashion-mnist") is True
    assert "ok" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"expected \[1, 2\] on fashion-mnist .*measured 1.5 .*got 2.5"):
        expect(key, 2.5, "fashion-mnist")
    with pytest.raises(AssertionError):
        expect(key, 0.5, "mnist-5k")
    with pytest.raises(AssertionError):
        expect(key, float("nan"), "fashion-mnist")
    assert expect(key, 9.0, "mnist") is False                          # not measured: printed, not asserted
    assert "printed, not asserted (outside that range)" in capsys.readouterr().out
    assert expect(key, 9.0, "fashion-mnist", full_run=True) is False   # a FULL_RUN was never measured
    assert "FULL_RUN" in capsys.readouterr().out
    with pytest.raises(KeyError, match="not in vae_lib.expected.TABLE"):
        expect("99.no_such_number", 1.0, "fashion-mnist")


def test_a_planted_wrong_value_fails(monkeypatch):
    """What CI relies on: a rehearsal-set range that excludes the measured value makes the check fail."""
    key = "04.test_elbo"
    r = TABLE[key].ranges["mnist-5k"]
    wrong = Range(r.measured + 50, r.measured + 60, r.measured + 55)
    monkeypatch.setitem(TABLE[key].ranges, "mnist-5k", wrong)
    with pytest.raises(AssertionError):
        expect(key, r.measured, "mnist-5k")


def test_recording_writes_one_line_per_check(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_EXPECTED_RECORD", str(tmp_path / "values.jsonl"))
    key = "04.test_elbo"
    expect(key, TABLE[key].ranges["fashion-mnist"].measured, "fashion-mnist")
    expect(key, 1e9, "mnist")
    lines = [json.loads(line) for line in (tmp_path / "values.jsonl").read_text().splitlines()]
    assert lines == [{"key": key, "dataset": "fashion-mnist", "value": TABLE[key].ranges["fashion-mnist"].measured},
                     {"key": key, "dataset": "mnist", "value": 1e9}]


def test_markdown_lists_every_key():
    text = expected.markdown()
    assert all(f"`{key}`" in text for key in TABLE) and "not measured" in text
