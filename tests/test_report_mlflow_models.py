"""Students logged as MLflow models (:mod:`ckd_tune.report.mlflow_models`): loaded back with
``mlflow.pyfunc``, predicting what the student predicts, attached to an existing (finished) run
without changing it or MLflow's global state, and registered in the Model Registry."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from ckd_tune.models import BUNDLED_ENCODER, TextModelSpec, VisionModelSpec, load_tokenizer
from ckd_tune.report.mlflow_models import log_student_model, register_model

TEXTS = [
    "a fine, moving film",
    "dull and far too long",
    "the cast is superb",
    "I want my money back",
    "an instant classic",
    "a mess from start to finish",
]
PAIRS = [
    {"text": "a man plays a guitar", "text_pair": "someone makes music"},
    {"text": "the cat sleeps", "text_pair": "a dog barks loudly"},
    {"text": "it rains all day", "text_pair": "the weather is wet"},
    {"text": "stocks fell sharply", "text_pair": "markets dropped"},
]
LABELS = {0: "negative", 1: "positive"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A sqlite tracking URI and an experiment whose artifacts live next to it."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment = MlflowClient(uri).create_experiment(
        "students", artifact_location=str(root / "art")
    )
    return uri, experiment


@pytest.fixture(autouse=True)
def global_tracking_state():
    """Whatever a test does to MLflow's global tracking URI is undone."""
    uri, env = tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(uri)
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env


def finished_run(store: tuple[str, str]) -> str:
    """A FINISHED run with a param, a tag and a metric, as a report's re-run leaves it."""
    uri, experiment = store
    client = MlflowClient(uri)
    run_id = client.create_run(experiment, tags={"role": "rerun"}).info.run_id
    client.log_param(run_id, "lr", "0.001")
    client.log_metric(run_id, "test_accuracy", 0.75)
    client.set_terminated(run_id)
    return run_id


def snapshot(uri: str, run_id: str) -> tuple:
    run = MlflowClient(uri).get_run(run_id)
    return run.info.status, run.info.end_time, run.data.params, run.data.tags, run.data.metrics


def uri_state() -> tuple[str | None, str | None]:
    return tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def text_student():
    """A 1-layer MiniLM classifier with named labels whose head splits :data:`TEXTS` 3 / 3."""
    spec = TextModelSpec(BUNDLED_ENCODER, num_labels=2, num_layers=1)
    model = spec(0).eval()
    model.config.id2label = dict(LABELS)
    model.config.label2id = {v: k for k, v in LABELS.items()}
    batch = load_tokenizer(BUNDLED_ENCODER)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():  # a random head predicts one class for all; spread and centre it
        model.classifier.weight.mul_(1000)
        logits = model(**batch).logits
        margins = (logits[:, 1] - logits[:, 0]).sort().values
        model.classifier.bias[1] -= (margins[2] + margins[3]) / 2
    return spec, model


def student_labels(model, texts) -> tuple[list[str], np.ndarray]:
    """The student's own labels and top-class probabilities, tokenising ourselves."""
    tokenizer = load_tokenizer(BUNDLED_ENCODER)
    if isinstance(texts[0], dict):
        batch = tokenizer(
            [t["text"] for t in texts],
            [t["text_pair"] for t in texts],
            padding=True,
            return_tensors="pt",
        )
    else:
        batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(**batch).logits.softmax(-1)
    return [model.config.id2label[int(i)] for i in probs.argmax(-1)], probs.max(-1).values.numpy()


# ------------------------------------------------------------------------------------ text


def test_text_student_loads_and_predicts_its_labels(store, text_student, monkeypatch):
    import huggingface_hub

    uri, experiment = store
    spec, model = text_student
    run_id = finished_run(store)
    before = snapshot(uri, run_id)
    # what the flavour asks of the Hub: a model card (must not: we give one) and the repo's
    # file list for a license (must find the offline switch on)
    card_loads, listings = [], []
    real_card_load = huggingface_hub.ModelCard.load

    def card_load(repo_id_or_path, *args, **kwargs):
        card_loads.append(str(repo_id_or_path))
        return real_card_load(repo_id_or_path, *args, **kwargs)

    def list_repo_files(repo_id, *args, **kwargs):
        listings.append(huggingface_hub.constants.is_offline_mode())
        raise huggingface_hub.errors.OfflineModeIsEnabled("offline")

    monkeypatch.setattr(huggingface_hub.ModelCard, "load", card_load)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    offline_before = huggingface_hub.constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    state, alarm = uri_state(), signal.getsignal(signal.SIGALRM)

    model.train()
    model_uri = log_student_model(
        model, spec, tracking_uri=uri, run_id=run_id, input_example=TEXTS[:2]
    )

    assert model_uri == f"runs:/{run_id}/model"
    assert model.training  # its mode is given back
    model.eval()
    assert all(Path(p).is_file() for p in card_loads)  # only the bundled encoder's README
    assert listings == [True]
    assert (huggingface_hub.constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")) == (
        offline_before
    )
    assert uri_state() == state
    assert signal.getsignal(signal.SIGALRM) == alarm  # no signature inference under a timeout
    assert mlflow.active_run() is None
    assert snapshot(uri, run_id) == before

    mlflow.set_tracking_uri(uri)
    predictions = mlflow.pyfunc.load_model(model_uri).predict(TEXTS)
    labels, scores = student_labels(model, TEXTS)
    assert sorted(labels) == ["negative"] * 3 + ["positive"] * 3  # so the next line can fail
    assert predictions["label"].tolist() == labels
    np.testing.assert_allclose(predictions["score"].to_numpy(), scores, atol=1e-5)

    info = mlflow.models.get_model_info(model_uri)
    assert info.flavors.keys() >= {"transformers", "python_function"}
    assert info.flavors["transformers"]["task"] == "text-classification"
    assert info.signature.inputs.input_types() == [mlflow.types.DataType.string]
    assert info.signature.outputs.input_names() == ["label", "score"]
    assert info.saved_input_example_info["type"] == "json_object"
    assert mlflow.models.Model.load(model_uri).load_input_example() == TEXTS[:2]
    logged = MlflowClient(uri).get_logged_model(info.model_id)
    assert (logged.experiment_id, logged.source_run_id, logged.status.name) == (
        experiment,
        run_id,
        "READY",
    )
    assert logged.params == {"lr": "0.001"}
    card = Path(mlflow.artifacts.download_artifacts(f"{model_uri}/model_card_data.yaml"))
    assert "license: apache-2.0" in card.read_text()
    requirements = mlflow.artifacts.download_artifacts(f"{model_uri}/requirements.txt")
    assert "transformers==" in Path(requirements).read_text()


def test_sentence_pair_student(store, text_student):
    uri, _ = store
    spec, model = text_student
    run_id = finished_run(store)
    model_uri = log_student_model(
        model, spec, tracking_uri=uri, run_id=run_id, input_example=PAIRS[:2], name="pairs"
    )
    assert model_uri == f"runs:/{run_id}/pairs"
    mlflow.set_tracking_uri(uri)
    predictions = mlflow.pyfunc.load_model(model_uri).predict(PAIRS)
    labels, scores = student_labels(model, PAIRS)
    assert predictions["label"].tolist() == labels
    np.testing.assert_allclose(predictions["score"].to_numpy(), scores, atol=1e-5)
    signature = mlflow.models.get_model_info(model_uri).signature
    assert signature.inputs.input_names() == ["text", "text_pair"]
    assert signature.outputs.input_names() == ["label", "score"]
    assert mlflow.models.Model.load(model_uri).load_input_example() == PAIRS[:2]


# ---------------------------------------------------------------------------------- vision


@pytest.fixture(scope="module")
def vision_student():
    spec = VisionModelSpec("resnet8", num_classes=10)
    return spec, spec(0)  # in training mode, as a trainer leaves it


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_vision_student_loads_and_predicts_its_logits(store, vision_student):
    uri, _ = store
    spec, model = vision_student
    run_id = finished_run(store)
    before, state = snapshot(uri, run_id), uri_state()

    model_uri = log_student_model(
        model, spec, tracking_uri=uri, run_id=run_id, input_example=images(4)
    )

    assert model_uri == f"runs:/{run_id}/model"
    assert model.training
    assert mlflow.active_run() is None and uri_state() == state
    assert snapshot(uri, run_id) == before
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    x = images(5, seed=1)  # another batch size: the exported graph's batch is dynamic
    logits = pyfunc.predict(x)
    model.eval()
    try:
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
    finally:
        model.train()
    assert logits.shape == (5, 10)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)  # eval-mode logits
    assert (logits.argmax(-1) == expected.argmax(-1)).all()

    info = mlflow.models.get_model_info(model_uri)
    assert info.flavors["pytorch"]["model_data"] == "data"
    (spec_in,) = info.signature.inputs.inputs
    assert (spec_in.type, spec_in.shape) == (np.dtype("float32"), (-1, 3, 32, 32))
    assert info.signature.outputs.inputs[0].shape == (-1, 10)
    np.testing.assert_array_equal(
        mlflow.models.Model.load(model_uri).load_input_example(), images(4)
    )
    model_dir = Path(mlflow.artifacts.download_artifacts(model_uri))
    assert (model_dir / "data" / "model.pt2").is_file()  # torch.export, not a pickle


def test_single_image_example_keeps_a_dynamic_batch(store, vision_student):
    uri, _ = store
    spec, model = vision_student
    run_id = finished_run(store)
    model_uri = log_student_model(
        model, spec, tracking_uri=uri, run_id=run_id, input_example=images(1)[0]
    )
    mlflow.set_tracking_uri(uri)
    assert mlflow.pyfunc.load_model(model_uri).predict(images(3)).shape == (3, 10)


def test_repeated_name_gives_the_new_models_id(store, vision_student):
    uri, _ = store
    spec, model = vision_student
    run_id = finished_run(store)
    first = log_student_model(model, spec, tracking_uri=uri, run_id=run_id, input_example=images(2))
    other = spec(seed=1)
    second = log_student_model(
        other, spec, tracking_uri=uri, run_id=run_id, input_example=images(2)
    )
    assert first == f"runs:/{run_id}/model"
    assert second.startswith("models:/m-")
    mlflow.set_tracking_uri(uri)
    other.eval()
    with torch.no_grad():
        expected = other(torch.from_numpy(images(2))).numpy()
    np.testing.assert_allclose(
        mlflow.pyfunc.load_model(second).predict(images(2)), expected, rtol=1e-4, atol=1e-5
    )


def test_other_runs_and_tracking_uris_are_left_alone(store, vision_student, tmp_path):
    """The caller's active run (another experiment) and global URI survive; the model goes to
    the given run's experiment, not the active or default one."""
    uri, experiment = store
    spec, model = vision_student
    run_id = finished_run(store)
    client = MlflowClient(uri)
    elsewhere = client.create_experiment("elsewhere")
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=elsewhere) as active:
        log_student_model(model, spec, tracking_uri=uri, run_id=run_id, input_example=images(2))
        assert mlflow.active_run().info.run_id == active.info.run_id
        assert uri_state() == (uri, uri)
    models = client.search_logged_models([experiment, elsewhere])
    assert {m.experiment_id for m in models if m.source_run_id == run_id} == {experiment}
    assert client.get_run(active.info.run_id).outputs.model_outputs == []

    other = f"sqlite:///{tmp_path / 'other.db'}"  # never opened: only the setting is checked
    mlflow.set_tracking_uri(other)
    os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///elsewhere.db"  # as a user's shell may
    log_student_model(
        model, spec, tracking_uri=uri, run_id=run_id, input_example=images(2), name="again"
    )
    assert uri_state() == (other, "sqlite:///elsewhere.db")
    assert not (tmp_path / "other.db").exists()


# ------------------------------------------------------------------------------ registry


def test_register_model_adds_versions(store, vision_student):
    uri, _ = store
    spec, model = vision_student
    run_id = finished_run(store)
    model_uri = log_student_model(
        model, spec, tracking_uri=uri, run_id=run_id, input_example=images(2)
    )
    state = uri_state()

    assert register_model(model_uri, "cifar-student", tracking_uri=uri) == "1"
    assert register_model(model_uri, "cifar-student", tracking_uri=uri) == "2"

    assert mlflow.active_run() is None and uri_state() == state
    client = MlflowClient(uri)
    assert client.get_registered_model("cifar-student").name == "cifar-student"
    versions = client.search_model_versions("name = 'cifar-student'")
    mlflow.set_tracking_uri(uri)
    model_id = mlflow.models.get_model_info(model_uri).model_id
    # the registry keeps the LoggedModel as the version's source (``model_id`` is not stored)
    assert sorted((str(v.version), v.run_id, v.source) for v in versions) == [
        ("1", run_id, f"models:/{model_id}"),
        ("2", run_id, f"models:/{model_id}"),
    ]
    registered = mlflow.pyfunc.load_model("models:/cifar-student/2").predict(images(3))
    assert registered.shape == (3, 10)
