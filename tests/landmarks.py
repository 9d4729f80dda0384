"""The shared landmark photos as tests read them: one parser of ``landmarks.tsv`` for every test that uses them."""

from pathlib import Path


def landmark_rows(folder: Path) -> list[tuple[Path, float, float]]:
    """(photo, lat, lon) of every photo ``landmarks.tsv`` lists and the folder holds (rows marked MISSING skipped)."""
    rows = []
    for line in (folder / "landmarks.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 5 and cols[3] and "MISSING" not in cols[4] and (folder / cols[3]).exists():
            rows.append((folder / cols[3], float(cols[1]), float(cols[2])))
    return rows
