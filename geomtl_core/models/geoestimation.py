"""Import GeoEstimation's released PyTorch base(M, f*) checkpoint into a geomtl bundle (never downloads).

Their PyTorch code (TIBHannover/GeoEstimation, ``classification/train_base.py`` and ``utils_global.py``) builds
``model = torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])`` plus ``avgpool`` and
``flatten``, and ``classifier = torch.nn.ModuleList([Linear(2048, len(p)) for p in partitionings])``; PyTorch
Lightning saves them as ``state_dict`` keys ``model.0.*`` (conv1), ``model.1.*`` (bn1), ``model.4.*`` …
``model.7.*`` (layer1 … layer4) and ``classifier.{i}.weight/bias``. The partitionings come from the hparams
file (``partitionings: {shortnames, files, ptype}``), their order coarse -> fine as in their config. Keys named
like torchvision's own (``model.conv1.*``, ``model.layer1.*``) are read as well.

Their inference (``FiveCropImageDataset`` and ``_multi_crop_inference``): PIL decode, ``.convert("RGB")`` (no
EXIF rotation), ``Resize(256)`` of the shorter side, ``FiveCrop(224)``, ImageNet normalisation, softmax per
partitioning, the maximum over the five crops, the hierarchy's product and the class mean of the finest
partitioning (f*). The bundle records this recipe in ``labels.json`` (``inference``); ``geomtl evaluate``
applies it by default. The hierarchy is geomtl's (S2 containment of the finest cells), which equals the one
their code builds from the cells' mean coordinates on the published cells (tests/test_import_geoestimation.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import OrderedDict
from pathlib import Path

from geomtl_core.data.images import MAX_PIXELS, ImageDecodeError
from geomtl_core.errors import InputError
from geomtl_core.geo.partitioning import Partitioning, read_cells_csv, relate, write_cells_csv

import numpy as np
import yaml

__all__ = ["GEOESTIMATION_INFERENCE", "import_geoestimation", "load_checkpoint", "preprocess_five_crop"]

#: Their test-time recipe, stored in the bundle's labels.json and applied by ``geomtl evaluate``.
GEOESTIMATION_INFERENCE = {"preprocess": "geoestimation", "resize": 256, "crop": 224, "crops": 5, "reduce": "max"}
#: base(M, f*)'s partitionings as config/baseM.yml names them (used when neither hparams nor checkpoint say).
DEFAULT_PARTITIONINGS = {"shortnames": ["coarse", "middle", "fine"],
                         "files": ["cells_50_5000.csv", "cells_50_2000.csv", "cells_50_1000.csv"]}
#: ``nn.Sequential(*resnet50.children()[:-2])`` index -> torchvision module name.
_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


class CheckpointError(InputError):
    """A checkpoint or hparams file that is not GeoEstimation's base(M, f*) format; says what is wrong."""


def _opaque_class(full_path: str) -> type:
    """A stand-in for a class the checkpoint pickled beside its tensors (hyper-parameter containers such as
    Lightning's ``AttributeDict`` or ``argparse.Namespace``): it builds a plain ``OrderedDict`` (items, and
    attributes in its ``__dict__``) and runs no code, so weights_only loading stays safe."""

    class Opaque:
        def __new__(cls, *args, **kwargs):
            return OrderedDict()

    Opaque.__qualname__ = Opaque.__name__ = full_path.rsplit(".", 1)[-1]
    Opaque.__module__ = full_path.rsplit(".", 1)[0]
    return Opaque


def load_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint read with ``torch.load(weights_only=True)`` (no pickled code ever runs).

    Classes that are not tensors (hyper-parameter containers) are read into inert stand-ins.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
        if not names:
            raise CheckpointError(f"{path}: cannot be read ({type(first).__name__}: {first})") from first
        stubs = [(_opaque_class(n), n) for n in names]
        try:
            with torch.serialization.safe_globals(stubs):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot be read safely ({type(exc).__name__}: {exc})") from exc
    if isinstance(ckpt, dict) and "state_dict" not in ckpt and any(str(k).startswith("classifier.") for k in ckpt):
        ckpt = {"state_dict": ckpt}  # a bare state_dict
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: no 'state_dict' in the checkpoint (a PyTorch Lightning .ckpt is expected)")
    return ckpt


class _TolerantLoader(yaml.SafeLoader):
    """YAML safe loading in which Python-object tags (Lightning may dump paths or namespaces) become plain data."""


def _plain(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("", _plain)


def _find_partitionings(obj) -> dict | None:
    """The ``partitionings`` mapping anywhere in a (nested) hparams structure."""
    if isinstance(obj, dict):
        p = obj.get("partitionings")
        if isinstance(p, dict) and "files" in p:
            return p
        for v in obj.values():
            found = _find_partitionings(v)
            if found is not None:
                return found
    return None


def _find_key(obj, key: str):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


def read_hparams(path: str | Path | None, ckpt: dict) -> tuple[list[str], list[str], str | None]:
    """(short names, cells file names, arch) from the hparams YAML, else the checkpoint's own hyper-parameters,
    else base(M, f*)'s published ones."""
    source = None
    if path is not None:
        path = Path(path)
        try:
            source = yaml.load(path.read_text(), Loader=_TolerantLoader)
        except yaml.YAMLError as exc:
            raise CheckpointError(f"{path}: not a YAML file: {exc}") from exc
        if _find_partitionings(source) is None:
            raise CheckpointError(f"{path}: no 'partitionings: {{shortnames, files}}' in the hparams file")
    else:
        hp = ckpt.get("hyper_parameters", ckpt.get("hparams"))  # an empty container with attributes is falsy
        source = {**getattr(hp, "__dict__", {}), **(hp if isinstance(hp, dict) else {})}
    parts = _find_partitionings(source) or DEFAULT_PARTITIONINGS
    files = [Path(str(f)).name for f in parts["files"]]
    names = [str(s) for s in parts.get("shortnames") or [Path(f).stem for f in files]]
    if len(names) != len(files):
        raise CheckpointError(f"hparams: {len(names)} shortnames for {len(files)} partitioning files")
    arch = _find_key(source, "arch")
    return names, files, str(arch) if arch is not None else None


def split_state_dict(sd: dict) -> tuple[dict[str, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """(torchvision resnet50 state_dict, [(W (n, 2048), b (n,)) per partitioning]) from their checkpoint keys."""
    backbone: dict[str, np.ndarray] = {}
    heads: dict[int, dict[str, np.ndarray]] = {}
    unknown = []
    for key, value in sd.items():
        arr = value.detach().cpu().float().numpy() if hasattr(value, "detach") else np.asarray(value, np.float32)
        parts = key.split(".")
        if parts[0] == "model" and len(parts) > 2:
            head = _SEQUENTIAL.get(parts[1], parts[1])
            if key.endswith("num_batches_tracked"):
                continue
            backbone[".".join([head, *parts[2:]])] = arr
        elif parts[0] == "classifier" and len(parts) == 3 and parts[1].isdigit() and parts[2] in ("weight", "bias"):
            heads.setdefault(int(parts[1]), {})[parts[2]] = arr
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected state_dict keys (not model.* or classifier.N.*): {unknown[:5]}")
    if not heads or sorted(heads) != list(range(len(heads))) or any(set(h) != {"weight", "bias"}
                                                                     for h in heads.values()):
        raise CheckpointError(f"classifier heads incomplete: found {sorted(heads)} (weight and bias each)")
    return backbone, [(heads[i]["weight"], heads[i]["bias"]) for i in range(len(heads))]


def preprocess_five_crop(data: bytes, resize: int = 256, crop: int = 224):
    """Their test transform on encoded bytes: PIL decode to RGB (no EXIF rotation, as theirs), ``Resize(resize)``
    of the shorter side, ``FiveCrop(crop)``; returns uint8 (5, crop, crop, 3) (normalised inside the model).

    Raises :class:`ImageDecodeError` for anything that does not decode.
    """
    import torch
    from PIL import Image
    from torchvision.transforms import functional as tf

    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageDecodeError(f"image of {im.width}x{im.height} px exceeds the {MAX_PIXELS:,}-pixel limit")
            rgb = im.convert("RGB")
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc
    crops = tf.five_crop(tf.resize(rgb, resize), crop)
    return torch.from_numpy(np.stack([np.asarray(c, dtype=np.uint8) for c in crops]))


def build_model(heads: dict[str, int]):
    """GeoEstimation's network as a geomtl model: ResNet-50, pooled features straight to one linear head each."""
    import geomtl_core.models.multitask as mt

    model = mt.GeoMTLModel(heads, {}, backbone="resnet50", input_size=224, pretrained=False, neck_units=0,
                           dropout=0.0)
    model(np.zeros((1, 224, 224, 3), np.uint8), training=False)  # builds the heads
    return model


def import_geoestimation(ckpt_path: str | Path, cells_dir: str | Path, out: str | Path,
                         hparams: str | Path | None = None) -> Path:
    """Write a bundle at ``out`` (which must not exist) from their checkpoint and published cells files."""
    from geomtl_core.config import ExperimentConfig
    from geomtl_core.models.bundle import model_card, save_model_atomic
    from geomtl_core.models.resnet import port_torchvision_resnet50

    out, cells_dir = Path(out), Path(cells_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists; choose a new bundle folder")
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"cells folder not found: {cells_dir}")
    ckpt = load_checkpoint(ckpt_path)
    names, files, arch = read_hparams(hparams, ckpt)
    if arch is not None and arch != "resnet50":
        raise CheckpointError(f"arch {arch!r}: only GeoEstimation's resnet50 models can be imported")
    backbone_sd, heads = split_state_dict(ckpt["state_dict"])
    if len(heads) != len(files):
        raise CheckpointError(f"{len(heads)} classifier heads in the checkpoint, {len(files)} partitionings in "
                              "the hparams")
    parts: list[Partitioning] = []
    for name, file, (w, b) in zip(names, files, heads, strict=True):
        path = cells_dir / file
        if not path.is_file():
            raise FileNotFoundError(f"cells file {file} (partitioning {name!r}) not found in {cells_dir}")
        part = read_cells_csv(path)
        if w.shape != (len(part), 2048) or b.shape != (len(part),):
            raise CheckpointError(f"head of {name!r} has shape {w.shape}, but {file} has {len(part)} cells "
                                  "(expected (cells, 2048)): wrong cells files for this checkpoint?")
        part.name = name
        parts.append(part)
    hierarchy = relate(parts) if len(parts) > 1 else None
    if hierarchy is not None and hierarchy.orphans:
        raise CheckpointError(f"finest cells outside every cell of a coarser partitioning: {hierarchy.orphans}")
    model = build_model({p.name: len(p) for p in parts})
    try:
        port_torchvision_resnet50(model.backbone, backbone_sd)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"backbone is not torchvision's resnet50 in their layout: {exc}") from exc
    for p, (w, b) in zip(parts, heads, strict=True):
        model.heads[p.name].set_weights([w.T.copy(), b])

    tmp = out.with_name(f".{out.name}.importing")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cfg = ExperimentConfig.from_dict({
        "name": "geoestimation_base_M",
        "data": {"root": "mp16", "image_size": 224, "scene_tasks": [], "five_crop": True, "flip": True,
                 "jitter": 0.0},
        "partition": {"cells_files": [f"cells/{p.name}.csv" for p in parts], "hierarchical": hierarchy is not None},
        "model": {"backbone": "resnet50", "pretrained": False, "neck_units": 0, "dropout": 0.0},
    })
    cfg.save(tmp / "config.yaml")
    for part in parts:
        write_cells_csv(part, tmp / "cells" / f"{part.name}.csv")
    digest = hashlib.sha256(Path(ckpt_path).read_bytes()).hexdigest()
    labels = {"partitionings": [p.name for p in parts], "scene_tasks": {}, "class_names": {},
              "dataset": {"name": "MP-16 (GeoEstimation's released base(M, f*), imported)", "kind": "photos"},
              "hierarchical": hierarchy is not None, "image_size": 224, "inference": dict(GEOESTIMATION_INFERENCE),
              "imported_from": {"checkpoint": Path(ckpt_path).name, "sha256": digest,
                                "epoch": ckpt.get("epoch"), "cells_files": files,
                                "hparams": Path(hparams).name if hparams else None}}
    (tmp / "labels.json").write_text(json.dumps(labels, indent=2))
    (tmp / "MODEL_CARD.md").write_text(model_card(labels, cfg))
    save_model_atomic(model, tmp / "model.keras")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
