"""The one reader of truth and metadata files (issue 37, item 1): ``geomtl_core.data.truth.read_locations``, under
``predict --truth`` (``read_truth``), ``evaluate --meta`` and the training CSVs (``read_metadata``)."""

import sys
from pathlib import Path

from geomtl_core.data.metadata import MetadataError, read_metadata
from geomtl_core.data.truth import LocationFileError, read_locations, read_truth

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from landmarks import landmark_rows


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_known_headers_take_coordinates_by_name(tmp_path):
    """Catches a layout read by position: YFCC4k's dump has lon before lat, and each known header (Im2GPS,
    YFCC25600, YFCC4k, geomtl's prediction CSV, a TSV or ;-separated table) gives the same ids and coordinates."""
    files = {
        "geoestimation": _write(tmp_path, "im2gps.csv", "IMG_ID,AUTHOR,LAT,LON,S3_Label\na.jpg,me,10.5,20.25,1\n"
                                                        "b/c.jpg,me,-5,30,2\n"),
        "yfcc25600": _write(tmp_path, "y26.csv", "name,AUTHOR,lat,lon\na.jpg,me,10.5,20.25\nb/c.jpg,me,-5,30\n"),
        "yfcc100m": _write(tmp_path, "y4k.csv", "RecordNumber,name,Tags,lon,lat,PhotoURL\n"
                                                '1,a.jpg,"x,y",20.25,10.5,http://u\n2,b/c.jpg,,30,-5,http://v\n'),
        "geomtl predictions": _write(tmp_path, "pred.csv",
                                     "img_id,true_lat,true_lon,pred_lat,pred_lon,error_km,path\n"
                                     "a.jpg,10.5,20.25,0,0,1,/p/a.jpg\nb/c.jpg,-5,30,0,0,1,/p/b/c.jpg\n"),
        "table": _write(tmp_path, "t.tsv", "file\tlatitude\tlongitude\na.jpg\t10.5\t20.25\nb/c.jpg\t-5\t30\n"),
    }
    semicolons = _write(tmp_path, "s.csv", "id;lat;lon\na.jpg;10.5;20.25\nb/c.jpg;-5;30\n")
    for layout, path in [*files.items(), ("table", semicolons)]:
        t = read_locations(path)
        assert t.attrs["layout"] == layout, path
        assert t["img_id"].tolist() == ["a.jpg", "b/c.jpg"], path
        assert t["lat"].tolist() == [10.5, -5.0] and t["lon"].tolist() == [20.25, 30.0], path
        assert t["line"].tolist() == [2, 3] and t.attrs["skipped"] == 0, path
    assert read_locations(files["yfcc100m"])["Tags"].tolist() == ["x,y", ""]  # quoted commas stay one field
    assert read_locations(files["geomtl predictions"])["keys"][0] == ("a.jpg", "/p/a.jpg")  # every id column
    assert read_metadata(files["geoestimation"])["s3"].tolist() == [1, 2]


def test_headerless_table_like_landmarks_tsv(tmp_path):
    """Catches the landmark layout (no header: name, lat, lon, file, size, licence; a row without a photo; a
    trailing row count) being refused or its count read as a row: the id is the photo's file name where the
    row has one, else its name; both match a photo."""
    path = _write(tmp_path, "places.tsv", "Eiffel Tower\t48.8582\t2.2946\tEiffel Tower.jpg\t(300, 555)\tCC BY-SA\n"
                                          "Hexagon\t37.4013\t-116.8680\t\tMISSING\t\n"
                                          "Taj Mahal\t27.1729\t78.0426\ttaj.jpg\t(300, 197)\t\n3\n")
    t = read_locations(path)
    assert t.attrs["layout"] == "headerless" and t.attrs["delimiter"] == "\t"
    assert t["img_id"].tolist() == ["Eiffel Tower.jpg", "Hexagon", "taj.jpg"] and t["line"].tolist() == [1, 2, 3]
    truth = read_truth(path)
    assert truth.n == 3 and truth.get("photos/taj.jpg") == (27.1729, 78.0426)
    assert truth.get("Taj Mahal") == (27.1729, 78.0426) and truth.get("x/Eiffel Tower.jpg") == (48.8582, 2.2946)
    assert read_metadata(path)["img_id"].tolist() == ["Eiffel Tower.jpg", "Hexagon", "taj.jpg"]


def test_rows_without_coordinates_are_skipped_and_counted(tmp_path):
    """Catches a predict CSV's failed rows (no truth) stopping the reader, and a row with only one of its two
    coordinates passing as a location: rows with neither are skipped and counted, half rows are invalid."""
    path = _write(tmp_path, "p.csv", "img_id,true_lat,true_lon,pred_lat,pred_lon,error_km\na,1,2,0,0,1\n"
                                     "b,,,0,0,\nc,3,4,0,0,1\nd,,,,,\n")
    t = read_locations(path)
    assert t["img_id"].tolist() == ["a", "c"] and t.attrs["skipped"] == 2 and t.attrs["skipped_lines"] == [3, 5]
    assert read_truth(path).skipped == 2 and read_metadata(path).attrs["skipped"] == 2
    _write(tmp_path, "half.csv", "name,lat,lon\na,1,2\nb,,3\n")
    with pytest.raises(LocationFileError, match=r"half\.csv: 1 invalid coordinates .* at rows: b \(lines 3\)"):
        read_locations(tmp_path / "half.csv")
    _write(tmp_path, "none.csv", "name,lat,lon\na,,\n")
    with pytest.raises(LocationFileError, match="no rows with coordinates"):
        read_locations(tmp_path / "none.csv")


def test_errors_name_the_file_and_the_lines(tmp_path):
    """Catches errors that do not say where: duplicate ids with their line numbers, invalid coordinates with the
    file, ids and lines, text that is no number, short rows, unknown headers, empty and binary files."""
    cases = [
        ("dup.csv", "IMG_ID,LAT,LON\na,1,2\nb,1,2\na,3,4\n", r"dup\.csv: 1 duplicate image ids: 'a' on lines 2, 4"),
        ("bad.csv", "name,lat,lon\nok,1,1\nx,95,1\ny,1,200\n",
         r"bad\.csv: 2 invalid coordinates .* at rows: x, y \(lines 3, 4\)"),
        ("text.tsv", "name\tlat\tlon\na\t1\t2\nb\tnorth\t2\n", r"text\.tsv:3: latitude/longitude are not numbers"),
        ("short.csv", "name,lat,lon\na,1,2\nb,1\n", r"short\.csv:3: 2 fields, expected 3"),
        ("cols.csv", "IMG_ID,LAT\na,1\n", r"cols\.csv: no latitude/longitude columns .*IMG_ID,LAT,LON"),
        ("noid.csv", "lat,lon\n1,1\n", r"noid\.csv: no id or file-name column"),
        ("empty.csv", "\n# only a comment\n", r"empty\.csv: empty file"),
    ]
    for name, text, message in cases:
        with pytest.raises(LocationFileError, match=message):
            read_locations(_write(tmp_path, name, text))
        with pytest.raises(MetadataError, match=message):  # the metadata reader is the same reader
            read_metadata(tmp_path / name)
    (tmp_path / "photo.csv").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    with pytest.raises(LocationFileError, match=r"photo\.csv: not a text file"):
        read_locations(tmp_path / "photo.csv")
    with pytest.raises(LocationFileError, match=r"missing\.csv does not exist"):
        read_locations(tmp_path / "missing.csv")


def test_published_results_file_stops_at_its_summary(tmp_path):
    """Catches GeoEstimation's per-image results being unreadable as truth: the summary block after the first
    blank line is not rows."""
    path = _write(tmp_path, "res.csv", "img_id,gt_lat,predicted_lat,gt_long,predicted_long,great_circle_distance\n"
                                       "a,1,0,2,0,5\nb,3,0,4,0,5\n\nacc_1km,acc_25km\n0.1,0.2\n")
    t = read_locations(path)
    assert t.attrs["layout"] == "geoestimation predictions" and t["img_id"].tolist() == ["a", "b"]


def test_a_tsv_and_a_csv_of_the_same_metadata_read_alike(tmp_path):
    """Catches ``evaluate --meta`` reading a TSV as a CSV (one column, a garbled error): the same table with tabs
    reads exactly as with commas, labels included."""
    rows = ["IMG_ID,AUTHOR,LAT,LON,S3_Label,S16_Label,Prob_indoor", "a.jpg,me,1.5,2.5,0,3,0.25",
            "b.jpg,you,-1.5,-2.5,2,15,0.5"]
    csv_meta = read_metadata(_write(tmp_path, "m.csv", "\n".join(rows) + "\n"))
    tsv_meta = read_metadata(_write(tmp_path, "m.tsv", "\n".join(r.replace(",", "\t") for r in rows) + "\n"))
    assert csv_meta.equals(tsv_meta) and list(csv_meta.columns) == ["img_id", "lat", "lon", "s3", "s16", "p_indoor"]
    assert csv_meta["s16"].dtype == np.int64 and csv_meta["p_indoor"].tolist() == [0.25, 0.5]
    _write(tmp_path, "nolabel.csv", "IMG_ID,LAT,LON,S3_Label\na,1,2,0\nb,1,2,\n")
    with pytest.raises(MetadataError, match=r"s3 labels .* \['b \(line 3\)'\]"):
        read_metadata(tmp_path / "nolabel.csv")


def test_the_shared_landmarks_tsv(shared):
    """Catches the real landmarks.tsv being misread: all 32 rows with their coordinates (the MISSING rows too:
    they have coordinates, only no photo), each photo of the folder found by its file name with the coordinates
    the independent parser in tests/landmarks.py reads."""
    folder = shared / "photos" / "landmarks"
    table = read_locations(folder / "landmarks.tsv")
    assert table.attrs["layout"] == "headerless" and len(table) == 32 and table.attrs["skipped"] == 0
    photos = landmark_rows(folder)
    assert len(photos) >= 20
    truth = read_truth(folder / "landmarks.tsv")
    meta = read_metadata(folder / "landmarks.tsv").set_index("img_id")
    for photo, lat, lon in photos:
        assert truth.get(photo) == pytest.approx((lat, lon), abs=1e-12)
        assert (meta.loc[photo.name, "lat"], meta.loc[photo.name, "lon"]) == pytest.approx((lat, lon), abs=1e-12)
    without_photo = [i for i in table["img_id"] if not (folder / i).is_file()]
    assert len(without_photo) == 32 - len(photos)
