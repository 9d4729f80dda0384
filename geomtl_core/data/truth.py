"""The one reader of files that give photos' true locations (pure Python, numpy and pandas: no torch).

:func:`read_locations` reads every such file the project meets: truth tables (``geomtl predict --truth``),
benchmark metadata (``geomtl evaluate --meta``, training CSVs via
:func:`~geomtl_core.data.metadata.read_metadata`) and the CSV ``geomtl predict --csv`` writes, read for its truth.
CSV or TSV (the delimiter is sniffed from the first row), with a header or none:

- a header in a known layout (:mod:`~geomtl_core.data.layouts`): Im2GPS ``IMG_ID,AUTHOR,LAT,LON,...``,
  YFCC25600 ``name,AUTHOR,lat,lon,...``, YFCC4k's YFCC100M dump (``lon`` before ``lat``: taken by name, never
  by position), geomtl's prediction files ``img_id,true_lat,true_lon,...`` and GeoEstimation's published ones
  ``img_id,gt_lat,...,gt_long,...`` (their summary block after the first blank line is ignored); else any
  latitude/longitude names with an id or file-name column (:data:`~geomtl_core.data.predictions.KEY_NAMES`);
- no header (the first row has two numbers): ``name, lat, lon, ...`` as the landmark folder's
  ``landmarks.tsv``; the first two numeric columns are latitude and longitude, and every column that holds
  photo file names is a key too (the id is the row's file name where it has one, else its first field).

Rows whose latitude and longitude are both empty are skipped and counted; blank lines, ``#`` comments and
lone fields (``landmarks.tsv`` ends with its row count) are no rows. Errors name the file and the line:
numbers that are not numbers, invalid coordinates (NaN, ``|lat| > 90``, ``|lon| > 180``, or one of the two
missing) and duplicate ids.
"""

from __future__ import annotations

import csv
from itertools import compress, zip_longest
from pathlib import Path

from geomtl_core.data.layouts import LAT_NAMES, LON_NAMES, Layout, detect_layout
from geomtl_core.data.photo_files import IMAGE_SUFFIXES
from geomtl_core.data.predictions import KEY_NAMES, TruthTable
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import InvalidCoordinatesError, validate_coordinates

import numpy as np
import pandas as pd

BASE_COLUMNS = ("img_id", "lat", "lon", "line", "keys")
"""The columns every table of :func:`read_locations` has; a header file's other columns follow as text."""

KNOWN_LAYOUTS = ("IMG_ID,AUTHOR,LAT,LON,... (Im2GPS), name,...,lat,lon,... (YFCC25600, YFCC4k), "
                 "img_id,true_lat,true_lon,... (geomtl predict --csv), or no header: name, lat, lon, ... "
                 "(as landmarks.tsv)")
KNOWN_HEADERS = ("IMG_ID,LAT,LON", "name,lat,lon", "img_id,true_lat,true_lon")


class LocationFileError(InputError):
    """A truth or metadata file that cannot be read as one of the known layouts; names the file (and lines)."""


def sniff_delimiter(first_line: str) -> str:
    """The delimiter of a table from its first row: a tab if it has one, else ``;`` where it outnumbers ``,``.

    >>> sniff_delimiter("IMG_ID,AUTHOR,LAT,LON"), sniff_delimiter("Taj Mahal\\t27.17\\t78.04"), sniff_delimiter("a;1;2")
    (',', '\\t', ';')
    """
    if "\t" in first_line:
        return "\t"
    return ";" if first_line.count(";") > first_line.count(",") else ","


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _is_file_name(text: str) -> bool:
    return Path(text.strip()).suffix.lower() in IMAGE_SUFFIXES


def _read_rows(path: Path) -> tuple[str, list[tuple[int, list[str]]]]:
    """(delimiter, [(line number, fields)]) of the file's rows, blank lines kept as empty rows."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            first = ""
            for first in fh:
                if first.strip() and not first.startswith("#"):
                    break
            fh.seek(0)
            delim = sniff_delimiter(first)
            reader = csv.reader(fh, delimiter=delim)
            rows = []
            for fields in reader:
                if fields and fields[0].startswith("#"):
                    continue
                rows.append((reader.line_num, fields))
    except UnicodeDecodeError as exc:
        raise LocationFileError(f"{path}: not a text file ({exc.reason} at byte {exc.start}); expected a CSV or "
                                "TSV of image id, latitude, longitude") from exc
    except csv.Error as exc:
        raise LocationFileError(f"{path}: not a readable CSV/TSV ({exc})") from exc
    return delim, rows


def _header_layout(path: Path, header: list[str]) -> tuple[Layout, str]:
    """The layout of a header and its name: a metadata layout, a prediction file's truth, or any lat/lon names."""
    for kind in ("metadata", "predictions"):
        try:
            layout = detect_layout(header, kind)
        except InputError:
            continue
        return layout, layout.name if kind == "metadata" else f"{layout.name} predictions"
    try:
        return detect_layout(header, "coordinates"), "table"
    except InputError:
        raise LocationFileError(
            f"{path}: no latitude/longitude columns among {header[:12]}; expected a header such as "
            f"{' or '.join(KNOWN_HEADERS)} (any of {', '.join(LAT_NAMES)} and {', '.join(LON_NAMES)}, any case, "
            "with an id or file-name column), or no header at all: name, lat, lon, ...") from None


def _id_column(header: list[str], key_cols: list[int], body: list[tuple[int, list[str]]]) -> int:
    """The key column whose values are most often photo file names (ties: the order of KEY_NAMES)."""
    def score(i: int) -> tuple[int, int]:
        files = sum(_is_file_name(f[i]) for _, f in body[:1000] if len(f) > i)
        return files, -KEY_NAMES.index(header[i].lower())

    return max(key_cols, key=score)


def read_locations(path: str | Path) -> pd.DataFrame:
    """The true locations a CSV/TSV gives, one row per image: ``img_id``, ``lat``, ``lon``, ``line`` (its line
    in the file), ``keys`` (every id or file name the row gives, ``img_id`` first), then a header file's other
    columns as text. ``attrs``: ``source``, ``layout`` (e.g. ``geoestimation``, ``yfcc100m``, ``yfcc25600``,
    ``geomtl predictions``, ``table``, ``headerless``), ``delimiter``, ``skipped`` (rows without coordinates)
    and ``skipped_lines``. See the module's docstring for the layouts; raises :class:`LocationFileError`."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise LocationFileError(f"{path} {what}; give a CSV or TSV of image id, latitude, longitude")
    delim, rows = _read_rows(path)
    data = [(n, f) for n, f in rows if f]
    if not data:
        raise LocationFileError(f"{path}: empty file; expected rows of image id, latitude, longitude in one of the "
                                f"layouts {KNOWN_LAYOUTS}")
    first_line, first = data[0]
    first = [c.strip() for c in first]
    numeric = [i for i, c in enumerate(first) if _number(c) is not None]
    if len(numeric) >= 2:
        header = None
        lat_i, lon_i = numeric[0], numeric[1]
        body = [(n, f) for n, f in rows if len(f) > 1]  # a lone field (a trailing count) is no row
        key_cols = sorted({0} | {i for _, f in body for i, c in enumerate(f) if _is_file_name(c)} - {lat_i, lon_i})
        file_cols = [i for i in key_cols if any(len(f) > i and _is_file_name(f[i]) for _, f in body)]
        layout_name = "headerless"
    else:
        header = first
        layout, layout_name = _header_layout(path, header)
        lat_i, lon_i = header.index(layout.columns["lat"]), header.index(layout.columns["lon"])
        stop_at_blank = layout_name == "geoestimation predictions"  # a summary block follows the first blank line
        start = next(k for k, (n, _) in enumerate(rows) if n == first_line) + 1
        body = []
        for n, f in rows[start:]:
            if f:
                body.append((n, f))
            elif stop_at_blank and body:
                break
        key_cols = [i for i, c in enumerate(header) if c.lower() in KEY_NAMES]
        if not key_cols:
            raise LocationFileError(f"{path}: no id or file-name column among {header[:12]}; expected one of "
                                    f"{', '.join(KEY_NAMES)} (any case), or a known layout: {KNOWN_LAYOUTS}")
        id_i = header.index(layout.columns["img_id"]) if "img_id" in layout.columns else \
            _id_column(header, key_cols, body)
        key_cols = [id_i] + [i for i in key_cols if i != id_i]
        file_cols = []
    if not body:
        raise LocationFileError(f"{path}: a header and no rows; expected rows of image id, latitude, longitude")
    lines = np.array([n for n, _ in body])
    fields = [f for _, f in body]
    lengths = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields))
    need = max(lat_i, lon_i, *key_cols) + 1 if header is not None else max(lat_i, lon_i) + 1
    if (lengths < need).any():
        k = int(np.argmax(lengths < need))
        expected = f"{len(header)} (the header's)" if header is not None else f"at least {need}"
        raise LocationFileError(f"{path}:{lines[k]}: {lengths[k]} fields, expected {expected}")
    width = int(lengths.max())
    columns = [list(c) for c in zip_longest(*fields, fillvalue="")] if width else []
    keep = np.array([bool(a.strip() or b.strip()) for a, b in zip(columns[lat_i], columns[lon_i], strict=True)])
    skipped_lines = lines[~keep].tolist()
    if not keep.any():
        raise LocationFileError(f"{path}: no rows with coordinates ({len(skipped_lines)} rows without)")
    if not keep.all():
        columns = [list(compress(c, keep)) for c in columns]
        lines = lines[keep]
    lat, lon = _numbers(path, columns[lat_i], columns[lon_i], lines)
    key_values = [[k.strip() for k in columns[i]] for i in key_cols]
    if file_cols:  # headerless: the photo's file name is the id where the row has one, else the first field
        keys = []
        for row in zip(*key_values, strict=True):
            named = [k for i, k in zip(key_cols, row, strict=True) if i in file_cols and _is_file_name(k)][:1]
            keys.append(tuple(named + [k for k in row if k and k not in named]))
    elif len(key_values) == 1:
        keys = [(k,) if k else () for k in key_values[0]]
    else:
        keys = [tuple(k for k in row if k) for row in zip(*key_values, strict=True)]
    if not all(keys):
        k = keys.index(())
        raise LocationFileError(f"{path}:{lines[k]}: no image id or file name in this row")
    ids = [k[0] for k in keys]
    try:
        lat, lon = validate_coordinates(lat, lon, what="coordinates", labels=np.array(ids, dtype=object))
    except InvalidCoordinatesError as exc:
        where = ", ".join(str(x) for x in lines[exc.rows[:10]])
        raise LocationFileError(f"{path}: {exc} (lines {where}); fix or remove those rows, the first at "
                                f"{path.name}:{lines[exc.rows[0]]}") from exc
    _check_unique(path, ids, lines)
    table = {"img_id": ids, "lat": lat, "lon": lon, "line": lines, "keys": keys}
    if header is not None:
        used = {lat_i, lon_i, key_cols[0]}
        for i, name in enumerate(header):
            if i not in used and name not in BASE_COLUMNS and name not in table and i < len(columns):
                table[name] = columns[i]
    out = pd.DataFrame(table)
    out.attrs.update(source=str(path), layout=layout_name, delimiter=delim, skipped=len(skipped_lines),
                     skipped_lines=skipped_lines)
    return out


def to_floats(texts: list[str]) -> np.ndarray:
    """Numbers from text: an empty (or blank) field and text that is no number are NaN.

    >>> to_floats(["1.5", " 2", "", "x"]).tolist()
    [1.5, 2.0, nan, nan]
    """
    try:
        return np.array([t if t.strip() else "nan" for t in texts], dtype=np.float64)
    except ValueError:
        return np.array([_number(t) if t.strip() and _number(t) is not None else np.nan for t in texts],
                        dtype=np.float64)


def _numbers(path: Path, lat_t: list[str], lon_t: list[str], lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes from their text (empty: NaN, an invalid coordinate); text that is no number is an
    error naming its line."""
    out = []
    for text in (lat_t, lon_t):
        values = to_floats(text)
        if np.isnan(values).any():
            for k in np.flatnonzero(np.isnan(values)):
                if text[k].strip() and _number(text[k]) is None:
                    raise LocationFileError(f"{path}:{lines[k]}: latitude/longitude are not numbers: "
                                            f"{lat_t[k]!r}, {lon_t[k]!r}")
        out.append(values)
    return out[0], out[1]


def _check_unique(path: Path, ids: list[str], lines: np.ndarray) -> None:
    """Duplicate ids are an error naming each with its lines."""
    index = pd.Index(ids)
    dup = index.duplicated(keep=False)
    if not dup.any():
        return
    groups: dict[str, list[int]] = {}
    for i in np.flatnonzero(dup):
        groups.setdefault(ids[i], []).append(int(lines[i]))
    shown = "; ".join(f"{k!r} on lines {', '.join(map(str, v))}" for k, v in list(groups.items())[:5])
    more = f" (and {len(groups) - 5} more)" if len(groups) > 5 else ""
    raise LocationFileError(f"{path}: {len(groups)} duplicate image ids: {shown}{more}; list each image once")


def read_truth(path: str | Path) -> TruthTable:
    """The truth table of ``geomtl predict --truth``: :func:`read_locations`, every key of a row matching a photo
    by its id, file name or stem (see :class:`~geomtl_core.data.predictions.TruthTable`). ``skipped``: the rows
    without coordinates."""
    table = read_locations(path)
    keys, lat, lon = [], [], []
    for row_keys, la, lo in zip(table["keys"], table["lat"], table["lon"], strict=True):
        keys += row_keys
        lat += [la] * len(row_keys)
        lon += [lo] * len(row_keys)
    truth = TruthTable(str(path), keys, np.array(lat, dtype=np.float64), np.array(lon, dtype=np.float64),
                       len(table))
    truth.skipped = table.attrs["skipped"]
    return truth
