"""The checks of the search CLI's flags and the validated :class:`Plan` they produce.

:func:`make_plan` checks in two steps so that the common mistakes answer at once: first what the
flags alone decide (numbers, paths, sweep name, tracking server), with nothing heavy imported;
then what needs the bench and method registries and the YAML spaces.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ckd_tune.errors import UserInputError
from ckd_tune.tracking_uri import check_tracking_uri, credentials_to_env, default_tracking_uri

if TYPE_CHECKING:
    from ckd_tune.benches import BenchRequest
    from ckd_tune.spaces import SearchSpace


@dataclass
class Plan:
    """A validated sweep: everything decided before anything expensive starts.

    ``args`` are the parsed flags as given; the values resolved from them (``gpus_per_trial``,
    ``num_samples``, ``epochs``, ``seeds``, ...) are fields of their own: read those.
    """

    args: argparse.Namespace
    request: BenchRequest
    methods: list[str]
    spaces: dict[str, SearchSpace]
    sweep: str
    sweep_dir: Path
    storage: str
    tracking_uri: str
    num_samples: int
    epochs: int
    seeds: int
    cpus_per_trial: float
    gpus_per_trial: float


def default_gpus() -> float:
    """GPUs per trial (or re-run) when none are asked for: 0.5 with a GPU, else 0."""
    import torch

    return 0.5 if torch.cuda.is_available() else 0.0


def trial_device(gpus: float) -> str:
    """``"cuda"`` when ``gpus`` > 0 and a GPU is there, else ``"cpu"``."""
    import torch

    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def make_plan(args: argparse.Namespace) -> Plan:
    """Validate the flags, spaces, data and tracking server; raise UserInputError on bad input."""
    tracking_uri = check_flags(args)
    # the registries and spaces import torch and Optuna: only once the flags alone are good
    from ckd_tune import cache
    from ckd_tune.benches import BenchRequest, get_bench
    from ckd_tune.methods import METHODS, get_method
    from ckd_tune.methods.base import split_method
    from ckd_tune.spaces import default_space_path, load_space

    bench = get_bench(args.bench)
    task = args.task or bench.default_task
    if task not in bench.tasks:
        raise UserInputError(
            f"--task: unknown task {task!r} for bench {bench.name}; choose from "
            f"{list(bench.tasks)}, several comma-separated, or 'all'"
        )
    methods = method_list(args.methods)
    for method in methods:
        get_method(method)
    if args.assistant and not any(get_method(m).signal == "assistant" for m in methods):
        users = sorted(name for name, m in METHODS.items() if m.signal == "assistant")
        raise UserInputError(
            f"--assistant: none of --methods {','.join(methods)} distils from a teacher "
            f"assistant; add {' or '.join(users)} or leave --assistant out"
        )
    if args.profile not in bench.profiles:
        raise UserInputError(
            f"--profile: {args.profile!r} is not a {bench.name} profile; "
            f"choose from {sorted(bench.profiles)}"
        )
    spaces = {}
    for m in methods:
        base, variant = split_method(m)
        spaces[m] = load_space(default_space_path(base, args.space_dir), bench=bench.space_key)
        if variant in ("pbt", "pb2") and spaces[m].pbt is None:
            raise UserInputError(
                f"--methods: {m}: {spaces[m].source} has no 'pbt:' section "
                "(the settings of Population Based Training, PB2's too; see "
                "search_spaces/README.md)"
            )
        if variant == "pb2":
            check_pb2(m, spaces[m])
    data_dir = args.data_dir or bench.default_data_dir()
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserInputError(f"--data-dir: {data_dir} is not a directory")
    if data_dir is not None and not any(Path(data_dir).iterdir()):
        raise UserInputError(
            f"--data-dir: {data_dir} is empty; point it at the {bench.name} data "
            "(see --help), or leave it out to download"
        )
    profile = bench.profiles[args.profile]
    gpus = default_gpus() if args.gpus_per_trial is None else args.gpus_per_trial
    request = BenchRequest(
        bench=bench.name,
        task=task,
        profile=args.profile,
        data_dir=Path(data_dir) if data_dir else None,
        teacher=args.teacher,
        student=args.student,
        assistant=args.assistant,
        methods=tuple(methods),
        cache_dir=(args.cache_dir or cache.default_cache_dir()).expanduser(),
        device=trial_device(gpus),
        num_threads=max(1, int(args.cpus_per_trial)),
    )
    output = args.output.expanduser().resolve()
    sweep = sweep_name(args, output, task)
    sweep_dir = output / sweep
    return Plan(
        args=args,
        request=request,
        methods=methods,
        spaces=spaces,
        sweep=sweep,
        sweep_dir=sweep_dir,
        storage=shared_storage(args.storage_path) if args.storage_path else str(sweep_dir / "ray"),
        tracking_uri=tracking_uri,
        num_samples=args.num_samples or profile.num_samples,
        epochs=args.max_epochs or profile.epochs,
        seeds=args.seeds or profile.seeds,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=gpus,
    )


def shared_storage(path: str) -> str:
    """``--storage-path``: a URI as given, a local path made absolute (every node of a cluster
    resolves it alike; Ray takes no relative path)."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def check_flags(args: argparse.Namespace) -> str:
    """The checks the flags alone decide (no registry, no torch); returns the tracking URI.

    The URI's ``user:password@`` moves to MLflow's environment variables: never printed or saved.
    """
    method_list(args.methods)
    for name in ("num_samples", "max_epochs", "seeds", "max_concurrent"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserInputError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
    if args.cpus_per_trial <= 0:
        raise UserInputError(f"--cpus-per-trial: must be > 0, got {args.cpus_per_trial}")
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        raise UserInputError(f"--gpus-per-trial: must be >= 0, got {args.gpus_per_trial}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UserInputError(f"--data-dir: {args.data_dir} is not a directory")
    for flag in ("teacher", "student", "assistant"):
        model = getattr(args, flag)
        if model and model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
            raise UserInputError(
                f"--{flag}: {model} does not exist; give an existing model directory or a hub id"
                + (", or leave --teacher out to fine-tune one" if flag == "teacher" else "")
            )
    if args.sweep and ("/" in args.sweep or args.sweep.startswith(".")):
        raise UserInputError(f"--sweep: {args.sweep!r} must be a plain name")
    tracking_uri = credentials_to_env(args.tracking_uri or default_tracking_uri(Path.cwd()))
    check_tracking_uri(tracking_uri)
    return tracking_uri


def method_list(methods: str) -> list[str]:
    """``--methods`` split at commas; UserInputError if empty or a method is listed twice."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise UserInputError("--methods: give at least one method")
    if len(set(names)) != len(names):
        raise UserInputError(f"--methods: a method is listed twice: {methods}")
    from ckd_tune.methods.base import split_method  # light: no torch

    for name in names:
        try:
            split_method(name)
        except UserInputError as err:
            raise UserInputError(f"--methods: {str(err).removeprefix('method: ')}") from None
    return names


def sweep_name(args: argparse.Namespace, output: Path, task: str) -> str:
    """``--sweep``, the latest sweep of this bench/task/profile (``--resume``), or a new name."""
    prefix = f"{args.bench}-{task}-{args.profile}"
    if args.sweep:
        if args.resume and not (output / args.sweep / "sweep.json").is_file():
            raise UserInputError(f"--resume: no sweep {args.sweep!r} under {output}")
        return args.sweep
    if args.resume:
        found = sorted(output.glob(f"{prefix}-*/sweep.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise UserInputError(
                f"--resume: no earlier {prefix} sweep under {output}; run without --resume"
            )
        return found[-1].parent.name
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_pb2(method: str, space: SearchSpace) -> None:
    """``<method>:pb2`` needs Ray's PB2 (scikit-learn) and numeric parameters to change (its
    Gaussian process has no categories); UserInputError (one line, exit 2) otherwise."""
    try:
        from ray.tune.schedulers.pb2 import import_pb2_dependencies
    except ImportError as err:  # pragma: no cover - Ray without PB2
        raise UserInputError(f"--methods: {method}: this Ray has no PB2 ({err})") from None
    if not import_pb2_dependencies():
        raise UserInputError(f"--methods: {method}: Ray's PB2 needs scikit-learn, not installed")
    categorical = [
        p.name for p in space.params if p.name in space.pbt.mutate and p.type == "categorical"
    ]
    if categorical or not space.pb2_bounds():
        raise UserInputError(
            f"--methods: {method}: PB2 changes only numeric parameters; pbt.mutate of "
            f"{space.source} names categorical ones ({', '.join(categorical) or 'none numeric'})"
        )


def is_study(task: str | None) -> bool:
    """Whether ``--task`` asks for a multi-task study: several comma-separated tasks, or ``all``."""
    return task is not None and (task.strip() == "all" or "," in task)


def task_list(value: str, bench_name: str, data_dir: Path | None) -> list[str]:
    """The tasks of ``--task`` (comma-separated, in the order given, or ``all``: every task of
    the bench whose data ``data_dir`` holds, every task when the data comes from the hub).

    Raises :class:`UserInputError` for an unknown, repeated or absent task.
    """
    from ckd_tune.benches import get_bench

    bench = get_bench(bench_name)
    if value.strip() == "all":
        if data_dir is None:
            return list(bench.tasks)
        tasks = [t for t in bench.tasks if bench.task_present(Path(data_dir), t)]
        if not tasks:
            raise UserInputError(f"--task all: no {bench.name} task has its data in {data_dir}")
        return tasks
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in bench.tasks]
    if unknown:
        raise UserInputError(
            f"--task: unknown task {unknown[0]!r} for bench {bench.name}; choose from "
            f"{list(bench.tasks)}, several comma-separated, or 'all'"
        )
    if len(set(tasks)) != len(tasks):
        raise UserInputError(f"--task: a task is listed twice: {value}")
    if data_dir is not None:
        absent = [t for t in tasks if not bench.task_present(Path(data_dir), t)]
        if absent:
            raise UserInputError(
                f"--task: no data for {', '.join(absent)} in {data_dir}; "
                "--task all runs the tasks it holds"
            )
    return tasks


@dataclass
class Study:
    """A validated multi-task study: one :class:`Plan` per task, in the order given.

    Each task's sweep lives in ``<study_dir>/<task>`` and is named ``<study>/<task>`` (its
    MLflow tag); every task logs to one experiment, under the study's parent run.
    """

    args: argparse.Namespace
    name: str
    study_dir: Path
    tasks: list[str]
    plans: list[Plan]
    experiment: str


STUDY_FILE = "study.json"


def make_study(args: argparse.Namespace) -> Study:
    """Validate a multi-task ``--task`` and build every task's plan; UserInputError on bad input."""
    check_flags(args)
    from ckd_tune.benches import get_bench

    bench = get_bench(args.bench)
    data_dir = args.data_dir or bench.default_data_dir()
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserInputError(f"--data-dir: {data_dir} is not a directory")
    tasks = task_list(args.task, bench.name, data_dir)
    output = args.output.expanduser().resolve()
    name = study_name(args, output, tasks)
    study_dir = output / name
    experiment = args.experiment or f"ckd_tune/{bench.name}/study"
    plans = []
    for task in tasks:
        task_args = argparse.Namespace(**vars(args))
        task_args.task = task
        task_args.output = study_dir
        task_args.sweep = task
        task_args.resume = args.resume and (study_dir / task / "sweep.json").is_file()
        task_args.experiment = experiment
        plan = make_plan(task_args)
        plan.sweep = f"{name}/{task}"  # unique in the shared experiment; the directory stays
        plans.append(plan)
    return Study(args, name, study_dir, tasks, plans, experiment)


def study_name(args: argparse.Namespace, output: Path, tasks: list[str]) -> str:
    """``--sweep``, the latest study of this bench/profile (``--resume``), or a new name."""
    from ckd_tune import cache

    prefix = f"{args.bench}-study-{args.profile}"
    if args.resume:
        if args.sweep:
            found = [output / args.sweep / STUDY_FILE]
            if not found[0].is_file():
                raise UserInputError(f"--resume: no study {args.sweep!r} under {output}")
        else:
            found = sorted(output.glob(f"{prefix}-*/{STUDY_FILE}"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise UserInputError(
                    f"--resume: no earlier {prefix} study under {output}; run without --resume"
                )
        earlier = cache.read_json(found[-1])["tasks"]
        if earlier != tasks:
            raise UserInputError(
                f"--resume: study {found[-1].parent.name} ran --task {','.join(earlier)}, "
                f"not {','.join(tasks)}; give the same tasks (or --sweep NAME)"
            )
        return found[-1].parent.name
    return args.sweep or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
