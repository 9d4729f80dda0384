"""GeoEstimation's other claims on the proxy, side by side with the paper: individual scene networks (ISN),
three partitionings against one, the hierarchy f* against single heads, and multi-task against the base
model; ``results/<scale>/paper_trends.csv`` sets each proxy difference beside the same difference computed
from the paper's published per-image Im2GPS predictions (when ``../shared`` holds them)."""

from __future__ import annotations

import os
from pathlib import Path

from geomtl_core.compendium import grid
from geomtl_core.compendium.design import AUX, ISN_TASK
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.provision import export_sizes
from geomtl_core.compendium.results import compare_runs, read_result, results_dir
from geomtl_core.compendium.runs import seed_run_name
from geomtl_core.compendium.scales import scale_params
from geomtl_core.compendium.statistics import seed_summary
from geomtl_core.config import deep_merge
from geomtl_core.data.predictions import read_predictions, write_predictions
from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.metrics import summarize_errors
from geomtl_core.geo.protocol import PRIMARY_KM, escape_markdown, interval_word, plural
from geomtl_core.geo.stats import spatial_blocks
from geomtl_core.inference.evaluation import partition_heads
from geomtl_core.models.bundle import write_json_atomic

import numpy as np
import pandas as pd


def isn_shares(scale: str, root: Path | None = None) -> dict[int, float]:
    """Share of the training split in each scene class of :data:`ISN_TASK` (:func:`provision.export_sizes`)."""
    return dict(export_sizes(scale, root).isn_shares)


def isn_runs(scale: str, root: Path | None = None) -> dict[str, tuple[int, dict, dict[int, dict] | None]]:
    """Name -> (scene class, overrides before the recipe, per-seed overrides) of the individual scene networks:
    per class of :data:`ISN_TASK`, ``isn_s3_c<k>`` starts from the base model of the same seed (``st_hier``,
    ``train.init_from``) and ``isn_scratch_s3_c<k>`` from scratch, both on the class's images with steps in
    proportion to its share of the training split."""
    root = find_root() if root is None else Path(root)
    budget = grid.steps_budget(scale, root)
    seeds = list(scale_params(scale)["seeds"])
    start = {s: {"train": {"init_from": str(root / "runs" / scale / seed_run_name("st_hier", s, seeds))}}
             for s in seeds}
    out: dict[str, tuple[int, dict, dict[int, dict] | None]] = {}
    for c, share in isn_shares(scale, root).items():
        over = {"data": {"subset_task": ISN_TASK, "subset_class": c, "scene_tasks": []},
                "train": {"samples_per_epoch": max(1, round(share * budget))}}
        out[f"isn_{ISN_TASK}_c{c}"] = (c, over, start)
        out[f"isn_scratch_{ISN_TASK}_c{c}"] = (c, over, None)
    return out


def run_isn(scale: str, root: Path | None = None) -> dict:
    """Individual scene networks (ISN) as the paper trains them: per scene class of :data:`ISN_TASK`, the base
    model (``st_hier``, same seed) fine-tuned on that class's images, with steps in proportion to its share
    (``isn_s3_c<k>``); and, under names that say so, the equal-compute variant trained from scratch on the same
    images (``isn_scratch_s3_c<k>``), as :func:`isn_runs` composes them. Every test image goes to the member of
    its predicted scene (the ``mtl_s3`` run's scene head, same seed; ``isn_s3``, ``isn_scratch_s3``) and, as an
    upper reference, of its true scene (``isn_s3_true``). Returns the routed results."""
    root = find_root() if root is None else Path(root)
    grid.run_named("st_hier", scale, AUX["st"], root)  # the members' start models
    members, scratch = {}, {}
    for name, (c, over, start) in isn_runs(scale, root).items():
        (scratch if start is None else members)[c] = grid.run_named(name, scale, over, root, seed_overrides=start)
    router = grid.run_named("mtl_s3", scale, AUX["s3"], root)
    out = {}
    for name, group, column in ((f"isn_{ISN_TASK}", members, f"{ISN_TASK}_pred"),
                                (f"isn_{ISN_TASK}_true", members, f"{ISN_TASK}_true"),
                                (f"isn_scratch_{ISN_TASK}", scratch, f"{ISN_TASK}_pred")):
        out[name] = _route(scale, name, group, router, column, root)
    return out


def _route(scale: str, name: str, members: dict[int, dict], router: dict, column: str, root: Path) -> dict:
    """Per seed: each test image takes the f* prediction of the member of its ``column`` scene class."""
    seeds = list(scale_params(scale)["seeds"])
    runs = {}
    for s in seeds:
        run = seed_run_name(name, s, seeds)
        scenes = pd.read_csv(root / "runs" / scale / router["seeds"][str(s)] / "predictions_test.scenes.csv",
                             dtype={"img_id": str})
        route = dict(zip(scenes["img_id"], scenes[column], strict=True))
        preds = {c: read_predictions(root / "runs" / scale / m["seeds"][str(s)] / "predictions_test.hierarchy.csv")
                 for c, m in members.items()}
        first = next(iter(preds.values()))
        ids = first.img_id.astype(str)
        which = np.array([route[i] for i in ids])
        lat, lon = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
        for c, p in preds.items():
            if not np.array_equal(p.img_id.astype(str), ids):
                raise ValueError(f"ISN member {c} scored different test images")
            lat[which == c], lon[which == c] = p.pred_lat[which == c], p.pred_lon[which == c]
        if np.isnan(lat).any():
            missing = sorted(set(which[np.isnan(lat)].tolist()))
            raise ValueError(f"test images routed to scene classes without an ISN member: {missing}")
        out = root / "runs" / scale / run
        out.mkdir(parents=True, exist_ok=True)
        for stem in ("predictions_test.csv", "predictions_test.hierarchy.csv"):
            write_predictions(out / stem, ids, first.true_lat, first.true_lon, lat, lon, extra={"member": which})
        err = haversine_km(first.true_lat, first.true_lon, lat, lon)
        summary = summarize_errors(err, with_ci=True, blocks=spatial_blocks(first.true_lat, first.true_lon))
        runs[str(s)] = run
        if s == seeds[0]:
            head = {"name": name, "scale": scale, "routing": column,
                    "members": {c: m["name"] for c, m in members.items()},
                    "params": sum(m["params"] for m in members.values()),
                    "train_time_s": sum(m["train_time_s"] for m in members.values()),
                    "train_images": sum(m["train_images"] for m in members.values()),
                    "config": members[min(members)]["config"],
                    "test": {"n": len(ids), "best": "hierarchy", "methods": {"hierarchy": summary.to_json_dict()},
                             "scene_accuracy": {}}}
    head["seeds"] = runs
    head["seed_summary"] = seed_summary([root / "runs" / scale / r / "predictions_test.csv" for r in runs.values()])
    write_json_atomic(head, results_dir(scale, root) / f"{name}.json")
    return head


def shared_reference() -> Path | None:
    """GeoEstimation's published Im2GPS predictions in the reference-data folder (``$GEOMTL_SHARED``, else
    ``../shared/reference`` beside the project; not part of the project: absent in a user's clone, where the
    paper's column stays empty)."""
    env = os.environ.get("GEOMTL_SHARED")
    base = Path(env).expanduser() if env else find_root().parent / "shared" / "reference"
    path = base / "geoestimation" / "results" / "im2gps"
    return path if path.is_dir() else None


def run_heads(result: dict) -> list[str]:
    """The partitioning heads of a run's result file, coarse -> fine (never f*, its remedies or the retrieval
    methods a run also records: :func:`geomtl_core.inference.evaluation.partition_heads`)."""
    heads = partition_heads(result["test"]["methods"], result["config"]["partition"])
    if not heads:
        raise ValueError(f"run {result.get('name')!r} records no partitioning head among its test methods "
                         f"{list(result['test']['methods'])}")
    return heads


def claims(scale: str, root: Path | None = None) -> list[dict]:
    """The paper's claims as proxy comparisons (run, method) and their published counterpart files."""
    root = find_root() if root is None else Path(root)
    heads = run_heads(read_result(scale, "st_hier", root))  # coarse -> fine
    middle, fine = heads[len(heads) // 2], heads[-1]
    return [
        {"claim": "three partitionings against one (middle cells)", "a": ("st_middle", None),
         "b": ("st_hier", middle), "paper": ("base_L-m", "base_M-m")},
        {"claim": "three partitionings against one (fine cells)", "a": ("st_fine", None), "b": ("st_hier", fine),
         "paper": None},
        {"claim": "f* against the fine head: the hierarchy's own effect (within one model)", "a": ("st_hier", fine),
         "b": ("st_hier", "hierarchy"), "paper": None},
        {"claim": "f* against the middle head (within one model; mostly cell size on the proxy)",
         "a": ("st_hier", middle), "b": ("st_hier", "hierarchy"), "paper": ("base_M-m", "base_M-fstar")},
        {"claim": "ISN (fine-tuned from the base model, predicted scene) against the base model",
         "a": ("st_hier", None), "b": ("isn_s3", None), "paper": ("base_M-fstar", "ISNs_M-fstar-S3")},
        {"claim": "ISN (fine-tuned, true scene) against the base model", "a": ("st_hier", None),
         "b": ("isn_s3_true", None), "paper": None},
        {"claim": "ISN from scratch at equal compute (not the paper's training) against the base model",
         "a": ("st_hier", None), "b": ("isn_scratch_s3", None), "paper": None},
        {"claim": "multi-task (S3) against the base model", "a": ("st_hier", None), "b": ("mtl_s3", None),
         "paper": None},
    ]


TREND_COLUMNS = ["claim", "method_a", "method_b", "endpoint", "diff", "ci_lo", "ci_hi", "p", "p_holm", "n_seeds",
                 "paper_diff"]


def claim_side_label(run_method: tuple[str, str | None]) -> str:
    """How a claim names one side: the run, with its method in brackets where the claim picks one."""
    run, method = run_method
    return run if method is None else f"{run} [{method}]"


def direction(row) -> str:
    """Whether the proxy reproduces the direction of the published effect, in words (the proxy's direction needs
    its interval beside 0 and, where the row has one, its Holm p over the claims at that distance below 0.05)."""
    if pd.isna(row["paper_diff"]):
        return "no published counterpart"
    proxy = interval_word(row["ci_lo"], row["ci_hi"], row.get("p_holm"), words=("up", "down", "unresolved"))
    paper = interval_word(row["paper_ci_lo"], row["paper_ci_hi"], words=("up", "down", "unresolved"))
    if proxy == "unresolved" or paper == "unresolved":
        which = " and ".join(n for n, v in (("proxy", proxy), ("paper", paper)) if v == "unresolved")
        a, b = np.sign(row["diff"]), np.sign(row["paper_diff"])
        sign = "same sign" if a == b != 0 else "opposite sign" if a * b < 0 else "a zero difference"
        if proxy == "unresolved" and interval_word(row["ci_lo"], row["ci_hi"]) != "not resolved":
            return f"{sign}, not resolved (the proxy's interval excludes 0, but not after Holm over the claims)"
        return f"{sign}, not resolved ({which} interval includes 0)"
    return "same direction" if proxy == paper else "opposite direction"


def summary(trends: pd.DataFrame, endpoint: str = f"acc_{PRIMARY_KM}km") -> str:
    """One generated line per claim at ``endpoint``: the proxy's difference and interval, the paper's, and
    whether the direction is reproduced."""
    lines = []
    for _, r in trends[trends["endpoint"] == endpoint].iterrows():
        proxy = (f"{r['diff']:+.2f} points [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] over "
                 f"{plural(int(r['n_seeds']), 'seed')}")
        paper = "the paper published no such pair" if pd.isna(r["paper_diff"]) else (
            f"paper {r['paper_diff']:+.2f} [{r['paper_ci_lo']:+.2f}, {r['paper_ci_hi']:+.2f}] on Im2GPS")
        lines.append(f"- **{escape_markdown(r['claim'])}**: proxy {proxy}; {paper} → {direction(r)}.")
    return "\n".join(lines)


def single_partition_runs(scale: str, root: Path | None = None, peek: bool = False) -> dict[str, dict]:
    """Name -> overrides (before the recipe) of the single-task runs on one partitioning each, at the granularity
    chosen on validation (``st_middle``, ``st_fine``; ``peek``: the choice as recorded, :func:`grid.recipe`)."""
    p = grid.chosen_partition(scale, root, peek)
    return {f"st_{k}": deep_merge(AUX["st"], {"partition": {"tau_max": [p["tau_max"][i]]}})
            for i, k in ((1, "middle"), (2, "fine"))}


def granularity_ablation(scale: str, root: Path | None = None, peek: bool = False) -> dict[str, dict]:
    """Name -> overrides of the declared ablation: the three-partitioning single-task model at the granularity
    the recipe did not choose (``st_hier_tau``)."""
    return {"st_hier_tau": deep_merge(AUX["st"], grid.other_partition(scale, root, peek))}


def granularity_runs(scale: str, root: Path | None = None) -> dict[str, dict]:
    """The three-partitioning single-task model at the partition granularity chosen on validation
    (:func:`geomtl_core.compendium.grid.recipe`) and, as the declared ablation, at the other one."""
    runs = {"st_hier": grid.run_named("st_hier", scale, AUX["st"], root)}
    return runs | {n: grid.run_named(n, scale, o, root) for n, o in granularity_ablation(scale, root).items()}


def granularity_table(scale: str, runs: dict[str, dict], root: Path | None = None) -> pd.DataFrame:
    """Per granularity: classes per partitioning, and f* against the fine head (hierarchy on and off)
    within each model, paired over seeds and blocks."""
    rows = []
    for name, r in runs.items():
        heads = run_heads(r)
        d = compare_runs(scale, name, name, root, method_a="hierarchy", method_b=heads[-1]).at(PRIMARY_KM)
        p = r["config"]["partition"]
        rows.append({"run": name, "tau_min": p["tau_min"], "tau_max": str(p["tau_max"]),
                     "partitionings": ", ".join(heads),
                     f"f* {PRIMARY_KM} km %": round(100 * r["seed_summary"][f"acc_{PRIMARY_KM}km"]["mean"], 2),
                     "f* − fine head (points)": round(d["diff"], 3), "ci95 low": round(d["ci_lo"], 3),
                     "ci95 high": round(d["ci_hi"], 3)})
    return pd.DataFrame(rows).set_index("run")


def trends_display(trends: pd.DataFrame) -> pd.DataFrame:
    """The trend table as the book shows it: per claim and distance, the proxy's and the paper's b − a with
    their intervals, and whether the direction is reproduced."""
    def cell(d, lo, hi) -> str:
        return "—" if pd.isna(d) else f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    rows = [{"claim": r["claim"], "distance": r["endpoint"].removeprefix("acc_"),
             "proxy b − a [95% CI]": cell(r["diff"], r["ci_lo"], r["ci_hi"]), "seeds": int(r["n_seeds"]),
             "paper b − a [95% CI]": cell(r["paper_diff"], r["paper_ci_lo"], r["paper_ci_hi"]),
             "direction": direction(r)} for _, r in trends.iterrows()]
    return pd.DataFrame(rows).set_index(["claim", "distance"])
