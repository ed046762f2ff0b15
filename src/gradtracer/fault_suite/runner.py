"""The fault-injection benchmark: build the cases, run them, score the diagnoses.

:func:`run_suite` trains every healthy run and every faulty run of a
:class:`SuiteConfig`, applies the top finding's remedy to each detected harmful fault and
retrains it, and returns a JSON-safe result that :mod:`gradtracer.fault_suite.report`
turns into Markdown and a figure.

Just past 400 lines: running the cases and scoring them share the run-record layout
(``_record``), so the two stay together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from gradtracer.diagnosis.baselines import autotrainer_rules, trivial_monitor
from gradtracer.fault_suite.data import real_data_kind
from gradtracer.fault_suite.faults import FAMILIES, FAULTS, REAL_DATA_RUNS, fault_spec
from gradtracer.fault_suite.loop import VARIANTS, RunResult, RunSpec, train_run
from gradtracer.fault_suite.loop import cause_findings as _causes
from gradtracer.fault_suite.loop import warning_findings as _warn
from gradtracer.findings import Remedy

__all__ = ["SuiteConfig", "run_suite", "top_remedies", "wilson"]

#: faults whose mechanism is structurally present whenever injected (scored even if the
#: quality drop stays within the healthy spread)
SIGNATURE_FAULTS = frozenset({
    "table_not_in_optimizer", "layer_not_in_optimizer", "frozen_table", "detached_tower",
    "unreachable_rows", "non_finite_loss",
})  # fmt: skip


#: same-suite baselines, in report order (the ``legacy`` ones only in runs that had them:
#: gradtracer 0.9.0's printed-report alerts and its agent-export findings)
BASELINES = ("trivial", "autotrainer", "legacy", "legacy_agent")
#: baselines that do not rank their alerts
UNRANKED_BASELINES = frozenset({"legacy", "legacy_agent"})


@dataclass(frozen=True)
class SuiteConfig:
    """Which runs the suite trains.

    Attributes:
        families: model families (default: all).
        faults: fault names (default: all).
        healthy_seeds: seeds of the healthy runs (every variant of every family).
        fault_seeds: seeds of the faulty runs.
        tuning_seeds: seeds whose runs were used to set thresholds; reported separately.
        intensities: intensity indices (0, 1).
        onsets: fault onsets as a share of training.
        remedies: retrain detected harmful faults with the top finding's remedy.
        data_paths: real data files (MovieLens ratings, Amazon reviews, a DIGINETICA
            click log): each gets the faults of
            :data:`~gradtracer.fault_suite.faults.REAL_DATA_RUNS` for its kind (seed
            ``fault_seeds[0]``, strong intensity, onset 0) and healthy twins of seeds
            ``fault_seeds[0]`` and ``fault_seeds[0] + 1``; scored in their own table.
        variants: healthy variants to run (default: every variant of each family).
        jobs: worker processes (default 1: in this process). Results do not depend on it.
        legacy: also score ``gradtracer==0.9.0`` watching the same runs (needs its
            private install, :func:`gradtracer.fault_suite.legacy.install_legacy`).
    """

    families: tuple[str, ...] = FAMILIES
    faults: tuple[str, ...] = tuple(FAULTS)
    healthy_seeds: tuple[int, ...] = (2, 3, 4, 5, 6)
    fault_seeds: tuple[int, ...] = (2, 3)
    tuning_seeds: tuple[int, ...] = (0, 1)
    intensities: tuple[int, ...] = (0, 1)
    onsets: tuple[float, ...] = (0.0, 0.3)
    remedies: bool = True
    data_paths: tuple[str, ...] = ()
    variants: tuple[str, ...] | None = None
    jobs: int = 1
    legacy: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {self.jobs!r}")
        for fam in self.families:
            if fam not in FAMILIES:
                raise ValueError(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}")
        known = {v for vs in VARIANTS.values() for v in vs}
        for v in self.variants or ():
            if v not in known:
                raise ValueError(
                    f"unknown healthy variant {v!r}; known: {', '.join(sorted(known))}"
                )
        for name in self.faults:
            fault_spec(name)
        for path in self.data_paths:
            real_data_kind(path)  # a missing file fails here, before any run

    @classmethod
    def quick(cls) -> SuiteConfig:
        """A subset for CI (about 20 runs of a few seconds): 3 families, 6 faults, one seed,
        two healthy variants, the strong intensity at onset 0."""
        return cls(
            families=("mf_bce", "two_tower", "mlp"),
            faults=("lr_too_low", "table_not_in_optimizer", "init_huge_std",
                    "non_finite_loss", "missing_zero_grad", "dead_relu"),
            healthy_seeds=(2,), fault_seeds=(2,), intensities=(1,), onsets=(0.0,),
            variants=("default", "tuned_high_lr"),
        )  # fmt: skip

    def skipped(self) -> dict[str, list[str]]:
        """Requested faults that cannot be applied to some requested families: fault name ->
        those families (reported in the output, never silently dropped)."""
        out: dict[str, list[str]] = {}
        for name in self.faults:
            fams = [f for f in self.families if f not in fault_spec(name).families]
            if fams:
                out[name] = fams
        return out

    def cases(self) -> tuple[list[RunSpec], list[RunSpec]]:
        """(healthy specs, faulty specs); a fault that does not apply to a family is skipped."""
        healthy = [RunSpec(fam, random_state=s, variant=v) for fam in self.families
                   for v in VARIANTS[fam] if self.variants is None or v in self.variants
                   for s in self.healthy_seeds]  # fmt: skip
        faulty = []
        for name in self.faults:
            spec = fault_spec(name)
            for fam in spec.families:
                if fam not in self.families:
                    continue
                for s in self.fault_seeds:
                    for i in self.intensities:
                        for o in (o for o in self.onsets if o in spec.onsets):
                            faulty.append(RunSpec(fam, random_state=s, variant=spec.variant,
                                                  fault=name, intensity=i, onset=o))  # fmt: skip
        seed = self.fault_seeds[0] if self.fault_seeds else 0
        for path in self.data_paths:
            fams, names = REAL_DATA_RUNS[real_data_kind(path)]
            for fam in (f for f in fams if f in self.families):
                healthy += [RunSpec(fam, random_state=s, data_path=path) for s in (seed, seed + 1)]
                faulty += [RunSpec(fam, random_state=seed, fault=n, intensity=1, data_path=path)
                           for n in names if n in self.faults]  # fmt: skip
        if self.legacy:  # gradtracer 0.9.0 watches the same runs
            healthy = [replace(s, legacy=True) for s in healthy]
            faulty = [replace(s, legacy=True) for s in faulty]
        return healthy, faulty


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float, float]:
    """(rate, low, high) Wilson score interval of ``k`` successes in ``n`` trials.

    >>> [round(x, 3) for x in wilson(0, 20)]
    [0.0, 0.0, 0.161]
    """
    if n == 0:
        return math.nan, math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _rate(hits: Sequence[bool]) -> dict[str, float | int]:
    k, n = int(sum(hits)), len(hits)
    p, lo, hi = wilson(k, n)
    return {"rate": p, "low": lo, "high": hi, "k": k, "n": n}


def _median_ci(values: Sequence[float]) -> dict[str, float | int]:
    from gradtracer.recsys.stats import bootstrap_ci

    vals = [float(v) for v in values if math.isfinite(v)]
    if len(vals) < 2:
        return {"median": vals[0] if vals else math.nan, "low": math.nan, "high": math.nan,
                "n": len(vals)}  # fmt: skip
    if len(set(vals)) == 1:
        return {"median": vals[0], "low": vals[0], "high": vals[0], "n": len(vals)}
    ci = bootstrap_ci(vals, statistic=np.median, method="percentile", n_resamples=2000)
    return {"median": ci.estimate, "low": ci.low, "high": ci.high, "n": len(vals)}


def _spearman_ci(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int]:
    from scipy.stats import spearmanr

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = xa.size
    if n < 4 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return {"rho": math.nan, "low": math.nan, "high": math.nan, "n": int(n)}
    rho = float(spearmanr(xa, ya).statistic)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(1000):
        idx = rng.integers(0, n, n)
        if np.ptp(xa[idx]) > 0 and np.ptp(ya[idx]) > 0:
            boots.append(float(spearmanr(xa[idx], ya[idx]).statistic))
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots else (math.nan, math.nan)
    return {"rho": rho, "low": float(lo), "high": float(hi), "n": int(n)}


def _record(r: RunResult) -> dict[str, Any]:
    out = r.to_dict()
    out["trivial"] = trivial_monitor(r.losses)
    out["autotrainer"] = autotrainer_rules(r.losses, r.baselines.get("autotrainer_trace", {}))
    legacy = r.baselines.get("legacy")
    if legacy is not None:
        out["legacy"], out["legacy_agent"] = legacy["report"], legacy["agent"]
        out["legacy_raw"], out["legacy_error"] = legacy["raw"], legacy["error"]
    # the checkpoint nearest to 20% of training (the first one at or past it can be at 30%)
    at20 = min(r.checkpoints, key=lambda c: abs(c.step - 0.2 * r.n_steps), default=None)
    out["health_at_20"] = at20.health if at20 else math.nan
    out["health_at_20_step"] = at20.step if at20 else None
    baseline_alarm(out)
    return out


def _remedy_of(rec: dict[str, Any]) -> tuple[Remedy, tuple[Remedy, ...]] | None:
    return top_remedies(rec["checkpoints"][-1]["findings"] if rec["checkpoints"] else [])


def top_remedies(findings: Sequence[dict[str, Any]]) -> tuple[Remedy, tuple[Remedy, ...]] | None:
    """The top cause's remedy, and the same remedy for the other subjects the diagnosis
    names with the same cause (a learning rate too high on both tables, say).

    Args:
        findings: ranked finding dicts (``Finding.to_dict()``) of one diagnosis.

    Returns:
        ``(remedy, more_remedies)`` for :class:`~gradtracer.fault_suite.loop.RunSpec`, or
        None when no WARNING/CRITICAL cause carries a remedy.
    """
    causes = _causes(findings)
    if not causes or causes[0].get("remedy") is None:
        return None
    top = causes[0]
    more = [Remedy.from_dict(f["remedy"]) for f in causes[1:]
            if f["type"] == top["type"] and f.get("remedy")
            and f["remedy"]["kind"] == top["remedy"]["kind"]
            and f.get("subject") != top.get("subject")]  # fmt: skip
    return Remedy.from_dict(top["remedy"]), tuple(more)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _train_record(spec: RunSpec) -> dict[str, Any]:
    return _record(train_run(spec))


def _remedy_quality(spec: RunSpec) -> float:
    return train_run(spec).quality


def _parallel_map(fn: Callable[[RunSpec], Any], specs: Sequence[RunSpec], jobs: int,
                  desc: str, progress: bool | None) -> Iterator[Any]:  # fmt: skip
    """``fn(spec)`` for every spec, in order; in ``jobs`` spawned worker processes when
    ``jobs > 1`` (one torch thread each)."""
    from gradtracer._progress import progress as bar

    if jobs <= 1 or len(specs) <= 1:
        yield from bar(map(fn, specs), total=len(specs), desc=desc, enabled=progress)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(specs)), mp_context=ctx,
                             initializer=_worker_init) as pool:  # fmt: skip
        futures = [pool.submit(fn, spec) for spec in specs]
        yield from bar((f.result() for f in futures), total=len(specs), desc=desc,
                       enabled=progress)  # fmt: skip


def run_suite(
    config: SuiteConfig,
    *,
    progress: bool | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run the suite and score it; returns a JSON-safe dict (config, runs, metrics).

    Args:
        config: which runs to train.
        progress: progress bars (None: only on a terminal).
        on_run: called with each run record, in case order, as it is available.
        jobs: worker processes (default ``config.jobs``); the records and their order are
            the same for any value.
    """
    n_jobs = config.jobs if jobs is None else jobs
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {n_jobs!r}")
    healthy, faulty = config.cases()
    specs = [*healthy, *faulty]
    records: list[dict[str, Any]] = []
    for spec, rec in zip(specs, _parallel_map(_train_record, specs, n_jobs, "suite runs",
                                              progress)):  # fmt: skip
        rec["role"] = "healthy" if spec.fault is None else "faulty"
        records.append(rec)
        if on_run is not None:
            on_run(rec)
    twins = _missing_twins(records)
    extra = dict(zip(twins, _parallel_map(_train_record, list(twins.values()), n_jobs,
                                          "twins", progress)))  # fmt: skip
    _label(records, extra)
    if config.remedies:
        todo = [r for r in records if r["role"] == "faulty" and r["harmful"] and r["detected"]]
        fixes: list[tuple[dict[str, Any], Remedy, RunSpec]] = []
        for rec in todo:
            found = _remedy_of(rec)
            if found is None:
                rec["remedy"] = None
                continue
            remedy, more = found
            fixes.append((rec, remedy, RunSpec(**{**rec["spec"], "remedy": remedy,
                                                  "more_remedies": more, "track": False})))  # fmt: skip
        qualities = _parallel_map(_remedy_quality, [f[2] for f in fixes], n_jobs, "remedies",
                                  progress)  # fmt: skip
        for (rec, remedy, spec), quality in zip(fixes, qualities):
            rec["remedy"] = {"remedy": remedy.to_dict(), "quality": quality,
                             "more": [r.to_dict() for r in spec.more_remedies],
                             "recovered": quality / rec["twin_quality"]
                             if rec["twin_quality"] > 0 else math.nan}  # fmt: skip
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "faults": {
            n: {
                "description": f.description,
                "families": list(f.families),
                "intensities": list(f.intensities),
                "right_causes": sorted(f.right_causes),
                "right_remedies": sorted(f.right_remedies),
                "variant": f.variant,
            }
            for n, f in FAULTS.items()
            if n in config.faults
        },  # fmt: skip
        "skipped": config.skipped(),
        "runs": records,
        "metrics": score(records, config),
    }


def _twin_key(spec: dict[str, Any]) -> tuple[Any, ...]:
    return (spec["family"], spec["variant"], spec["random_state"], spec["data_path"])


def _missing_twins(records: Sequence[dict[str, Any]]) -> dict[tuple[Any, ...], RunSpec]:
    """Healthy twins that the faulty runs need but the healthy runs do not include."""
    have = {_twin_key(r["spec"]) for r in records if r["role"] == "healthy"}
    out: dict[tuple[Any, ...], RunSpec] = {}
    for r in records:
        key = _twin_key(r["spec"])
        if r["role"] == "faulty" and key not in have and key not in out:
            spec = r["spec"]
            out[key] = RunSpec(spec["family"], random_state=spec["random_state"],
                               variant=spec["variant"], data_path=spec["data_path"])  # fmt: skip
    return out


def _label(
    records: list[dict[str, Any]], extra_twins: dict[tuple[Any, ...], dict[str, Any]] | None = None
) -> None:
    """Attach twin quality, harmfulness and the diagnosis outcome to every faulty run."""
    twins = {_twin_key(r["spec"]): r for r in records if r["role"] == "healthy"}
    twins.update(extra_twins or {})
    spread: dict[tuple[str, str, str | None], float] = {}
    by_group: dict[tuple[str, str, str | None], list[float]] = {}
    for r in records:
        if r["role"] == "healthy":
            s = r["spec"]
            by_group.setdefault((s["family"], s["variant"], s["data_path"]), []).append(
                r["quality"]
            )
    for key, qs in by_group.items():
        spread[key] = float(np.ptp(qs)) if len(qs) > 1 else 0.0
    for r in records:
        if r["role"] != "faulty":
            continue
        spec = r["spec"]
        fault = FAULTS[spec["fault"]]
        twin = twins.get(_twin_key(spec))
        if twin is None:
            twin = _train_record(RunSpec(spec["family"], random_state=spec["random_state"],
                                         variant=spec["variant"], data_path=spec["data_path"]))  # fmt: skip
            twins[_twin_key(spec)] = twin
        r["twin_quality"] = twin["quality"]
        margin = spread.get((spec["family"], spec["variant"], spec["data_path"]), 0.0)
        drop = twin["quality"] - r["quality"]
        signature = spec["fault"] in SIGNATURE_FAULTS
        if spec["fault"] == "non_finite_loss":
            signature = any(x is None for x in r["losses"])
        r["harmful"] = bool(drop > margin or signature)
        r["drop"] = drop
        final = r["checkpoints"][-1]["findings"] if r["checkpoints"] else []
        causes = _causes(final)
        r["detected"] = bool(_warn(final))
        r["top1"] = causes[0]["type"] if causes else None
        r["top1_right"] = bool(causes) and causes[0]["type"] in fault.right_causes
        r["top3_right"] = any(f["type"] in fault.right_causes for f in causes[:3])
        kind = (causes[0].get("remedy") or {}).get("kind") if causes else None
        r["action_right"] = kind in fault.right_remedies
        first = None
        diagnoses = sorted([*r["checkpoints"], *r.get("probes", [])], key=lambda c: c["step"])
        for c in diagnoses:
            if c["step"] > r["onset_step"] and any(
                f["type"] in fault.right_causes for f in _causes(c["findings"])[:3]
            ):
                first = c["step"]
                break
        r["steps_to_right"] = None if first is None else first - r["onset_step"]
        nf = r.get("first_non_finite")
        # steps from the step that carried the first non-finite loss (0: named right after it)
        r["steps_after_non_finite"] = None if first is None or nf is None else first - (nf + 1)
        for name in (b for b in BASELINES if b in r):
            out = r[name]
            r[f"{name}_detected"] = bool(out)
            r[f"{name}_top1_right"] = bool(out) and out[0][0] in fault.right_causes
            if name in UNRANKED_BASELINES:  # no ranking: any alert naming a right cause
                r[f"{name}_top1_right"] = any(t in fault.right_causes for t, *_ in out)


def _fault_began_by_20pct(r: dict[str, Any], twins: dict[tuple[Any, ...], dict[str, Any]]) -> bool:
    """Whether the fault was in the run when its health was read at 20% of training: its
    onset came before that checkpoint, or its losses up to it differ from its twin's (a
    fault applied when the model or data is built is in the run from step 0)."""
    if r["role"] == "healthy":
        return True
    step = r.get("health_at_20_step") or 0
    if r["onset_step"] < step:
        return True
    twin = twins.get(_twin_key(r["spec"]))
    if twin is None:
        return False
    return bool(r["losses"][:step] != twin["losses"][:step])


def health_rank(
    records: Sequence[dict[str, Any]],
    real: Sequence[dict[str, Any]] = (),
    families: Sequence[str] = (),
) -> dict[str, dict[str, float | int]]:
    """Spearman correlation (bootstrap 95% interval) of the health at 20% of training with
    the final quality, over several populations.

    Keys: each family (its synthetic runs); ``pooled_ndcg_families`` (every synthetic run
    whose quality is NDCG@10); the same restricted to runs whose fault had begun by the 20%
    checkpoint (``*_onset_before_20pct``; healthy runs always count); ``pooled_relative*``
    (quality over the healthy twin's, every family: the share of quality a run keeps);
    ``real:<kind>*`` per real data file. Each entry's ``n`` counts its runs; runs without a
    checkpoint (untracked) are counted in ``no_checkpoint``, not scored.

    Args:
        records: synthetic run records (with ``health_at_20``; faulty ones with
            ``twin_quality`` after labelling).
        real: real-data run records.
        families: families to report one by one.
    """
    out: dict[str, dict[str, float | int]] = {}
    twins = {_twin_key(r["spec"]): r for r in [*records, *real] if r["role"] == "healthy"}

    def rho(rs: Sequence[dict[str, Any]], relative: bool = False) -> dict[str, float | int]:
        if relative:
            rs = [r for r in rs if (r.get("twin_quality") or 0) > 0 or r["role"] == "healthy"]
            q = [1.0 if r["role"] == "healthy" else r["quality"] / r["twin_quality"] for r in rs]
        else:
            q = [r["quality"] for r in rs]
        return _spearman_ci([r["health_at_20"] for r in rs], q)

    pop = [r for r in records if math.isfinite(r["health_at_20"])]
    seen = [r for r in pop if _fault_began_by_20pct(r, twins)]
    for fam in families:
        out[fam] = rho([r for r in pop if r["spec"]["family"] == fam])
    for fam in families:
        out[f"{fam}_onset_before_20pct"] = rho([r for r in seen if r["spec"]["family"] == fam])
    ndcg = [r for r in pop if r["quality_name"] == "ndcg@10"]
    out["pooled_ndcg_families"] = rho(ndcg)
    out["pooled_ndcg_onset_before_20pct"] = rho([r for r in seen if r["quality_name"] == "ndcg@10"])
    out["pooled_relative"] = rho(pop, relative=True)
    out["pooled_relative_onset_before_20pct"] = rho(seen, relative=True)
    real_pop = [r for r in real if math.isfinite(r["health_at_20"])]
    for kind in sorted({real_data_kind(r["spec"]["data_path"]) for r in real_pop}):
        rs = [r for r in real_pop if real_data_kind(r["spec"]["data_path"]) == kind]
        out[f"real:{kind}"] = rho(rs)
        out[f"real:{kind}_onset_before_20pct"] = rho(
            [r for r in rs if _fault_began_by_20pct(r, twins)]
        )
    skipped = len(records) + len(real) - len(pop) - len(real_pop)
    out["no_checkpoint"] = {"n": skipped}
    return out


def score(records: Sequence[dict[str, Any]], config: SuiteConfig) -> dict[str, Any]:
    """The suite's metrics (95% Wilson intervals for rates, bootstrap for medians and rho).

    Real-data runs are scored apart (``metrics["real_data"]``); the rest is synthetic runs.
    """
    real = [r for r in records if r["spec"]["data_path"] is not None]
    records = [r for r in records if r["spec"]["data_path"] is None]
    healthy = [r for r in records if r["role"] == "healthy"]
    faulty = [r for r in records if r["role"] == "faulty"]
    harmful = [r for r in faulty if r["harmful"]]

    def fa(runs: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
        hits = []
        for r in runs:
            final = r["checkpoints"][-1]["findings"] if r["checkpoints"] else []
            if key == "ours":
                hits.append(bool(_warn(final)))
            elif key == "ours_critical":
                hits.append(any(f["severity"] == "critical" for f in final))
            else:
                hits.append(bool(r[key]))
        return _rate(hits)

    per_type: dict[str, int] = {}
    for r in healthy:
        final = r["checkpoints"][-1]["findings"] if r["checkpoints"] else []
        for t in {f["type"] for f in _warn(final)}:
            per_type[t] = per_type.get(t, 0) + 1
    families = {}
    for fam in config.families:
        rs = [r for r in harmful if r["spec"]["family"] == fam]
        families[fam] = {"top1": _rate([r["top1_right"] for r in rs]),
                         "detected": _rate([r["detected"] for r in rs])}  # fmt: skip
    per_fault = {}
    for name in config.faults:
        rs = [r for r in faulty if r["spec"]["fault"] == name]
        hs = [r for r in rs if r["harmful"]]
        per_fault[name] = {
            "runs": len(rs), "harmful": len(hs),
            "detected": sum(r["detected"] for r in hs), "top1": sum(r["top1_right"] for r in hs),
            "top3": sum(r["top3_right"] for r in hs),
            "action": sum(r["action_right"] for r in hs),
            "top1_types": _counts([r["top1"] or "none" for r in hs]),
        }  # fmt: skip
    dyn = [r["steps_to_right"] / r["n_steps"] for r in harmful
           if r["steps_to_right"] is not None and r["spec"]["fault"] != "non_finite_loss"]  # fmt: skip
    dyn_steps = [r["steps_to_right"] for r in harmful
                 if r["steps_to_right"] is not None and r["spec"]["fault"] != "non_finite_loss"]  # fmt: skip
    dyn_all = [r for r in harmful if r["spec"]["fault"] != "non_finite_loss"]
    nonfin = [
        r["steps_to_right"]
        for r in harmful
        if r["steps_to_right"] is not None and r["spec"]["fault"] == "non_finite_loss"
    ]
    nf_runs = [r for r in harmful if r["spec"]["fault"] == "non_finite_loss"]
    nf_after = [r["steps_after_non_finite"] for r in nf_runs
                if r.get("steps_after_non_finite") is not None]  # fmt: skip
    tracked = [r for r in [*healthy, *faulty] if r.get("seconds")]
    fixed = [r for r in harmful if r.get("remedy")]
    rec90 = [bool(r["remedy"]["recovered"] >= 0.9) for r in fixed
             if math.isfinite(r["remedy"]["recovered"])]  # fmt: skip
    rank = health_rank([*healthy, *faulty], real, config.families)
    return {
        "real_data": _real_data_table(real),
        "n_healthy": len(healthy), "n_faulty": len(faulty), "n_harmful": len(harmful),
        "n_benign": len(faulty) - len(harmful),
        "detection_recall": _rate([r["detected"] for r in harmful]),
        "top1_right_cause": _rate([r["top1_right"] for r in harmful]),
        "top3_right_cause": _rate([r["top3_right"] for r in harmful]),
        "right_action": _rate([r["action_right"] for r in harmful]),
        "false_alarm_healthy": fa(healthy, "ours"),
        "critical_alarm_healthy": fa(healthy, "ours_critical"),
        "false_alarm_types": dict(sorted(per_type.items(), key=lambda kv: -kv[1])),
        "per_family": families,
        "per_fault": per_fault,
        "steps_to_right_share_dynamics": _median_ci(dyn),
        "steps_to_right_non_finite": _median_ci(nonfin),
        "steps_to_right_steps_dynamics": _median_ci(dyn_steps),
        "dynamics_named_by_10pct": _rate([r["steps_to_right"] is not None
                                          and r["steps_to_right"] <= 0.1 * r["n_steps"]
                                          for r in dyn_all]),
        "steps_after_first_non_finite": _median_ci(nf_after),
        "non_finite_named_at_first_step": _rate([r.get("steps_after_non_finite") == 0
                                                 for r in nf_runs]),
        "probe_cost_share": (sum(r.get("probe_seconds", 0.0) for r in tracked)
                             / max(1e-9, sum(r["seconds"] for r in tracked))),
        "health20_vs_quality_spearman": rank,
        "remedy_recovery_90": _rate(rec90),
        "remedy_recovered_median": _median_ci([r["remedy"]["recovered"] for r in fixed]),
        "baselines": {
            name: {
                "detection_recall": _rate([r[f"{name}_detected"] for r in harmful]),
                "top1_right_cause": _rate([r[f"{name}_top1_right"] for r in harmful]),
                "false_alarm_healthy": fa(healthy, f"{name}_alarm"),
            }
            for name in BASELINES
            if records and all(name in r for r in records)
        },
    }  # fmt: skip


def _real_data_table(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per real data file: the healthy runs' quality and findings, one row per faulty run."""
    out: dict[str, Any] = {}
    for r in records:
        s = r["spec"]
        entry = out.setdefault(s["data_path"], {"kind": real_data_kind(s["data_path"]),
                                                "healthy": [], "faulty": []})  # fmt: skip
        final = r["checkpoints"][-1]["findings"] if r["checkpoints"] else []
        row = {"family": s["family"], "random_state": s["random_state"],
               "quality": r["quality"], "alarms": [f["type"] for f in _warn(final)]}  # fmt: skip
        if r["role"] == "healthy":
            entry["healthy"].append(row)
            continue
        rem = r.get("remedy") or {}
        row.update({
            "fault": s["fault"], "twin_quality": r.get("twin_quality"),
            "harmful": r.get("harmful"), "top1": r.get("top1"),
            "top1_right": r.get("top1_right"), "action_right": r.get("action_right"),
            "remedy": (rem.get("remedy") or {}).get("kind"),
            "recovered": rem.get("recovered"),
        })  # fmt: skip
        entry["faulty"].append(row)
    for entry in out.values():
        hs = [r for r in entry["faulty"] if r["harmful"]]
        entry["summary"] = {
            "harmful": len(hs), "top1_right": sum(bool(r["top1_right"]) for r in hs),
            "healthy_alarms": sum(bool(r["alarms"]) for r in entry["healthy"]),
            "n_healthy": len(entry["healthy"]),
        }  # fmt: skip
    return out


def _counts(values: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def baseline_alarm(rec: dict[str, Any]) -> None:
    """Attach ``trivial_alarm`` / ``autotrainer_alarm`` (any WARNING or CRITICAL)."""
    for name in (b for b in BASELINES if b in rec):
        rec[f"{name}_alarm"] = any(sev in ("warning", "critical") for _, sev in rec[name])
