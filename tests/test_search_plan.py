"""The validated plan of a sweep (:mod:`ckd_tune.search.plan`): values resolved from the flags
without rewriting them."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from search_support import plan_for, sweep_args  # noqa: E402

from ckd_tune.benches import BENCHES  # noqa: E402
from ckd_tune.search.cli import build_parser  # noqa: E402
from ckd_tune.search.plan import default_gpus, make_plan  # noqa: E402


def test_the_plan_resolves_defaults_and_leaves_the_flags_as_given(tmp_path, glue_dir):
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    args = build_parser().parse_args([*argv, "--methods", "kd,none", "--cpus-per-trial", "2"])
    given = copy.deepcopy(vars(args))
    plan = make_plan(args)
    assert vars(args) == given  # no flag rewritten (gpus_per_trial stays None)
    assert plan.gpus_per_trial == default_gpus() and plan.cpus_per_trial == 2.0
    assert plan.request.num_threads == 2 and plan.request.device in ("cpu", "cuda")
    smoke = BENCHES["glue"].profiles["smoke"]  # the budget comes from the profile
    assert (plan.num_samples, plan.epochs, plan.seeds) == (
        smoke.num_samples,
        smoke.epochs,
        smoke.seeds,
    )
    assert plan.methods == ["kd", "none"]
    assert plan.sweep.startswith("glue-sst2-smoke-") and plan.storage == str(plan.sweep_dir / "ray")


def test_a_storage_path_is_absolute_or_a_uri(tmp_path, glue_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plan_for(tmp_path, glue_dir, "--storage-path", "shared/ray").storage == str(
        tmp_path.resolve() / "shared" / "ray"
    )
    uri = "s3://bucket/ckd/ray"
    assert plan_for(tmp_path, glue_dir, "--storage-path", uri).storage == uri


def test_the_assistant_flag_and_the_methods_reach_the_bench_request(tmp_path, glue_dir):
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    extra = ["--methods", "takd,kd", "--assistant", "prajjwal1/bert-mini"]
    plan = make_plan(build_parser().parse_args([*argv, *extra]))
    assert plan.request.assistant == "prajjwal1/bert-mini"
    assert plan.request.methods == ("takd", "kd") and plan.request.needs_assistant
    plain = make_plan(build_parser().parse_args([*argv, "--methods", "kd,none"]))
    assert plain.request.assistant is None and not plain.request.needs_assistant
