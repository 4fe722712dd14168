"""Shared helpers of the report tests (test_report_*.py): the synthetic sweep's summaries and
trial runs, and ``built``, a report made over the synthetic bench (imported as a fixture)."""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from ckd_tune.config import TrainConfig
from ckd_tune.errors import NonFiniteLossError
from ckd_tune.report import (
    ReportSetup,
    make_report,
)
from ckd_tune.search.summary import MethodSummary
from tests.synthetic_bench import make_prepared

PNG = b"\x89PNG\r\n\x1a\n"
METHODS = ("ckd", "kd", "annealing_kd", "none")
SECTIONS = (
    "## Setup",
    "## Results",
    "## Statistical comparison vs vanilla KD (kd)",
    "## Search budget",
    "## Plots",
    "## Best models",
)


def make_summaries() -> list[MethodSummary]:
    """The searches of the synthetic sweep: annealing_kd failed, the others found a config."""
    shared = {"epochs": 3, "batch_size": 16, "lr": 1e-2}  # the synthetic bench's base config
    configs = {  # each method's own parameters at their defaults; ckd found another lr
        "ckd": TrainConfig.from_flat({**shared, "method": "ckd", "lr": 2e-2}),
        "kd": TrainConfig.from_flat({**shared, "method": "kd"}),
        "none": TrainConfig.from_flat({**shared, "method": "none"}),
    }
    out = []
    for i, method in enumerate(METHODS):
        if method == "annealing_kd":
            out.append(MethodSummary(method, "failed", None, {}, None, None, 3, 3, 2, 4.0))
        else:
            config = configs[method].to_flat()
            out.append(
                MethodSummary(method, "ok", 0.7 + 0.01 * i, config, f"t{i}", None, 3, 0, 7, 12.5)
            )
    return out


def add_trial_runs(client: MlflowClient, experiment_id: str, sweep: str) -> None:
    """Three fake trial runs per method, two epochs each, overlapping in time."""
    t0 = 1_700_000_000_000
    for m, method in enumerate(METHODS):
        for i in range(3):
            start = t0 + 1000 * i
            tags = {"sweep": sweep, "role": "trial", "method": method, "ray_trial_id": f"{m}{i}"}
            run = client.create_run(experiment_id, start_time=start, tags=tags)
            metrics = [
                Metric("best_val_score", 0.5 + 0.1 * i + 0.01 * e + 0.02 * m, start + 1500 * e, e)
                for e in (1, 2)
            ]
            client.log_batch(run.info.run_id, metrics=metrics)


@pytest.fixture(scope="module", name="built")
def built_fixture(tmp_path_factory):
    """A report over the synthetic bench, re-runs in this process, MLflow in sqlite.

    Three seeds; the re-run of ``none`` with seed 2 hits a non-finite loss.
    """
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(
        "ckd_tune/points/points", artifact_location=(tmp / "mlartifacts").as_uri()
    )
    sweep = "points-points-smoke-test"
    add_trial_runs(client, experiment_id, sweep)
    summary_run = client.create_run(
        experiment_id, tags={"sweep": sweep, "role": "summary"}
    ).info.run_id
    prepared = make_prepared()
    setup = ReportSetup(
        sweep=sweep,
        report_dir=tmp / sweep / "report",
        seed=0,
        seeds=3,
        epochs=3,
        profile="smoke",
        num_samples=3,
        searcher="tpe",
        scheduler="asha",
        experiment_id=experiment_id,
        summary_run=summary_run,
        tracking_uri=uri,
        register_model="points-student",
    )
    import ckd_tune.train

    real_train = ckd_tune.train.train

    def flaky(config, *args, **kwargs):
        if config.method == "none" and config.seed == 2:
            raise NonFiniteLossError("loss became nan at epoch 1, step 3")
        return real_train(config, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ckd_tune.train, "train", flaky)
        results = make_report(setup, prepared, make_summaries(), client)
    return SimpleNamespace(
        results=results,
        dir=setup.report_dir,
        client=client,
        experiment_id=experiment_id,
        summary_run=summary_run,
        prepared=prepared,
        sweep=sweep,
        uri=uri,
        tmp=tmp,
    )


def asdict_summary(s: MethodSummary) -> dict:
    """A summary as the report reads it (a dict)."""
    return asdict(s)


def report_setup_dict() -> dict:
    """The ``setup`` of a results dict, enough for :func:`render_markdown`."""
    return {"bench": "points", "task": "points", "profile": "smoke", "seeds": [0, 1], "epochs": 3}
