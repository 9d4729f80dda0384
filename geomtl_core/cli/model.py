"""``geomtl train`` and ``geomtl evaluate`` (the latter in :mod:`geomtl_core.cli.evaluate`): train a bundle from
a config; evaluate it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geomtl_core.errors import InputError

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
                     f"data/proxy_*_64px_300km/{where}, made by `make book`, or make one with `geomtl data proxy "
                     f"--out {root}`; then pass --set data.root=FOLDER or a --config")


def _cmd_train(args: argparse.Namespace) -> int:
    from geomtl_core.config import ExperimentConfig, deep_merge

    # the whole config is built and validated before torch/keras are imported and before anything is written
    data = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    if not isinstance(data or {}, dict):
        raise InputError(f"{args.config}: expected a mapping of config keys at the top level")
    overrides = deep_merge(data or {}, _parse_set(args.set))
    if args.resume:  # --config/--set on top of the saved config; train() refuses unsafe changes
        saved = Path(args.out) / "config.yaml"
        cfg = ExperimentConfig.from_dict(deep_merge(ExperimentConfig.load(saved).to_dict(), overrides)) \
            if overrides and saved.exists() else None
    else:
        cfg = ExperimentConfig.from_dict(overrides)
        _check_data_root(cfg.data.root, given=bool(args.config) or "data" in overrides)
    from geomtl_core.training.trainer import train

    metrics = train(cfg, args.out, resume=args.resume)
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
