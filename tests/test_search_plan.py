"""The validated plan of a sweep (:mod:`ckd_tune.search.plan`): values resolved from the flags
without rewriting them."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from search_support import plan_for, sweep_args  # noqa: E402

from ckd_tune.benches import BENCHES  # noqa: E402
from ckd_tune.errors import UserInputError  # noqa: E402
from ckd_tune.search.cli import build_parser  # noqa: E402
from ckd_tune.search.plan import (  # noqa: E402
    STUDY_FILE,
    default_gpus,
    is_study,
    make_plan,
    make_study,
    task_list,
)


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


# --------------------------------------------------------------------------------------------
# A multi-task study: --task a,b,c or all


def _study_args(tmp_path, glue_dir, task: str, *extra: str):
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    return build_parser().parse_args([*argv, "--task", task, *extra])


def test_which_task_flags_make_a_study():
    assert is_study("sst2,mrpc") and is_study("all") and is_study(" all ")
    assert not is_study("sst2") and not is_study(None)


def test_task_list_keeps_the_order_given_and_all_finds_the_staged_tasks(glue_dir):
    assert task_list("rte, sst2,mrpc", "glue", glue_dir) == ["rte", "sst2", "mrpc"]
    # the fake GLUE holds train and dev files of these five; QNLI only its dev file
    assert task_list("all", "glue", glue_dir) == ["sst2", "cola", "mrpc", "rte", "stsb"]
    assert task_list("all", "glue", None) == list(BENCHES["glue"].tasks)  # from the hub


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("sst2,sst3", "--task: unknown task 'sst3' for bench glue; choose from"),
        ("sst2,mrpc,sst2", "--task: a task is listed twice: sst2,mrpc,sst2"),
        ("sst2,qnli", "--task: no data for qnli in"),
    ],
)
def test_bad_task_lists_are_one_line_errors(glue_dir, task, message):
    with pytest.raises(UserInputError) as err:
        task_list(task, "glue", glue_dir)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_all_with_no_task_present_is_an_error(tmp_path):
    with pytest.raises(UserInputError, match="--task all: no glue task has its data in"):
        task_list("all", "glue", tmp_path)


def test_a_study_plans_each_task_as_its_own_sweep(tmp_path, glue_dir):
    study = make_study(_study_args(tmp_path, glue_dir, "mrpc,sst2", "--methods", "kd,none"))
    assert study.tasks == ["mrpc", "sst2"] and study.name.startswith("glue-study-smoke-")
    assert study.study_dir == (tmp_path / "runs" / study.name).resolve()
    assert study.experiment == "ckd_tune/glue/study"
    for task, plan in zip(study.tasks, study.plans, strict=True):
        assert plan.request.task == task and plan.methods == ["kd", "none"]
        assert plan.sweep == f"{study.name}/{task}"  # unique in the shared experiment
        assert plan.sweep_dir == study.study_dir / task
        assert plan.storage == str(study.study_dir / task / "ray")
        assert plan.args.experiment == study.experiment and not plan.args.resume
    named = make_study(
        _study_args(tmp_path, glue_dir, "rte,cola", "--experiment", "e", "--sweep", "s")
    )
    assert (named.name, named.experiment) == ("s", "e")


def test_resuming_a_study_finds_it_and_resumes_only_the_tasks_that_started(tmp_path, glue_dir):
    with pytest.raises(UserInputError, match="--resume: no earlier glue-study-smoke study"):
        make_study(_study_args(tmp_path, glue_dir, "sst2,mrpc", "--resume"))
    first = make_study(_study_args(tmp_path, glue_dir, "sst2,mrpc"))
    first.study_dir.mkdir(parents=True)
    (first.study_dir / STUDY_FILE).write_text(json.dumps({"tasks": ["sst2", "mrpc"]}))
    (first.study_dir / "sst2").mkdir()
    (first.study_dir / "sst2" / "sweep.json").write_text("{}")
    again = make_study(_study_args(tmp_path, glue_dir, "sst2,mrpc", "--resume"))
    assert again.name == first.name
    assert [p.args.resume for p in again.plans] == [True, False]  # mrpc never started
    with pytest.raises(UserInputError, match=r"ran --task sst2,mrpc, not mrpc,sst2"):
        make_study(_study_args(tmp_path, glue_dir, "mrpc,sst2", "--resume"))
