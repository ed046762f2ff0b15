"""`gradtracer sessions ...` end to end on small synthetic data, bad input, real-data smoke."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradtracer.cli import main
from gradtracer.recsys.models.markov import MarkovChain
from gradtracer.recsys.models.session_popularity import SessionPopularity
from gradtracer.recsys.sessions import evaluate_next_item, session_arrays
from gradtracer.recsys.sessions.study import load_model, load_split

TINY_GRU = ["--set", "layers=24", "--set", "n_sample=32", "--set", "batch_size=16", "--epochs", "1"]
SYNTH = ["--n-sessions", "600", "--n-items", "120"]


def test_run_writes_figures_results_and_aligned_ranks(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(
        [
            "sessions",
            "run",
            "synthetic",
            "--out",
            str(out),
            *SYNTH,
            *TINY_GRU,
            "--alphas",
            "0,0.5,1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    for name in ("popularity_loglog", "session_lengths", "metric_comparison", "markov_alpha_sweep"):
        for ext in ("png", "svg"):
            path = out / "figures" / f"{name}.{ext}"
            assert path.stat().st_size > 1000, path
    assert (out / "figures" / "metric_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (out / "figures" / "metric_comparison.svg").read_bytes()[:500]
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"popularity", "markov", "gru4rec"}
    assert results["markov_alpha_sweep"]["alpha"] == [0.0, 0.5, 1.0]
    assert "popularity_vs_markov" in results["paired_tests"]
    # every test position is evaluated once by every model
    split = load_split(out / "split")
    test = session_arrays(split.test)
    for name in ("popularity", "markov", "gru4rec"):
        assert results["models"][name]["n_predictions"] == test.n_predictions
        with np.load(out / "results" / f"{name}.npz") as z:
            assert np.array_equal(z["target_events"], np.sort(z["target_events"]))
            assert (z["positions"] >= 1).all()
    captured = capsys.readouterr()
    assert "recall@20" in captured.out and "events/s" in captured.out
    assert "epoch 1/1: loss" in captured.err  # one line per GRU4Rec epoch on stderr


def test_prepare_train_evaluate_compare(tmp_path, capsys):
    split_dir, pop_dir, markov_dir = tmp_path / "split", tmp_path / "pop", tmp_path / "markov"
    assert main(["sessions", "prepare", "synthetic", "--out", str(split_dir), *SYNTH]) == 0
    assert (
        main(["sessions", "train", str(split_dir), "--model", "popularity", "--out", str(pop_dir)])
        == 0
    )
    assert (
        main(
            [
                "sessions",
                "train",
                str(split_dir),
                "--model",
                "markov",
                "--alpha",
                "0.1",
                "--out",
                str(markov_dir),
            ]
        )
        == 0
    )
    for model_dir in (pop_dir, markov_dir):
        assert (
            main(
                [
                    "sessions",
                    "evaluate",
                    str(split_dir),
                    str(model_dir),
                    "--out",
                    str(model_dir / "ranks.npz"),
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert (
        main(["sessions", "compare", str(markov_dir / "ranks.npz"), str(pop_dir / "ranks.npz")])
        == 0
    )
    out = capsys.readouterr().out
    assert "markov (A) vs popularity (B)" in out and "wilcoxon p=" in out
    # the CLI result equals the library result on the same split
    split = load_split(split_dir)
    direct = evaluate_next_item(load_model(markov_dir), session_arrays(split.test))
    with np.load(markov_dir / "ranks.npz") as z:
        assert np.array_equal(z["ranks"], direct.ranks)


def test_train_gru4rec_with_tracking_writes_tracker_summaries(tmp_path, capsys):
    split_dir, model_dir = tmp_path / "split", tmp_path / "gru"
    assert main(["sessions", "prepare", "synthetic", "--out", str(split_dir), *SYNTH]) == 0
    code = main(
        [
            "sessions",
            "train",
            str(split_dir),
            "--out",
            str(model_dir),
            *TINY_GRU,
            "--set",
            "constrained_embedding=false",
            "--set",
            "embedding=16",
            "--track",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summaries = json.loads((model_dir / "tracking.json").read_text())
    assert set(summaries) == {"item_emb", "output_emb"}
    assert main(["sessions", "evaluate", str(split_dir), str(model_dir), "--json"]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("SessionId\tItem\tTime\n1\t2\t3\n", "ItemId"),
        ("SessionId\tItemId\tTime\n1\t5\tnoon\n1\t6\t2\n", "Time"),
    ],
    ids=["wrong-column-name", "non-numeric-time"],
)
def test_bad_session_files_name_the_file_and_column(tmp_path, capsys, content, message):
    path = tmp_path / "clicks.tsv"
    path.write_text(content)
    assert main(["sessions", "prepare", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "clicks.tsv" in err and message in err


def test_only_single_event_sessions_is_an_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "singles.tsv"
    path.write_text("SessionId\tItemId\tTime\n1\t5\t1\n2\t6\t2\n3\t5\t3\n")
    assert main(["sessions", "prepare", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "singles.tsv" in err and "2 or more events" in err


def test_bad_options_exit_2(tmp_path, capsys):
    split_dir = tmp_path / "split"
    assert main(["sessions", "prepare", "synthetic", "--out", str(split_dir), *SYNTH]) == 0
    assert (
        main(
            ["sessions", "train", str(split_dir), "--out", str(tmp_path / "m"), "--set", "hidden=3"]
        )
        == 2
    )
    assert (
        main(["sessions", "train", str(split_dir), "--out", str(tmp_path / "m"), "--model", "sknn"])
        == 2
    )
    assert main(["sessions", "evaluate", str(tmp_path / "nowhere"), str(tmp_path / "m")]) == 2
    assert "unknown session model 'sknn'" in capsys.readouterr().err
    # a model from another split (other item map) is refused, naming both directories
    other, pop = tmp_path / "other", tmp_path / "pop"
    assert (
        main(
            [
                "sessions",
                "prepare",
                "synthetic",
                "--out",
                str(other),
                "--n-sessions",
                "300",
                "--n-items",
                "50",
            ]
        )
        == 0
    )
    assert main(["sessions", "train", str(other), "--model", "popularity", "--out", str(pop)]) == 0
    capsys.readouterr()
    assert main(["sessions", "evaluate", str(split_dir), str(pop)]) == 2
    err = capsys.readouterr().err
    assert "pop" in err and "'item' column" in err


@pytest.mark.realdata
def test_diginetica_sample_smoke(shared_data, tmp_path, capsys):
    path = shared_data / "sessions/diginetica-sample/sample_train-item-views.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    split_dir, model_dir = tmp_path / "split", tmp_path / "gru"
    assert (
        main(["sessions", "prepare", str(path), "--fmt", "diginetica", "--out", str(split_dir)])
        == 0
    ), capsys.readouterr().err
    info = json.loads((split_dir / "info.json").read_text())
    # the sample has 933 single-event sessions; they are dropped and counted
    assert info["short_sessions_dropped"] == 933
    assert info["unseen_test_events_dropped"] > 0
    assert main(["sessions", "train", str(split_dir), "--out", str(model_dir), *TINY_GRU]) == 0
    capsys.readouterr()
    assert main(["sessions", "evaluate", str(split_dir), str(model_dir), "--json"]) == 0
    gru = json.loads(capsys.readouterr().out)
    split = load_split(split_dir)
    train, test = session_arrays(split.train), session_arrays(split.test)
    assert gru["n_predictions"] == test.n_predictions > 0
    assert 0.0 <= gru["mean"]["recall@20"] <= 1.0
    markov = evaluate_next_item(MarkovChain(train.n_items).fit(train), test)
    pop = evaluate_next_item(SessionPopularity(train.n_items).fit(train), test)
    assert markov.mean["recall@20"] > pop.mean["recall@20"]


def test_prepare_reads_a_gru4rec_tsv(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["SessionId\tItemId\tTime"]
    for s in range(40):
        for j in range(int(rng.integers(1, 6))):
            lines.append(f"{s}\titem{int(rng.integers(0, 8))}\t{1000 * s + j}.5")
    path = tmp_path / "clicks.tsv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["sessions", "prepare", str(path), "--out", str(tmp_path / "split")]) == 0
    split = load_split(tmp_path / "split")
    info = json.loads((tmp_path / "split" / "info.json").read_text())
    n_single = sum(1 for s in range(40) if sum(ln.startswith(f"{s}\t") for ln in lines) == 1)
    assert info["short_sessions_dropped"] == n_single
    assert all(raw.startswith("item") for raw in split.train.item_ids.ids)


def _write_tsv(path, sessions, start=0):
    lines = ["SessionId\tItemId\tTime"]
    for s, items in enumerate(sessions):
        lines += [f"{start + s}\ti{item}\t{1000 * (start + s) + j}" for j, item in enumerate(items)]
    path.write_text("\n".join(lines) + "\n")


def test_prepare_takes_an_existing_train_test_pair(tmp_path, capsys):
    rng = np.random.default_rng(0)
    train_sessions = [list(rng.integers(0, 20, size=int(rng.integers(1, 6)))) for _ in range(80)]
    test_sessions = [list(rng.integers(0, 25, size=int(rng.integers(1, 6)))) for _ in range(30)]
    _write_tsv(tmp_path / "train.txt", train_sessions)
    _write_tsv(tmp_path / "test.txt", test_sessions, start=1000)
    split_dir = tmp_path / "split"
    assert (
        main(
            [
                "sessions",
                "prepare",
                str(tmp_path / "train.txt"),
                "--test",
                str(tmp_path / "test.txt"),
                "--out",
                str(split_dir),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "no --test" not in captured.err
    split = load_split(split_dir)
    info = json.loads((split_dir / "info.json").read_text())
    catalog = {f"i{i}" for s in train_sessions if len(s) >= 2 for i in s}
    assert set(split.train.item_ids.ids) == catalog and info["pre_split"] is True
    # every kept test event is an event of the test file whose item is in the catalog
    kept = [[f"i{i}" for i in s if f"i{i}" in catalog] for s in test_sessions if len(s) >= 2]
    expected_events = sum(len(s) for s in kept if len(s) >= 2)
    assert info["test_events"] == split.test.frame.height == expected_events
    assert info["test_sessions"] == sum(1 for s in kept if len(s) >= 2)
    assert info["unseen_test_events_dropped"] == sum(
        1 for s in test_sessions if len(s) >= 2 for i in s if f"i{i}" not in catalog
    )
    assert info["train_events"] == sum(len(s) for s in train_sessions if len(s) >= 2)
    # one file alone is split by time, and the CLI says so
    assert (
        main(
            ["sessions", "prepare", str(tmp_path / "train.txt"), "--out", str(tmp_path / "resplit")]
        )
        == 0
    )
    assert "no --test file given; held out the latest 20%" in capsys.readouterr().err


def test_presets_cover_the_official_parameter_files(tmp_path, capsys):
    split_dir, model_dir = tmp_path / "split", tmp_path / "gru"
    assert main(["sessions", "prepare", "synthetic", "--out", str(split_dir), *SYNTH]) == 0
    code = main(
        [
            "sessions",
            "train",
            str(split_dir),
            "--out",
            str(model_dir),
            "--preset",
            "rsc15",
            "--set",
            "layers=8",
            "--set",
            "n_sample=16",
            "--epochs",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((model_dir / "model.json").read_text())["config"]
    assert config["logq"] == 1.0 and config["loss"] == "cross-entropy"
    assert config["n_epochs"] == 2 and config["layers"] == [8]
    err = capsys.readouterr().err
    # one line per epoch with loss, time and throughput, even off a terminal
    assert "epoch 1/2" in err and "epoch 2/2" in err and err.count("events/s") >= 2
    assert (
        main(["sessions", "train", str(split_dir), "--out", str(model_dir), "--preset", "nope"])
        == 2
    )
    assert "coveo" in capsys.readouterr().err


def test_usage_errors_of_train_and_evaluate_exit_2(tmp_path, capsys):
    split_dir, pop = tmp_path / "split", tmp_path / "pop"
    assert main(["sessions", "prepare", "synthetic", "--out", str(split_dir), *SYNTH]) == 0
    assert (
        main(["sessions", "train", str(split_dir), "--model", "popularity", "--out", str(pop)]) == 0
    )
    capsys.readouterr()
    # --epochs 0 would save an untrained model
    assert (
        main(["sessions", "train", str(split_dir), "--out", str(tmp_path / "g"), "--epochs", "0"])
        == 2
    )
    assert "--epochs" in capsys.readouterr().err and not (tmp_path / "g").exists()
    # a cut-off beyond the catalog
    n_items = load_split(split_dir).train.n_items
    assert main(["sessions", "evaluate", str(split_dir), str(pop), "--ks", f"5,{n_items + 1}"]) == 2
    assert f"catalog of {n_items} items" in capsys.readouterr().err
    # a session file where a split directory is expected
    clicks = tmp_path / "clicks.tsv"
    _write_tsv(clicks, [[1, 2, 3]])
    assert main(["sessions", "train", str(clicks), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "is a file; expected a split directory" in err and "sessions prepare" in err
    # GRU4Rec settings given to another model
    assert (
        main(
            [
                "sessions",
                "train",
                str(split_dir),
                "--model",
                "markov",
                "--epochs",
                "3",
                "--out",
                str(tmp_path / "mk"),
            ]
        )
        == 2
    )
    assert "--epochs apply to --model gru4rec only" in capsys.readouterr().err
    # tracking a model without embedding tables
    assert (
        main(
            [
                "sessions",
                "train",
                str(split_dir),
                "--model",
                "markov",
                "--track",
                "--out",
                str(tmp_path / "mk"),
            ]
        )
        == 2
    )
    assert "has none" in capsys.readouterr().err


def test_evaluate_refuses_an_incomplete_split_and_a_user_item_model(tmp_path, capsys):
    from gradtracer.recsys.models.popularity import PopularityRecommender

    split_dir, pop = tmp_path / "split", tmp_path / "pop"
    assert main(["sessions", "prepare", "synthetic", "--out", str(split_dir), *SYNTH]) == 0
    assert (
        main(["sessions", "train", str(split_dir), "--model", "popularity", "--out", str(pop)]) == 0
    )
    split = load_split(split_dir)
    user_item = tmp_path / "user_item"
    PopularityRecommender().fit(split.train).save(user_item)
    capsys.readouterr()
    assert main(["sessions", "evaluate", str(split_dir), str(user_item)]) == 2
    assert "not a session model" in capsys.readouterr().err
    (split_dir / ".incomplete").write_text("writing\n")
    assert main(["sessions", "evaluate", str(split_dir), str(pop)]) == 1
    assert "did not finish" in capsys.readouterr().err
