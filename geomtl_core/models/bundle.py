"""A model bundle: one folder with everything evaluation and prediction need.

``model.keras`` (loaded with ``safe_mode=True``; a compendium run of a frozen backbone keeps ``heads.npz``, its
trained neck and heads, instead), ``cells/*.csv`` (partitionings, coarse -> fine),
``labels.json`` (task names and sizes, the class names of every scene head, the dataset trained on),
``config.yaml``, ``metrics.json``, ``MODEL_CARD.md`` (what it was trained on and what it is for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.config import ExperimentConfig
from geomtl_core.errors import InputError
from geomtl_core.files import HEADS_FILE, MODEL_FILE, atomic_path
from geomtl_core.geo.partitioning import Hierarchy, Partitioning, read_cells_csv, relate, write_cells_csv


@dataclass
class Bundle:
    """A trained model with its partitionings, hierarchy, label maps and config."""

    path: Path
    model: object
    parts: list[Partitioning]
    hierarchy: Hierarchy
    labels: dict
    config: ExperimentConfig

    @property
    def scene_tasks(self) -> dict[str, int]:
        return self.labels["scene_tasks"]

    def class_names(self, task: str) -> list[str]:
        """Names of a scene head's classes as the training data defined them; indices when it defined none
        (bundles saved before names were recorded included)."""
        names = self.labels.get("class_names", {}).get(task)
        return list(names) if names else [str(k) for k in range(int(self.scene_tasks[task]))]

    @property
    def dataset(self) -> dict[str, str]:
        """``{"name", "kind"}`` of the training data (``kind``: ``overhead_proxy`` or ``photos``)."""
        return self.labels.get("dataset", {"name": "unknown", "kind": "unknown"})

    @property
    def caution(self) -> str | None:
        """One line to show before predicting photos with a model trained on the overhead proxy."""
        from geomtl_core.data.scenes import OVERHEAD_PROXY_CAUTION

        return OVERHEAD_PROXY_CAUTION if self.dataset.get("kind") == "overhead_proxy" else None


def save_bundle_metadata(out: Path, cfg: ExperimentConfig, parts: list[Partitioning], scene: dict[str, int]) -> None:
    """Write config, partitionings, label maps, class names and the dataset's description (done once,
    at the start of training)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    for part in parts:
        write_cells_csv(part, out / "cells" / f"{part.name}.csv")
    from geomtl_core.data.scenes import class_names, dataset_description

    labels = {"partitionings": [p.name for p in parts], "scene_tasks": scene,
              "class_names": class_names(scene, cfg.data.root),
              "dataset": dataset_description(cfg.data.root),
              "hierarchical": bool(cfg.partition.hierarchical), "image_size": cfg.data.image_size}
    (out / "labels.json").write_text(json.dumps(labels, indent=2))
    (out / "MODEL_CARD.md").write_text(model_card(labels, cfg))


def model_card(labels: dict, cfg: ExperimentConfig) -> str:
    """A short model card: what the bundle was trained on, its tasks and backbone, and what it is (and is not)
    for. Geolocation is dual use: a model of the overhead proxy says it is no photo geolocator."""
    data = labels["dataset"]
    scenes = ", ".join(f"{t} ({n} classes)" for t, n in labels["scene_tasks"].items()) or "none (single task)"
    if data.get("kind") == "overhead_proxy":
        use = ("method research only: its inputs are overhead Blue Marble crops (book/proxy.md). It is not a "
               "geolocator of ground-level photos and must not be used as one.")
    else:
        use = ("the research its trainer declared. Geolocation is dual use: do not use it to locate people or "
               "private places (book/responsible_use.md).")
    return (f"# Model card\n\n- **Trained on:** {data.get('name', 'unknown')} ({data.get('kind', 'unknown')}), "
            f"data folder `{Path(cfg.data.root).name}`, {cfg.data.image_size} px images.\n"
            f"- **Tasks:** geolocation over {len(labels['partitionings'])} partitionings "
            f"({', '.join(labels['partitionings'])}); scene tasks: {scenes}.\n"
            f"- **Backbone:** {cfg.model.backbone}"
            f"{' (frozen)' if cfg.model.freeze_backbone else ''}.\n"
            f"- **For:** {use}\n")


def read_partitionings(out: Path) -> list[Partitioning]:
    labels = json.loads((out / "labels.json").read_text())
    parts = []
    for name in labels["partitionings"]:
        part = read_cells_csv(out / "cells" / f"{name}.csv")
        part.name = name
        parts.append(part)
    return parts


def load_bundle(path: str | Path, model_file: str = MODEL_FILE) -> Bundle:
    """Load a bundle folder; clear errors for anything missing. A run folder holding only its trained heads
    (:data:`~geomtl_core.files.HEADS_FILE`) loads as the image model too (:func:`assemble_image_model`)."""
    import geomtl_core.models.multitask  # noqa: F401 - registers the custom classes for deserialisation

    import keras

    path = Path(path)
    heads = model_file == MODEL_FILE and not (path / MODEL_FILE).exists() and (path / HEADS_FILE).exists()
    for f in ("labels.json", "config.yaml", HEADS_FILE if heads else model_file):
        if not (path / f).exists():
            raise FileNotFoundError(f"{path} is not a complete model bundle: {f} is missing")
    parts = read_partitionings(path)
    labels = json.loads((path / "labels.json").read_text())
    cfg = ExperimentConfig.load(path / "config.yaml")
    if heads:
        model = assemble_image_model(path / HEADS_FILE, cfg, parts, labels["scene_tasks"])
    else:
        model = keras.saving.load_model(path / model_file, safe_mode=True, compile=False)
    return Bundle(path, model, parts, relate(parts), labels, cfg)


def assemble_image_model(heads_file: Path, cfg: ExperimentConfig, parts: list[Partitioning], scene: dict[str, int]):
    """The image model of a frozen-backbone run from its trained neck and heads (``heads_file``,
    :func:`save_heads_atomic`): the config's backbone with its pretrained weights, built as the trainer built it,
    then the trained weights set (:func:`~geomtl_core.models.finetune.set_head_weights`)."""
    from geomtl_core.models.finetune import set_head_weights
    from geomtl_core.models.multitask import build_model

    import keras
    import numpy as np

    if not cfg.model.pretrained or cfg.model.finetune_blocks or not cfg.model.freeze_backbone:
        raise InputError(f"{heads_file}: only a run whose pretrained backbone is frozen whole saves its heads alone; "
                         "this config's backbone is not (train it again)")
    with np.load(heads_file, allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(str(weights.pop("dtype_policy")))  # the precision the run trained in
    try:
        full = build_model(cfg, parts, scene)
        full(np.zeros((1, cfg.data.image_size, cfg.data.image_size, 3), "uint8"))
    finally:
        keras.config.set_dtype_policy(before)
    set_head_weights(full, weights)
    return full


def save_heads_atomic(model, path: Path) -> None:
    """The trained neck and heads of ``model`` (:func:`~geomtl_core.models.finetune.head_weights`) with its dtype
    policy, as one ``.npz`` written atomically: what :func:`assemble_image_model` reads."""
    from geomtl_core.models.finetune import head_weights

    import numpy as np

    with atomic_path(path) as tmp:
        np.savez(tmp, dtype_policy=np.array(model.dtype_policy.name), **head_weights(model))


def save_model_atomic(model, path: Path) -> None:
    """Save to a temporary file and rename, so a kill never leaves a half-written model."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_json_atomic(obj: dict, path: Path) -> None:
    """Write JSON to a temporary file of this process beside ``path``, then rename it over ``path``: readers never
    see half a file, and two processes never share a temporary."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))


def start_from_bundle(model, bundle_path: str | Path) -> None:
    """Start ``model`` (an image model, or its twin on cached features) from the neck, heads and learned loss
    weights of a trained bundle with the same heads, e.g. an individual scene network fine-tuned from the base
    model; a backbone that learns starts from the bundle's too. Heads of other sizes are an error."""
    src = load_bundle(bundle_path).model
    mine = {t: tuple(layer.get_weights()[0].shape) for t, layer in model.heads.items()}
    theirs = {t: tuple(layer.get_weights()[0].shape) for t, layer in src.heads.items()}
    if mine != theirs:
        raise InputError(f"train.init_from={str(bundle_path)!r}: its heads {theirs} differ from this run's {mine}; "
                         "it must be trained on the same cells and tasks")
    if getattr(model, "finetune_blocks", 0) or not model.freeze_backbone:
        raise InputError("train.init_from starts neck and heads only: use it with a frozen backbone")
    for name in ("neck", "neck_bn"):
        getattr(model, name).set_weights(getattr(src, name).get_weights())
    for task, layer in src.heads.items():
        model.heads[task].set_weights(layer.get_weights())
    if model.log_vars is not None and src.log_vars is not None:
        model.log_vars.assign(src.log_vars)
