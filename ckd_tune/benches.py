"""Bench registry: a bench turns (task, profile, data source, models) into data + teacher + student.

A new bench is one ``prepare`` function plus a :data:`BENCHES` entry and its data module.

When a sweep's methods include one that distils from a teacher assistant (``takd``), the bench
also prepares the assistant: a model between the teacher and the student in size, distilled from
the teacher once with vanilla KD (:data:`ASSISTANT_KD`) on the examples the teacher trained on,
with the teacher's recipe (lr, epochs, optimiser), its best epoch chosen on the validation split
as the teacher's; it never trains on validation or test labels. It is cached like the teacher
(fingerprint: the teacher's, the data, its start weights and settings), its logits likewise.
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
from ckd_tune.methods import get_method
from ckd_tune.models import BUNDLED_ENCODER

if TYPE_CHECKING:
    import torch
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
    # the teacher assistant (takd), between teacher and student: a model name (text benches:
    # its first ``assistant_layers`` layers; None: all) or a CIFAR network
    assistant: str = BUNDLED_ENCODER
    assistant_layers: int | None = 4


@dataclass
class BenchRequest:
    """What the user asked for (CLI flags), before anything is loaded."""

    bench: str
    task: str | None = None
    profile: str = "quick"
    data_dir: Path | None = None
    teacher: str | None = None
    student: str | None = None
    assistant: str | None = None
    cache_dir: Path = field(default_factory=cache.default_cache_dir)
    device: str = "cpu"
    num_threads: int = 1
    methods: tuple[str, ...] = ()  # what the sweep trains: the assistant is prepared for these

    @property
    def needs_assistant(self) -> bool:
        """Whether one of ``methods`` distils from the teacher assistant."""
        return any(get_method(m).signal == "assistant" for m in self.methods)


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
    assistant: Teacher | None = None  # the teacher assistant, when a method of the sweep uses it
    assistant_signal: TeacherFn | None = None

    @property
    def experiment_name(self) -> str:
        """Default MLflow experiment: one per bench/task."""
        return f"ckd_tune/{self.bench}/{self.task}"

    def signal_for(self, method: str) -> TeacherFn:
        """The logits ``method`` distils from: the teacher's, or the assistant's (its ``signal``)."""
        if get_method(method).signal == "teacher":
            return self.teacher_signal
        if self.assistant_signal is None:
            raise ValueError(
                f"method {method!r} distils from the teacher assistant, but the bench was "
                "prepared without one (BenchRequest.methods did not list the method)"
            )
        return self.assistant_signal


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
    # whether a local data directory holds a task (``--task all`` runs those that it does)
    task_present: Callable[[Path, str], bool] = lambda data_dir, task: True


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
        assistant="roberta-base",  # 12 layers, between the teacher's 24 and the student's 6
        assistant_layers=None,
    ),
}

ASSISTANT_KD = {"alpha": 0.5, "temperature": 4.0}
"""The teacher assistant's distillation settings: vanilla KD at ``kd``'s defaults, fixed."""


def load_glue_task(request: BenchRequest) -> TaskData:
    """The GLUE task's splits as the request's profile sizes them (fitted to a small task),
    tokenised for its student."""
    from ckd_tune.data.glue import load_glue
    from ckd_tune.models import load_tokenizer

    profile = GLUE_PROFILES[request.profile]
    return load_glue(
        request.task or "sst2",
        load_tokenizer(request.student or profile.student),
        data_dir=request.data_dir,
        max_seq_length=profile.max_seq_length,
        val_size=profile.val_size,
        train_size=profile.train_size,
        teacher_size=profile.teacher_size,
        test_size=profile.test_size,
        seed=0,
        fit=True,  # one profile for every task: the small ones get sizes that fit them
    )


def prepare_glue(request: BenchRequest) -> PreparedBench:
    """GLUE: tokenised splits, a fine-tuned (cached) teacher and its cached logits, a small student."""
    from ckd_tune.models import TextModelSpec, resolve_model
    from ckd_tune.teacher import CachedTeacher

    profile = GLUE_PROFILES[request.profile]
    task = request.task or "sst2"
    student_name = request.student or profile.student
    if request.needs_assistant and request.assistant:
        resolve_model(request.assistant)  # a bad path fails now, not after the teacher's training
    data = load_glue_task(request)
    base = TrainConfig(
        epochs=profile.epochs,
        batch_size=profile.batch_size,
        num_threads=request.num_threads,
        **profile.base,
    )
    teacher, teacher_model = _text_teacher(request, profile, data)
    assistant = None
    if request.needs_assistant:
        assistant = _text_assistant(request, profile, data, teacher, teacher_model)
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
        assistant=assistant,
        assistant_signal=None if assistant is None else CachedTeacher(assistant.logits["train"]),
    )


def _text_teacher(
    request: BenchRequest, profile: Profile, data: TaskData
) -> tuple[Teacher, nn.Module]:
    """Load ``--teacher`` (already fine-tuned), or fine-tune the profile's teacher once and cache it.

    Returns the teacher (its cached logits and scores) and its model.
    """
    from ckd_tune.models import TextModelSpec
    from ckd_tune.teacher import teacher_fingerprint

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
    name = request.teacher or f"{profile.teacher} fine-tuned ({profile.teacher_epochs} epochs)"
    return _scored_text_model(request, data, model, name, fp, seconds, reused), model


def _text_assistant(
    request: BenchRequest,
    profile: Profile,
    data: TaskData,
    teacher: Teacher,
    teacher_model: nn.Module,
) -> Teacher:
    """``--assistant`` (or the profile's, its first ``assistant_layers`` layers) distilled from
    the teacher once and cached, with its cached logits and scores."""
    from ckd_tune.models import TextModelSpec

    start = request.assistant or profile.assistant
    layers = None if request.assistant else profile.assistant_layers
    spec = TextModelSpec(start, data.num_labels, layers)
    model, fp, seconds, reused = _trained_assistant(
        request, profile, data, spec, spec.fingerprint(), teacher.fingerprint, teacher_model,
        "model.safetensors",
        save=lambda model, tmp: model.save_pretrained(tmp, safe_serialization=True),
        load=lambda d: TextModelSpec(str(d), data.num_labels, pretrained_head=True).build(),
    )  # fmt: skip
    start += f", first {layers} layers" if layers else ""
    name = f"{start}, {_distilled(profile)}"
    return _scored_text_model(request, data, model, name, fp, seconds, reused)


def _scored_text_model(
    request: BenchRequest,
    data: TaskData,
    model: nn.Module,
    name: str,
    fp: str,
    seconds: float,
    reused: bool,
) -> Teacher:
    """A trained text teacher (or assistant) ``model`` with its logits (cached) and scores."""
    import torch

    from ckd_tune.teacher import Teacher, teacher_logits

    logits = teacher_logits(model, data, request.cache_dir, fp, device=torch.device(request.device))
    metrics = {
        split: data.metric(logits[split].numpy(), data.split(split).labels) for split in SPLITS
    }
    return Teacher(
        name=name,
        fingerprint=fp,
        metrics=metrics,
        logits=logits,
        train_seconds=seconds,
        reused=reused,
    )


def _distilled(profile: Profile) -> str:
    """How the assistant was trained, for its name."""
    epochs = profile.teacher_epochs
    return (
        f"distilled from the teacher by kd (alpha {ASSISTANT_KD['alpha']:g}, temperature "
        f"{ASSISTANT_KD['temperature']:g}, {epochs} epoch{'s' if epochs != 1 else ''})"
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
    from ckd_tune.teacher import teacher_fingerprint

    config = _teacher_config(request, profile)
    fp = teacher_fingerprint(spec_fingerprint, data.fingerprint, config)
    model, seconds, reused = _trained_once(
        request, data, spec, config, fp, weights_file, f"the teacher ({profile.teacher})",
        save=save, load=load,
    )  # fmt: skip
    return model, fp, seconds, reused


def _trained_assistant(
    request: BenchRequest,
    profile: Profile,
    data: TaskData,
    spec: Callable[[int], nn.Module],
    spec_fingerprint: str,
    teacher_fingerprint: str,
    teacher: nn.Module,
    weights_file: str,
    *,
    save: Callable[[nn.Module, Path], None],
    load: Callable[[Path], nn.Module],
) -> tuple[nn.Module, str, float, bool]:
    """The teacher assistant ``spec`` distilled from ``teacher`` on ``data`` once, cached by
    fingerprint: vanilla KD (:data:`ASSISTANT_KD`) with the teacher's recipe, on the teacher's
    examples, the teacher run live on each batch.

    Returns ``(model, fingerprint, training seconds, reused from cache)``.
    """
    from ckd_tune.teacher import LiveTeacher, assistant_fingerprint

    config = _teacher_config(request, profile).replace(method="kd", **ASSISTANT_KD)
    fp = assistant_fingerprint(teacher_fingerprint, spec_fingerprint, data.fingerprint, config)
    model, seconds, reused = _trained_once(
        request, data, spec, config, fp, weights_file, "the teacher assistant",
        save=save, load=load, teacher=LiveTeacher(teacher),
    )  # fmt: skip
    return model, fp, seconds, reused


def _trained_once(
    request: BenchRequest,
    data: TaskData,
    spec: Callable[[int], nn.Module],
    config: TrainConfig,
    fp: str,
    weights_file: str,
    what: str,
    *,
    save: Callable[[nn.Module, Path], None],
    load: Callable[[Path], nn.Module],
    teacher: TeacherFn | None = None,
) -> tuple[nn.Module, float, bool]:
    """``spec`` trained by ``config`` on the teacher's examples (distilled from ``teacher`` if
    given), or read from the cache entry ``fp``. Returns ``(model, seconds, reused)``."""
    import torch

    from ckd_tune.teacher import cached_teacher, fine_tune_teacher

    # the teacher's own examples when the data has a teacher split (disjoint from the student's)
    own = (
        data if data.teacher_train is None else dataclasses.replace(data, train=data.teacher_train)
    )

    def build(tmp: Path) -> dict:
        log.info("training %s on %s: %d examples x %d epochs", what, data.name, len(own.train),
                 config.epochs)  # fmt: skip
        model, metrics, seconds = fine_tune_teacher(
            own, spec, config, teacher=teacher, device=torch.device(request.device)
        )
        save(model, tmp)
        return {"metrics": metrics, "train_seconds": seconds}

    directory, meta, reused = cached_teacher(request.cache_dir, fp, build, [weights_file])
    return load(directory), meta["train_seconds"], reused


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
                     teacher_base=_SGD, assistant="resnet8", assistant_layers=None),
    "quick": Profile("quick", train_size=5000, val_size=1000, teacher_size=5000, test_size=None, epochs=5,
                     teacher_epochs=15, num_samples=6, seeds=3, batch_size=64, teacher="resnet32",
                     student="resnet8", student_layers=None, teacher_lr=0.05,
                     base={**_SGD, "lr": 0.05}, teacher_base=_SGD, assistant="resnet20",
                     assistant_layers=None),
    "paper": Profile("paper", train_size=None, val_size=5000, teacher_size=None, test_size=None, epochs=200,
                     teacher_epochs=200, num_samples=50, seeds=5, batch_size=128, teacher="resnet110",
                     student="resnet8", student_layers=None, teacher_lr=0.1,
                     base={**_SGD, "lr": 0.1}, teacher_base=_SGD, assistant="resnet20",
                     assistant_layers=None),
}  # fmt: skip
"""The smoke profile's teacher is a ResNet-8 like its student (speed over realism), so its
assistant is one too: nothing fits between; quick and paper put a ResNet-20 between a
ResNet-32/110 teacher and the ResNet-8 student."""


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
    assistant_spec = None
    if request.needs_assistant:  # a bad name fails now, not after the teacher's training
        assistant_spec = VisionModelSpec(request.assistant or profile.assistant, data.num_labels)
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
    if spec.num_classes != data.num_labels:
        raise UserInputError(
            f"--teacher: {spec.arch} predicts {spec.num_classes} classes, "
            f"{request.bench} has {data.num_labels}"
        )
    name = str(teacher_path) if teacher_path else f"{spec.arch} ({profile.teacher_epochs} epochs)"
    teacher = Teacher(
        name=name, fingerprint=fp, metrics=_vision_scores(model, data, device),
        train_seconds=seconds, reused=reused,
    )  # fmt: skip
    assistant, assistant_model = None, None
    if assistant_spec is not None:
        assistant_model, fp, seconds, reused = _trained_assistant(
            request,
            profile,
            data,
            assistant_spec,
            assistant_spec.fingerprint(),
            teacher.fingerprint,
            model,
            "model.pt",
            save=lambda model, tmp: save_vision_model(model, assistant_spec, tmp),
            load=lambda d: load_vision_model(d)[0],
        )
        assistant = Teacher(
            name=f"{assistant_spec.arch}, {_distilled(profile)}",
            fingerprint=fp,
            metrics=_vision_scores(assistant_model, data, device),
            train_seconds=seconds,
            reused=reused,
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
        assistant=assistant,
        assistant_signal=None if assistant_model is None else LiveTeacher(assistant_model.cpu()),
    )  # fmt: skip


def _vision_scores(model: nn.Module, data: TaskData, device: torch.device) -> dict[str, dict]:
    """A CIFAR teacher's (or assistant's) metrics on every split, computed on ``device``."""
    from ckd_tune.train import evaluate

    model.to(device)
    return {split: evaluate(model, data, split, batch_size=256, device=device) for split in SPLITS}


BENCHES: dict[str, Bench] = {}


def _register() -> None:
    from ckd_tune.data.tasks import (
        GLUE_TASKS,
        default_cifar_dir,
        default_glue_dir,
        glue_task_present,
    )

    BENCHES["glue"] = Bench(
        "glue", tuple(GLUE_TASKS), "sst2", GLUE_PROFILES, prepare_glue, default_glue_dir, "glue",
        glue_task_present,
    )  # fmt: skip
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
