"""Sphere geometry, S2 cell ids, adaptive partitionings and their hierarchy, metrics, statistics and
baselines: numpy only (cartopy is imported lazily by :mod:`~geomtl_core.geo.basemap`), the lowest layer."""
