"""A small synthetic geotagged dataset whose pixels depend on location (for pipeline/model tests)."""

from pathlib import Path

from geomtl_core.data.shards import write_shards

import numpy as np
import pandas as pd
import simplejpeg

CENTRES = [(48.8, 2.3), (40.7, -74.0), (-33.9, 151.2), (35.7, 139.7), (-23.5, -46.6), (30.0, 31.2)]


def make_toy_dataset(root: Path, n_train: int = 600, n_val: int = 120, size: int = 48, seed: int = 0) -> Path:
    """Images coloured and patterned by their city cluster, in shards + GeoEstimation CSVs."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 225, (len(CENTRES), 3))
    for split, n in (("train", n_train), ("val", n_val)):
        c = rng.integers(0, len(CENTRES), n)
        lat = np.array([CENTRES[k][0] for k in c]) + rng.normal(0, 0.3, n)
        lon = np.array([CENTRES[k][1] for k in c]) + rng.normal(0, 0.3, n)
        records, ids = [], []
        for i in range(n):
            img = np.clip(palette[c[i]] + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            img[:, (c[i] * 7) % size : (c[i] * 7) % size + 6] = 255  # a cluster-specific stripe
            ids.append(f"{split}_{i:05d}.jpg")
            records.append((ids[-1], simplejpeg.encode_jpeg(img, quality=90)))
        write_shards(records, root / split, per_shard=200)
        pd.DataFrame({"IMG_ID": ids, "AUTHOR": "toy", "LAT": lat, "LON": lon, "S3_Label": c % 3,
                      "S16_Label": c, "S365_Label": c}).to_csv(root / f"{split}.csv", index=False)
    return root


def make_toy_with_test(tmp: Path) -> Path:
    """A toy dataset with a test split of its own images (the same palette: the same seed's first draw)."""
    import shutil

    data = make_toy_dataset(tmp / "toy", n_train=300, n_val=60)
    other = make_toy_dataset(tmp / "other", n_train=7, n_val=60)
    shutil.copytree(other / "val", data / "test")
    shutil.copy(other / "val.csv", data / "test.csv")
    return data


def train_tiny_bundle(root: Path, out: Path, scene_tasks: tuple[str, ...] = ("s3",), data_cache: Path | None = None,
                      **cfg_overrides) -> Path:
    """Train a 1-epoch bundle (32 px, three partitionings) on a toy dataset folder; a few seconds."""
    from geomtl_core.config import ExperimentConfig, deep_merge
    from geomtl_core.training.trainer import train

    data = {"root": str(root), "image_size": 32, "workers": 0, "scene_tasks": list(scene_tasks)}
    if data_cache is not None:
        data["cache_dir"] = str(data_cache)
    cfg = ExperimentConfig.from_dict(deep_merge({
        "data": data,
        "partition": {"tau_min": 5, "tau_max": [200, 100, 60]},
        "model": {"neck_units": 32},
        "train": {"epochs": 1, "batch_size": 32},
    }, cfg_overrides))
    train(cfg, out, verbose=0)
    return out
