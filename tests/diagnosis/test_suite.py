"""The fault-injection suite on a few tiny runs: twins, injection, remedy, scoring, output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gradtracer.diagnosis.baselines import autotrainer_rules, trivial_monitor
from gradtracer.fault_suite import FAULTS, RunSpec, SuiteConfig, run_suite, train_run, wilson
from gradtracer.fault_suite.report import to_markdown, write_suite


def test_every_fault_declares_causes_and_remedies():
    assert len(FAULTS) >= 20
    for spec in FAULTS.values():
        assert spec.right_causes and spec.right_remedies and len(spec.intensities) == 2
        assert spec.families


def test_bad_input_is_refused_with_clear_errors():
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        RunSpec("nope")
    with pytest.raises(ValueError, match="unknown fault 'nope'"):
        RunSpec("mf_bce", fault="nope")
    with pytest.raises(ValueError, match="cannot be applied to family 'mlp'"):
        RunSpec("mlp", fault="hash_collisions")
    with pytest.raises(ValueError, match="unknown healthy variant"):
        SuiteConfig(variants=("nope",))


def test_twins_share_everything_before_the_onset():
    healthy = train_run(RunSpec("mf_bpr", random_state=1, track=False))
    again = train_run(RunSpec("mf_bpr", random_state=1, track=False))
    assert healthy.losses == again.losses
    late = train_run(RunSpec("mf_bpr", random_state=1, fault="lr_too_low", onset=0.3, track=False))
    assert late.onset_step > 0
    assert late.losses[: late.onset_step] == healthy.losses[: late.onset_step]
    assert late.losses[late.onset_step + 2 :] != healthy.losses[late.onset_step + 2 :]


def test_missing_table_is_named_and_its_remedy_recovers_the_twin():
    healthy = train_run(RunSpec("mf_bce", random_state=0))
    faulty = train_run(RunSpec("mf_bce", random_state=0, fault="table_not_in_optimizer"))
    assert faulty.quality < healthy.quality
    causes = [f for f in faulty.final.findings if f["severity"] != "info"
              and not f.get("consequence_of")]  # fmt: skip
    assert causes[0]["type"] == "PARAMETERS_NOT_UPDATED" and causes[0]["subject"] == "item_emb"
    assert causes[0]["remedy"]["kind"] == "add_to_optimizer"
    from gradtracer.findings import Remedy

    fixed = train_run(RunSpec("mf_bce", random_state=0, fault="table_not_in_optimizer",
                              remedy=Remedy.from_dict(causes[0]["remedy"]), track=False))  # fmt: skip
    assert fixed.quality == pytest.approx(healthy.quality)
    assert faulty.final.health < healthy.final.health


def test_wilson_interval():
    p, lo, hi = wilson(8, 10)
    assert p == 0.8 and 0.49 < lo < 0.5 and 0.94 < hi < 0.95
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_baselines():
    assert trivial_monitor([0.7, float("nan")]) == [("NON_FINITE_LOSS", "critical")]
    assert trivial_monitor([0.7 - 0.001 * i for i in range(100)]) == []
    rising = [0.5] * 30 + [0.5 + 0.01 * i + 0.3 * (-1) ** i for i in range(70)]
    assert ("LEARNING_RATE_TOO_HIGH", "warning") in autotrainer_rules(rising, {})
    assert ("LEARNING_RATE_TOO_LOW", "warning") in autotrainer_rules([0.5] * 100, {})


def test_tiny_suite_scores_and_writes_outputs(tmp_path):
    config = SuiteConfig(
        families=("mf_bpr",), faults=("non_finite_loss",), healthy_seeds=(0,),
        fault_seeds=(0,), intensities=(1,), onsets=(0.0,), variants=("default",),
    )  # fmt: skip
    result = run_suite(config, progress=False)
    m = result["metrics"]
    assert m["n_healthy"] == 1 and m["n_faulty"] == 1 and m["n_harmful"] == 1
    assert (
        m["top1_right_cause"]["k"] == 1 and m["baselines"]["trivial"]["top1_right_cause"]["k"] == 1
    )
    run = next(r for r in result["runs"] if r["role"] == "faulty")
    assert run["remedy"]["remedy"]["kind"] == "skip_non_finite_batches"
    assert run["remedy"]["recovered"] > 0.5
    paths = write_suite(result, tmp_path)
    assert json.loads(paths["json"].read_text())["metrics"]["n_faulty"] == 1
    assert "| right cause, top-1 |" in paths["markdown"].read_text()
    assert paths["figure"].exists() and "Fault-injection" in to_markdown(result)


def test_cli_validate_diagnosis(tmp_path, capsys):
    from gradtracer.cli import main

    code = main(["validate", "diagnosis", "--families", "mlp", "--faults", "dead_relu",
                 "--variants", "default", "--healthy-seeds", "0", "--fault-seeds", "0",
                 "--no-remedies", "--no-progress", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    assert (tmp_path / "diagnosis_suite.md").exists()
    assert "detection recall" in capsys.readouterr().out
    assert main(["validate", "diagnosis", "--faults", "nope", "--out", str(tmp_path)]) != 0
    assert "unknown fault 'nope'" in capsys.readouterr().err


def test_a_table_can_leave_the_optimizer_mid_run():
    healthy = train_run(RunSpec("mf_bce", random_state=0, track=False))
    late = train_run(RunSpec("mf_bce", random_state=0, fault="table_not_in_optimizer",
                             intensity=0, onset=0.3, track=False))  # fmt: skip
    assert late.losses[: late.onset_step] == healthy.losses[: late.onset_step]
    assert late.quality < healthy.quality


def _without_timing(records):
    """The records as JSON text without wall times (NaN compares equal as text)."""
    return json.dumps([{k: v for k, v in r.items() if not k.endswith("seconds")}
                       for r in records], sort_keys=True)  # fmt: skip


def test_worker_processes_give_the_serial_result():
    import torch

    config = SuiteConfig(
        families=("mf_bpr",), faults=("frozen_table",), healthy_seeds=(0,), fault_seeds=(0,),
        intensities=(1,), onsets=(0.0,), variants=("default",),
    )  # fmt: skip
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run one thread each
    try:
        serial = run_suite(config, progress=False)
        parallel = run_suite(config, progress=False, jobs=2)
    finally:
        torch.set_num_threads(previous)
    assert [r["key"] for r in parallel["runs"]] == [r["key"] for r in serial["runs"]]
    assert _without_timing(parallel["runs"]) == _without_timing(serial["runs"])
    untimed = [{k: v for k, v in r["metrics"].items() if k != "probe_cost_share"}
               for r in (serial, parallel)]  # fmt: skip
    assert json.dumps(untimed[0], sort_keys=True) == json.dumps(untimed[1], sort_keys=True)
    assert serial["runs"][1]["remedy"]["quality"] > 0  # the remedy ran in a worker too
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        SuiteConfig(jobs=0)


def test_overfitting_continues_the_twin_past_its_epochs():
    from gradtracer.findings import Remedy

    healthy = train_run(RunSpec("mlp", random_state=0, variant="small_noisy", track=False))
    long = train_run(RunSpec("mlp", random_state=0, variant="small_noisy", fault="overfitting",
                             track=False))  # fmt: skip
    assert long.n_steps == 4 * healthy.n_steps and long.onset_step == healthy.n_steps
    assert long.losses[: healthy.n_steps] == healthy.losses
    assert long.quality < healthy.quality  # 20% label noise memorised
    stopped = train_run(RunSpec("mlp", random_state=0, variant="small_noisy", fault="overfitting",
                                remedy=Remedy("early_stop", {"at_step": 40}), track=False))  # fmt: skip
    assert stopped.losses == healthy.losses[:40]
    config = SuiteConfig(families=("mlp",), faults=("overfitting",), fault_seeds=(0,))
    assert {s.onset for s in config.cases()[1]} == {0.0}  # training too long has no onset


def test_latency_probes_only_read_the_trackers():
    spec = RunSpec("mf_bpr", random_state=0, fault="lr_too_low", intensity=1, onset=0.3)
    probed = train_run(spec)
    plain = train_run(spec, latency_probes=False)
    assert probed.checkpoints == plain.checkpoints and not plain.probes
    assert probed.probes and all(p.step > probed.onset_step for p in probed.probes)
    assert probed.probes[0].step - probed.onset_step == round(0.02 * probed.n_steps)


def test_the_top_cause_remedy_covers_every_subject_it_names():
    from gradtracer.fault_suite.runner import _remedy_of

    def lr(subject, severity="warning", consequence=None):
        return {"type": "LEARNING_RATE_TOO_HIGH", "severity": severity, "subject": subject,
                "consequence_of": consequence,
                "remedy": {"kind": "scale_learning_rate",
                           "params": {"subject": subject, "factor": 0.1}}}  # fmt: skip

    rec = {"checkpoints": [{"findings": [lr("user_emb"), lr("item_emb"), lr("x", "info")]}]}
    top, more = _remedy_of(rec)
    assert top.params["subject"] == "user_emb"
    assert [r.params["subject"] for r in more] == ["item_emb"]


def test_a_learning_rate_remedy_can_start_at_a_step():
    from gradtracer.findings import Remedy

    healthy = train_run(RunSpec("mf_bpr", random_state=0, track=False))
    late = Remedy("scale_learning_rate", {"subject": "*", "factor": 0.1, "from_step": 20})
    fixed = train_run(RunSpec("mf_bpr", random_state=0, remedy=late, track=False))
    assert fixed.losses[:21] == healthy.losses[:21]  # step 20's loss is computed before it
    assert fixed.losses[22:] != healthy.losses[22:]


DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
AMAZON = DATA / "amazon" / "musical-instruments-5core-2014" / "Musical_Instruments.json"
DIGINETICA = DATA / "sessions" / "diginetica-sample" / "sample_train-item-views.csv"


@pytest.mark.skipif(not (AMAZON.exists() and DIGINETICA.exists()),
                    reason="../shared/data (Amazon, DIGINETICA) not present")  # fmt: skip
def test_real_data_runs_get_their_families_and_twins():
    from gradtracer.fault_suite.data import real_data_kind, real_session_data

    assert real_data_kind(AMAZON) == "amazon" and real_data_kind(DIGINETICA) == "sessions"
    config = SuiteConfig(families=("mf_bce", "gru"), faults=("lr_too_low", "frozen_table"),
                         healthy_seeds=(), fault_seeds=(4,),
                         data_paths=(str(AMAZON), str(DIGINETICA)))  # fmt: skip
    healthy, faulty = config.cases()
    real = [(s.family, s.random_state, Path(s.data_path).name) for s in healthy]
    assert real == [("mf_bce", 4, AMAZON.name), ("mf_bce", 5, AMAZON.name),
                    ("gru", 4, DIGINETICA.name), ("gru", 5, DIGINETICA.name)]  # fmt: skip
    real_faulty = [s for s in faulty if s.data_path]
    assert {(s.family, s.fault) for s in real_faulty} == {
        ("mf_bce", "lr_too_low"), ("mf_bce", "frozen_table"), ("gru", "lr_too_low"),
        ("gru", "frozen_table")}  # fmt: skip
    sessions = real_session_data(str(DIGINETICA))
    assert sessions.train_x.shape[1] == 8 and sessions.train_y.max() < sessions.n_items
    run = train_run(RunSpec("gru", random_state=0, data_path=str(DIGINETICA), track=False))
    assert 0.0 <= run.quality <= 1.0 and run.n_steps > 0
    with pytest.raises(ValueError, match="needs user-item data"):
        RunSpec("mf_bce", data_path=str(DIGINETICA))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        SuiteConfig(data_paths=("nope.csv",))


def test_a_fault_that_does_not_apply_is_reported_as_skipped():
    config = SuiteConfig(families=("mlp", "gru"), faults=("hash_collisions", "dead_relu"))
    assert config.skipped() == {"hash_collisions": ["mlp", "gru"], "dead_relu": ["gru"]}
    assert all(s.fault != "hash_collisions" for s in config.cases()[1])


def test_a_learning_rate_remedy_reaches_the_modules_it_lists():
    from gradtracer.fault_suite.inject import _lr_hits
    from gradtracer.findings import Remedy

    towers = ["user_emb", "item_emb", "user_tower", "item_tower"]
    both = Remedy("scale_learning_rate", {"subject": "user_tower.3", "factor": 0.1,
                                          "modules": "item_tower,user_tower"})  # fmt: skip
    assert [g for g in towers if _lr_hits(both, g)] == ["user_tower", "item_tower"]
    one = Remedy("scale_learning_rate", {"subject": "item_emb", "factor": 0.1})
    assert [g for g in towers if _lr_hits(one, g)] == ["item_emb"]
    mlp = Remedy("scale_learning_rate", {"subject": "net.4", "factor": 0.1, "modules": "net"})
    assert all(_lr_hits(mlp, g) for g in ("net.0", "net.2", "net.4"))


def test_autofix_is_compared_with_the_prescribed_remedy_per_seed(tmp_path):
    from gradtracer.cli import main
    from gradtracer.fault_suite.autofix_vs_remedy import compare_autofix, write_comparison

    with pytest.raises(ValueError, match="at least two seeds"):
        compare_autofix((0,))
    with pytest.raises(ValueError, match="cannot be applied to family 'mf_bce'"):
        compare_autofix((0, 1), fault="dead_relu")
    result = compare_autofix((0, 1), progress=False)
    assert [r["random_state"] for r in result["rows"]] == [0, 1]
    for row in result["rows"]:
        assert row["top"] == "LEARNING_RATE_TOO_HIGH"
        assert row["remedy"][0]["kind"] == "scale_learning_rate"
        assert row["faulty"] < row["twin"] and row["remedied"] > row["faulty"]
    assert result["test"]["n"] == 2 and "verdict" in result
    paths = write_comparison(result, tmp_path)
    assert "Verdict:" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["rows"][0]["twin"] == result["rows"][0]["twin"]
    assert main(["validate", "autofix-remedy", "--seeds", "1", "--out", str(tmp_path)]) != 0


def test_faults_built_into_the_model_run_from_step_0_only():
    config = SuiteConfig(families=("mf_bce", "mlp"),
                         faults=("hash_collisions", "vanishing_sigmoid", "lr_too_low"))  # fmt: skip
    onsets: dict[str, set[float]] = {}
    for spec in config.cases()[1]:
        onsets.setdefault(str(spec.fault), set()).add(spec.onset)
    assert onsets == {
        "hash_collisions": {0.0},
        "vanishing_sigmoid": {0.0},
        "lr_too_low": {0.0, 0.3},
    }


def test_a_suite_without_synthetic_runs_still_writes_its_report():
    from gradtracer.fault_suite.runner import score

    config = SuiteConfig(families=("mlp",), faults=("dead_relu",), healthy_seeds=(),
                         fault_seeds=())  # fmt: skip
    assert config.cases() == ([], [])
    metrics = score([], config)
    assert metrics["baselines"] == {} and metrics["n_healthy"] == 0
    text = to_markdown({"config": {"healthy_seeds": [], "fault_seeds": [], "tuning_seeds": [0]},
                        "metrics": metrics})  # fmt: skip
    assert "| right cause, top-1 | n/a (0 runs) | n/a (0 runs) | n/a (0 runs) |" in text


@pytest.mark.skipif(not AMAZON.exists(), reason="../shared/data (Amazon) not present")
def test_real_data_settings_reach_the_optimizer_and_leave_synthetic_runs_alone():
    from gradtracer.fault_suite.inject import _REAL, _Ctx, _make_optimizer
    from gradtracer.fault_suite.trainer import _Trainer

    def groups(spec: RunSpec) -> dict[str, tuple[float, float]]:
        ctx = _Ctx(spec)
        opt, _ = _make_optimizer(ctx, _Trainer(spec, ctx).model)
        return {pg["name"]: (pg["lr"], pg["weight_decay"]) for pg in opt.param_groups}

    real = groups(RunSpec("mf_bce", data_path=str(AMAZON)))
    synthetic = groups(RunSpec("mf_bce"))
    decay = _REAL[("amazon", "mf_bce")]["weight_decay"]
    assert real == {"user_emb": (0.01, decay), "item_emb": (0.01, decay)}
    assert synthetic == {"user_emb": (0.01, 0.0), "item_emb": (0.01, 0.0)}
    collapse = groups(RunSpec("mf_bce", data_path=str(AMAZON), fault="weight_decay_collapse"))
    assert {wd for _, wd in collapse.values()} == {5.0}  # the fault's decay replaces it
