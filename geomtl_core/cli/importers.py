"""``geomtl import``: turn published weights into a geomtl bundle (offline; nothing is downloaded)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geomtl_core.errors import InputError


def _check_import(args: argparse.Namespace) -> None:
    """The checkpoint (by its first bytes), the cells folder, the hparams file and the new bundle's place, checked
    before torch is imported to read the checkpoint."""
    from geomtl_core.cli.checks import check_checkpoint, require_folder, require_text_file

    check_checkpoint(args.checkpoint)
    require_folder(args.cells, "cells folder", "give GeoEstimation's geo-cells/ folder (cells_50_5000.csv, ...)")
    if args.hparams:
        require_text_file(args.hparams, "hparams file", "give their hparams.yaml, or leave --hparams out")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists; choose a new bundle folder")


def _cmd_import_geoestimation(args: argparse.Namespace) -> int:
    _check_import(args)
    from geomtl_core.models.geoestimation import import_geoestimation

    out = import_geoestimation(args.checkpoint, args.cells, args.out, hparams=args.hparams)
    labels = json.loads((out / "labels.json").read_text())
    print(f"bundle {out}: GeoEstimation {labels['imported_from']['checkpoint']} with partitionings "
          f"{', '.join(labels['partitionings'])}; `geomtl evaluate` and `geomtl predict` use it as is")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl import geoestimation``."""
    imp = sub.add_parser("import", help="turn published weights into a geomtl bundle",
                         description="Turn published weights into a geomtl bundle (offline).")
    kinds = imp.add_subparsers(dest="kind", required=True)
    g = kinds.add_parser(
        "geoestimation", help="GeoEstimation's released PyTorch checkpoint (e.g. base(M, f*))",
        description="Import GeoEstimation's released PyTorch Lightning checkpoint (ResNet-50 and one linear head "
                    "per partitioning) with its published cells files. The bundle evaluates with their test "
                    "recipe: resize to 256, five 224 crops, ImageNet normalisation, softmax, maximum over crops, "
                    "the hierarchy's product (f*).")
    g.add_argument("checkpoint", help="the released .ckpt you already hold (its authors withdrew it; "
                                      "see book/responsible_use.md)")
    g.add_argument("--hparams", help="their hparams.yaml (partitionings: shortnames, files); default: the "
                                     "checkpoint's own hyper-parameters, else base(M)'s cells_50_{5000,2000,1000}")
    g.add_argument("--cells", required=True, help="folder with the cells CSVs the hparams name "
                                                  "(GeoEstimation's geo-cells/)")
    g.add_argument("--out", required=True, help="new bundle folder")
    g.set_defaults(handler=_cmd_import_geoestimation)
