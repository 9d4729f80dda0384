"""geomtl_core: photo geolocation by multi-task learning (adaptive S2 cells + scene labels).

Importing the package selects Keras' PyTorch backend unless the user chose another,
because Keras 3 otherwise looks for TensorFlow, which this project never installs.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
# Data-loader workers and the model share the CPU cores; OpenMP's default spin-waiting then
# collapses throughput (measured here: 31 vs 246 images/s). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from geomtl_core.geodesy import EARTH_RADIUS_KM, InvalidCoordinatesError, haversine_km
from geomtl_core.metrics import THRESHOLDS_KM, GeoSummary, summarize_errors, summarize_predictions

__version__ = "0.1.0"

__all__ = [
    "EARTH_RADIUS_KM",
    "THRESHOLDS_KM",
    "GeoSummary",
    "InvalidCoordinatesError",
    "__version__",
    "haversine_km",
    "summarize_errors",
    "summarize_predictions",
]
