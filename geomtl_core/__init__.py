"""geomtl_core: photo geolocation by multi-task learning (adaptive S2 cells + scene labels).

Importing the package selects Keras' PyTorch backend unless the user chose another,
because Keras 3 otherwise looks for TensorFlow, which this project never installs.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

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
