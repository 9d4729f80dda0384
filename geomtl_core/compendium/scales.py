"""The named scales of the compendium (smoke, default, full): data size, input size, backbone,
partitionings, epochs, the training seeds every configuration runs with (the seed varies head
initialisation, data order, augmentation and data shares), the experiment grid and the partition
granularity ablated. The one table the runner and the experiments read."""

from __future__ import annotations

from geomtl_core.errors import InputError

_FULL_MODELS = ("frozen", "tuned", "cnn_w25", "cnn_w50")

SCALES: dict[str, dict] = {
    # CI: a few thousand locations, one seed: checks that everything runs, with models that learn something,
    # so that a broken comparison shows. The frozen backbone is the default's ImageNet EfficientNet-Lite0 (its
    # features cost seconds here; a frozen random CNN stayed at the prior: 750 km 19.8% vs 11.5%, 2500 km
    # 32.3% vs 30.0%, 200 km 0%), the small CNNs from scratch take 4 passes (1 stayed at the prior).
    "smoke": {"n": 3000, "size": 64, "fov_km": 100.0, "backbone": "efficientnet_lite0", "pretrained": True,
              "tau_min": 5, "tau_max": [600, 250, 100], "epochs": 2, "batch": 128, "scratch_epochs": 4,
              "fractions": [0.3, 1.0], "workers": 2, "seeds": [0],
              "grid": {"models": {"frozen": {0.3: ["st", "s3", "s16"], 1.0: ["st", "s3", "s16"]},
                                  "tuned": {1.0: ["st", "s3"]}, "cnn_w25": {1.0: ["st", "s3"]},
                                  "cnn_w50": {1.0: ["st", "s3"]}},
                       "scene_all": [["frozen", 0.3]], "controls": [["frozen", 0.3]],
                       "control_labels": ["shuffled_s3", "geographic_s3"], "koppen": [["frozen", 1.0]],
                       "region_on_all": [["frozen", 0.3, "geographic_s3"]], "tune_blocks": 1},
              # two of the ten spatial folds (the export's split is fold 9) for the frozen primary row and the
              # positive controls: checks that the cross-validation path runs
              # epochs (and the scene weight of the multi-task arm) of the tuned model chosen on validation per arm
              "arms": {"models": ["tuned"], "epochs": {"tuned": [1, 2]}, "scene_weight": [0.5, 1.0]},
              "cv": {"folds": [9, 0], "cells": [["frozen", 1.0, "st"], ["frozen", 1.0, "s3"], ["frozen", 0.3, "st"],
                                                ["frozen", 0.3, "geographic_s3", "scene_all"]],
                     "aa": {"cell": ["frozen", 1.0, "st"], "seeds": [0, 1]}},
              "confirmatory": [["frozen", 1.0]],
              "granularity": {"tau_min": 10, "tau_max": [1200, 500, 200]},
              # cells whose test also scores the hybrid and kNN predictors (train.retrieval; chapter 07): the
              # frozen model at two shares and the tuned one (embeddings through its tuned blocks)
              "retrieval": [[m, f, a] for m, f in (("frozen", 0.3), ("frozen", 1.0), ("tuned", 1.0))
                            for a in ("st", "s3")]},
    # A CPU, in at most 75 minutes on 2 cores (book/method.md, "The confirmatory design"; its time: `runner
    # --dry-run`, measured.json): all 100K locations, ImageNet EfficientNet-Lite0 features, 64 px. The recipe is
    # fixed in advance ("recipe"), the learning arms' settings too (no "arms"): symmetric choices, nothing chosen
    # on one arm. One seed per run; the confirmatory rows are cross-validated on 7 of the 10 pixel-disjoint folds
    # (the small CNN's on all 9 usable ones; never fold 8, whose test cells are the export's validation cells), the
    # single-task frozen cell at 100% with a second seed on every fold for the A/A calibration; every other cell
    # runs on the export's split (fold 9) and is exploratory. Its runs last one to three minutes: one killed
    # restarts rather than resumes (no checkpoint before 5 minutes of training), so no run writes a checkpoint it
    # never reads.
    "default": {"n": None, "size": 64, "fov_km": 100.0, "backbone": "efficientnet_lite0", "pretrained": True,
                "tau_min": 10, "tau_max": [1000, 300, 100], "epochs": 6, "batch": 512, "lr": 2e-3,
                "scratch_epochs": 3, "scratch_size": 32, "scratch_validate": False, "fractions": [0.1, 0.3, 1.0],
                "workers": 2, "seeds": [0],
                # training processes of `make book` (runner --workers): 2 on 2 cores measured 0.76-0.79 of the
                # wall time of 1 (benchmarks/bench_workers.py, measured.json)
                "train_workers": 2,
                "recipe": "regularised_2ep", "checkpoint_every_s": 300.0,
                # no tuned blocks here (book/method.md, "Budget"): the smoke and full scales train them
                "grid": {"models": {"frozen": {0.1: ["st", "s3"], 0.3: ["st", "s3"], 1.0: ["st", "s3", "s16"]},
                                    "cnn_w25": {1.0: ["st", "s3"]}},
                         "scene_all": [], "controls": [["frozen", 0.1]],
                         "control_labels": ["shuffled_s3", "geographic_s3"], "koppen": [],
                         "region_on_all": [], "tune_blocks": 2},
                # the small CNN (32 px, 3 passes, decoded once a run: the variance pilot of book/method.md; no
                # validation pass after each epoch, "scratch_validate") with 2 seeds on all 9 usable folds (its
                # pilot's design meeting the target, 6 x 9, is out of budget: 2 seeds are what the budget holds),
                # the frozen rows with 1 seed on 7
                "cv": {"folds": [9, 0, 1, 2, 3, 4, 5], "model_folds": {"cnn_w25": [9, 0, 1, 2, 3, 4, 5, 6, 7]},
                       "model_seeds": {"cnn_w25": [0, 1]},
                       "cells": [["frozen", 0.1, "st"], ["frozen", 0.1, "s3"], ["frozen", 1.0, "st"],
                                 ["frozen", 1.0, "s3"], ["cnn_w25", 1.0, "st"], ["cnn_w25", 1.0, "s3"]],
                       "aa": {"cell": ["frozen", 1.0, "st"], "seeds": [0, 1]}},
                # the rows the verdict holds to its confirmatory family (multi-task against single-task, 3-class
                # scene label): the smallest and the largest share of the frozen model, and the small CNN whose
                # backbone learns (the question's "smaller model")
                "confirmatory": [["frozen", 0.1], ["frozen", 1.0], ["cnn_w25", 1.0]],
                # the partition granularity first used: the alternative weighed on validation; the other is ablated
                "granularity": {"tau_min": 20, "tau_max": [2000, 800, 300]},
                # the hybrid and kNN predictors beside f* (chapter 07), on the export's split: the frozen model at
                # the smallest and the largest share, with and without the scene task
                "retrieval": [["frozen", f, a] for f in (0.1, 1.0) for a in ("st", "s3")]},
    # A GPU: larger inputs and longer budgets, the whole grid with 5 seeds.
    "full": {"n": None, "size": 96, "fov_km": 100.0, "backbone": "efficientnet_lite0", "pretrained": True,
             "tau_min": 10, "tau_max": [1000, 300, 100], "epochs": 30, "batch": 256, "scratch_epochs": 15,
             "fractions": [0.1, 0.3, 1.0], "workers": 8, "seeds": [0, 1, 2, 3, 4],
             "grid": {"models": {m: {f: ["st", "s3", "s16"] for f in (0.1, 0.3, 1.0)} for m in _FULL_MODELS},
                      "scene_all": [[m, f] for m in ("frozen", "tuned") for f in (0.1, 0.3)],
                      "controls": [[m, f] for m in ("frozen", "tuned") for f in (0.1, 0.3, 1.0)],
                      "control_labels": ["shuffled_s3", "geographic_s3", "shuffled_s16", "geographic_s16"],
                      "koppen": [["frozen", 1.0], ["tuned", 1.0]],
                      "region_on_all": [[m, f, a] for m in ("frozen", "tuned") for f in (0.1, 0.3)
                                        for a in ("geographic_s3", "geographic_s16")], "tune_blocks": 2},
             "arms": {"models": list(_FULL_MODELS[1:]), "epochs": {"tuned": [10, 30], "cnn_w25": [15, 30],
                                                                  "cnn_w50": [15, 30]},
                      "scene_weight": [0.5, 1.0]},
             # never fold 8: its test cells are the export's validation cells, on which every choice is made
             "cv": {"folds": [9, *range(8)],
                    "cells": [[m, f, a] for m in _FULL_MODELS for f in (0.1, 0.3, 1.0) for a in ("st", "s3")]},
             "confirmatory": [["frozen", 0.1], ["frozen", 1.0], ["cnn_w25", 1.0]],
             "granularity": {"tau_min": 20, "tau_max": [2000, 800, 300]},
             "retrieval": [[m, f, a] for m in ("frozen", "tuned") for f in (0.1, 0.3, 1.0) for a in ("st", "s3")]},
}


def scale_params(scale: str) -> dict:
    """A copy of the named scale's parameters; an unknown name is an error listing the valid ones."""
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return dict(SCALES[scale])
