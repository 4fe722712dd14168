"""``--methods ckd:pbt``: Continuation-KD's schedule state found by Population Based Training
(:func:`ckd_tune.search.tuner.pbt_config`), its spelling and space checks, and the replay of the
best member's learned schedule (``schedule_file``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from search_support import (  # noqa: E402
    cache_dir_fixture,  # noqa: F401
    cli,
    kill_group,
    mlflow_runs,
    no_ray_left_fixture,  # noqa: F401
    ok,
    plan_for,
    start_cli,
    sweep_args,
    trial_runs,
    wait_for,
)

from ckd_tune.errors import UserInputError  # noqa: E402
from ckd_tune.search.cli import main  # noqa: E402

SPACE = """\
method: ckd
fixed: {temperature_path: steps, psi_shape: ramp}
params:
  t_max: {type: int, low: 2, high: 10}
  anneal_fraction: {type: uniform, low: 0.3, high: 1.0}
  psi_end_fraction: {type: uniform, low: 0.3, high: 0.65}
  margin: {type: uniform, low: 0.1, high: 1.0}
pbt:
  burn_in_fraction: 0.25
  interval_fraction: 0.25
  quantile_fraction: 0.5
  resample_probability: 0.0
"""


@pytest.mark.parametrize(
    ("methods", "words"),
    [
        ("kd:foo", ["kd:foo", "unknown variant", "<method>:pbt"]),
        ("ckd:", ["unknown variant"]),
        ("kd:pbt", ["kd:pbt", "kd.yaml", "no 'pbt:' section"]),
    ],
)
def test_bad_variants_exit_2_with_one_line(methods, words, tmp_path, glue_dir, capsys):
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    assert main([*argv, "--methods", methods]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert all(w in err[0] for w in words), err[0]


def test_the_pbt_variant_is_its_own_method_with_the_space_settings(tmp_path, glue_dir):
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from ckd_tune.search.tuner import ClipToSpace, dir_name, pbt_config

    plan = plan_for(tmp_path, glue_dir, "--methods", "ckd,ckd:pbt", "--max-epochs", "10")
    assert plan.methods == ["ckd", "ckd:pbt"] and dir_name("ckd:pbt") == "ckd-pbt"
    space = plan.spaces["ckd:pbt"]
    assert space.method == "ckd" and space.pbt is not None
    config = pbt_config(plan, "ckd:pbt", concurrent=2)
    assert config.num_samples == plan.num_samples  # population = the per-method trial budget
    assert isinstance(config.search_alg, BasicVariantGenerator)
    pbt = config.scheduler
    assert isinstance(pbt, PopulationBasedTraining)
    assert (pbt._metric, pbt._time_attr, pbt._synch) == ("val_score", "training_iteration", True)
    assert (pbt._burn_in_period, pbt._perturbation_interval) == (3, 1)  # 0.3, 0.1 of 10 epochs
    assert set(pbt._hyperparam_mutations) == set(space.pbt.mutate)
    clip = ClipToSpace(space)
    assert clip({"anneal_fraction": 1.2, "t_max": 11.6, "margin": 0.5}) == {
        "anneal_fraction": 1.0,
        "t_max": 10,
        "margin": 0.5,
    }


def test_the_pb2_variant_bounds_come_from_the_space_ranges(tmp_path, glue_dir):
    from ray.tune.schedulers.pb2 import PB2

    from ckd_tune.search.tuner import pbt_config

    plan = plan_for(tmp_path, glue_dir, "--methods", "ckd:pbt,ckd:pb2", "--max-epochs", "10")
    space = plan.spaces["ckd:pb2"]
    config = pbt_config(plan, "ckd:pb2", concurrent=2)
    pb2 = config.scheduler
    assert isinstance(pb2, PB2) and config.num_samples == plan.num_samples
    assert (pb2._metric, pb2._time_attr, pb2._synch) == ("val_score", "training_iteration", True)
    assert (pb2._burn_in_period, pb2._perturbation_interval) == (3, 1)  # as ckd:pbt's
    ranges = {p.name: [p.low, p.high] for p in space.params}
    assert pb2._hyperparam_bounds == {name: ranges[name] for name in space.pbt.mutate}
    assert pb2._resample_probability == 0  # the GP bandit chooses; nothing is resampled
    # a member's new values stay in the space (integers rounded) whatever the bandit proposes
    assert pb2._custom_explore_fn({"t_max": 10.7, "margin": -0.2})["t_max"] == 10


class _Member:
    """What PBT's on_trial_add and choose_trial_to_run read of a Ray trial."""

    def __init__(self, name: str, epochs: int, status: str = "PENDING") -> None:
        from types import SimpleNamespace

        self.experiment_tag, self.status, self.config, self.evaluated_params = name, status, {}, {}
        self.last_result = {"training_iteration": epochs} if epochs else {}
        keep = SimpleNamespace(num_to_keep=3)
        self.run_metadata = SimpleNamespace(
            checkpoint_manager=SimpleNamespace(checkpoint_config=keep)
        )


@pytest.mark.parametrize("variant", ["pbt", "pb2"])
def test_a_restored_population_is_scheduled_from_where_it_stopped(variant, tmp_path, glue_dir):
    """Tuner.restore re-adds members already some epochs in: the next synchronisation point
    follows the least advanced one (Ray's own state would say epoch 0 and deadlock)."""
    from types import SimpleNamespace

    from ckd_tune.search.tuner import pbt_config

    plan = plan_for(tmp_path, glue_dir, "--methods", f"ckd:{variant}", "--max-epochs", "10")
    fresh = pbt_config(plan, f"ckd:{variant}", concurrent=2).scheduler  # burn-in 3, interval 1
    assert fresh._next_perturbation_sync == 3
    cases = [
        ([5, 5], 6, {"a", "b"}),  # both at epoch 5: both run to the next point, 6
        ([5, 4], 5, {"b"}),  # b catches up to a's epoch 5, where they synchronise
        ([2, 0], 3, {"a", "b"}),  # still in burn-in
        ([7, 10], 8, {"a"}),  # b finished: a runs on alone
    ]
    for epochs, next_sync, runnable in cases:
        pbt = pbt_config(plan, f"ckd:{variant}", concurrent=2).scheduler
        members = [
            _Member(n, e, "TERMINATED" if e == 10 else "PENDING")
            for n, e in zip("ab", epochs, strict=True)
        ]
        controller = SimpleNamespace(search_alg=None, get_trials=lambda m=members: m)
        for member in members:
            pbt.on_trial_add(controller, member)
        assert pbt._next_perturbation_sync == next_sync, epochs
        chosen = set()
        while (trial := pbt.choose_trial_to_run(controller)) is not None:
            chosen.add(trial.experiment_tag)
            trial.status = "RUNNING"
        assert chosen == runnable, epochs


def test_pb2_refuses_categorical_parameters_to_change(tmp_path, glue_dir, capsys):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "ckd.yaml").write_text(
        SPACE.replace(
            "params:\n", "params:\n  psi_shape: {type: categorical, choices: [ramp, step]}\n"
        ).replace(
            "fixed: {temperature_path: steps, psi_shape: ramp}", "fixed: {temperature_path: steps}"
        )
        + "  mutate: [psi_shape, margin]\n"
    )
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    assert main([*argv, "--methods", "ckd:pb2", "--space-dir", str(spaces)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "PB2 changes only numeric parameters" in err[0], err
    assert "psi_shape" in err[0]


def test_pbt_section_checks(tmp_path):
    from ckd_tune.spaces import space_from_dict

    base = {"method": "ckd", "params": {"margin": {"type": "uniform", "low": 0, "high": 1}}}
    for pbt, words in [
        ({"burn_in_fraction": 0}, "pbt.burn_in_fraction"),
        ({"quantile_fraction": 0.7}, "pbt.quantile_fraction"),
        ({"mutate": ["t_max"]}, "not a searched parameter"),
        ({"interval": 1}, "unknown key"),
    ]:
        with pytest.raises(UserInputError, match=words):
            space_from_dict({**base, "pbt": pbt})
    assert space_from_dict({**base, "pbt": {}}).pbt.mutate == ("margin",)


def test_replay_reproduces_a_schedule_file_exactly(tmp_path):
    from ckd_tune.config import TrainConfig
    from ckd_tune.methods.ckd import learned_schedule

    flat = {"method": "ckd", "epochs": 4, "t_max": 6, "anneal_fraction": 0.7, "margin": 0.3}
    config = TrainConfig.from_flat(flat)
    method = config.build_method()
    history = [
        {"epoch": e + 1, "val_score": 0.5, **method.schedule(config.progress(e / 4 + 0.01))}
        for e in range(4)
    ]
    # a learned schedule changes between epochs: fake one PBT exploit at epoch 3
    history[2] = {**history[2], "T": 2.5, "phi": 0.75, "margin": 0.9}
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"schedule": learned_schedule(history)}))
    replay = TrainConfig.from_flat({**flat, "schedule_file": str(path)})
    method = replay.build_method()
    for e in range(4):
        for done in (e / 4, e / 4 + 0.2):
            values = method.schedule(replay.progress(done))
            assert values == {k: history[e][k] for k in ("T", "phi", "psi", "margin")}
    # the report's schedule plot draws the replayed (learned) values of a ckd:pbt row
    from ckd_tune.report.results import schedule_curves

    curves = schedule_curves({"ckd:pbt": replay.to_flat()}, points=5)["ckd:pbt"]
    assert curves["margin"] == [0.3, 0.3, 0.9, 0.3, 0.3] and curves["T"][2] == 2.5
    with pytest.raises(UserInputError, match="schedule_file"):
        TrainConfig.from_flat({**flat, "schedule_file": str(tmp_path / "missing.json")})


def population_sweep(
    tmp_path: Path, glue_dir: Path, cache_dir: Path, variant: str
) -> tuple[subprocess.CompletedProcess, Path, str]:
    """A finished smoke sweep of ``ckd:<variant>`` (2 members x 4 epochs, the test's space):
    the CLI's process, the sweep directory and the MLflow URI."""
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "ckd.yaml").write_text(SPACE)
    db = f"sqlite:///{tmp_path / 'm.db'}"
    args = sweep_args(tmp_path / "runs", db, cache_dir, glue_dir)
    args += ["--methods", f"ckd:{variant}", "--space-dir", str(spaces), "--sweep", variant]
    args += ["--num-samples", "2", "--max-epochs", "4", "--cpus-per-trial", "1"]
    proc = cli(args, cwd=tmp_path)
    ok(proc)
    return proc, tmp_path / "runs" / variant, db


def test_smoke_pbt_sweep_perturbs_members_and_exports_the_best_schedule(
    tmp_path, glue_dir, cache_dir
):
    proc, sweep, db = population_sweep(tmp_path, glue_dir, cache_dir, "pbt")
    # exploit/explore happened: some member's searched values differ between its epochs
    changed = 0
    for result in (sweep / "ray" / "ckd-pbt").glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        configs = {json.dumps({k: r["config"][k] for k in ("t_max", "margin")}) for r in rows}
        changed += len(configs) > 1
    assert changed >= 1, proc.stdout[-3000:]
    # the best member's learned schedule: in the summary and in a file its config replays
    summary = json.loads((sweep / "ckd-pbt.summary.json").read_text())
    schedule = summary["schedule"]
    assert [s["epoch"] for s in schedule] == [1, 2, 3, 4]
    assert all(set(s) == {"epoch", "T", "phi", "psi", "margin"} for s in schedule)
    # ... the best member's own lineage: its last epoch as it reported it
    best = next((sweep / "ray" / "ckd-pbt").glob(f"*{summary['best_trial']}*/result.json"))
    last = json.loads(best.read_text().splitlines()[-1])
    assert {k: last[k] for k in ("T", "psi", "margin")} == {
        k: schedule[-1][k] for k in ("T", "psi", "margin")
    }
    members = summary["members"]  # the population's top members, best first (the plot)
    assert members[0]["trial_id"] == summary["best_trial"] and len(members) == 2
    assert members[0]["schedule"] == schedule and len({m["trial_id"] for m in members}) == 2
    path = Path(summary["best_config"]["schedule_file"])
    assert json.loads(path.read_text())["schedule"] == schedule
    # one MLflow run per member (a member that copied another continues its own run)
    runs = trial_runs(mlflow_runs(db, "pbt"), "ckd:pbt")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


def test_smoke_pb2_sweep_exports_the_best_schedule(tmp_path, glue_dir, cache_dir):
    """``ckd:pb2``: the same population search with Ray's PB2 choosing the new values."""
    _, sweep, db = population_sweep(tmp_path, glue_dir, cache_dir, "pb2")
    summary = json.loads((sweep / "ckd-pb2.summary.json").read_text())
    assert summary["status"] == "ok" and summary["trials"] == 2
    assert [s["epoch"] for s in summary["schedule"]] == [1, 2, 3, 4]
    assert (
        json.loads(Path(summary["best_config"]["schedule_file"]).read_text())["schedule"]
        == (summary["schedule"])
    )
    assert summary["best_config"]["t_max"] == round(summary["best_config"]["t_max"])
    runs = trial_runs(mlflow_runs(db, "pb2"), "ckd:pb2")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["scheduler"] for r in runs} == {"pb2"}


def test_a_sigkilled_pbt_sweep_resumes_its_population(tmp_path, glue_dir, cache_dir):
    """SIGKILL of the whole sweep (driver, Ray, trials) past the first exploit, then --resume:
    the same members carry on (same trial ids, one MLflow run each, all FINISHED) and the best
    member's learned schedule is exported."""
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "ckd.yaml").write_text(SPACE)
    db = f"sqlite:///{tmp_path / 'm.db'}"
    args = sweep_args(tmp_path / "runs", db, cache_dir, glue_dir)
    args += ["--methods", "ckd:pbt", "--space-dir", str(spaces), "--sweep", "pbt"]
    args += ["--num-samples", "2", "--max-epochs", "4", "--cpus-per-trial", "1"]
    sweep = tmp_path / "runs" / "pbt"
    ray_dir = sweep / "ray" / "ckd-pbt"

    def past_first_exploit() -> bool:  # a member reported epoch 2; Ray saved its state
        results = [p.read_text().count("\n") for p in ray_dir.glob("*/result.json")]
        return max(results, default=0) >= 2 and any(ray_dir.glob("experiment_state-*.json"))

    proc = start_cli(args, tmp_path, tmp_path / "run1")
    try:
        wait_for(past_first_exploit, proc, 300, "a PBT member's second epoch")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_group(proc)

    def member_ids() -> list[str]:  # run_trial_<experiment>_<index>_...: the Ray trial ids
        return sorted("_".join(p.name.split("_")[2:4]) for p in ray_dir.glob("run_trial_*"))

    members = member_ids()
    assert len(members) == 2 and not (sweep / "ckd-pbt.summary.json").exists()

    proc = cli([*args, "--resume"], cwd=tmp_path)
    ok(proc)
    assert "ckd:pbt: resuming the interrupted search" in proc.stdout
    assert member_ids() == members  # the same population, not a fresh one
    runs = trial_runs(mlflow_runs(db, "pbt"), "ckd:pbt")
    assert sorted(r.data.tags["ray_trial_id"] for r in runs) == members  # one run per member
    assert {r.info.status for r in runs} == {"FINISHED"}
    summary = json.loads((sweep / "ckd-pbt.summary.json").read_text())
    assert summary["best_trial"] in members and summary["trials"] == 2
    assert [s["epoch"] for s in summary["schedule"]] == [1, 2, 3, 4]
    assert sorted(m["trial_id"] for m in summary["members"]) == members
    path = Path(summary["best_config"]["schedule_file"])
    assert json.loads(path.read_text())["schedule"] == summary["schedule"]


def test_the_report_reruns_a_pbt_row_on_its_learned_schedule(tmp_path, monkeypatch):
    """Without MLflow: ckd:pbt is its own row; its re-runs replay the exported schedule exactly
    (each epoch's T, phi, psi, margin in every re-run's history) and results.json carries it."""
    import ckd_tune.train
    from ckd_tune import report
    from ckd_tune.config import TrainConfig
    from ckd_tune.search.summary import MethodSummary
    from tests.synthetic_bench import make_prepared

    prepared = make_prepared()
    shared = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "method": "ckd"}
    learned = [
        {"epoch": 1, "T": 4.0, "phi": 0.5, "psi": 0.1, "margin": 0.2},
        {"epoch": 2, "T": 1.5, "phi": 0.9, "psi": 0.6, "margin": 0.05},
    ]
    path = tmp_path / "ckd-pbt.schedule.json"
    path.write_text(json.dumps({"schedule": learned}))
    members = [
        {"trial_id": "t2", "best_val_score": 0.7, "schedule": learned},
        {"trial_id": "t3", "best_val_score": 0.6, "schedule": [{**e, "T": 2.0} for e in learned]},
    ]
    hand = TrainConfig.from_flat(shared).to_flat()
    replay = {**hand, "schedule_file": str(path)}
    summaries = [
        MethodSummary("ckd", "ok", 0.7, hand, "t1", None, 2, 0, 4, 3.0),
        MethodSummary("ckd:pbt", "ok", 0.7, replay, "t2", None, 2, 0, 4, 3.0, learned, members),
    ]
    histories = []
    real_train = ckd_tune.train.train

    def spy(config, *args, **kwargs):
        result = real_train(config, *args, **kwargs)
        histories.append((config.to_flat().get("schedule_file"), result.history))
        return result

    monkeypatch.setattr(ckd_tune.train, "train", spy)
    setup = report.ReportSetup(sweep="points-pbt", report_dir=tmp_path / "report", seed=0,
                               seeds=2, epochs=2, positive_control=False)  # fmt: skip
    report.make_report(setup, prepared, summaries)
    replayed = [h for f, h in histories if f == str(path)]
    assert len(replayed) == 2  # one re-run per seed
    keys = ("epoch", "T", "phi", "psi", "margin")
    for history in replayed:
        assert [{k: h[k] for k in keys} for h in history] == learned
    results = json.loads((setup.report_dir / "results.json").read_text())
    assert set(results["methods"]) == {"ckd", "ckd:pbt"}
    assert results["methods"]["ckd:pbt"]["schedule"] == learned
    assert "schedule" not in results["methods"]["ckd"]
    saved = json.loads((setup.report_dir / "ckd-pbt.schedule.json").read_text())
    assert saved["schedule"] == learned
    assert set(results["schedules"]) >= {"ckd", "ckd:pbt"}  # learned vs hand-designed plot
    # the learned schedules' plot (the top members beside ckd's) and the comparison with ckd
    assert results["methods"]["ckd:pbt"]["members"] == members
    png = setup.report_dir / report.PLOTS["learned_schedules"]
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    md = (setup.report_dir / "report.md").read_text()
    assert "![Schedules learned by the search" in md and "learned_schedules.png" in md
    assert "ckd:pbt" in results["comparisons"]["ckd"]
    assert "### Learned vs hand-designed schedule" in md
