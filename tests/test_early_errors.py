"""Input checked before anything heavy (issue 37, items 2 and 4): every ``geomtl`` command refuses a bad file,
option or path before torch or keras is imported, with exit status 2, one line on stderr and nothing written;
``predict`` lists the files that fail among readable ones once and exits 1; progress output only on a terminal.

The CLI runs in a subprocess through a small wrapper that records which heavy modules were imported by the
time the command returned: an error found after ``import torch`` fails the test (no timing is asserted)."""

import csv
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

from geomtl_core.cli import main

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_process import run_cli
from toydata import make_toy_dataset, train_tiny_bundle

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")  # the first bytes of a JPEG (JFIF)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def work(tmp_path):
    """A folder with what the commands are given: a bundle folder that passes the cheap checks (its model is a
    zip that is no Keras model: loading it would fail after keras is imported), a photo, a text file, an empty
    file, random bytes, an empty folder."""
    w = tmp_path / "work"
    bundle = w / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "labels.json").write_text(json.dumps({"partitionings": ["coarse", "fine"], "image_size": 32}))
    (bundle / "config.yaml").write_text("name: fake\n")
    with zipfile.ZipFile(bundle / "model.keras", "w") as z:
        z.writestr("config.json", "{}")
    (w / "photo.jpg").write_bytes(JPEG)
    (w / "notes.txt").write_text("not an image\n")
    (w / "empty.csv").write_bytes(b"")
    (w / "random.bin").write_bytes(bytes(range(7, 256)) * 8)
    (w / "nothing").mkdir()
    (w / "texts").mkdir()
    (w / "texts" / "a.txt").write_text("a\n")
    (w / "dup.csv").write_text("IMG_ID,LAT,LON\nphoto.jpg,1,2\nphoto.jpg,3,4\n")
    (w / "cells").mkdir()
    return w


CASES = [
    # (command line, words the one line must hold, files that must not appear)
    (["predict", "bundle", "missing.jpg", "--csv", "out.csv"], ["missing.jpg does not exist"], ["out.csv"]),
    (["predict", "bundle", "notes.txt", "--csv", "out.csv"], ["notes.txt is not an image", "give photo files"],
     ["out.csv"]),
    (["predict", "bundle", "nothing", "texts", "--json"], ["no image files in nothing", "1 files that are not"], []),
    (["predict", "bundle", "photo.jpg", "--truth", "random.bin", "--csv", "out.csv"],
     ["truth file random.bin is not a text file", "CSV or TSV"], ["out.csv"]),
    (["predict", "bundle", "photo.jpg", "--truth", "dup.csv"], ["dup.csv", "'photo.jpg' on lines 2, 3"], []),
    (["predict", "bundle", "photo.jpg", "--csv", "no/such/folder/out.csv"], ["folder no/such/folder does not exist"],
     []),
    (["predict", "no_bundle", "photo.jpg"], ["model bundle folder no_bundle does not exist"], []),
    (["predict", "notes.txt", "photo.jpg"], ["notes.txt is a file, not a model bundle"], []),
    (["evaluate", "bundle", "--images", ".", "--meta", "empty.csv"], ["metadata file empty.csv is empty"],
     ["bundle/eval-empty"]),
    (["evaluate", "bundle", "--images", ".", "--meta", "dup.csv"], ["dup.csv", "duplicate image ids"],
     ["bundle/eval-dup"]),
    (["evaluate", "bundle", "--images", ".", "--meta", "notes.txt"], ["notes.txt: no latitude/longitude columns"],
     []),
    (["evaluate", "bundle", "--data", "nowhere"], ["data folder nowhere does not exist"], []),
    (["import", "geoestimation", "random.bin", "--cells", "cells", "--out", "imported"],
     ["random.bin is not a PyTorch checkpoint"], ["imported"]),
    (["import", "geoestimation", "missing.ckpt", "--cells", "cells", "--out", "imported"],
     ["checkpoint missing.ckpt does not exist"], ["imported"]),
    (["score", "missing.csv"], ["prediction file missing.csv does not exist", "geomtl predict --csv"], []),
    (["score", "random.bin"], ["random.bin is not a text file"], []),
    (["compare", "empty.csv", "missing.csv"], ["empty.csv is empty"], []),
    (["train", "--config", "missing.yml", "--out", "run"], ["config missing.yml does not exist"], ["run"]),
    (["train", "--out", "run", "--resume"], ["nothing to resume"], ["run"]),
    (["partition", "build", "missing.csv", "--out", "cells_out"], ["coordinates file missing.csv does not exist"],
     ["cells_out"]),
]


@pytest.mark.parametrize("argv, words, absent", CASES, ids=[" ".join(c[0][:2]) + f" #{k}" for k, c in
                                                            enumerate(CASES)])
def test_bad_input_is_refused_before_torch(work, argv, words, absent):
    """Catches an input error found only after torch/keras (or the model) loaded, a traceback or an `[Errno 2]`
    instead of one line naming the file and what to do, and output (a predict CSV, an evaluate folder, a
    bundle) written before the refusal."""
    before = _files(work)
    rc, out, err, heavy = run_cli(argv, work, work.parent / "heavy.json")
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"geomtl {argv[0]}: error: "), err
    assert "[Errno" not in err and "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    assert heavy == [], f"imported {heavy} before refusing: {lines[0]}"
    assert _files(work) == before and not any((work / a).exists() for a in absent)
    assert out == ""


def test_evaluate_refuses_an_earlier_output_before_torch(work):
    """Catches `evaluate` loading the model (and reading every photo) before saying its output folder exists."""
    (work / "meta.csv").write_text("IMG_ID,LAT,LON\nphoto.jpg,1,2\n")
    (work / "bundle" / "eval-meta").mkdir()
    rc, _, err, heavy = run_cli(["evaluate", "bundle", "--images", ".", "--meta", "meta.csv"], work,
                                work.parent / "heavy.json")
    assert rc == 2 and "eval-meta exists" in err and "--overwrite" in err and heavy == []


def test_checkpoint_magic_accepts_what_torch_saves(tmp_path):
    """Catches the cheap checkpoint check refusing a real checkpoint: torch.save's zip format and the legacy
    pickle format both pass."""
    from geomtl_core.cli.checks import check_checkpoint

    import torch

    torch.save({"state_dict": {}}, tmp_path / "zip.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    assert check_checkpoint(tmp_path / "zip.ckpt") and check_checkpoint(tmp_path / "legacy.ckpt")


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("out_tty, err_tty, verbose", [(True, True, 1), (False, True, 2), (False, False, 0),
                                                       (True, False, 0)])
def test_train_prints_per_step_lines_only_on_a_terminal(tmp_path, monkeypatch, out_tty, err_tty, verbose):
    """Catches `geomtl train` leaving Keras' verbose at "auto" (per-step progress lines in a pipe or a log):
    per step on a terminal, per epoch when only stderr is one, nothing when stderr is not (bars go there)."""
    import geomtl_core.training.trainer as trainer

    seen = {}

    def fake_train(cfg, out, resume=False, verbose="auto"):
        seen["v"] = verbose
        return {}  # what a non-zero rank returns: nothing to print

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr(sys, "stdout", _Stream(out_tty))
    monkeypatch.setattr(sys, "stderr", _Stream(err_tty))
    assert main(["train", "--out", str(tmp_path / "run"), "--set", f"data.root={tmp_path}"]) == 0
    assert seen["v"] == verbose


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A tiny trained bundle (a few seconds)."""
    tmp = tmp_path_factory.mktemp("early")
    return train_tiny_bundle(make_toy_dataset(tmp / "toy", n_train=200, n_val=40), tmp / "bundle")


def test_predict_lists_failures_among_readable_photos_once(bundle_dir, shared, tmp_path, capsys):
    """Catches a failure printed twice (a FAILED table row and the summary), a missing or non-image file among
    good photos stopping the run, and exit status 0 when some failed: each failure is named once, the good
    photos are predicted, the CSV has a row per input, the status is 1."""
    photos = sorted((shared / "photos" / "landmarks").glob("*.jpg"))[:2]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    missing = tmp_path / "gone.jpg"
    argv = ["predict", str(bundle_dir), *map(str, photos), str(notes), str(missing), "--no-progress"]
    assert main(argv) == 1
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert text.count("notes.txt") == 1 and text.count("gone.jpg") == 1, text
    assert "2 of 4 images predicted, 2 failed" in text and "FAILED" not in text
    out = tmp_path / "out.csv"
    assert main([*argv, "--csv", str(out)]) == 1
    rows = list(csv.DictReader(out.open()))
    assert [bool(r["error"]) for r in rows] == [False, False, True, True]
    cap = capsys.readouterr()
    assert (cap.out + cap.err).count("gone.jpg") == 1


def test_landmarks_tsv_scores_the_same_photos_in_evaluate_and_predict(bundle_dir, shared, tmp_path, capsys):
    """Catches `evaluate --meta landmarks.tsv` failing with a garbled message (the TSV read as a CSV) while
    `predict --truth` reads it, and progress bars written into a pipe: both commands score the same photos with
    the same errors, and evaluate's stderr (not a terminal here) holds no progress bar."""
    folder = shared / "photos" / "landmarks"
    tsv = folder / "landmarks.tsv"
    assert main(["evaluate", str(bundle_dir), "--images", str(folder), "--meta", str(tsv), "--out",
                 str(tmp_path / "ev"), "--workers", "0"]) == 0
    cap = capsys.readouterr()
    assert "\r" not in cap.err and "it/s" not in cap.err, cap.err
    assert main(["predict", str(bundle_dir), str(folder), "--truth", str(tsv), "--csv", str(tmp_path / "p.csv"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["score", str(tmp_path / "ev" / "predictions.csv"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert main(["score", str(tmp_path / "p.csv"), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    n_photos = len(list(folder.glob("*.jpg")))
    assert evaluated["n"] == predicted["n"] == n_photos
    assert evaluated["median_km"] == pytest.approx(predicted["median_km"], abs=0.01)
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["data_report"]
    assert report["metadata_rows"] == 32 and report["metadata_without_image"] == 32 - n_photos
    shutil.rmtree(tmp_path / "ev")
