"""Searcher, scheduler and grace period of one method's search (:mod:`ckd_tune.search.tuner`),
built from the plan of a smoke sweep without running it."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from search_support import ALL_METHODS, plan_for  # noqa: E402

from ckd_tune.search.tuner import default_concurrency, grace_period, tune_config  # noqa: E402


def test_tune_config_is_optuna_tpe_run_to_the_end_by_default(tmp_path, glue_dir):
    from optuna.samplers import TPESampler
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    plan = plan_for(tmp_path, glue_dir, "--num-samples", "6", "--max-epochs", "3")
    config = tune_config(plan, "ckd", concurrent=2)
    assert isinstance(config.search_alg, ConcurrencyLimiter)
    assert config.search_alg.max_concurrent == 2
    assert isinstance(config.search_alg.searcher, OptunaSearch)
    sampler = config.search_alg.searcher._sampler
    assert isinstance(sampler, TPESampler) and sampler._n_startup_trials == 3  # half the budget
    assert isinstance(config.scheduler, FIFOScheduler)  # no trial judged mid-annealing
    assert not isinstance(config.scheduler, ASHAScheduler)
    assert (config.metric, config.mode, config.num_samples) == ("best_val_score", "max", 6)
    # a method whose space searches nothing gets one trial: more would all be the same run
    assert tune_config(plan, "none", concurrent=2).num_samples == 1


def test_asha_waits_past_the_annealing_window(tmp_path, glue_dir):
    import random

    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ckd_tune.config import TrainConfig
    from ckd_tune.methods import METHODS

    plan = plan_for(tmp_path, glue_dir, "--scheduler", "asha", "--max-epochs", "10")
    grace = {m: grace_period(plan.spaces[m], 10) for m in ALL_METHODS}
    assert grace == {"ckd": 10, "annealing_kd": 8, "kd": 1, "none": 1}
    # no sampled trial of any space still anneals after its method's grace period
    rng = random.Random(0)
    for method in ALL_METHODS:
        for _ in range(200):
            flat = {**plan.spaces[method].sample_random(rng), "epochs": 10}
            config = TrainConfig.from_flat(flat).to_flat()
            ends = [config[f] for f in METHODS[method].annealing_fields]
            assert all(end * 10 <= grace[method] for end in ends)

    def first_rung(scheduler: ASHAScheduler) -> int:  # ASHA's first decision: the grace period
        return min(milestone for milestone, _ in scheduler._brackets[0]._rungs)

    kd = tune_config(plan, "kd", concurrent=1).scheduler
    assert isinstance(kd, ASHAScheduler) and first_rung(kd) == 1 and kd._max_t == 10
    annealing = tune_config(plan, "annealing_kd", concurrent=1).scheduler
    assert isinstance(annealing, ASHAScheduler) and first_rung(annealing) == 8
    # ckd's psi may move until the last epoch: nothing to stop early, so FIFO
    assert isinstance(tune_config(plan, "ckd", concurrent=1).scheduler, FIFOScheduler)


def test_tune_config_random_sampler_and_fifo(tmp_path, glue_dir):
    from optuna.samplers import RandomSampler, TPESampler
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    plan = plan_for(tmp_path, glue_dir, "--searcher", "random", "--scheduler", "fifo")
    config = tune_config(plan, "kd", concurrent=1)
    sampler = config.search_alg.searcher._sampler
    assert isinstance(sampler, RandomSampler) and not isinstance(sampler, TPESampler)
    assert isinstance(config.scheduler, FIFOScheduler)
    assert not isinstance(config.scheduler, ASHAScheduler)


def test_default_concurrency_is_set_by_the_scarcer_of_cpus_and_gpus(capsys):
    assert default_concurrency({"CPU": 8.0}, cpus=1, gpus=0) == 8
    assert default_concurrency({"CPU": 8.0, "GPU": 1.0}, cpus=1, gpus=0.25) == 4  # packed GPU
    assert default_concurrency({"CPU": 2.0, "GPU": 1.0}, cpus=1, gpus=0.25) == 2
    assert default_concurrency({"CPU": 8.0, "GPU": 0.3}, cpus=1, gpus=0.1) == 3  # not 2.999..
    assert default_concurrency({"CPU": 1.0}, cpus=2, gpus=0) == 1  # at least one
    assert capsys.readouterr().err == ""
    # no GPU yet (an autoscaler adds GPU nodes on demand): sized by CPUs, with a warning
    assert default_concurrency({"CPU": 4.0}, cpus=1, gpus=0.5) == 4
    assert "the Ray cluster has no GPU now" in capsys.readouterr().err
