"""The search CLI's flags: ``--help``, and bad input (status 2, one line naming the problem and
the fix, before Ray starts), in this process and through the real entry point."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from search_support import (  # noqa: E402
    REPO,
    cache_dir_fixture,  # noqa: F401  (the cache_dir fixture)
    cli,
    cli_env,
    lines,
    no_ray_left_fixture,  # noqa: F401  (an autouse fixture)
    sweep_args,
)

from ckd_tune.search.cli import main  # noqa: E402


def _bad_space(kind: str, tmp: Path) -> Path:
    space_dir = tmp / kind
    space_dir.mkdir()
    good = (REPO / "search_spaces" / "kd.yaml").read_text()
    if kind == "malformed":
        (space_dir / "kd.yaml").write_text("method: kd\nparams: {lr: [1.0e-5,\n")
    else:
        (space_dir / "kd.yaml").write_text(good + "\nlearning_rate_typo: 3\n")
    return space_dir


BAD_INPUTS = {
    # name: (extra argv (formatted with tmp=, glue=), words the one line must contain)
    "unknown bench": (["--bench", "imagenet"], ["--bench", "imagenet", "choose from"]),
    "unknown task": (["--task", "mnli_typo"], ["--task", "mnli_typo", "choose from"]),
    "unknown method": (["--methods", "kd,fitnets"], ["fitnets"]),
    "duplicate method": (["--methods", "kd,none,kd"], ["--methods", "twice"]),
    "malformed yaml": (["--methods", "kd", "--space-dir", "{malformed}"], ["kd.yaml", "YAML"]),
    "unknown yaml key": (
        ["--methods", "kd", "--space-dir", "{unknown_key}"],
        ["kd.yaml", "learning_rate_typo"],
    ),
    "missing data dir": (["--data-dir", "{tmp}/nonexistent"], ["--data-dir", "not a directory"]),
    "empty data dir": (["--data-dir", "{empty}"], ["--data-dir", "empty"]),
    "data dir without the task": (
        ["--data-dir", "{other_task}"],
        ["no train split", "SST-2/train.tsv", "--data-dir"],
    ),
    "zero samples": (["--num-samples", "0"], ["--num-samples", ">= 1"]),
    "negative gpus": (["--gpus-per-trial", "-1"], ["--gpus-per-trial", ">= 0"]),
    "silent tracking server": (
        ["--tracking-uri", "http://127.0.0.1:9"],
        ["--tracking-uri", "does not answer"],
    ),
    "resume without sweep": (["--resume"], ["--resume", "run without --resume"]),
    "missing teacher": (
        ["--teacher", "{tmp}/no_such_teacher"],
        ["--teacher", "no_such_teacher", "does not exist"],
    ),
    "missing assistant": (
        ["--methods", "takd", "--assistant", "{tmp}/no_such_assistant"],
        ["--assistant", "no_such_assistant", "does not exist"],
    ),
    "assistant without takd": (
        ["--methods", "kd,none", "--assistant", "resnet20"],
        ["--assistant", "kd,none", "add takd"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_before_ray(case, tmp_path, glue_dir, capsys):
    import ray

    extra, words = BAD_INPUTS[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "other_task" / "CoLA").mkdir(parents=True)
    paths = {
        "tmp": tmp_path,
        "empty": tmp_path / "empty",
        "other_task": tmp_path / "other_task",
        "malformed": _bad_space("malformed", tmp_path) if "malformed" in case else "",
        "unknown_key": _bad_space("unknown_key", tmp_path) if "key" in case else "",
    }
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    argv += [a.format(**paths) for a in extra]
    capsys.readouterr()
    t0 = time.monotonic()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert len(lines(err)) == 1, err
    assert err.startswith("ckd_tune.search: error: ")
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert time.monotonic() - t0 < 30
    assert not ray.is_initialized()
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("sweep.json"))


def test_an_unknown_cifar_assistant_exits_2_with_one_line_before_any_training(
    tmp_path, cifar_dir, capsys, monkeypatch
):
    from ckd_tune import teacher

    monkeypatch.setattr(teacher, "fine_tune_teacher", lambda *a, **k: pytest.fail("trained"))
    argv = ["--bench", "cifar10", "--profile", "smoke", "--data-dir", str(cifar_dir),
            "--methods", "takd,kd", "--assistant", "vgg11", "--no-report",
            "--output", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]  # fmt: skip
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert len(lines(err)) == 1, err
    assert err.startswith("ckd_tune.search: error: ") and "--assistant" in err
    assert "unknown CIFAR network 'vgg11'" in err


def test_the_assistant_gets_a_line_like_the_teachers(capsys):
    from ckd_tune.search.sweep import print_teacher
    from tests.synthetic_bench import make_prepared

    print_teacher(make_prepared(assistant=True))
    teacher, assistant = capsys.readouterr().out.splitlines()
    assert teacher.startswith("teacher: synthetic teacher (trained in 0 s); val accuracy ")
    assert assistant.startswith("assistant: synthetic assistant (trained in 2 s); val accuracy ")
    assert ", test accuracy " in assistant
    print_teacher(make_prepared())  # no assistant: the teacher's line alone
    (only,) = capsys.readouterr().out.splitlines()
    assert only.startswith("teacher: ")


def test_bad_input_in_a_real_process_is_one_stderr_line(tmp_path, glue_dir, cache_dir):
    """The same through the real entry point: nothing else (warnings, logs) reaches stderr."""
    (tmp_path / "empty").mkdir()
    db = f"sqlite:///{tmp_path / 'm.db'}"
    args = sweep_args(tmp_path / "runs", db, cache_dir, glue_dir, "--data-dir", "empty")
    proc = cli(args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert lines(proc.stderr) == [
        "ckd_tune.search: error: --data-dir: empty is empty; point it at the glue data "
        "(see --help), or leave it out to download"
    ]


# ------------------------------------------------------------------------------------------
# --help and the flag checks: at once, without the heavy libraries

HEAVY = ("torch", "ray", "mlflow", "optuna", "transformers")
PROBE = """
import subprocess
import sys
from ckd_tune.search.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("STATUS", status, "HEAVY", ",".join(heavy) or "-", file=sys.stderr)
"""


def probe(*argv: str) -> tuple[int, list[str], list[str]]:
    """Run the CLI with ``argv`` in a fresh interpreter; its status, its stderr lines (less the
    probe's) and the heavy libraries it imported."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    *err, last = lines(proc.stderr)
    _, status, _, heavy = last.split()
    return int(status), err, [] if heavy == "-" else heavy.split(",")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--help"], []),
        (["--bench", "glue", "--num-samples", "0"], ["--num-samples", ">= 1"]),
        (["--bench", "glue", "--methods", "kd,kd"], ["--methods", "twice"]),
        (["--bench", "glue", "--data-dir", "/nonexistent"], ["--data-dir", "not a directory"]),
        (["--bench", "glue", "--tracking-uri", "http://127.0.0.1:9"], ["does not answer"]),
        (["--bench", "glue", "--searcher", "grid"], ["--searcher", "invalid choice"]),
        (["--methods", "kd"], ["required", "--bench"]),
    ],
)
def test_help_and_flag_errors_import_no_heavy_library(argv, words):
    """What the flags alone decide answers before torch, Ray, MLflow or Optuna load (~0.1 s
    instead of ~7 s); flag errors, argparse's included, are one line."""
    status, err, heavy = probe(*argv)
    assert heavy == [], f"{argv}: imported {heavy}"
    if argv == ["--help"]:
        assert status == 0 and err == []
        return
    assert status == 2
    assert len(err) == 1 and err[0].startswith("ckd_tune.search: error: "), err
    for word in words:
        assert word in err[0], f"{word!r} not in {err[0]!r}"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--bench", "nope"], ["--bench", "unknown bench"]),
        (["--bench", "glue", "--task", "nope"], ["--task", "unknown task"]),
        (["--bench", "glue", "--methods", "kd,bogus"], ["unknown method 'bogus'"]),
        (["--bench", "glue", "--profile", "huge"], ["--profile", "'huge'"]),
        (["--bench", "cifar10", "--space-dir", "/nonexistent"], ["cannot read search space"]),
    ],
)
def test_registry_and_space_errors_load_no_framework(argv, words):
    """Unknown benches, tasks, methods, profiles and bad spaces are answered from the light
    registries: no torch, transformers, Ray or MLflow (the spaces' Optuna is ~0.3 s)."""
    status, err, heavy = probe(*argv)
    assert [h for h in heavy if h != "optuna"] == [], f"{argv}: imported {heavy}"
    assert status == 2
    assert len(err) == 1 and err[0].startswith("ckd_tune.search: error: "), err
    for word in words:
        assert word in err[0], f"{word!r} not in {err[0]!r}"


def test_help_states_each_default_once_and_names_every_bench_and_profile():
    """No ``(default: None)``, no default stated twice; the benches and profiles the help names
    by hand are the registered ones."""
    from ckd_tune.benches import BENCHES
    from ckd_tune.search.cli import build_parser

    parser = build_parser()
    text = parser.format_help()
    assert "(default: None)" not in text
    for action in parser._actions:
        assert (action.help or "").count("default") <= 1, action.help
    bench_help = next(a.help for a in parser._actions if "--bench" in a.option_strings)
    profile_help = next(a.help for a in parser._actions if "--profile" in a.option_strings)
    for name, bench in BENCHES.items():
        assert name in bench_help, f"--help does not name bench {name}"
        for profile in bench.profiles:
            assert profile in profile_help, f"--help does not name profile {profile}"
