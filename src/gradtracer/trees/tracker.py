"""TreeDynamicsTracker: round-by-round dynamics of XGBoost, LightGBM and CatBoost ensembles.

Usage (XGBoost; LightGBM and CatBoost are analogous)::

    tracker = TreeDynamicsTracker(name="gbm")
    booster = xgb.train(params, dtrain, 500, evals=[(dtrain, "train"), (dvalid, "valid")],
                        callbacks=[tracker.xgboost_callback()])
    print(tracker.report())

Each round only the newest round's trees are parsed (see the adapters for how), so the
cost per round is constant. Statistics are kept as per-round rows plus per-feature
running totals; findings are computed on demand by the pure detectors in
:mod:`gradtracer.trees.diagnose`.

Length (~430 lines): one class whose three library callbacks, post-hoc parsing and
summary share its private per-round state; the pure parts are in
:mod:`gradtracer.trees.stats` and :mod:`gradtracer.trees.diagnose`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradtracer._optional import require
from gradtracer.errors import GradTracerWarning
from gradtracer.findings import Finding, Report
from gradtracer.report.text import ReportText, report_text
from gradtracer.trees import _catboost, _lightgbm, _xgboost
from gradtracer.trees.diagnose import (
    TreeThresholds,
    detect_feature_dominance,
    detect_overfitting_onset,
    detect_tree_explosion,
    detect_tree_stagnation,
    is_higher_better,
)
from gradtracer.trees.stats import (
    TRAIN_SET_NAMES,
    RoundStats,
    TreeSummary,
    pick_eval_keys,
    split_concentration,
    summarize_round,
)

__all__ = ["BoostingTracker", "TreeDynamicsTracker"]


class TreeDynamicsTracker:
    """Tracks how a gradient-boosted ensemble grows, round by round.

    Args:
        name: subject name used in findings and reports (default ``"trees"``).
        track_interval: parse the trees of every ``track_interval``-th round (default 1:
            every round). Eval metrics are recorded every round regardless.
        feature_names: names for feature indices; default: the model's own names.
        train_set: name of the training eval set (default: ``"train"``, ``"training"``,
            ``"learn"`` or ``"dtrain"``, whichever is reported).
        valid_set: name of the validation eval set (default: the last reported set that
            is not the training set, as early stopping uses).
        metric: eval metric judged for overfitting (default: the last one reported).
        thresholds: detector thresholds (:class:`TreeThresholds`).
    """

    def __init__(
        self,
        name: str = "trees",
        *,
        track_interval: int = 1,
        feature_names: Sequence[str] | None = None,
        train_set: str | None = None,
        valid_set: str | None = None,
        metric: str | None = None,
        thresholds: TreeThresholds | None = None,
    ) -> None:
        if (
            not isinstance(track_interval, int)
            or isinstance(track_interval, bool)
            or track_interval < 1
        ):
            raise ValueError(f"track_interval must be an int >= 1, got {track_interval!r}")
        self.name = name
        self.track_interval = track_interval
        self.thresholds = thresholds or TreeThresholds()
        self._feature_names = list(feature_names) if feature_names is not None else None
        self._train_set = train_set
        self._valid_set = valid_set
        self._metric = metric
        self.library: str | None = None
        self._trees: dict[int, RoundStats] = {}
        self._evals: dict[int, dict[str, float]] = {}
        self._higher_better: dict[str, bool] = {}
        self._counts = np.zeros(0, dtype=np.int64)
        self._gains: np.ndarray | None = np.zeros(0, dtype=np.float64)
        self._n_trees = 0
        self._n_features = 0
        self._seconds = 0.0  # wall time spent in the tracker
        self._cpu_seconds = 0.0  # CPU time of the thread running the tracker
        self._warned_no_eval = False

    # ------------------------------------------------------------------ callbacks
    def xgboost_callback(self) -> Any:
        """Return an ``xgboost.callback.TrainingCallback`` for ``xgb.train(callbacks=[...])``."""
        return _xgboost.make_xgboost_callback(self._on_xgboost_round)

    def lightgbm_callback(self) -> Any:
        """Return a callback for ``lightgbm.train(callbacks=[...])`` or ``LGBMModel.fit``."""
        return _lightgbm.make_lightgbm_callback(self._on_lightgbm_round)

    def catboost_callback(self) -> Any:
        """Return a CatBoost callback object; call :meth:`collect` with the model after ``fit``.

        CatBoost does not let callbacks read trees during training, so this records the
        eval metrics per iteration and :meth:`collect` parses every tree once afterwards.
        """
        return _catboost.make_catboost_callback(self._on_catboost_round)

    def _charge(self, t0: float, c0: float) -> None:
        self._seconds += time.perf_counter() - t0
        self._cpu_seconds += time.thread_time() - c0

    def _set_library(self, library: str) -> None:
        if self.library is not None and self.library != library:
            raise ValueError(
                f"tracker {self.name!r} already tracks a {self.library} model; "
                f"use a new TreeDynamicsTracker for {library}"
            )
        self.library = library

    def _on_xgboost_round(self, booster: Any, evals: dict[str, float]) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        self._set_library("xgboost")
        if self._n_features == 0:
            self._n_features = int(booster.num_features())
            if self._feature_names is None and booster.feature_names:
                self._feature_names = list(booster.feature_names)
        round_ = int(booster.num_boosted_rounds()) - 1
        self._record_evals(round_, evals, {})
        if round_ % self.track_interval == 0:
            self._add_round(round_, _xgboost.read_xgboost_round(booster, round_))
        self._charge(t0, c0)

    def _on_lightgbm_round(
        self, booster: Any, round_: int, evals: dict[str, float], higher: dict[str, bool]
    ) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        self._set_library("lightgbm")
        if not isinstance(booster, require("lightgbm").Booster):
            raise TypeError(
                f"TreeDynamicsTracker.lightgbm_callback needs a lightgbm.Booster in the "
                f"callback env, got {type(booster).__name__} (lightgbm.cv is not supported)"
            )
        if self._n_features == 0:
            self._n_features = int(booster.num_feature())
            if self._feature_names is None:
                self._feature_names = list(booster.feature_name())
        self._record_evals(round_, evals, higher)
        if round_ % self.track_interval == 0:
            self._add_round(round_, _lightgbm.read_lightgbm_round(booster, round_))
        self._charge(t0, c0)

    def _on_catboost_round(self, round_: int, evals: dict[str, float]) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        self._set_library("catboost")
        self._record_evals(round_, evals, {})
        self._charge(t0, c0)

    # ------------------------------------------------------------------ post hoc
    def collect(self, model: Any) -> TreeDynamicsTracker:
        """Parse the trees of ``model`` that this tracker has not parsed yet; return ``self``.

        Needed after a CatBoost ``fit`` (see :meth:`catboost_callback`); for XGBoost and
        LightGBM it reads a model trained without the callback (rounds already parsed
        are skipped, and ``track_interval`` sampling still applies). Accepts boosters
        and the libraries' scikit-learn estimators; every tree is parsed at most once.

        Raises:
            TypeError: ``model`` is not an XGBoost, LightGBM or CatBoost model.
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        if _xgboost.is_xgboost_model(model):
            booster = model.get_booster() if hasattr(model, "get_booster") else model
            self._set_library("xgboost")
            self._n_features = self._n_features or int(booster.num_features())
            if self._feature_names is None and booster.feature_names:
                self._feature_names = list(booster.feature_names)
            for r in range(int(booster.num_boosted_rounds())):
                if r not in self._trees and r % self.track_interval == 0:
                    self._add_round(r, _xgboost.read_xgboost_round(booster, r))
        elif _lightgbm.is_lightgbm_model(model):
            booster = model.booster_ if hasattr(model, "booster_") else model
            self._set_library("lightgbm")
            self._n_features = self._n_features or int(booster.num_feature())
            if self._feature_names is None:
                self._feature_names = list(booster.feature_name())
            for r in range(int(booster.current_iteration())):
                if r not in self._trees and r % self.track_interval == 0:
                    self._add_round(r, _lightgbm.read_lightgbm_round(booster, r))
        elif _catboost.is_catboost_model(model):
            self._set_library("catboost")
            self._n_features = self._n_features or len(model.feature_names_ or [])
            if self._feature_names is None and model.feature_names_:
                self._feature_names = list(model.feature_names_)
            start = max(self._trees, default=-1) + 1
            for offset, tree in enumerate(_catboost.read_catboost_trees(model, start)):
                if (start + offset) % self.track_interval == 0:
                    self._add_round(start + offset, [tree])
        else:
            raise TypeError(
                "TreeDynamicsTracker.collect expects an XGBoost, LightGBM or CatBoost model "
                f"(booster or scikit-learn estimator), got {type(model).__module__}."
                f"{type(model).__name__}"
            )
        self._charge(t0, c0)
        return self

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any) -> TreeDynamicsTracker:
        """Return a tracker filled from an already trained model (every tree parsed once).

        Eval metrics are taken from the scikit-learn estimators' ``evals_result_`` (or
        CatBoost's ``get_evals_result()``) when present. ``kwargs`` go to the constructor.
        """
        tracker = cls(**kwargs)
        tracker.collect(model)
        history: Mapping[str, Mapping[str, Sequence[float]]] = {}
        if hasattr(model, "get_evals_result"):
            history = model.get_evals_result()
        elif hasattr(model, "evals_result_"):
            try:
                history = model.evals_result_
            except AttributeError:  # xgboost raises when fitted without eval_set
                history = {}
        for data, per_metric in history.items():
            for metric, values in per_metric.items():
                for r, value in enumerate(values):
                    tracker._evals.setdefault(r, {})[f"{data}/{metric}"] = float(value)
        return tracker

    # ------------------------------------------------------------------ recording
    def _record_evals(self, round_: int, evals: dict[str, float], higher: dict[str, bool]) -> None:
        if not self._warned_no_eval:
            self._warned_no_eval = True  # judged on the first round only
            sets = {k.split("/", 1)[0] for k in evals}
            train = {self._train_set} if self._train_set else set(TRAIN_SET_NAMES)
            if not sets - train:
                seen = f"only {sorted(sets)}" if sets else "no evaluation set"
                warnings.warn(
                    f"tracker {self.name!r}: the {self.library} model reports {seen}; the "
                    "validation trend, train/valid gap and OVERFITTING_ONSET are unavailable "
                    "(pass a validation set via evals= / valid_sets= / eval_set=)",
                    GradTracerWarning,
                    stacklevel=2,
                )
        if evals:
            self._evals[round_] = evals
            self._higher_better.update(higher)

    def _add_round(self, round_: int, trees: list[TreeSummary]) -> None:
        stats = summarize_round(round_, trees)
        self._trees[round_] = stats
        self._n_trees += len(trees)
        top = max(stats.feature_counts, default=-1) + 1
        width = max(top, self._n_features, self._counts.size)
        if width > self._counts.size:
            self._counts = np.pad(self._counts, (0, width - self._counts.size))
            if self._gains is not None:
                self._gains = np.pad(self._gains, (0, width - self._gains.size))
        for f, c in stats.feature_counts.items():
            self._counts[f] += c
        if stats.feature_gains is None:
            self._gains = None
        elif self._gains is not None:
            for f, g in stats.feature_gains.items():
                self._gains[f] += g

    # ------------------------------------------------------------------ views
    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per round (0-based ``round``): tree statistics and eval metrics."""
        out = []
        for r in sorted(set(self._trees) | set(self._evals)):
            row: dict[str, Any] = {"round": r}
            if r in self._trees:
                row.update(self._trees[r].to_dict())
            row.update(self._evals.get(r, {}))
            out.append(row)
        return out

    def feature_names(self) -> list[str]:
        """Names of every feature index seen (model names, else ``f0``, ``f1``, ...)."""
        names = list(self._feature_names or [])
        return names + [f"f{i}" for i in range(len(names), self._counts.size)]

    def _eval_keys(self) -> tuple[str | None, str | None]:
        """Return the (train, valid) eval keys ``"<set>/<metric>"`` judged for overfitting."""
        keys: list[str] = []
        for r in sorted(self._evals):
            keys.extend(k for k in self._evals[r] if k not in keys)
        return pick_eval_keys(
            keys, train_set=self._train_set, valid_set=self._valid_set, metric=self._metric
        )

    def _eval_series(self, key: str | None) -> np.ndarray | None:
        if key is None:
            return None
        rounds = sorted(r for r in self._evals if key in self._evals[r])
        return np.asarray([self._evals[r][key] for r in rounds], dtype=np.float64)

    def _higher(self, key: str) -> bool:
        if key in self._higher_better:
            return self._higher_better[key]
        return is_higher_better(key.split("/", 1)[1])

    def _tree_arrays(self) -> dict[str, np.ndarray]:
        rounds = sorted(self._trees)
        rows = [self._trees[r] for r in rounds]
        return {
            "round": np.asarray(rounds, dtype=np.int64),
            "leaf_std": np.asarray([s.leaf_std for s in rows], dtype=np.float64),
            "nonfinite": np.asarray([s.n_nonfinite_leaves for s in rows], dtype=np.int64),
            "depth": np.asarray([s.max_depth for s in rows], dtype=np.float64),
            "leaves": np.asarray([s.n_leaves for s in rows], dtype=np.float64),
        }

    def summary(self) -> dict[str, Any]:
        """Return JSON-safe summary statistics (leaf spread, concentration, eval trend)."""
        arrays = self._tree_arrays()
        names = self.feature_names()
        counts = self._counts.astype(np.float64)
        out: dict[str, Any] = {
            "name": self.name,
            "library": self.library,
            "n_rounds": 1 + max([*self._trees, *self._evals], default=-1),
            "rounds_parsed": len(self._trees),
            "n_trees_parsed": self._n_trees,
            "n_features": len(names),
            "tracking_seconds": round(self._seconds, 6),
            "tracking_cpu_seconds": round(self._cpu_seconds, 6),
        }
        if arrays["round"].size:
            ls = arrays["leaf_std"]
            out.update(
                {
                    "leaf_std_first": float(ls[0]),
                    "leaf_std_last": float(ls[-1]),
                    "leaf_std_max": float(np.nanmax(ls)) if np.isfinite(ls).any() else None,
                    "mean_depth": float(arrays["depth"].mean()),
                    "mean_leaves_per_round": float(arrays["leaves"].mean()),
                    "nonfinite_leaves": int(arrays["nonfinite"].sum()),
                }
            )
        if counts.sum() > 0:
            out.update(split_concentration(counts, self._gains, names))
        tkey, vkey = self._eval_keys()
        out["eval_train"] = tkey
        out["eval_valid"] = vkey
        for label, key in (("train", tkey), ("valid", vkey)):
            series = self._eval_series(key)
            if series is not None and series.size and key is not None:
                best = np.argmax(series) if self._higher(key) else np.argmin(series)
                out[f"{label}_first"] = float(series[0])
                out[f"{label}_last"] = float(series[-1])
                out[f"{label}_best"] = float(series[best])
                out[f"{label}_best_round"] = int(best)
        if "train_last" in out and "valid_last" in out:
            out["train_valid_gap_last"] = out["valid_last"] - out["train_last"]
        return out

    def findings(self) -> list[Finding]:
        """Return the diagnoses: stagnation, explosion, feature dominance, overfitting onset."""
        found: list[Finding | None] = []
        arrays = self._tree_arrays()
        th = self.thresholds
        if arrays["round"].size:
            found.append(
                detect_tree_explosion(
                    arrays["leaf_std"],
                    arrays["nonfinite"],
                    arrays["round"],
                    subject=self.name,
                    thresholds=th,
                )
            )
            if found[-1] is None:
                found.append(
                    detect_tree_stagnation(
                        arrays["leaf_std"], arrays["round"], subject=self.name, thresholds=th
                    )
                )
            found.append(
                detect_feature_dominance(
                    self._counts,
                    self._gains,
                    self.feature_names(),
                    subject=self.name,
                    thresholds=th,
                )
            )
        tkey, vkey = self._eval_keys()
        valid = self._eval_series(vkey)
        if valid is not None and vkey is not None:
            rounds = np.asarray(sorted(r for r in self._evals if vkey in self._evals[r]))
            train = self._eval_series(tkey)
            found.append(
                detect_overfitting_onset(
                    valid,
                    rounds,
                    subject=self.name,
                    metric=vkey,
                    higher_is_better=self._higher(vkey),
                    train=train if train is not None and train.size == valid.size else None,
                    thresholds=th,
                )
            )
        return [f for f in found if f is not None]

    def to_report(self) -> Report:
        """Return the :class:`~gradtracer.findings.Report` (kind ``"trees"``)."""
        return Report(
            kind="trees",
            subject=self.name,
            stats=self.summary(),
            findings=self.findings(),
            metadata={"library": self.library, "track_interval": self.track_interval},
        )

    def report(self) -> ReportText:
        """Return the readable report (:func:`gradtracer.report.text.render_text` of
        :meth:`to_report`); it does not print."""
        return report_text(self)


#: Name used by the FlowGrad / GradTracer v0.6 README.
BoostingTracker = TreeDynamicsTracker
