"""Predict where photos were taken with a trained bundle: one call for files and folders.

``predict(bundle_or_path, paths)`` returns one dict per input file (folders are expanded,
recursively, in sorted order; hidden files and files that are not images are skipped: a photo is a file
with an image ending (:data:`~geomtl_core.data.photo_files.IMAGE_SUFFIXES`) or one whose first bytes are
an image format's; files named one by one are always tried):

- ``img_id``: the file's path relative to the folder it was found in (its name, for a file named alone),
  the id ``geomtl score`` and ``geomtl compare`` match images by;

- ``lat``, ``lon``: the best guess (hierarchical f* when the bundle is hierarchical and has several
  partitionings, else the finest partitioning), with ``method`` and ``score``;
- ``place``, ``admin1``, ``country``, ``country_code``: the nearest GeoNames place (> 1000
  inhabitants) to the guess, offline with ``reverse_geocoder``;
- ``cells``: per partitioning (coarse -> fine) the top-k cells with ``class``, ``p``, the class
  coordinates ``lat``/``lon`` and the S2 ``token``;
- ``scene``: per scene task the top class (``label`` = the class name the bundle's training data gave it,
  ``class``, ``p``);
- ``true_lat``, ``true_lon``, ``error_km`` and ``truth`` (``"file"`` or ``"exif"``) when the true position
  is known: from a truth table (``truth=``, :func:`~geomtl_core.data.truth.read_truth`) that lists
  the image, else from a valid EXIF GPS position in the file;
- ``warnings`` (e.g. malformed EXIF GPS, ignored) and ``error`` (None, or why the file failed).

A bundle carrying a retrieval gallery (``gallery.npz`` with its settings in ``hybrid.json``, see
:func:`load_retrieval`) predicts with the hybrid (:func:`~geomtl_core.geo.retrieval.hybrid_locate`: the classifier
narrows to its top fine cells, the most similar gallery images within them give the point): ``method`` is then
``"hybrid"``, ``score`` the f* score of the fine cell holding the point, and ``classifier`` keeps the classifier's
own ``lat``, ``lon``, ``method`` and ``score``; ``retrieval=False`` uses the classifier alone.

Images are decoded and resized in a thread pool while the model runs on the previous batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.data.exif import ExifInfo, read_exif
from geomtl_core.data.images import ImageDecodeError, TransformConfig, decode_image, eval_transform, to_tensor
from geomtl_core.data.photo_files import looks_like_image
from geomtl_core.data.predictions import TruthTable
from geomtl_core.errors import InputError
from geomtl_core.files import GALLERY_FILE, HYBRID_FILE  # noqa: F401 - the bundle's file names, as callers read them
from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.geolocate import geolocate, softmax, top_k
from geomtl_core.inference.geocode import reverse_geocode
from geomtl_core.inference.retrieval import load_retrieval

import numpy as np
import torch
from PIL import UnidentifiedImageError


@dataclass
class Inputs:
    """The files to predict (input order), their ids, and the folder files skipped as not images."""

    files: list[Path]
    ids: list[str]
    skipped: list[Path]


def scan_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> Inputs:
    """Files in input order with their ids; a folder contributes its image files recursively, sorted (ids
    relative to it), hidden files skipped silently and other non-images listed in ``skipped``. A path that does
    not exist is kept (it becomes a per-file error)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    ids: list[str] = []
    skipped: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                rel = p.relative_to(path)
                if not p.is_file() or any(part.startswith(".") for part in rel.parts):
                    continue
                if looks_like_image(p):
                    files.append(p)
                    ids.append(rel.as_posix())
                else:
                    skipped.append(p)
        else:
            files.append(path)
            ids.append(path.name)
    if len(set(ids)) < len(ids):  # the same name from two folders: the paths tell them apart
        ids = [str(f) for f in files]
    return Inputs(files, ids, skipped)


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The files of :func:`scan_inputs` (folders: their image files, recursively, sorted)."""
    return scan_inputs(inputs).files


@dataclass
class Loaded:
    """One input file after decoding: the model-ready HWC uint8 tensor, or the error."""

    path: Path
    image: torch.Tensor | None
    exif: ExifInfo
    error: str | None = None



def features_and_logits(model, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Backbone features as the feature cache holds them (float32: pooled, or the activations entering tuned
    blocks) and the logits computed from them (float64) of a (N, H, W, 3) uint8 batch: one backbone pass gives
    the embeddings and the classifier's answer."""
    with torch.no_grad():
        f = model.backbone_features(x)
        out = model.heads_from_features(f)
    logits = {t: np.asarray(v.detach().cpu().numpy(), dtype=np.float64) for t, v in out.items()}
    return np.asarray(f.detach().cpu().numpy(), dtype=np.float32), logits


class Predictor:
    """A bundle ready to predict: transform, hierarchy choice, cell tokens, the decode pool and, when the bundle
    carries a gallery and ``retrieval`` is on, the hybrid's gallery and settings."""

    def __init__(self, bundle, top_k: int = 5, batch_size: int = 32, workers: int | None = None,
                 truth: TruthTable | None = None, retrieval: bool = True):
        if top_k < 1:
            raise InputError(f"top_k must be >= 1, got {top_k}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.bundle = bundle
        self.truth = truth
        self.k = top_k
        self.batch_size = batch_size
        # decode threads beside the model's own torch threads: one per two cores (1 on a 2-core laptop)
        self.workers = max(1, workers if workers is not None else min(4, (os.cpu_count() or 2) // 2))
        self.size = int(bundle.labels["image_size"])
        self.cfg = TransformConfig(size=self.size)
        self.transform = eval_transform(self.cfg)
        self.min_side = round(self.size * self.cfg.resize_ratio)
        self.parts = bundle.parts
        hierarchical = bundle.labels.get("hierarchical", True) and len(self.parts) > 1
        self.hierarchy = bundle.hierarchy if hierarchical else None
        self.method = "hierarchy" if self.hierarchy is not None else self.parts[-1].name
        self.tokens = {p.name: p.tokens for p in self.parts}
        self.scene_tasks = [t for t in bundle.scene_tasks if t in bundle.model.task_names]
        self.class_names = {t: bundle.class_names(t) for t in self.scene_tasks}
        self.recipe = bundle.labels.get("inference")  # an imported model's own test recipe (five crops, max)
        if self.recipe is not None and self.recipe.get("preprocess") != "geoestimation":
            raise InputError(f"unknown inference preprocessing {self.recipe.get('preprocess')!r} in the bundle")
        self.retrieval = load_retrieval(bundle) if retrieval else None

    def load(self, path: Path) -> Loaded:
        """Read, decode (upright), resize and centre-crop one file; never raises."""
        exif = ExifInfo()
        try:
            data = path.read_bytes()
            exif = read_exif(data)
            if self.recipe is not None:  # their PIL resize and five crops: (5, crop, crop, 3) uint8
                from geomtl_core.models.geoestimation import preprocess_five_crop

                return Loaded(path, preprocess_five_crop(data, self.recipe["resize"], self.recipe["crop"]), exif)
            img = decode_image(data, min_side=self.min_side)  # upright: EXIF orientation applied
            x = self.transform(to_tensor(img)).permute(1, 2, 0).contiguous()
            return Loaded(path, x, exif)
        except ImageDecodeError as exc:
            unknown = isinstance(exc.__cause__, UnidentifiedImageError)
            return Loaded(path, None, exif, "not an image file (format not recognised)" if unknown else str(exc))
        except IsADirectoryError:
            return Loaded(path, None, exif, "is a folder, not an image file")
        except FileNotFoundError:
            return Loaded(path, None, exif, "no such file")
        except OSError as exc:
            return Loaded(path, None, exif, f"cannot read file: {exc.strerror or exc}")
        except Exception as exc:
            return Loaded(path, None, exif, f"cannot process image ({type(exc).__name__}: {exc})")

    def raw_logits(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Model logits of a (N, H, W, 3) uint8 batch, as float64 numpy."""
        with torch.no_grad():
            out = self.bundle.model(x, training=False)
        return {t: np.asarray(v.detach().cpu().numpy(), dtype=np.float64) for t, v in out.items()}

    def run(
        self, files: list[Path], progress: bool | None = False, on_probs: Callable[[dict, dict], None] | None = None
    ) -> Iterator[dict]:
        """Results in input order, streamed batch by batch (next batch decoded while the model runs).

        ``on_probs(result, {task: probabilities})`` is called for every successful image.
        """
        from tqdm.auto import tqdm

        chunks = [files[i : i + self.batch_size] for i in range(0, len(files), self.batch_size)]
        bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress if progress is not None else None)
        with ThreadPoolExecutor(self.workers) as pool:
            pending = [pool.submit(self.load, f) for f in chunks[0]] if chunks else []
            for i in range(len(chunks)):
                loaded = [f.result() for f in pending]
                pending = [pool.submit(self.load, f) for f in chunks[i + 1]] if i + 1 < len(chunks) else []
                yield from self.predict_batch(loaded, on_probs)
                bar.update(len(loaded))
        bar.close()

    def predict_batch(self, loaded: list[Loaded], on_probs=None) -> list[dict]:
        """Result dicts of one batch of loaded files (failed ones carry ``error``)."""
        results = [_base_result(item) for item in loaded]
        good = [i for i, item in enumerate(loaded) if item.image is not None]
        if not good:
            return results
        x = torch.stack([loaded[i].image for i in good])
        n, crops = len(x), x.shape[1] if x.ndim == 5 else 1
        flat = x.reshape(n * crops, *x.shape[2:]) if x.ndim == 5 else x
        if self.retrieval is not None:  # one backbone pass: embeddings (crops' mean, as the cache) and logits
            feats, logits = features_and_logits(self.bundle.model, flat)
            emb = feats.reshape(n, crops, -1).mean(axis=1)
        else:
            logits = self.raw_logits(flat)
        # crops per image: softmax per crop, then the maximum over an image's crops
        probs = {t: softmax(v).reshape(n, crops, -1).max(axis=1) if crops > 1 else softmax(v)
                 for t, v in logits.items()}
        locs = geolocate(probs, self.parts, self.hierarchy)
        best = locs[self.method]
        method, lat_b, lon_b, score_b = self.method, best.lat, best.lon, best.score
        if self.retrieval is not None:
            hybrid = self.retrieval.answer(emb, self.retrieval.cell_scores(probs, self.parts), self.parts[-1])
            lat_b, lon_b, score_b = hybrid.lat, hybrid.lon, hybrid.score
            method = "hybrid"
        places = reverse_geocode(lat_b, lon_b)
        cells = {}
        for part in self.parts:
            idx, p = top_k(probs[part.name], self.k)
            lat, lon = part.class_coordinates(idx.ravel())
            cells[part.name] = (idx, p, lat.reshape(idx.shape), lon.reshape(idx.shape))
        for j, i in enumerate(good):
            r = results[i]
            r.update(lat=float(lat_b[j]), lon=float(lon_b[j]), method=method, score=float(score_b[j]))
            r.update(places[j])
            if self.retrieval is not None:  # the classifier's own answer, kept beside the hybrid's
                r["classifier"] = {"lat": float(best.lat[j]), "lon": float(best.lon[j]), "method": self.method,
                                   "score": float(best.score[j])}
            r["cells"] = {
                name: [{"class": int(c), "p": float(pp), "lat": float(la), "lon": float(lo),
                        "token": self.tokens[name][int(c)]}
                       for c, pp, la, lo in zip(idx[j], p[j], lat[j], lon[j], strict=True)]
                for name, (idx, p, lat, lon) in cells.items()
            }
            r["scene"] = {}
            for t in self.scene_tasks:
                c = int(probs[t][j].argmax())
                r["scene"][t] = {"label": self.class_names[t][c], "class": c, "p": float(probs[t][j, c])}
            known = self.truth.get(loaded[i].path) if self.truth is not None else None
            source = "file"
            if known is None:
                known, source = loaded[i].exif.gps, "exif"
            if known is not None:
                err = haversine_km(known[0], known[1], r["lat"], r["lon"])
                r.update(true_lat=known[0], true_lon=known[1], error_km=float(err), truth=source)
            if on_probs is not None:
                on_probs(r, {t: v[j] for t, v in probs.items()})
        return results


def _base_result(item: Loaded) -> dict:
    return {"path": str(item.path), "error": item.error, "warnings": list(item.exif.warnings),
            "lat": None, "lon": None, "true_lat": None, "true_lon": None, "error_km": None}


def predict(
    bundle_or_path,
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    top_k: int = 5,
    batch_size: int = 32,
    *,
    map_out: str | os.PathLike | None = None,
    map_dpi: int = 100,
    progress: bool | None = False,
    workers: int | None = None,
    truth: str | os.PathLike | TruthTable | None = None,
    retrieval: bool = True,
) -> list[dict]:
    """One dict per input file (see the module docstring); failed files carry ``error``.

    ``map_out``: write a probability map per image (see :func:`geomtl_core.inference.maps.map_paths`).
    ``truth``: a truth table (or the path of a CSV/TSV, :func:`~geomtl_core.data.truth.read_truth`)
    giving the true location, and so the error, of the images it lists.
    ``retrieval``: use the bundle's retrieval gallery when it has one (the hybrid); False: the classifier alone.
    """
    from geomtl_core.data.truth import read_truth
    from geomtl_core.models.bundle import Bundle, load_bundle

    bundle = bundle_or_path if isinstance(bundle_or_path, Bundle) else load_bundle(bundle_or_path)
    if truth is not None and not isinstance(truth, TruthTable):
        truth = read_truth(truth)
    inputs = scan_inputs(paths)
    return list(iter_predict(bundle, inputs.files, top_k, batch_size, map_out=map_out, map_dpi=map_dpi,
                             progress=progress, workers=workers, truth=truth, ids=inputs.ids,
                             retrieval=retrieval))


def iter_predict(bundle, files: list[Path], top_k: int = 5, batch_size: int = 32, *, map_out=None, map_dpi: int = 100,
                 progress: bool | None = False, workers: int | None = None, truth: TruthTable | None = None,
                 ids: list[str] | None = None, retrieval: bool = True) -> Iterator[dict]:
    """Streaming form of :func:`predict` over a scanned file list (``ids``: default, the file names)."""
    predictor = Predictor(bundle, top_k=top_k, batch_size=batch_size, workers=workers, truth=truth,
                          retrieval=retrieval)
    ids = [Path(f).name for f in files] if ids is None else ids
    on_probs = None
    if map_out is not None:
        from geomtl_core.inference.maps import map_paths, plot_prediction

        targets = map_paths(map_out, files)

        def on_probs(result: dict, probs: dict) -> None:
            out = targets[result["path"]]
            try:
                plot_prediction(result, probs, bundle.parts, out, dpi=map_dpi)
                result["map"] = str(out)
            except Exception as exc:
                result["warnings"].append(f"map not written ({type(exc).__name__}: {exc})")

    for img_id, result in zip(ids, predictor.run(files, progress=progress, on_probs=on_probs), strict=True):
        yield {"img_id": img_id, **result}
