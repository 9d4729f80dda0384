"""The hybrid predictor and plain kNN on a trained run: its classifier narrows, retrieval among its own training
images refines (:mod:`geomtl_core.geo.retrieval`; Vo et al. 2017, PIGEON).

:func:`hybrid_for_run` works on a run whose frozen backbone trained from cached pooled features: those features
(the run's own cache, extended only by images it lacks, as evaluation does) or the run's trained neck applied to
them (:mod:`geomtl_core.inference.embeddings`) are the embeddings, whichever does better on validation; the gallery is
the run's geo-labelled training images (its share, as the trainer selects them), and the query cell
probabilities are the run's f* fine-cell scores (:meth:`geomtl_core.geo.partitioning.Hierarchy.scores`), computed
from the cached features through the model's heads as its evaluation does. Settings are chosen on validation
only; test predictions go beside the run's other ``predictions_test.<method>.csv`` in the same format and rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geomtl_core  # noqa: F401 - selects the torch backend before keras is imported
from geomtl_core.config import ExperimentConfig
from geomtl_core.data.dataset import GeoImageDataset, make_loader
from geomtl_core.data.features import FeatureDataset, extract_features, feature_cache_path, uses_cached_features
from geomtl_core.data.images import TransformConfig
from geomtl_core.data.loaders import load_tables, split_loader, training_rows, training_split
from geomtl_core.data.predictions import read_predictions, write_predictions
from geomtl_core.errors import InputError
from geomtl_core.files import GALLERY_FILE, HYBRID_FILE, atomic_path
from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.geolocate import Geolocation, geolocate
from geomtl_core.geo.metrics import summarize_errors
from geomtl_core.geo.partitioning import Hierarchy, Partitioning
from geomtl_core.geo.protocol import PRIMARY_KM
from geomtl_core.geo.retrieval import HYBRID_KEYS, Gallery, choose
from geomtl_core.geo.stats import spatial_blocks
from geomtl_core.inference.embeddings import embed, embeddings_for
from geomtl_core.inference.evaluation import predict_probabilities
from geomtl_core.inference.retrieval import Retrieval, cell_scores, point_answer
from geomtl_core.models.bundle import Bundle, load_bundle, write_json_atomic

import numpy as np
import pandas as pd

KERNELS_KM = (10.0, 25.0, 100.0)
DEFAULT_GRID: Mapping[str, tuple] = {"top_cells": (1, 3, 10), "k": (1, 10, 50), "kernel_km": KERNELS_KM}
"""The hybrid's settings tried on validation (their product)."""
KNN_GRID: tuple[dict[str, Any], ...] = ({"k": 1, "kernel_km": None},
                                        *({"k": k, "kernel_km": km} for k in (10, 50) for km in KERNELS_KM))
"""Plain kNN's settings tried on validation: the nearest image, or the kernel-density mode of 10 or 50."""
KM = float(PRIMARY_KM)
"""The distance whose accuracy chooses the settings (and is reported): the protocol's primary endpoint."""
_EVAL_BATCH = {"val": 256, "test": 512}
"""Batch sizes of the run's own evaluation from features (the trainer's for val, evaluate_run's for test)."""


@dataclass
class _Queries:
    """A split's readable images, in evaluation order, with their cached features, f* fine-cell scores and f*'s
    answer."""

    img_id: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    emb: np.ndarray
    scores: np.ndarray
    fstar: Geolocation


def _check_supported(cfg: ExperimentConfig) -> None:
    """InputError unless the run trained on cached features (a backbone frozen, or frozen below its tuned blocks):
    the cache is what the embeddings are made from."""
    if not uses_cached_features(cfg):
        raise InputError(
            "the hybrid predictor needs a run on cached features (model.freeze_backbone or model.finetune_blocks > 0, "
            "with train.cache_features): the embeddings are made from the cache; a backbone that learns whole (the "
            f"small CNNs) would need another pass over every image. This run has freeze_backbone="
            f"{cfg.model.freeze_backbone}, finetune_blocks={cfg.model.finetune_blocks}, cache_features="
            f"{cfg.train.cache_features}, backbone={cfg.model.backbone!r}")


@dataclass
class _GalleryRows:
    """The run's geo-labelled, readable training images: cached features, coordinates, fine cells."""

    feats: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    fine: np.ndarray
    n_cells: int
    unreadable: int
    img_id: np.ndarray

    def gallery(self, model, embedding: str) -> Gallery:
        return Gallery.build(embed(model, self.feats, embedding), self.lat, self.lon, self.fine, n_cells=self.n_cells)


def _gallery_rows(cfg: ExperimentConfig, bundle: Bundle, train: pd.DataFrame, progress: bool) -> _GalleryRows:
    """The run's geo-labelled training images (selected by the trainer's own functions) with their cached
    features, coordinates and fine cells; and how many were left out as unreadable (NaN features)."""
    train_meta, geo_rows = training_rows(cfg, train)
    split, _ = training_split(cfg, train_meta, geo_rows, bundle.parts)
    labels = split.labels
    # the cache holds the eval-transform features of every image the run trained on (as _feature_inputs)
    plain = GeoImageDataset(split.dataset.source, labels, TransformConfig(size=cfg.data.image_size), train=False)
    feats = extract_features(bundle.model, plain, feature_cache_path(cfg, "train"), workers=cfg.data.workers,
                             progress=progress)
    fine = labels.targets[bundle.parts[-1].name]  # the trainer's fine class; -1 where the run left geo labels out
    readable = np.isfinite(feats).all(axis=1)
    keep = (fine >= 0) & readable
    return _GalleryRows(feats[keep], labels.lat[keep], labels.lon[keep], fine[keep], len(bundle.parts[-1]),
                        int(((fine >= 0) & ~readable).sum()), np.asarray(labels.img_id)[keep])


_BACKBONE_KNN: dict[str, dict] = {}
"""Plain kNN's validation choice on the backbone's own features, by what it depends on (:func:`_knn_key`): no
trained weight enters it, so the runs of one share and fold (both arms, every seed) in a process share it."""


def _knn_key(cfg: ExperimentConfig, rows: _GalleryRows, val: _Queries, grid: list[dict], km: float) -> str:
    """What plain kNN on backbone features depends on: the cache, the gallery's and validation's images, the grid."""
    h = hashlib.sha256(feature_cache_path(cfg, "train").name.encode())
    for ids in (rows.img_id, val.img_id):
        h.update("\n".join(map(str, ids)).encode() + b"|")
    h.update(json.dumps([grid, km], sort_keys=True, default=str).encode())
    return h.hexdigest()


def _queries(cfg: ExperimentConfig, bundle: Bundle, split: str, meta: pd.DataFrame, hierarchy: Hierarchy | None,
             progress: bool) -> _Queries:
    """A split (its metadata ``meta``) as the run's evaluation sees it: features from the cache, probabilities
    through the heads, the unreadable images dropped; the fine-cell scores are f* (or the finest head's)."""
    parts = bundle.parts
    data = split_loader(cfg, split, meta, parts, train=False)
    feats = extract_features(bundle.model, data.dataset, feature_cache_path(cfg, split), workers=cfg.data.workers,
                             progress=progress)
    loader = make_loader(FeatureDataset(feats, data.labels.targets), _EVAL_BATCH[split], seed=cfg.train.seed)
    probs, valid = predict_probabilities(bundle.model, loader, [p.name for p in parts], progress=progress,
                                         from_features=True)
    if not valid.any():
        raise InputError(f"{split}: no readable image ({len(valid)} records, all unreadable)")
    probs = {t: v[valid] for t, v in probs.items()}
    scores = cell_scores(probs, parts, hierarchy)
    fstar = geolocate(probs, parts, hierarchy)["hierarchy" if hierarchy is not None else parts[-1].name]
    labels = data.labels
    return _Queries(labels.img_id[valid], labels.lat[valid], labels.lon[valid], feats[valid], scores, fstar)


def _accuracy(q: _Queries, lat: np.ndarray, lon: np.ndarray, km: float) -> float:
    return float((haversine_km(q.lat, q.lon, lat, lon, validate=False) <= km).mean())


def _write(path: Path, q: _Queries, lat: np.ndarray, lon: np.ndarray, fine: Partitioning) -> None:
    """The evaluation's prediction file layout (its writer and extra columns), atomically: ``fine_class`` is the
    fine cell holding the predicted point (-1: none), ``score`` that cell's f* score for the image."""
    a = point_answer(lat, lon, q.scores, fine)
    with atomic_path(path) as tmp:
        write_predictions(tmp, q.img_id, q.lat, q.lon, lat, lon,
                          extra={"fine_class": a.fine_class, "score": np.round(a.score, 6)})


def hybrid_for_run(out_dir: str | Path, cfg: ExperimentConfig | None = None,
                   grid: Mapping[str, Iterable] | Iterable[Mapping[str, Any]] = DEFAULT_GRID,
                   knn_grid: Iterable[Mapping[str, Any]] = KNN_GRID, km: float = KM,
                   embeddings: Iterable[str] | None = None, progress: bool = False,
                   bundle: Bundle | None = None) -> dict[str, Any]:
    """Choose the hybrid's and plain kNN's settings on the run's validation split, predict its test split, and
    write ``predictions_test.hybrid.csv``, ``predictions_test.knn.csv`` and ``hybrid.json`` into the run folder
    (atomically; the same files on every call, but for the timings). Returns what ``hybrid.json`` holds, with
    ``methods``: each predictor's test summary as the run's evaluation writes its own.

    ``cfg``: the run's config (default: its ``config.yaml``); only runs on cached features (:func:`_check_supported`).
    ``embeddings``: those tried on validation (default: every one the model offers, :func:`embeddings_for`).
    ``bundle``: the run's bundle already in memory (default: loaded from ``out_dir``).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    cfg = ExperimentConfig.load(out / "config.yaml") if cfg is None else cfg
    _check_supported(cfg)
    bundle = load_bundle(out) if bundle is None else bundle
    parts, fine = bundle.parts, bundle.parts[-1]
    hierarchy = bundle.hierarchy if cfg.partition.hierarchical and len(parts) > 1 else None
    method = "hierarchy" if hierarchy is not None else fine.name
    tables = load_tables(cfg)  # train and val read together, test alone: as the trainer and evaluate_run read them
    rows = _gallery_rows(cfg, bundle, tables["train"], progress)
    val = _queries(cfg, bundle, "val", tables["val"], hierarchy, progress)
    test = _queries(cfg, bundle, "test", load_tables(cfg, ("test",))["test"], hierarchy, progress)
    ref = out / f"predictions_test.{method}.csv"
    if ref.exists() and not np.array_equal(read_predictions(ref).img_id.astype(str), test.img_id.astype(str)):
        raise InputError(f"{ref} covers other test images than the run's test split now has; re-evaluate the run")

    knn_grid = [{**g, "top_cells": 1} for g in knn_grid]
    tried: dict[str, dict[str, dict]] = {"hybrid": {}, "knn": {}}  # method -> embedding -> choice
    galleries: dict[str, dict[str, Gallery]] = {"hybrid": {}, "knn": {}}
    offered = embeddings_for(bundle.model)
    names = offered if embeddings is None else tuple(embeddings)
    if not names or set(names) - set(offered):
        raise InputError(f"embeddings {list(names)}: this run's model offers {list(offered)} (no neck: only the "
                         "backbone's features)")
    for e in names:  # each embedding chosen on validation like any other setting
        g = rows.gallery(bundle.model, e)
        # kNN is the hybrid over one cell holding every image (weights: similarity x 1): one search serves every
        # k, and validation and test go through the same code
        one = Gallery.build(g.emb, g.lat, g.lon, np.zeros(len(g), np.int64), n_cells=1)
        v = embed(bundle.model, val.emb, e)
        galleries["hybrid"][e], galleries["knn"][e] = g, one
        tried["hybrid"][e] = choose(g, v, val.scores, val.lat, val.lon, grid, km)
        if e == "backbone" and not getattr(bundle.model, "finetune_blocks", 0):  # no trained weight in it: chosen
            # once per share and fold in a process
            key = _knn_key(cfg, rows, val, knn_grid, km)
            if key not in _BACKBONE_KNN:
                _BACKBONE_KNN[key] = choose(one, v, np.ones((len(v), 1)), val.lat, val.lon, knn_grid, km)
            tried["knn"][e] = _BACKBONE_KNN[key]
        else:
            tried["knn"][e] = choose(one, v, np.ones((len(v), 1)), val.lat, val.lon, knn_grid, km)
    # the best validation accuracy; ties: the first embedding (the backbone's, which needs no trained neck)
    chosen = {m: max(by, key=lambda e, by=by: (by[e]["accuracy"], -list(by).index(e))) for m, by in tried.items()}

    predicted, ms_per_image, answer = {}, {}, {}
    for name in ("hybrid", "knn"):  # each as a bundle answers (inference.retrieval, as evaluate and predict)
        e = chosen[name]
        answer[name] = Retrieval(galleries[name][e], {key: tried[name][e][key] for key in HYBRID_KEYS},
                                 hierarchy if name == "hybrid" else None, e, bundle.model)
        p = test.scores if name == "hybrid" else np.ones((len(test.emb), 1))
        t0 = time.perf_counter()
        predicted[name] = answer[name].locate(test.emb, p)
        ms_per_image[name] = round(1000 * (time.perf_counter() - t0) / len(test.emb), 4)
    # the hybrid as a stored bundle answers: its gallery as float16 (Gallery.to_npz), same settings and queries
    lat16, lon16 = replace(answer["hybrid"], gallery=answer["hybrid"].gallery.as_float16()).locate(test.emb,
                                                                                                   test.scores)
    moved = (lat16 != predicted["hybrid"][0]) | (lon16 != predicted["hybrid"][1])
    files, methods = {}, {}
    blocks = spatial_blocks(test.lat, test.lon)
    for name, (lat, lon) in predicted.items():
        files[name] = f"predictions_test.{name}.csv"
        _write(out / files[name], test, lat, lon, fine)
        err = haversine_km(test.lat, test.lon, lat, lon, validate=False)
        methods[name] = summarize_errors(err, with_ci=True, blocks=blocks).to_json_dict()

    def settings(name: str, keys: tuple[str, ...]) -> dict:
        e = chosen[name]
        c = tried[name][e]
        return {key: c[key] for key in keys} | {
            "embedding": e, "val_accuracy": c["accuracy"],
            "val_accuracy_by_embedding": {x: t["accuracy"] for x, t in tried[name].items()},
            "grid": [{key: g[key] for key in (*keys, "accuracy")} | {"embedding": x}
                     for x, t in tried[name].items() for g in t["grid"]]}

    gallery = galleries["hybrid"][chosen["hybrid"]]  # the one a bundle carries
    result = {
        "km": km, "fstar_method": method, "gallery_images": len(gallery), "gallery_unreadable": rows.unreadable,
        "val_images": len(val.img_id), "test_images": len(test.img_id),
        "hybrid": settings("hybrid", HYBRID_KEYS), "knn": settings("knn", ("k", "kernel_km")),
        "test_accuracy": {name: _accuracy(test, lat, lon, km) for name, (lat, lon) in predicted.items()}
        | {"fstar": _accuracy(test, test.fstar.lat, test.fstar.lon, km)},
        "prediction_files": files, "methods": methods,
        "float16_gallery": {"test_accuracy": _accuracy(test, lat16, lon16, km), "answers_moved": float(moved.mean())},
        "search_ms_per_image": ms_per_image, "embedding_dim": gallery.dim,
        "gallery_mib_float16": round(len(gallery) * (2 * gallery.dim + 8 * 3) / 2**20, 2),
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(result, out / HYBRID_FILE)
    return result




def save_gallery(run_dir: str | Path, dest_dir: str | Path | None = None, progress: bool = False) -> Path:
    """Write the run's gallery (the geo-labelled training images' embeddings chosen on validation, as
    :func:`hybrid_for_run` searched them) to ``dest_dir/gallery.npz`` (default: the run folder), atomically.
    The run must have been through :func:`hybrid_for_run` (its ``hybrid.json`` holds the settings to use)."""
    run_dir = Path(run_dir)
    if not (run_dir / HYBRID_FILE).exists():
        raise InputError(f"{run_dir} has no hybrid.json: run hybrid_for_run on it first (runs on cached features only)")
    cfg = ExperimentConfig.load(run_dir / "config.yaml")
    _check_supported(cfg)
    embedding = json.loads((run_dir / HYBRID_FILE).read_text())["hybrid"].get("embedding", "backbone")
    bundle = load_bundle(run_dir)
    rows = _gallery_rows(cfg, bundle, load_tables(cfg)["train"], progress)
    return rows.gallery(bundle.model, embedding).to_npz(Path(dest_dir or run_dir) / GALLERY_FILE)
