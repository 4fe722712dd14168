"""Bench registry: a bench turns (task, profile, data source, models) into data + teacher + student.

A new bench is one ``prepare`` function plus a :data:`BENCHES` entry and its data module.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ckd_tune import cache
from ckd_tune.config import TrainConfig
from ckd_tune.data import SPLITS
from ckd_tune.errors import UserInputError
from ckd_tune.models import BUNDLED_ENCODER

if TYPE_CHECKING:
    from torch import nn

    from ckd_tune.data import TaskData
    from ckd_tune.teacher import Teacher
    from ckd_tune.train import TeacherFn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """How big a run is: data sizes, epochs, models, search budget and report seeds."""

    name: str
    train_size: int | None  # None: all of the official train split minus validation
    val_size: int | float
    test_size: int | None  # None: the whole official dev/test split
    epochs: int
    teacher_epochs: int
    num_samples: int  # search trials per method
    seeds: int  # report re-runs per method
    batch_size: int = 32
    max_seq_length: int = 128
    teacher: str = BUNDLED_ENCODER
    student: str = BUNDLED_ENCODER
    student_layers: int | None = 2
    teacher_lr: float = 1e-4
    base: dict = field(default_factory=dict)  # TrainConfig defaults for the bench's students
    teacher_base: dict = field(default_factory=dict)  # TrainConfig settings for teacher training
    # examples the teacher is trained on, disjoint from the student's train and val examples (so
    # its logits on the student's examples are predictions, not memories); None: the teacher
    # trains on the student's own training examples (the papers' protocol at full scale)
    teacher_size: int | None = None


@dataclass
class BenchRequest:
    """What the user asked for (CLI flags), before anything is loaded."""

    bench: str
    task: str | None = None
    profile: str = "quick"
    data_dir: Path | None = None
    teacher: str | None = None
    student: str | None = None
    cache_dir: Path = field(default_factory=cache.default_cache_dir)
    device: str = "cpu"
    num_threads: int = 1


@dataclass
class PreparedBench:
    """Everything a trial needs, built once per sweep and shared read-only by all trials."""

    bench: str
    task: str
    profile: Profile
    data: TaskData
    teacher: Teacher
    teacher_signal: TeacherFn
    build_student: Callable[[int], nn.Module]
    base_config: TrainConfig

    @property
    def experiment_name(self) -> str:
        """Default MLflow experiment: one per bench/task."""
        return f"ckd_tune/{self.bench}/{self.task}"


@dataclass(frozen=True)
class Bench:
    """A registered bench."""

    name: str
    tasks: tuple[str, ...]
    default_task: str
    profiles: dict[str, Profile]
    prepare: Callable[[BenchRequest], PreparedBench]
    default_data_dir: Callable[[], Path | None]
    space_key: str  # which ``bench_overrides`` entry of the YAML search spaces applies


GLUE_PROFILES = {
    "smoke": Profile(
        "smoke",
        train_size=64,
        val_size=32,
        teacher_size=64,
        test_size=64,
        epochs=2,
        teacher_epochs=1,
        num_samples=2,
        seeds=2,
        batch_size=16,
        max_seq_length=64,
    ),
    # sized in docs/protocol.md: <= 30 min on 2 idle CPU cores, 5 seeds, a teacher that never saw
    # the student's examples; lr etc. shared by every method (measured by a pilot, see there)
    "quick": Profile(
        "quick",
        train_size=2000,
        val_size=872,
        teacher_size=8000,
        test_size=None,
        epochs=3,
        teacher_epochs=2,
        num_samples=4,
        seeds=5,
        max_seq_length=64,
        base={"lr": 4e-4},
    ),
    "paper": Profile(
        "paper",
        train_size=None,
        val_size=0.05,
        teacher_size=None,  # the papers' teacher is fine-tuned on the whole training set
        test_size=None,
        epochs=10,
        teacher_epochs=3,
        num_samples=50,
        seeds=5,
        max_seq_length=128,
        teacher="roberta-large",
        student="distilroberta-base",
        student_layers=None,
        teacher_lr=1e-5,
    ),
}


def prepare_glue(request: BenchRequest) -> PreparedBench:
    """GLUE: tokenised splits, a fine-tuned (cached) teacher and its cached logits, a small student."""
    from ckd_tune.data.glue import load_glue
    from ckd_tune.models import TextModelSpec, load_tokenizer
    from ckd_tune.teacher import CachedTeacher

    profile = GLUE_PROFILES[request.profile]
    task = request.task or "sst2"
    student_name = request.student or profile.student
    tokenizer = load_tokenizer(student_name)
    data = load_glue(
        task,
        tokenizer,
        data_dir=request.data_dir,
        max_seq_length=profile.max_seq_length,
        val_size=profile.val_size,
        train_size=profile.train_size,
        teacher_size=profile.teacher_size,
        test_size=profile.test_size,
        seed=0,
    )
    base = TrainConfig(
        epochs=profile.epochs,
        batch_size=profile.batch_size,
        num_threads=request.num_threads,
        **profile.base,
    )
    teacher = _text_teacher(request, profile, data)
    layers = None if request.student else profile.student_layers
    return PreparedBench(
        bench="glue",
        task=task,
        profile=profile,
        data=data,
        teacher=teacher,
        teacher_signal=CachedTeacher(teacher.logits["train"]),
        build_student=TextModelSpec(student_name, data.num_labels, layers),
        base_config=base,
    )


def _text_teacher(request: BenchRequest, profile: Profile, data: TaskData) -> Teacher:
    """Load ``--teacher`` (already fine-tuned), or fine-tune the profile's teacher once and cache it."""
    import torch

    from ckd_tune.models import TextModelSpec
    from ckd_tune.teacher import Teacher, teacher_fingerprint, teacher_logits

    if request.teacher:
        spec = TextModelSpec(request.teacher, data.num_labels, pretrained_head=True)
        model, fp = spec.build(), teacher_fingerprint(spec.fingerprint())
        seconds, reused = 0.0, True
    else:
        spec = TextModelSpec(profile.teacher, data.num_labels)
        model, fp, seconds, reused = _trained_teacher(
            request, profile, data, spec, spec.fingerprint(), "model.safetensors",
            save=lambda model, tmp: model.save_pretrained(tmp, safe_serialization=True),
            load=lambda d: TextModelSpec(str(d), data.num_labels, pretrained_head=True).build(),
        )  # fmt: skip
    logits = teacher_logits(model, data, request.cache_dir, fp, device=torch.device(request.device))
    metrics = {
        split: data.metric(logits[split].numpy(), data.split(split).labels) for split in SPLITS
    }
    name = request.teacher or f"{profile.teacher} fine-tuned ({profile.teacher_epochs} epochs)"
    return Teacher(
        name=name,
        fingerprint=fp,
        metrics=metrics,
        logits=logits,
        train_seconds=seconds,
        reused=reused,
    )


def _trained_teacher(
    request: BenchRequest,
    profile: Profile,
    data: TaskData,
    spec: Callable[[int], nn.Module],
    spec_fingerprint: str,
    weights_file: str,
    *,
    save: Callable[[nn.Module, Path], None],
    load: Callable[[Path], nn.Module],
) -> tuple[nn.Module, str, float, bool]:
    """The profile's teacher trained on ``data`` once, cached by fingerprint.

    Returns ``(model, fingerprint, training seconds, reused from cache)``.
    """
    import torch

    from ckd_tune.teacher import cached_teacher, fine_tune_teacher, teacher_fingerprint

    config = _teacher_config(request, profile)
    fp = teacher_fingerprint(spec_fingerprint, data.fingerprint, config)

    # the teacher's own examples when the data has a teacher split (disjoint from the student's)
    own = (
        data if data.teacher_train is None else dataclasses.replace(data, train=data.teacher_train)
    )

    def build(tmp: Path) -> dict:
        log.info("training the teacher (%s) on %s: %d examples x %d epochs", profile.teacher,
                 data.name, len(own.train), config.epochs)  # fmt: skip
        model, metrics, seconds = fine_tune_teacher(
            own, spec, config, device=torch.device(request.device)
        )
        save(model, tmp)
        return {"metrics": metrics, "train_seconds": seconds}

    directory, meta, reused = cached_teacher(request.cache_dir, fp, build, [weights_file])
    return load(directory), fp, meta["train_seconds"], reused


def _teacher_config(request: BenchRequest, profile: Profile) -> TrainConfig:
    # the driver trains the teacher before any trial starts: every core of this machine is free
    return TrainConfig(
        method="none",
        lr=profile.teacher_lr,
        epochs=profile.teacher_epochs,
        batch_size=profile.batch_size,
        num_threads=max(request.num_threads, os.cpu_count() or 1),
        **profile.teacher_base,
    )


_SGD = {"optimizer": "sgd", "lr_schedule": "step", "weight_decay": 5e-4, "warmup_ratio": 0.0}
CIFAR_PROFILES = {
    "smoke": Profile("smoke", train_size=160, val_size=64, teacher_size=96, test_size=64, epochs=2, teacher_epochs=2,
                     num_samples=2, seeds=2, batch_size=64, teacher="resnet8", student="resnet8",
                     student_layers=None, teacher_lr=0.05, base={**_SGD, "lr": 0.05},
                     teacher_base=_SGD),
    "quick": Profile("quick", train_size=5000, val_size=1000, teacher_size=5000, test_size=None, epochs=5,
                     teacher_epochs=15, num_samples=6, seeds=3, batch_size=64, teacher="resnet32",
                     student="resnet8", student_layers=None, teacher_lr=0.05,
                     base={**_SGD, "lr": 0.05}, teacher_base=_SGD),
    "paper": Profile("paper", train_size=None, val_size=5000, teacher_size=None, test_size=None, epochs=200,
                     teacher_epochs=200, num_samples=50, seeds=5, batch_size=128, teacher="resnet110",
                     student="resnet8", student_layers=None, teacher_lr=0.1,
                     base={**_SGD, "lr": 0.1}, teacher_base=_SGD),
}  # fmt: skip


def prepare_cifar(request: BenchRequest) -> PreparedBench:
    """CIFAR-10/100: augmented images, a trained (cached) ResNet teacher run live, a ResNet student.

    With augmentation every view is new, so the teacher runs forward inside each step
    (``LiveTeacher``, in inference mode) instead of reading cached logits.
    """
    import torch

    from ckd_tune.data.cifar import load_cifar
    from ckd_tune.models import (
        VisionModelSpec,
        load_vision_model,
        save_vision_model,
        saved_model_fingerprint,
    )
    from ckd_tune.teacher import LiveTeacher, Teacher, teacher_fingerprint
    from ckd_tune.train import evaluate

    profile = CIFAR_PROFILES[request.profile]
    data = load_cifar(
        request.bench,
        data_dir=request.data_dir,
        val_size=profile.val_size,
        train_size=profile.train_size,
        teacher_size=profile.teacher_size,
        test_size=profile.test_size,
        seed=0,
    )
    student = VisionModelSpec(request.student or profile.student, data.num_labels)
    device = torch.device(request.device)
    teacher_path = Path(request.teacher).expanduser() if request.teacher else None
    if teacher_path is not None and teacher_path.exists():
        model, spec = load_vision_model(teacher_path)
        fp = teacher_fingerprint(saved_model_fingerprint(teacher_path))
        seconds, reused = 0.0, True
    else:
        spec = VisionModelSpec(request.teacher or profile.teacher, data.num_labels)
        model, fp, seconds, reused = _trained_teacher(
            request, profile, data, spec, spec.fingerprint(), "model.pt",
            save=lambda model, tmp: save_vision_model(model, spec, tmp),
            load=lambda d: load_vision_model(d)[0],
        )  # fmt: skip
    model.to(device)
    metrics = {
        split: evaluate(model, data, split, batch_size=256, device=device) for split in SPLITS
    }
    if spec.num_classes != data.num_labels:
        raise UserInputError(
            f"--teacher: {spec.arch} predicts {spec.num_classes} classes, "
            f"{request.bench} has {data.num_labels}"
        )
    name = str(teacher_path) if teacher_path else f"{spec.arch} ({profile.teacher_epochs} epochs)"
    teacher = Teacher(
        name=name, fingerprint=fp, metrics=metrics, train_seconds=seconds, reused=reused
    )
    return PreparedBench(
        bench=request.bench,
        task=request.bench,
        profile=profile,
        data=data,
        teacher=teacher,
        teacher_signal=LiveTeacher(model.cpu()),
        build_student=student,
        base_config=TrainConfig(epochs=profile.epochs, batch_size=profile.batch_size,
                                num_threads=request.num_threads, **profile.base),
    )  # fmt: skip


BENCHES: dict[str, Bench] = {}


def _register() -> None:
    from ckd_tune.data.tasks import GLUE_TASKS, default_cifar_dir, default_glue_dir

    BENCHES["glue"] = Bench(
        "glue", tuple(GLUE_TASKS), "sst2", GLUE_PROFILES, prepare_glue, default_glue_dir, "glue"
    )
    for name in ("cifar10", "cifar100"):
        BENCHES[name] = Bench(
            name, (name,), name, CIFAR_PROFILES, prepare_cifar,
            lambda name=name: default_cifar_dir(name), "cifar",
        )  # fmt: skip


_register()


def get_bench(name: str) -> Bench:
    """The registered bench ``name``; ``UserInputError`` naming the choices otherwise."""
    try:
        return BENCHES[name]
    except KeyError:
        raise UserInputError(
            f"--bench: unknown bench {name!r}; choose from {sorted(BENCHES)}"
        ) from None
