"""``geomtl train`` and ``geomtl evaluate``: train a bundle from a config; evaluate it on a split."""

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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from geomtl_core.config import merge
    from geomtl_core.data.loaders import load_meta, split_loader
    from geomtl_core.inference.evaluation import evaluate_split
    from geomtl_core.models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    data = Path(args.data)
    root, split = (data.parent, data.stem) if data.suffix == ".csv" else (data, args.split)
    cfg = merge(bundle.config, {"data": {"root": str(root), "test": split, "five_crop": args.five_crop,
                                         "workers": args.workers}})
    meta = load_meta(cfg, "test")
    hierarchy = bundle.hierarchy if bundle.labels.get("hierarchical", True) and not args.no_hierarchy else None
    split_data = split_loader(cfg, "test", meta, bundle.parts, train=False)
    out_csv = Path(args.out) if args.out else bundle.path / f"predictions_{split}.csv"
    res = evaluate_split(bundle.model, split_data, bundle.parts, hierarchy, out_csv, progress=not args.json)
    best = res["methods"][res["best"]]
    if args.json:
        print(json.dumps({k: best[k] for k in ("n", "acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km",
                                              "median_km", "mean_km", "geoscore")} | {"skipped": res["skipped"]}))
    else:
        print(f"{args.bundle} on {split} ({res['best']}): {res['n']} images scored, {res['skipped']} unreadable "
              f"skipped; predictions in {out_csv}")
        for name, m in res["methods"].items():
            accs = " ".join(f"{m[f'acc_{t}km']:.3f}" for t in (1, 25, 200, 750, 2500))
            print(f"  {name:>16}: acc@1/25/200/750/2500 km {accs}  median {m['median_km']:.0f} km")
        for t, a in res["scene_accuracy"].items():
            print(f"  scene {t}: top-1 {a:.3f}")
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

    e = sub.add_parser("evaluate", help="evaluate a bundle on a split; writes a per-image predictions CSV")
    e.add_argument("bundle")
    e.add_argument("--data", required=True, help="data folder with SPLIT.csv and SPLIT/ shards, or a SPLIT.csv")
    e.add_argument("--split", default="test")
    e.add_argument("--out", help="predictions CSV (default: BUNDLE/predictions_SPLIT.csv)")
    e.add_argument("--json", action="store_true", help="print the geomtl score JSON keys, plus skipped")
    e.add_argument("--five-crop", action="store_true", help="five-crop test-time augmentation")
    e.add_argument("--no-hierarchy", action="store_true", help="use the finest partitioning alone")
    e.add_argument("--workers", type=int, default=2)
    e.set_defaults(handler=_cmd_evaluate)
