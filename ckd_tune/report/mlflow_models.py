"""Trained students as MLflow models: ``mlflow.pyfunc.load_model`` loads them, ``mlflow models
serve`` serves them and the Model Registry versions them.

:func:`log_student_model` attaches a student to an existing MLflow run (a report's re-run, say):
a Hugging Face sequence classifier goes in with its tokenizer through the ``transformers``
flavour (task ``text-classification``; pyfunc predicts a ``label`` and ``score`` per text), a
CIFAR network through the ``pytorch`` flavour as a ``torch.export`` graph (pyfunc predicts the
logits of a float32 ``(n, 3, H, W)`` array; loading it needs neither ``ckd_tune`` nor pickle).
:func:`register_model` then registers the returned URI::

    uri = log_student_model(student, spec, tracking_uri=uri, run_id=run_id, input_example=x)
    version = register_model(uri, "sst2-student", tracking_uri=uri)
    mlflow.pyfunc.load_model(f"models:/sst2-student/{version}").predict(x)

MLflow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from torch import nn

    from ckd_tune.data import TaskData

TEXT_TASK = "text-classification"
REGISTER_HELP = (
    "register the best student (of the methods' best seeds, the one with the highest validation "
    "score) in the MLflow Model Registry as NAME; each method's best student is logged as an "
    "MLflow model either way"
)


def log_student_model(
    student: nn.Module,
    build_student: Any,
    *,
    tracking_uri: str,
    run_id: str,
    input_example: Any,
    name: str = "model",
) -> str:
    """Log ``student`` as an MLflow model of the existing run ``run_id``; return its model URI.

    Args:
        student: the trained student, a Hugging Face sequence classifier (it has
            ``save_pretrained``) or a plain ``nn.Module`` taking images and returning logits.
        build_student: the bench's student builder (a :class:`ckd_tune.models.TextModelSpec` or
            :class:`~ckd_tune.models.VisionModelSpec`, or any callable). For a text student a
            ``TextModelSpec`` names the tokenizer; otherwise the model's own ``name_or_path`` does.
        tracking_uri: the MLflow tracking URI of the run.
        run_id: the run to attach the model to; its status, params and tags are left as they
            are (it may be ``FINISHED``).
        input_example: saved with the model; it also sets the signature. Text: a list of
            strings (signature: a string column to ``label`` and ``score``), or of ``{"text":
            ..., "text_pair": ...}`` dicts for sentence-pair tasks (``text`` and ``text_pair``
            columns). Vision: a float32 array ``(n, 3, H, W)`` of normalised images (tensor
            specs of it and of the student's logits, batch size free; a single image is
            repeated to a batch of two, since ``torch.export`` fixes a batch of one).
        name: the logged model's name (``runs:/<run_id>/<name>``).

    Returns:
        ``runs:/<run_id>/<name>``, or ``models:/<model_id>`` when the run already had a model of
        that name (a ``runs:/`` URI would then be ambiguous). Either form loads with
        ``mlflow.pyfunc.load_model`` and registers with :func:`register_model`.

    The model is logged on the Hugging Face Hub's offline switch (it needs no network) and with
    explicit pip requirements. The process-global MLflow tracking URI is set to ``tracking_uri``
    for the call and then restored, so do not log from two threads at once.
    """
    import mlflow
    from mlflow import MlflowClient

    if int(mlflow.__version__.split(".")[0]) < 3:
        raise RuntimeError(
            f"logging a student as an MLflow model needs MLflow 3 (logged models), "
            f"not {mlflow.__version__}"
        )
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    earlier = _models_of_run(client, run.info.experiment_id, run_id, name)
    # MLflow 3's ``log_model(run_id=...)`` would create the LoggedModel in the *active or default*
    # experiment (``_create_logged_model`` ignores the run's), so a run in any other experiment
    # got a model in experiment 0 with its artifacts under ./mlruns, and ``runs:/`` URIs did not
    # resolve. ``mlflow.start_run(run_id=...)`` gets the experiment right but flips the run to
    # RUNNING and back (new end time, FAILED on an error) and refuses if another run is active.
    # So the LoggedModel is created here, in the run's experiment and linked to the run, and
    # ``log_model(model_id=..., run_id=...)`` fills it: no run is started or changed.
    model = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params=dict(run.data.params),  # as log_model does for the models it creates
    )
    try:
        with _tracking_uri(tracking_uri):  # log_model reads the global URI, not a client's
            if hasattr(student, "save_pretrained"):
                _log_text_student(student, build_student, input_example, name, run_id, model)
            else:
                _log_vision_student(student, input_example, name, run_id, model)
    except BaseException:
        from mlflow.entities import LoggedModelStatus

        with suppress(Exception):  # log_model marks it FAILED itself once it has got going
            if client.get_logged_model(model.model_id).status == LoggedModelStatus.PENDING:
                client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    if earlier:
        return f"models:/{model.model_id}"
    return f"runs:/{run_id}/{name}"


def register_model(model_uri: str, name: str, *, tracking_uri: str) -> str:
    """Register ``model_uri`` as a new version of the registered model ``name`` (created if new).

    The registry is the one MLflow pairs with ``tracking_uri`` (the same database for sqlite),
    unless ``mlflow.set_registry_uri`` / ``MLFLOW_REGISTRY_URI`` says otherwise. Returns the new
    version number as a string ("1" for the first).
    """
    import mlflow

    # mlflow.register_model resolves runs:/ and models:/ URIs to the LoggedModel (its id, run and
    # source) the way the registry expects; it reads the global tracking URI, scoped here. For a
    # runs:/ URI of an MLflow 3 model it warns that the run has no artifacts there and registers
    # the models:/ URI "instead": that is the normal case here, so the warning is dropped.
    with _tracking_uri(tracking_uri), _without_log(_REGISTRY_LOGGER, _RUNS_URI_NOTE):
        version = mlflow.register_model(model_uri, name)
    return str(version.version)


def input_example(data: TaskData, student: nn.Module, build_student: Any, count: int = 2) -> Any:
    """The first ``count`` test examples in the form the logged ``student`` takes.

    Text students (Hugging Face models): the texts recovered from the token ids (a string each,
    or ``{"text", "text_pair"}`` for sentence pairs, split at the tokenizer's separator); other
    students: a float32 array of the items' one model input (the normalised images of a CIFAR
    split).
    """
    import numpy as np

    from ckd_tune.models import load_tokenizer

    items = [data.test[i] for i in range(min(count, len(data.test)))]
    if not hasattr(student, "save_pretrained"):
        (key,) = [k for k in items[0] if k not in ("labels", "index")]
        return np.stack([np.asarray(item[key], dtype=np.float32) for item in items])
    tokenizer = load_tokenizer(_tokenizer_source(student, build_student))
    examples: list[Any] = []
    for item in items:
        parts, current = [], []
        for token in item["input_ids"]:
            if token == tokenizer.sep_token_id:
                parts.append(current)
                current = []
            else:
                current.append(token)
        texts = [tokenizer.decode(p, skip_special_tokens=True) for p in [*parts, current]]
        texts = [t for t in texts if t]
        examples.append(
            texts[0] if len(texts) == 1 else dict(zip(("text", "text_pair"), texts, strict=False))
        )
    return examples


_REGISTRY_LOGGER = "mlflow.tracking._model_registry.fluent"
_RUNS_URI_NOTE = "has no artifacts at artifact path"


# ------------------------------------------------------------------------------------ text


def _log_text_student(
    student: nn.Module, build_student: Any, input_example: Any, name: str, run_id: str, model: Any
) -> None:
    import mlflow.transformers

    from ckd_tune.models import load_tokenizer

    source = _tokenizer_source(student, build_student)
    tokenizer = load_tokenizer(source)
    card = _model_card(student, source)
    with _evaluating(student), _hub_offline():
        mlflow.transformers.log_model(
            {"model": student, "tokenizer": tokenizer},
            name=name,
            task=TEXT_TASK,
            # given, the card is not fetched from the Hub (the bundled or a local model has none)
            model_card=card,
            # given, not inferred: inferring runs the pipeline under a SIGALRM timeout, which
            # replaces the process's SIGALRM handler and, off the main thread, fails and falls
            # back to a plain-string signature (wrong for sentence pairs)
            signature=_text_signature(input_example),
            input_example=input_example,
            # without this, log_model infers the requirements by loading the saved model again in
            # a subprocess (+15 s on 2 cores) and only adds packages that transformers pulls in
            pip_requirements=mlflow.transformers.get_default_pip_requirements(student),
            run_id=run_id,
            model_id=model.model_id,
        )


def _tokenizer_source(student: nn.Module, build_student: Any) -> str:
    """Where a text student's tokenizer comes from: the builder's model (a
    :class:`ckd_tune.models.TextModelSpec`), else the model's own ``name_or_path``."""
    from ckd_tune.models import TextModelSpec

    if isinstance(build_student, TextModelSpec):
        return build_student.name_or_path
    return student.config.name_or_path


def _text_signature(input_example: Any) -> Any:
    """Strings, or the columns of ``{"text": ..., "text_pair": ...}`` dicts, to label and score."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    first = input_example[0] if isinstance(input_example, (list, tuple)) else input_example
    if isinstance(first, dict):
        inputs = Schema([ColSpec("string", str(key)) for key in first])
    else:
        inputs = Schema([ColSpec("string")])
    outputs = Schema([ColSpec("string", "label"), ColSpec("double", "score")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _model_card(student: nn.Module, source: str) -> Any:
    """A Hugging Face model card for the student; license and base model from its source's card."""
    from huggingface_hub import ModelCard, ModelCardData

    from ckd_tune.models import resolve_model

    data = ModelCardData(library_name="transformers", pipeline_tag=TEXT_TASK)
    readme = Path(resolve_model(source)) / "README.md"
    if readme.is_file():  # a local model's own card (the bundled encoder ships one)
        base = ModelCard.load(readme).data
        data.license = base.license
        data.language = base.language
    config = student.config
    labels = ", ".join(str(config.id2label[i]) for i in sorted(config.id2label))
    text = (
        f"# {source} student\n\n"
        f"A {type(student).__name__} with {config.num_hidden_layers} layer(s), initialised from "
        f"`{source}` and trained by knowledge distillation with ckd_tune. Labels: {labels}.\n"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


@contextmanager
def _hub_offline() -> Iterator[None]:
    """No Hugging Face Hub requests: they fail fast instead of waiting on the network.

    The transformers flavour always tries to list the model's Hub repository for a license file.
    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` into ``constants.HF_HUB_OFFLINE`` when it is
    imported, and every request checks that constant, so both are set for the call.
    """
    from huggingface_hub import constants

    previous, env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"  # for any subprocess
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous
        _restore_env("HF_HUB_OFFLINE", env)


# ---------------------------------------------------------------------------------- vision


def _log_vision_student(
    student: nn.Module, input_example: Any, name: str, run_id: str, model: Any
) -> None:
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    example = np.asarray(input_example, dtype=np.float32)
    if example.ndim == 3:
        example = example[None]
    if len(example) == 1:  # torch.export makes a batch dimension of size 1 static
        example = np.concatenate([example, example])
    with _evaluating(student):
        with torch.no_grad():
            logits = student(torch.from_numpy(example)).numpy()
        mlflow.pytorch.log_model(
            student,
            name=name,
            # pt2 (torch.export): the graph and weights, loaded without ckd_tune's classes and
            # without unpickling (MLflow refuses pickled models unless allowed)
            serialization_format="pt2",
            # tensor specs with a -1 batch dimension, which the export keeps dynamic
            signature=infer_signature(example, logits),
            input_example=example,
            pip_requirements=mlflow.pytorch.get_default_pip_requirements(),  # inferring: +6 s
            run_id=run_id,
            model_id=model.model_id,
        )


# --------------------------------------------------------------------------------- helpers


def _models_of_run(client: MlflowClient, experiment_id: str, run_id: str, name: str) -> list[Any]:
    """The LoggedModels named ``name`` that ``run_id`` produced (as ``runs:/`` URIs resolve)."""
    found, token = [], None
    while True:
        page = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"name = '{name}'", page_token=token
        )
        found += [m for m in page if m.source_run_id == run_id]
        if not page.token:
            return found
        token = page.token


@contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode (dropout off, batch-norm statistics fixed), then its mode again."""
    training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(training)


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's process-global tracking URI set to ``uri``, then restored exactly.

    ``set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` and MLflow's own scoping helper
    leaves it unset afterwards, so the environment variable is restored here too.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None: back to "not set" (env var or default)
        _restore_env("MLFLOW_TRACKING_URI", env)


@contextmanager
def _without_log(logger: str, text: str) -> Iterator[None]:
    """The records of ``logger`` containing ``text`` dropped."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return text not in record.getMessage()

    log = logging.getLogger(logger)
    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value
