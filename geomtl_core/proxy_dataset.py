"""On-the-fly proxy samples, an alternative to the exported shards (``geomtl train`` and the notebooks
read the shards): each item is cut from the world image when asked, with a
random jitter of position (a few km), scale and rotation, so no two epochs see the same pixels."""

from __future__ import annotations

from dataclasses import dataclass

from geomtl_core.dataset import LabelTable
from geomtl_core.geodesy import EARTH_RADIUS_KM
from geomtl_core.proxy_world import World, check_crop, cut, destinations, load_world

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class Jitter:
    """Random augmentation of a crop: centre shift up to ``shift_km``, scale range, rotation range (deg)."""

    shift_km: float = 5.0
    scale: tuple[float, float] = (0.85, 1.15)
    rotation_deg: float = 180.0


def jittered_crop(
    world: World, lat: float, lon: float, fov_km: float, size: int, jitter: Jitter, rng: np.random.Generator
) -> np.ndarray:
    """One ``(size, size, 3)`` crop near (lat, lon): moved by a uniform random offset within ``shift_km``,
    scaled and rotated at random."""
    r = jitter.shift_km * np.sqrt(rng.uniform())
    a = rng.uniform(0, 2 * np.pi)
    clat, clon = destinations([lat], [lon], np.array([r * np.sin(a)]), np.array([r * np.cos(a)]))
    scale = np.exp(rng.uniform(*np.log(jitter.scale)))
    rot = rng.uniform(-jitter.rotation_deg, jitter.rotation_deg)
    return cut(world, clat[0], clon[0], fov_km, size, rotation_deg=rot, scale=scale)[0]


class ProxyOnTheFlyDataset(Dataset):
    """``(image uint8 HWC tensor, {task: label tensor})`` like ``GeoImageDataset``, cut from the world image
    at each label-table location; jittered when ``train``, exact (north up, ``fov_km`` wide) otherwise."""

    def __init__(
        self, labels: LabelTable, fov_km: float = 300.0, size: int = 64, train: bool = True,
        jitter: Jitter | None = None, seed: int = 0, world: World | None = None,
    ):
        check_crop(fov_km, size)
        self.labels = labels
        self.fov_km, self.size, self.train = fov_km, int(size), train
        self.jitter = jitter or Jitter()
        if self.jitter.shift_km < 0 or self.jitter.shift_km > np.pi * EARTH_RADIUS_KM or min(self.jitter.scale) <= 0:
            raise ValueError(f"invalid jitter {self.jitter}")
        self.seed = seed
        self.epoch = 0
        self._world = world

    @property
    def world(self) -> World:
        if self._world is None:
            self._world = load_world()
        return self._world

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops (deterministically) for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels.img_id)

    def __getitem__(self, k: int):
        lat, lon = float(self.labels.lat[k]), float(self.labels.lon[k])
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, int(k)])
            img = jittered_crop(self.world, lat, lon, self.fov_km, self.size, self.jitter, rng)
        else:
            img = cut(self.world, lat, lon, self.fov_km, self.size)[0]
        y = {name: torch.as_tensor(v[k]) for name, v in self.labels.targets.items()}
        return torch.from_numpy(np.ascontiguousarray(img)), y
