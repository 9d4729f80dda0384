"""The hybrid's answer, one implementation for the book's runs (:func:`geomtl_core.inference.hybrid.hybrid_for_run`),
``geomtl evaluate`` and ``geomtl predict``: a gallery with the settings chosen on validation (:class:`Retrieval`),
the queries' fine-cell scores (f*, or the finest head's), the point :func:`~geomtl_core.geo.retrieval.hybrid_locate`
gives and the fine cell holding it; and a bundle's stored gallery read back (:func:`load_retrieval`)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomtl_core.errors import InputError
from geomtl_core.files import GALLERY_FILE, HYBRID_FILE
from geomtl_core.geo.partitioning import Hierarchy, Partitioning
from geomtl_core.geo.retrieval import HYBRID_KEYS, Gallery, hybrid_locate
from geomtl_core.inference.embeddings import EMBEDDINGS, embed

import numpy as np


@dataclass
class HybridAnswer:
    """The hybrid's point for each query, the fine cell holding it (-1: none) and that cell's query score."""

    lat: np.ndarray
    lon: np.ndarray
    fine_class: np.ndarray
    score: np.ndarray


@dataclass
class Retrieval:
    """A bundle's gallery with the hybrid's settings (``top_cells``, ``k``, ``kernel_km``), the hierarchy whose
    f* fine-cell scores the settings were chosen with (None: the finest head's probabilities), the embedding
    the gallery holds (:data:`~geomtl_core.inference.embeddings.EMBEDDINGS`) and the model that makes it."""

    gallery: Gallery
    settings: dict[str, Any]
    hierarchy: Hierarchy | None
    embedding: str = "backbone"
    model: Any = None

    def cell_scores(self, probs: dict[str, np.ndarray], parts: list) -> np.ndarray:
        """(n, fine cells) query scores: f* when the settings were chosen with it, else the finest head's."""
        return cell_scores(probs, parts, self.hierarchy)

    def locate(self, pooled: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) of :func:`hybrid_locate` with the bundle's settings, from the queries' backbone features as
        the feature cache holds them (crops' mean; below tuned blocks, their input) made into the gallery's
        embedding."""
        return hybrid_locate(self.gallery, embed(self.model, pooled, self.embedding), scores, **self.settings)

    def answer(self, pooled: np.ndarray, scores: np.ndarray, fine: Partitioning) -> HybridAnswer:
        """The hybrid's answer for queries with these pooled features and (n, fine cells) ``scores``
        (:meth:`cell_scores`): the point, the fine cell of ``fine`` holding it (-1: none) and that cell's score."""
        return point_answer(*self.locate(pooled, scores), scores, fine)


def load_retrieval(bundle) -> Retrieval | None:
    """The bundle folder's retrieval gallery and settings, or None when it has no ``gallery.npz``; a gallery that
    cannot be read, or one without usable settings in ``hybrid.json``, is an InputError naming the file."""
    folder = Path(bundle.path)
    path, settings_path = folder / GALLERY_FILE, folder / HYBRID_FILE
    if not path.is_file():
        return None
    hint = "re-publish the bundle, or use the classifier alone (--no-retrieval)"
    try:
        saved = json.loads(settings_path.read_text())
        settings = {key: saved["hybrid"][key] for key in HYBRID_KEYS}
        embedding = saved["hybrid"].get("embedding", "backbone")  # files written before the neck was tried
    except FileNotFoundError:
        raise InputError(f"{path} has no settings beside it: {settings_path} is missing; {hint}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{settings_path}: no hybrid settings {list(HYBRID_KEYS)} ({type(exc).__name__}: {exc}); "
                         f"{hint}") from None
    try:
        gallery = Gallery.from_npz(path)
    except InputError as exc:
        raise InputError(f"{exc}" if str(path) in str(exc) else f"{path}: {exc}; {hint}") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable gallery file ({type(exc).__name__}: {exc}); {hint}") from None
    if embedding not in EMBEDDINGS:
        raise InputError(f"{settings_path}: unknown retrieval embedding {embedding!r}, expected one of "
                         f"{list(EMBEDDINGS)}; {hint}")
    neck = getattr(bundle.model, "neck_units", 0)
    if embedding == "neck" and neck and gallery.dim != neck:
        raise InputError(f"{path}: the gallery holds {gallery.dim}-dim embeddings, the bundle's neck gives {neck}; "
                         f"{hint}")
    fine = bundle.parts[-1]
    if gallery.n_cells != len(fine):
        raise InputError(f"{path}: the gallery's cells are {gallery.n_cells} fine cells, the bundle's finest "
                         f"partitioning {fine.name!r} has {len(fine)}; {hint}")
    if not hasattr(bundle.model, "heads_from_features"):
        raise InputError(f"{path}: retrieval needs a model that answers from its cached backbone features "
                         f"(frozen, or frozen below its tuned blocks); {hint}")
    hierarchical = saved.get("fstar_method", "hierarchy") == "hierarchy" and len(bundle.parts) > 1
    return Retrieval(gallery, settings, bundle.hierarchy if hierarchical else None, embedding, bundle.model)



def cell_scores(probs: dict[str, np.ndarray], parts: list[Partitioning], hierarchy: Hierarchy | None) -> np.ndarray:
    """(n, fine cells) scores the hybrid narrows with: f* (:meth:`Hierarchy.scores`) with a hierarchy, else the
    finest head's probabilities."""
    if hierarchy is not None:
        return hierarchy.scores([probs[p.name] for p in parts])
    return probs[parts[-1].name]


def point_answer(lat: np.ndarray, lon: np.ndarray, scores: np.ndarray, fine: Partitioning) -> HybridAnswer:
    """Predicted points with the fine cell of ``fine`` holding each (-1: none) and that cell's query score (0
    where none): the columns every prediction file of the hybrid and kNN carries."""
    cls = fine.assign(lat, lon)
    score = np.where(cls >= 0, scores[np.arange(len(cls)), np.clip(cls, 0, None)], 0.0)
    return HybridAnswer(lat, lon, cls, score)
