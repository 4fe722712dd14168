"""Saving and loading students: :func:`save_student` writes a trained student so that one call,
:func:`load_student`, brings it back (Hugging Face ``save_pretrained`` or a state dict plus the
builder spec from :func:`student_spec`, described in ``student.json``)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ckd_tune import cache

log = logging.getLogger("ckd_tune")
STUDENT_JSON = "student.json"
WEIGHTS_FILE = "model.pt"


def student_spec(model: nn.Module, build_student: Any = None) -> dict[str, Any]:
    """How to rebuild ``model`` (a non-Hugging-Face student): ``{"builder": "mod:fn", "kwargs"}``.

    A builder object may say it itself with a ``student_spec`` attribute (a dict or a method
    returning one); CIFAR ResNets / WRNs are recognised; any other module is rebuilt by calling
    its class without arguments.
    """
    from ckd_tune.resnet import CifarResNet, WideResNet

    spec = getattr(build_student, "student_spec", None)
    if callable(spec):
        spec = spec()
    if isinstance(spec, dict) and "builder" in spec:
        return {"builder": spec["builder"], "kwargs": dict(spec.get("kwargs") or {})}
    if isinstance(model, CifarResNet) and model.fc.in_features == 64:
        return {
            "builder": "ckd_tune.resnet:cifar_resnet",
            "kwargs": {"depth": model.depth, "num_classes": model.num_classes},
        }
    if isinstance(model, WideResNet):
        return {
            "builder": "ckd_tune.resnet:wide_resnet",
            "kwargs": {
                "depth": model.depth,
                "widen_factor": model.widen_factor,
                "num_classes": model.num_classes,
                "dropout_rate": model.layer1[0].dropout_rate,
            },
        }
    cls = type(model)
    return {"builder": f"{cls.__module__}:{cls.__qualname__}", "kwargs": {}}


def save_student(
    model: nn.Module, directory: Path, build_student: Any = None, info: Mapping[str, Any] = ()
) -> Path:
    """Save a trained student into ``directory`` (replaced) so :func:`load_student` loads it.

    Hugging Face models: ``save_pretrained`` (safetensors) plus the tokenizer when the builder is
    a :class:`ckd_tune.models.TextModelSpec`; anything else: ``model.pt`` (the state dict) and the
    builder spec. Both get ``student.json`` (format, how to load, ``info``).
    """
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    meta: dict[str, Any] = {**dict(info)}
    if hasattr(model, "save_pretrained"):
        from ckd_tune.models import TextModelSpec, load_tokenizer

        model.save_pretrained(directory, safe_serialization=True)
        tokenizer = False
        if isinstance(build_student, TextModelSpec):
            load_tokenizer(build_student.name_or_path).save_pretrained(directory)
            tokenizer = True
        meta.update(
            format="transformers",
            auto_class="transformers.AutoModelForSequenceClassification",
            tokenizer=tokenizer,
        )
    else:
        spec = student_spec(model, build_student)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        meta.update(format="torch", weights=WEIGHTS_FILE, **spec)
        from ckd_tune.models import VisionModelSpec

        if isinstance(build_student, VisionModelSpec):  # also usable as a CIFAR --teacher
            cache.write_json(
                {"arch": build_student.arch, "num_classes": build_student.num_classes},
                directory / "spec.json",
            )
        try:  # check now that the spec rebuilds this exact module, not when the user needs it
            _build_from_spec(meta).load_state_dict(state)
        except Exception as err:
            log.warning(
                "the saved student in %s cannot be rebuilt from %s (%s); load %s by hand",
                directory,
                spec["builder"],
                err,
                WEIGHTS_FILE,
            )
            meta["rebuild_error"] = str(err)
    meta["load"] = f'from ckd_tune.report import load_student; model = load_student("{directory}")'
    cache.write_json(meta, directory / STUDENT_JSON)
    return directory


def load_student(path: str | Path) -> nn.Module:
    """The student saved by a report (a ``report/models/<method>`` directory), in eval mode."""
    path = Path(path).expanduser()
    if path.is_file():
        path = path.parent
    meta_path = path / STUDENT_JSON
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a saved student (no {STUDENT_JSON})")
    meta = json.loads(meta_path.read_text())
    if meta["format"] == "transformers":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(path)
    elif meta["format"] == "torch":
        model = _build_from_spec(meta)
        state = torch.load(
            path / meta.get("weights", WEIGHTS_FILE), map_location="cpu", weights_only=True
        )
        model.load_state_dict(state)
    else:
        raise ValueError(f"{meta_path}: unknown student format {meta['format']!r}")
    return model.eval()


def _build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    module_name, _, attr = spec["builder"].partition(":")
    builder: Any = import_module(module_name)
    for part in attr.split("."):
        builder = getattr(builder, part)
    return builder(**spec.get("kwargs", {}))
