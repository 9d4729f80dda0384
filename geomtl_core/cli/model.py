"""``geomtl train`` and ``geomtl evaluate`` (the latter in :mod:`geomtl_core.cli.evaluate`): train a bundle from
a config; evaluate it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geomtl_core.errors import InputError
from geomtl_core.files import check_run_folder

import yaml


def _parse_set(items: list[str] | None) -> dict:
    """``a.b=value`` overrides (YAML-typed values) into a nested dict."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def _check_data_root(root: str, given: bool) -> None:
    """A missing data folder is an error that says where the book's proxy data lives (data.root's default,
    data/proxy, is what ``geomtl data proxy --out data/proxy`` writes; ``make book`` writes elsewhere)."""
    path = Path(root)
    if path.is_dir():
        return
    found = sorted(str(p) + "/" for p in Path("data").glob("proxy_*_*px_*km") if p.is_dir())
    where = f" (here: {', '.join(found)})" if found else ""
    hint = "" if given else " (no --config given: the default data.root)"
    raise InputError(f"data folder {root} does not exist{hint}; the book's proxy data is in "
                     f"data/proxy_*_64px_100km/{where}, made by `make book`, or make one with `geomtl data proxy "
                     f"--out {root}`; then pass --set data.root=FOLDER or a --config")


CONFIG_HINT = "give a YAML experiment config (e.g. one of geomtl_core/configs/), or leave --config out for the defaults"


def _read_config(path: str | None) -> dict:
    """The config file's mapping ({} without one), checked: a missing, binary or malformed file is one clear line."""
    if not path:
        return {}
    from geomtl_core.cli.checks import require_text_file

    text = require_text_file(path, "config", CONFIG_HINT).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc}); {CONFIG_HINT}") \
            from exc
    if not isinstance(data or {}, dict):
        raise InputError(f"{path}: expected a mapping of config keys at the top level")
    return data or {}


def _cmd_train(args: argparse.Namespace) -> int:
    from geomtl_core.cli.checks import keras_verbose
    from geomtl_core.config import ExperimentConfig, deep_merge

    # the whole config is built and validated before torch/keras are imported and before anything is written
    data = _read_config(args.config)
    overrides = deep_merge(data, _parse_set(args.set))
    check_run_folder(args.out, args.resume)  # before torch and keras load
    if args.resume:  # --config/--set on top of the saved config; train() refuses unsafe changes
        saved = Path(args.out) / "config.yaml"
        cfg = ExperimentConfig.from_dict(deep_merge(ExperimentConfig.load(saved).to_dict(), overrides)) \
            if overrides and saved.exists() else None
    else:
        cfg = ExperimentConfig.from_dict(overrides)
        _check_data_root(cfg.data.root, given=bool(args.config) or "data" in overrides)
    from geomtl_core.training.trainer import train

    # Keras' per-step lines on a terminal only, never in a pipe (see keras_verbose)
    metrics = train(cfg, args.out, resume=args.resume, verbose=keras_verbose())
    if not metrics:  # a non-zero rank of a data-parallel run: rank 0 reports
        return 0
    best = metrics["val"]["methods"][metrics["val"]["best"]]
    print(json.dumps({"bundle": str(args.out), "val": best, "train_time_s": metrics["train_time_s"]}))
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl train`` and ``geomtl evaluate``."""
    t = sub.add_parser("train", help="train a multi-task model into a bundle folder")
    t.add_argument("--config", help="YAML experiment config (defaults for anything not given)")
    t.add_argument("--out", required=True, help="bundle folder")
    t.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint; "
                   "--config/--set may then change only train.epochs (other changes are refused)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. --set train.epochs=3")
    t.set_defaults(handler=_cmd_train)

    from geomtl_core.cli.evaluate import add_subcommand as add_evaluate

    add_evaluate(sub)  # geomtl_core/cli/evaluate.py
