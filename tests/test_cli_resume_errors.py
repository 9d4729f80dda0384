"""``--resume`` is explicit about config changes; the CLI prints input errors in one line and lets bugs
show their traceback."""

import json

from geomtl_core import cli
from geomtl_core.config import ExperimentConfig
from geomtl_core.errors import InputError
from geomtl_core.training.trainer import resume_config

import pytest


def _saved_run(tmp_path, epochs=3):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    ExperimentConfig.from_dict({"train": {"epochs": epochs}, "model": {"dropout": 0.2}}).save(out / "config.yaml")
    (out / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1, "logs": {}}))
    return out


def test_resume_refuses_changed_settings_naming_them(tmp_path, capsys):
    out = _saved_run(tmp_path)
    code = cli.main(["train", "--out", str(out), "--resume", "--set", "model.dropout=0.5", "--set", "train.lr=0.1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "model.dropout: saved 0.2, requested 0.5" in err and "train.lr: saved 0.01, requested 0.1" in err
    assert "train.epochs" in err  # says what may change
    assert not (out / "training_log.jsonl").exists()


def test_resume_accepts_more_epochs_and_records_it(tmp_path):
    out = _saved_run(tmp_path)
    requested = ExperimentConfig.from_dict({"train": {"epochs": 5}, "model": {"dropout": 0.2}})
    cfg = resume_config(out, requested)
    assert cfg.train.epochs == 5
    assert ExperimentConfig.load(out / "config.yaml").train.epochs == 5
    (event,) = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert event["event"] == "resume" and event["from_epoch"] == 1
    assert event["changed"] == {"train.epochs": {"saved": 3, "now": 5}}


def test_resume_without_changes_uses_the_saved_config(tmp_path):
    out = _saved_run(tmp_path)
    assert resume_config(out, None).train.epochs == 3
    same = ExperimentConfig.load(out / "config.yaml")
    assert resume_config(out, same) == same
    assert not (out / "training_log.jsonl").exists()


def test_input_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "p.csv"
    bad.write_text("img_id,gt_lat,gt_long,predicted_lat,predicted_long\na,95,0,0,0\n")
    assert cli.main(["score", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geomtl score: error:")
    with pytest.raises(InputError):
        cli.main(["--debug", "score", str(bad)])


def test_bugs_keep_their_traceback(monkeypatch):
    """A ValueError (or anything) that is not an input error is a bug: it propagates."""
    def broken(args):
        raise ValueError("internal invariant violated")

    from geomtl_core.cli import score

    monkeypatch.setattr(score, "_cmd_score", broken)
    with pytest.raises(ValueError, match="internal invariant"):
        cli.main(["score", "whatever.csv"])
