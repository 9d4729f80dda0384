#!/usr/bin/env bash
# Run from anywhere: bash .ci/mutations.sh. Each deliberate breakage (issues 22 and 23) applied to a copy of the tree; the named test must fail.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
run() {  # name, file, python-replacement, test
  local name=$1 file=$2 py=$3 test=$4 dir=/tmp/breaks/$1
  rm -rf "$dir"; mkdir -p "$dir"
  git -C "$SRC" archive HEAD | tar -x -C "$dir"; cp -r "$SRC/.assets" "$dir/"
  (cd "$dir" && python3 -c "$py" "$file") || { echo "$name: patch failed"; return; }
  (cd "$dir" && GEOMTL_SHARED="${GEOMTL_SHARED:-$SRC/../shared/reference}" PYTHONPATH="$dir" timeout 900 $SRC/.venv/bin/python -m pytest -q -p no:cacheprovider "$test" 2>&1 | tail -1) | sed "s/^/$name: /"
}
run seed_resampling geomtl_core/geo/stats.py 'import sys;p=sys.argv[1];s=open(p).read();a="w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds)) / n_seeds  # seed weights";assert a in s;open(p,"w").write(s.replace(a,"w = np.full(n_seeds, 1.0 / n_seeds); rng.multinomial(n_seeds, w)"))' tests/test_seed_comparisons.py::test_hierarchical_bootstrap_matches_its_analytic_variance
run seed_resampling_power geomtl_core/geo/stats.py 'import sys;p=sys.argv[1];s=open(p).read();a="w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds)) / n_seeds  # seed weights";assert a in s;open(p,"w").write(s.replace(a,"w = np.full(n_seeds, 1.0 / n_seeds); rng.multinomial(n_seeds, w)"))' tests/test_seed_comparisons.py::test_stated_power_is_the_power_the_procedure_has
run no_holm geomtl_core/compendium/verdict.py 'import sys;p=sys.argv[1];s=open(p).read();a="table.loc[idx, \"p_holm\"] = holm(p)";assert a in s;open(p,"w").write(s.replace(a,"table.loc[idx, \"p_holm\"] = p"))' tests/test_seed_comparisons.py::test_holm_decides_over_the_family
run buffer_47km geomtl_core/data/spatial_split.py 'import sys;p=sys.argv[1];s=open(p).read();a="_nearest_km(lat, lon, held, split == 0) < buffer_km]";assert a in s;open(p,"w").write(s.replace(a,"_nearest_km(lat, lon, held, split == 0) < 0.94 * buffer_km]"))' tests/test_proxy.py::test_default_split_is_spread_like_a_benchmark_with_a_buffer
run flipped_sign geomtl_core/geo/stats.py 'import sys;p=sys.argv[1];s=open(p).read();a="    diff = ha - hb\n";assert a in s;open(p,"w").write(s.replace(a,"    diff = hb - ha\n"))' tests/test_seed_comparisons.py::test_the_sign_is_a_minus_b_everywhere
run verdict_sign geomtl_core/compendium/verdict.py 'import sys;p=sys.argv[1];s=open(p).read();a="compare_runs(scale, b.name, a.name, root";assert a in s;open(p,"w").write(s.replace(a,"compare_runs(scale, a.name, b.name, root"))' tests/test_seed_comparisons.py::test_verdict_on_runs_with_known_effects
run no_lock geomtl_core/compendium/runs.py 'import sys;p=sys.argv[1];s=open(p).read();a="    with FileLock(out.parent / f\".{out.name}.lock\"):\n        if (hit";assert a in s;open(p,"w").write(s.replace(a,"    if True:\n        if (hit"))' tests/test_run_cache.py::test_two_processes_one_training_same_result
# issue 23: blocks not nested in folds; folds without the buffer; arms not paired; ISNs from scratch
run blocks_not_nested geomtl_core/geo/stats.py 'import sys;p=sys.argv[1];s=open(p).read();a="    blocks = spatial_blocks(lat, lon, block_deg, groups)\n";assert a in s;open(p,"w").write(s.replace(a,"    blocks = spatial_blocks(lat, lon, block_deg)\n"))' tests/test_seed_comparisons.py::test_pooled_comparison_pairs_folds_and_nests_blocks_in_them
run folds_no_buffer geomtl_core/data/spatial_split.py 'import sys;p=sys.argv[1];s=open(p).read();a="        out[j] = _cap_and_buffer(split, lat, lon, rng, buffer_km, max_block_share, block_deg)";assert a in s;open(p,"w").write(s.replace(a,"        out[j] = _cap_and_buffer(split, lat, lon, rng, 0.0 if j < k - 1 else buffer_km, max_block_share, block_deg)"))' tests/test_proxy.py::test_spatial_folds_test_every_kept_location_once_and_contain_the_split
run arms_unpaired geomtl_core/training/trainer.py 'import sys;p=sys.argv[1];s=open(p).read();a="        keras.utils.set_random_seed(cfg.train.seed)\n        model = _build_model(cfg, parts, scene, cached_inputs=cached)";assert a in s;open(p,"w").write(s.replace(a,"        model = _build_model(cfg, parts, scene, cached_inputs=cached)"))' tests/test_grid.py::test_the_two_arms_start_from_the_same_neck_and_geo_heads
run isn_from_scratch geomtl_core/training/trainer.py 'import sys;p=sys.argv[1];s=open(p).read();a="            start_from_bundle(model, cfg.train.init_from)";assert a in s;open(p,"w").write(s.replace(a,"            pass"))' tests/test_grid.py::test_isn_starts_from_the_base_model
