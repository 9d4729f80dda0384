"""geomtl_core: photo geolocation by multi-task learning (adaptive S2 cells + scene labels).

Layers, each importing only those before it (``tests/test_layers.py`` checks it):
``errors``/``config``/``distributed`` (base) <- :mod:`~geomtl_core.geo` <- :mod:`~geomtl_core.data`
<- :mod:`~geomtl_core.models` <- :mod:`~geomtl_core.inference` <- :mod:`~geomtl_core.training`
<- :mod:`~geomtl_core.cli` and :mod:`~geomtl_core.compendium`.

The one side effect of importing the package is here: it selects Keras' PyTorch backend unless the
user chose another (Keras 3 otherwise looks for TensorFlow, which this project never installs), and
makes OpenMP threads wait passively (data-loader workers and the model share the CPU cores; spinning
collapsed throughput here from 246 to 31 images/s). Both must be set before keras and torch load. Inside a
Jupyter kernel (a notebook run by papermill or opened in JupyterLab) it also turns tqdm's progress bars off
unless ``TQDM_DISABLE`` is set: an executed notebook shows results, not bars (``make book`` shows progress
in the terminal instead).

The public API below is imported lazily, so ``import geomtl_core`` stays light (no torch, no keras).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "ipykernel" in __import__("sys").modules:
    os.environ.setdefault("TQDM_DISABLE", "1")

__version__ = "0.1.0"

_API: dict[str, str] = {
    # geo: geometry, partitionings, metrics and statistics (numpy)
    "EARTH_RADIUS_KM": "geo.geodesy", "InvalidCoordinatesError": "geo.geodesy", "haversine_km": "geo.geodesy",
    "THRESHOLDS_KM": "geo.metrics", "GeoSummary": "geo.metrics", "summarize_errors": "geo.metrics",
    "summarize_predictions": "geo.metrics",
    "Partitioning": "geo.partitioning", "Hierarchy": "geo.partitioning", "build_partitionings": "geo.partitioning",
    "read_cells_csv": "geo.partitioning", "write_cells_csv": "geo.partitioning", "relate": "geo.partitioning",
    "geolocate": "geo.geolocate",
    "spatial_blocks": "geo.stats", "block_bootstrap": "geo.stats", "hierarchical_bootstrap": "geo.stats",
    "paired_comparison": "geo.stats", "holm": "geo.stats",
    # data: file formats, images, datasets
    "read_metadata": "data.metadata", "read_predictions": "data.predictions", "write_predictions": "data.predictions",
    "write_shards": "data.shards", "open_source": "data.shards", "decode_image": "data.images",
    "GeoImageDataset": "data.dataset", "make_loader": "data.dataset", "read_scene_hierarchy": "data.scenes",
    "export_proxy": "data.proxy.export",
    # models, inference, training
    "GeoMTLModel": "models.multitask", "Bundle": "models.bundle", "load_bundle": "models.bundle",
    "resnet50": "models.resnet", "port_torchvision_resnet50": "models.resnet", "load_resnet50_weights": "models.resnet",
    "SyncBatchNormalization": "models.sync_bn",
    "evaluate_split": "inference.evaluation", "predict": "inference.predict",
    "ExperimentConfig": "config", "train": "training.trainer",
    "InputError": "errors",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    """Import a public name from its module on first use."""
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(f"geomtl_core.{_API[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geomtl_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
