"""Configs are validated whole before anything is imported or written (issue 24, items 1 and 8): every numeric
field has a range, a bad value is one line naming the key, the value and the range, an unknown key names
the closest valid one, and ``geomtl train`` reports it before torch is imported."""

import subprocess
import sys
import time

from geomtl_core.cli import main
from geomtl_core.config import CHOICES, RANGES, SPLITS, ExperimentConfig, flatten, validate_split_name
from geomtl_core.errors import InputError

import pytest

BAD = [
    ({"train": {"epochs": 0}}, "train.epochs=0", ">= 1"),
    ({"train": {"epochs": -1}}, "train.epochs=-1", ">= 1"),
    ({"train": {"lr": -5}}, "train.lr=-5.0", "> 0"),
    ({"train": {"lr": 0}}, "train.lr=0.0", "> 0"),
    ({"data": {"image_size": 0}}, "data.image_size=0", ">= 16"),
    ({"data": {"train_fraction": 0}}, "data.train_fraction=0.0", "in (0, 1]"),
    ({"data": {"train_fraction": 1.5}}, "data.train_fraction=1.5", "in (0, 1]"),
    ({"train": {"batch_size": 0}}, "train.batch_size=0", ">= 1"),
    ({"model": {"dropout": 1.0}}, "model.dropout=1.0", "in [0, 1)"),
    ({"train": {"weight_decay": -1e-4}}, "train.weight_decay=-0.0001", ">= 0"),
    ({"train": {"label_smoothing": 1}}, "train.label_smoothing=1.0", "in [0, 1)"),
    ({"partition": {"tau_min": 0}}, "partition.tau_min=0", ">= 1"),
    ({"partition": {"tau_min": 50, "tau_max": [100, 20]}}, "partition.tau_max=[100, 20]", ">= partition.tau_min"),
    ({"train": {"lr": float("nan")}}, "train.lr=nan", "> 0"),
]


def test_every_numeric_field_has_a_range():
    """Catches a numeric field added without a range (today no field has one: epochs 0, lr -5 were trained)."""
    numeric = {k for k, v in flatten(ExperimentConfig().to_dict()).items()
               if (isinstance(v, int | float) and not isinstance(v, bool))
               or (isinstance(v, list) and v and all(isinstance(x, int | float) for x in v))}
    assert numeric == set(RANGES)


@pytest.mark.parametrize(("overrides", "named", "allowed"), BAD)
def test_out_of_range_values_name_key_value_and_range(overrides, named, allowed):
    """Catches out-of-range values accepted by from_dict (today: epochs 0, lr -5, image_size 0 all pass)."""
    with pytest.raises(InputError) as err:
        ExperimentConfig.from_dict(overrides)
    message = str(err.value)
    assert "\n" not in message and named in message and allowed in message


def test_boundary_values_and_defaults_are_valid():
    """The closed ends of each range are allowed, and so is every default (the book's configs too)."""
    ExperimentConfig()
    ExperimentConfig.from_dict({"train": {"epochs": 1, "weight_decay": 0, "label_smoothing": 0.0},
                                "data": {"image_size": 16, "train_fraction": 1.0},
                                "model": {"dropout": 0.0}, "partition": {"tau_min": 5, "tau_max": [5]}})


def test_choices_are_checked_with_a_suggestion():
    """Catches a misspelt optimizer that only fails after torch is imported and the data read."""
    with pytest.raises(InputError, match=r"train.optimizer='adam' is not one of sgd, adamw; did you mean adamw\?"):
        ExperimentConfig.from_dict({"train": {"optimizer": "adam"}})


def test_choice_tables_match_the_modules_that_use_them():
    from geomtl_core.data.aux_labels import AUX_CONTROLS
    from geomtl_core.models.precision import POLICIES

    assert CHOICES["train.mixed_precision"] == POLICIES and CHOICES["data.aux_control"] == AUX_CONTROLS


@pytest.mark.parametrize(("overrides", "suggestion"), [
    ({"train": {"epoch": 3}}, "did you mean train.epochs?"),
    ({"epochs": 3}, "did you mean train.epochs?"),
    ({"trian": {"epochs": 3}}, "did you mean train?"),
    ({"data": {"imagesize": 32}}, "did you mean data.image_size?"),
])
def test_unknown_key_suggests_the_closest(overrides, suggestion):
    """Catches a typo reported without a suggestion (today: only the list of valid keys)."""
    with pytest.raises(InputError, match=suggestion.replace(".", r"\.").replace("?", r"\?")):
        ExperimentConfig.from_dict(overrides)


def test_train_with_invalid_set_exits_2_fast_before_torch_and_writes_nothing(tmp_path):
    """Catches validation after the heavy imports (today torch is imported first: 8-11 s) and a bundle written
    for epochs=-1 (today: exit 0 and a bundle of an untrained model)."""
    out = tmp_path / "B"
    code = ("import sys; from geomtl_core.cli import main; rc = main(['train', '--set', 'train.epochs=-1', "
            f"'--out', {str(out)!r}]); print(rc, 'torch' in sys.modules, 'keras' in sys.modules)")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    elapsed = time.perf_counter() - t0
    assert run.stdout.split() == ["2", "False", "False"], run.stdout + run.stderr
    assert run.stderr.strip().splitlines() == ["geomtl train: error: train.epochs=-1 is out of range: must be >= 1"]
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert elapsed < 10  # typically 0.5 s; the import check above is the real guard


def test_set_typo_says_did_you_mean(tmp_path, capsys):
    """Catches a --set typo reported without a suggestion."""
    assert main(["train", "--set", "train.epoch=3", "--out", str(tmp_path / "B")]) == 2
    assert "did you mean train.epochs?" in capsys.readouterr().err
    assert not (tmp_path / "B").exists()


def test_train_without_config_hints_where_the_book_data_is(tmp_path, capsys, monkeypatch):
    """Catches the bare 'data/proxy/train.csv not found' (today, after torch is imported) with no hint."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "proxy_all_64px_300km").mkdir(parents=True)
    assert main(["train", "--out", str(tmp_path / "B")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "data/proxy does not exist" in err and "data/proxy_*_64px_100km/" in err
    assert "data/proxy_all_64px_300km/" in err and "--set data.root=" in err
    assert not (tmp_path / "B").exists()


def test_validate_split_name():
    """Catches ``evaluate --split tset`` reported as a missing 'test' metadata file (helper for cli/model.py)."""
    assert [validate_split_name(s) for s in SPLITS] == list(SPLITS)
    with pytest.raises(InputError, match=r"unknown split name 'tset' \(valid: train, val, test\); did you mean test"):
        validate_split_name("tset")
