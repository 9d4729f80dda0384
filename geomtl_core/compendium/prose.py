"""The book's sentences, generated from result files: a comparison in words, the verdict's conclusions and
the one-paragraph answer (presentation only)."""

from __future__ import annotations

from geomtl_core.compendium.design import model_label
from geomtl_core.geo.protocol import (
    DIRECTION_WORDS,
    NO_INFORMATION,
    PRIMARY_KM,
    dash,
    escape_markdown,
    interval_word,
    plural,
)
from geomtl_core.geo.stats import PairedComparison

import pandas as pd


def describe_difference(c: PairedComparison, a: str, b: str, primary_km: int = PRIMARY_KM) -> str:
    """Plain sentences for the book from a comparison A − B (``a``, ``b``: what A and B are called): the primary
    endpoint first (better, worse or not resolved, with its interval), then the secondary thresholds (markdown:
    a ``*`` in ``a`` or ``b``, as in f*, is escaped)."""
    def word(t: int) -> str:
        k = c.thresholds_km.index(t)
        return interval_word(float(c.ci[k, 0]), float(c.ci[k, 1]))

    a, b = escape_markdown(a), escape_markdown(b)
    seeds = f"{plural(c.n_seeds, 'seed')}, " if c.n_seeds > 1 else ""
    out = []
    if primary_km in c.thresholds_km:
        d = c.at(primary_km)
        said = {"better": f"{a} is better than {b}", "worse": f"{a} is worse than {b}",
                "not resolved": f"not resolved ({a} − {b} could be either sign)"}[word(primary_km)]
        out.append(f"Primary endpoint ({primary_km} km): {a} − {b} = {d['diff']:+.2f} points, 95% CI "
                   f"[{d['ci_lo']:+.2f}, {d['ci_hi']:+.2f}] ({seeds}{plural(c.n_blocks, 'block')}): {said}.")
    rest = {v: [f"{t} km" for t in c.thresholds_km if t != primary_km and word(t) == v] for v in DIRECTION_WORDS}
    parts = [f"{a} better at {', '.join(rest['better'])}"] if rest["better"] else []
    parts += [f"{a} worse at {', '.join(rest['worse'])}"] if rest["worse"] else []
    parts += [f"not resolved at {', '.join(rest['not resolved'])}"] if rest["not resolved"] else []
    if parts:
        out.append("Secondary thresholds: " + "; ".join(parts) + ".")
    return " ".join(out)


SUBJECT = {
    "mtl_vs_st": "the {aux} scene task against geolocation alone",
    "mtl_scene_on_all_vs_st": "the {aux} scene task on all images (geo labels on the share only, the same geo "
                              "images at every step as the single-task run) against geolocation alone",
    "shuffled_control_vs_st": "an auxiliary head on shuffled {aux} labels against geolocation alone",
    "geographic_control_vs_st": "an auxiliary geographic region code ({aux}) against geolocation alone",
    "mtl_vs_shuffled_control": "the real scene labels against the same head on shuffled labels ({aux})",
    "mtl_vs_geographic_control": "the scene labels against a geographic label of equal entropy ({aux})",
    "koppen_geographic_label_vs_st": "Köppen climate (a geographic label) against geolocation alone",
    "data_share_vs_smallest_share": "geolocation alone on this share against the smallest share (positive control)",
    "region_code_on_all_vs_st": "a region code ({aux}) on every training image, geo labels on the share only, "
                                "against geolocation alone (positive control)",
}
WORDS = ("helps", "hurts", "equivalent", "not resolved")


def tally(t: pd.DataFrame) -> str:
    """"2 helps, 0 hurts, 1 equivalent, 3 not resolved of 6" (and ", 1 no information" before "of" where a row
    has a zero-width interval, :data:`geomtl_core.geo.protocol.NO_INFORMATION`)."""
    c = t["verdict"].value_counts()
    words = [*WORDS, NO_INFORMATION] if c.get(NO_INFORMATION, 0) else WORDS
    return ", ".join(f"{c.get(w, 0)} {w}" for w in words) + f" of {len(t)}"


def conclusions(table: pd.DataFrame, scale: str) -> str:
    """The summary's answer, generated from a verdict table: one line per row (grouped by family, then model)
    with its interval, Holm p, minimum detectable effect and word, and a closing count per family."""
    if table.empty:
        return "No comparison has run yet at this scale."
    lines = []
    for fam, rows in table.groupby("family", sort=False) if "family" in table else [("all", table)]:
        tag = "" if fam in ("confirmatory", "all") else " (exploratory)"
        lines.append(f"### {fam.replace('_', ' ').capitalize()}{tag}\n")
        for model, mrows in rows.groupby("model", sort=False):
            lines.append(f"**{model_label(model, scale)}**")
            for _, r in mrows.sort_values(["comparison", "data_fraction"]).iterrows():
                what = SUBJECT.get(r["comparison"], r["comparison"]).format(aux=r["aux_label"])
                mde = f", detectable ≥ {r['mde']:.1f}" if "mde" in r and pd.notna(r["mde"]) else ""
                folds = f", {plural(int(r['n_folds']), 'fold')}" if r.get("n_folds", 1) > 1 else ""
                lines.append(f"- {round(100 * r['data_fraction'])}% of the training images, {what}: "
                             f"{r['diff']:+.2f} points [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}], Holm p = "
                             f"{dash(r['p_holm'], '.3f')}{mde}{folds} → **{r['verdict']}**")
            lines.append("")
        lines.append(f"{fam.replace('_', ' ').capitalize()}: {tally(rows)}.\n")
    seeds, blocks = int(table["n_seeds"].min()), int(table["n_blocks"].min())
    margin = f" (equivalence margin ±{table['equiv_margin'].iloc[0]:g} points)" if "equiv_margin" in table else ""
    lines.append(f"Every row stands on at least {plural(seeds, 'seed')} and {plural(blocks, 'spatial block')}"
                 f"{margin}.")
    return "\n".join(lines)


def answer(table: pd.DataFrame) -> str:
    """One paragraph: does the scene task help with less data and smaller models, by the verdict words of the
    confirmatory family, with the positive control saying whether the design could have seen an effect."""
    if table.empty:
        return "Not answered: no verdict at this scale yet."
    mtl = table[table["comparison"] == "mtl_vs_st"]
    primary = mtl[mtl["family"] == "confirmatory"] if "family" in mtl else mtl
    ctrl = table[table["comparison"].isin(["mtl_vs_shuffled_control", "mtl_vs_geographic_control"])]
    positive = table[table["family"] == "positive_control"] if "family" in table else \
        table[table["comparison"] == "data_share_vs_smallest_share"]
    if primary.empty:
        return "Not answered: the verdict has no multi-task against single-task row yet."
    small = primary[primary["data_fraction"] == primary["data_fraction"].min()]
    worst, best = primary.loc[primary["diff"].idxmin()], primary.loc[primary["diff"].idxmax()]
    text = (f"Multi-task against single-task (the confirmatory family: {_rows(primary)}): {tally(primary)}. "
            f"At the smallest share ({round(100 * small['data_fraction'].min())}%): {tally(small)}. "
            f"The differences range from {worst['diff']:+.2f} to {best['diff']:+.2f} points, accuracy within "
            f"{table['endpoint'].iloc[0].removeprefix('acc_').removesuffix('km')} km")
    if "mde" in primary and primary["mde"].notna().all():
        text += (f"; the smallest effect these rows detect with 80% power at their Holm level is "
                 f"{primary['mde'].min():.1f} to {primary['mde'].max():.1f} points")
    text += f". Scene labels against the controls (shuffled, geographic): {tally(ctrl)}."
    if len(positive):
        words = positive["verdict"]
        if (words == "helps").all():
            text += (f" The positive controls ({tally(positive)}) are resolved as helping, so the design can see "
                     "effects of their size.")
        elif words.isin(["helps", "hurts"]).all():  # resolved, but a control did not do what it was built to
            text += (f" The positive controls are all resolved ({tally(positive)}), so the design can see effects "
                     "of their size; a control that hurts did not supply the help it was built to (read its row).")
        else:
            text += (f" The positive controls are not all resolved ({tally(positive)}): **the design is "
                     "underpowered**, and a row that is not resolved says nothing either way.")
    return text


def _rows(table: pd.DataFrame) -> str:
    """The rows of a verdict slice as words: "frozen at 10%, frozen at 100% and cnn_w25 at 100%"."""
    names = [f"{r['model']} at {round(100 * r['data_fraction'])}%" for _, r in table.iterrows()]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def variance_plan_words(plan: pd.DataFrame) -> str:
    """What :func:`geomtl_core.compendium.tables.variance_plan` says, one sentence per row: where its variance
    lies and which design, if any within the bounds, would bring it to the design's targets."""
    from geomtl_core.compendium.design import TARGETS

    if plan.empty:
        return "No row of this scale is cross-validated, so there is nothing to decompose."
    best = [c for c in plan.columns if c.startswith("± at") or c.startswith("mde at")]
    targets = f"mde ≤ {TARGETS['mde']:g}"
    out = []
    for (family, model, share), r in plan.iterrows():
        design = r["cheapest seeds × folds meeting the targets"]
        head = (f"{model} {share} ({family.replace('_', ' ')}; now {r['seeds × folds']} seeds × folds, "
                f"±{dash(r['± now'], '.2f')}, mde {dash(r['mde now'], '.2f')}): {dash(r['share between'], '.0%')} "
                "of the pooled difference's variance lies between folds' test regions")
        if design.startswith("none"):
            out.append(f"{head}; no design up to {best[0].removeprefix('± at ')} meets the targets ({targets}): "
                       f"that one would reach ±{dash(r[best[0]], '.2f')}, mde {dash(r[best[1]], '.2f')}.")
        else:
            s, f = (int(x) for x in design.split(" × "))
            out.append(f"{head}; the cheapest design that meets the targets ({targets}) is {plural(s, 'seed')} × "
                       f"{plural(f, 'fold')} ({plural(s * f, 'run')} per arm).")
    return " ".join(out)


METHOD_SUBJECT = {
    "hybrid_vs_fstar": "the hybrid against f*", "hybrid_vs_knn": "the hybrid against plain kNN",
    "knn_vs_fstar": "plain kNN against f*", "mtl_vs_st_hybrid": "the scene task, for the hybrid",
    "mtl_vs_st_knn": "the scene task, for plain kNN",
}


def embedding_choice(settings: pd.DataFrame) -> str:
    """Which embedding validation chose for the hybrid and for kNN, counted over the retrieval cells of
    :func:`geomtl_core.compendium.tables.retrieval_settings_table` (the neck's: features the losses shaped)."""
    if settings.empty:
        return "No retrieval cell has been scored at this scale."
    parts = []
    for method in ("hybrid", "kNN"):
        chosen = settings[f"{method}: embedding"]
        parts.append(f"{method} took the trained neck's embedding in {int((chosen == 'neck').sum())} of "
                     f"{plural(len(chosen), 'cell')} and the backbone's pooled features in "
                     f"{int((chosen == 'backbone').sum())}")
    return "Embedding chosen on validation (first seed): " + "; ".join(parts) + "."


def methods_answer(methods: pd.DataFrame, cost: pd.DataFrame) -> str:
    """The retrieval chapter's answer from ``methods.csv`` and :func:`geomtl_core.compendium.tables.cost_table`:
    the most accurate method at each training share (of the cells that scored all three), then every method
    comparison's difference, interval and word."""
    if methods.empty:
        return "This scale declares no retrieval cell, so no method comparison was run."
    acc = f"acc {PRIMARY_KM} km %"  # the cost table's: the scale's split, over seeds
    scored = cost[cost["run"].isin(set(methods["b_run"]) | set(methods["a_run"]))]
    out = []
    for share, g in scored.groupby("share", sort=False):
        best = g.loc[g[acc].idxmax()]
        out.append(f"at {share} of the training images the most accurate is {escape_markdown(best['method'])} "
                   f"({best['model']}, {best['aux']}, {best[acc]:.1f}% within {PRIMARY_KM} km, 95% CI "
                   f"{best['ci95 low']:.1f}–{best['ci95 high']:.1f})")
    text = "Best method per training share (on the scale's split): " + "; ".join(out) + "."
    lines = []
    for r in methods.itertuples():
        share = f"{round(100 * r.data_fraction)}%"
        p = f"Holm p {r.p_holm:.3g}" if r.p_holm > 0 else "Holm p < 1e-4 (no bootstrap replicate beyond 0)"
        runs = f"{plural(int(r.n_seeds), 'seed')} × {plural(int(r.n_folds), 'fold')}"
        subject = escape_markdown(METHOD_SUBJECT.get(r.comparison, r.comparison))
        lines.append(f"- {subject} ({r.model}, {r.aux_label}, {share}): "
                     f"{r.diff:+.2f} points [{r.ci_lo:+.2f}, {r.ci_hi:+.2f}], {p}, mde {dash(r.mde, '.2f')}, {runs}: "
                     f"**{r.verdict}**")
    scene = methods[methods["comparison"] == "mtl_vs_st_hybrid"]
    if len(scene):
        text += f" Does the scene task help the hybrid? {tally(scene)}."
    return text + "\n\n" + "\n".join(lines)


def calibration_words(cal: pd.DataFrame) -> str:
    """The calibration of chapter 05 (:func:`geomtl_core.compendium.calibration.calibration_table`) in a sentence
    or two, from its table: how often the A/A row was decided, how often each injected effect was detected."""
    if cal.empty:
        return f"No calibration at this scale: {cal.attrs.get('reason', 'no cross-validated single-task cell')}."
    aa = cal.loc[0.0]
    shown = [e for e in cal.index if e > 0]
    detected = ", ".join(f"{e:g} points in {cal.loc[e, 'helps %']:.0f}%" for e in shown)
    return (f"On the real runs of `{cal.attrs.get('cell', '?')}` ({int(aa['draws'])} draws per row, one seed per arm "
            f"and fold), the A/A row (two arms that differ only in their seeds) said helps in {aa['helps %']:.1f}% "
            f"and hurts in {aa['hurts %']:.1f}% of draws, against a level of 5% for both together. Injected "
            f"effects were detected as follows: {detected} of draws. With one seed per arm these are lower bounds "
            "of the verdict rows' power, which average their seeds.")


README_START, README_END = "<!-- answer:start (generated by runner --readme from results/default) -->", \
    "<!-- answer:end -->"
"""The markers around the README's generated answer (:func:`readme_answer`); nothing between them is edited by
hand."""


def readme_answer(verdict: pd.DataFrame, records: list[dict]) -> str:
    """The README's answer, every number read from the default build: one sentence per confirmatory row's word,
    the confirmatory table (single-task and multi-task accuracy at the primary endpoint, the difference with its
    interval, the mde and the folds behind it) and the build's own time (the sum of the notebooks' recorded wall times,
    ``records`` from ``book/experiments/*.run.json``, with the machine they name; their commit stays in the
    records: the README names none)."""
    conf = verdict[verdict["role"] == "confirmatory"] if "role" in verdict else verdict.iloc[0:0]
    if conf.empty:
        return "**Not answered yet**: the default build has no confirmatory row (`make book`)."
    order = ["helps", "hurts", "equivalent", "not resolved", NO_INFORMATION]
    words = {w: int((conf["verdict"] == w).sum()) for w in sorted(conf["verdict"].unique(), key=order.index)}
    lead = ", ".join(f"{plural(n, 'row')} {w}" for w, n in words.items())
    lines = [f"**On the pixel-disjoint benchmark, the scene task's effect on accuracy within {PRIMARY_KM} km: {lead} "
             f"(of {len(conf)} confirmatory rows, declared before their numbers).** An effect of "
             f"{conf['mde'].max():.1f} points or more would have shown in every row with 80% power; "
             "\"not resolved\" means a smaller effect either way is not ruled out.", "",
             "| model and share of the training images | single-task | multi-task | difference [95% interval] "
             "| mde | folds | verdict |", "|---|---:|---:|---|---:|---:|---|"]
    for _, r in conf.iterrows():
        lines.append(f"| {model_label(r['model'], 'default')}, {round(100 * r['data_fraction'])}% "
                     f"| {r['a_mean']:.2f}% | {r['b_mean']:.2f}% "
                     f"| {r['diff']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] points | {r['mde']:.1f} "
                     f"| {int(r['n_folds'])} | {r['verdict']} |")
    share = verdict[verdict["comparison"] == "data_share_vs_smallest_share"]
    for _, r in share.iterrows():
        lines += ["", f"The data-share control ({model_label(r['model'], 'default')}, single-task on the largest share "
                  f"against the smallest; exploratory) read {r['diff']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] "
                  f"points: {r['verdict']}."]
    explo = verdict[verdict["role"] != "confirmatory"]
    col = {c: explo[c] if c in explo else pd.Series("", index=explo.index)
           for c in ("comparison", "family", "aux_label", "model")}
    kinds = [name for name, present in (
        ("the data-share control", (col["comparison"] == "data_share_vs_smallest_share").any()),
        ("other shares", ((col["family"] == "secondary") & (col["aux_label"] == "s3")).any()),
        ("S16", (col["aux_label"] == "s16").any()), ("controls", (col["family"] == "controls").any()),
        ("the tuned model", (col["model"] == "tuned").any())) if present]
    which = f" ({', '.join(kinds)})" if kinds else ""
    lines += ["", f"Interval: a t over the fold means ({conf['interval'].iloc[0]}), Holm over the "
              f"{plural(len(conf), 'row')}; {plural(len(explo), 'more row')}{which} are exploratory: "
              "chapter 05 of the book, `results/default/verdict.csv`."]
    if records:
        total = sum(float(r.get("wall_time_s", 0)) for r in records)
        machines = sorted({r["machine"] for r in records if r.get("machine")})
        lines += ["", "These numbers come from one `make book`: "
                  f"its {plural(len(records), 'notebook')} ran {total / 60:.0f} min"
                  + (f" on {' and '.join(machines)}" if machines else "") + " (`book/experiments/*.run.json`)."]
    return "\n".join(lines)
