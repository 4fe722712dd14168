"""The training loop: config + data + teacher signal -> trained student.

One plain function, :func:`train`, readable top to bottom and free of Ray and MLflow. It
evaluates on the validation split every epoch, keeps the best epoch's weights, calls
``on_epoch`` (which may checkpoint or stop the run) and resumes from a saved state. A method's
own learned parameters (:meth:`~ckd_tune.methods.Method.trainable`) share the student's
optimizer and are checkpointed and restored with it.
Randomness is re-seeded from ``(config.seed, epoch)`` at every epoch start, so a run resumed
at an epoch boundary continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from transformers import get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import LengthGroupedSampler

from ckd_tune.config import TrainConfig
from ckd_tune.data import TaskData, item_lengths
from ckd_tune.errors import NonFiniteLossError
from ckd_tune.methods import total

TeacherFn = Callable[[dict[str, Tensor]], Tensor]
"""Gives the teacher's logits for a batch (cached by example index, or a live forward pass)."""

OnEpoch = Callable[[int, dict[str, float], Callable[[], dict[str, Any]]], "bool | None"]
"""``on_epoch(epoch, metrics, state)``: ``state()`` builds the checkpoint dict; return True to stop."""

NON_INPUT_KEYS = ("labels", "index")


@dataclass
class TrainResult:
    """What a run produced: best and last validation metrics, the per-epoch history, best weights."""

    best_epoch: int
    best_score: float
    best_metrics: dict[str, float]
    last_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Tensor] | None = None
    stopped_early: bool = False


def model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The batch without ``labels`` and ``index``: what the model's forward takes."""
    return {k: v for k, v in batch.items() if k not in NON_INPUT_KEYS}


def logits_of(output: Any) -> Tensor:
    """Logits from a model output (a Hugging Face output object or a plain tensor)."""
    return output.logits if hasattr(output, "logits") else output


def train(
    config: TrainConfig,
    data: TaskData,
    student: nn.Module,
    teacher: TeacherFn | None = None,
    *,
    on_epoch: OnEpoch | None = None,
    resume: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train ``student`` on ``data.train`` with ``config.method``; select on ``data.val``.

    Raises :class:`NonFiniteLossError` (with the partial result attached as ``.result``)
    when the loss becomes NaN or infinite.
    """
    # on CPU the embeddings' gradients are sparse, scattered into a persistent dense buffer:
    # the same gradients without a fresh 47 MB zero-filled tensor per step (benchmarks/train_step)
    restore = sparse_embedding_grads(student) if torch.device(device).type == "cpu" else None
    try:
        return _train(
            config, data, student, teacher, on_epoch=on_epoch, resume=resume, device=device
        )
    finally:
        if restore is not None:
            restore()


class SparseEmbeddingGrad:
    """``post_accumulate_grad_hook``: a sparse embedding gradient scattered into a dense buffer.

    With ``nn.Embedding(sparse=True)`` the backward pass yields only the rows of the batch's
    tokens instead of allocating, zero-filling and returning a fresh ``vocab x hidden`` tensor
    every step (47 MB for the MiniLM student, page-faulted in anew each time because the
    allocator returns blocks that size to the OS). The hook copies those rows into one
    persistent dense buffer, after re-zeroing the rows it wrote the step before, and makes that
    buffer the parameter's ``.grad``: the optimizer sees the dense gradient it saw before (up to
    the order in which a repeated token's rows are summed). A gradient that later backward
    passes accumulate onto the buffer in place is left alone and marks the whole buffer for
    zeroing next time.
    """

    def __init__(self) -> None:
        self.buffer: Tensor | None = None
        self.rows: Tensor | None = None  # rows of ``buffer`` that may be non-zero
        self.all_dirty = False

    def __call__(self, param: Tensor) -> None:
        grad = param.grad
        if grad is None or not grad.is_sparse:
            if grad is not None and grad is self.buffer:
                self.all_dirty = True
            return
        grad = grad.coalesce()
        if self.buffer is None:
            self.buffer = torch.zeros_like(param)
        elif self.all_dirty:
            self.buffer.zero_()
        elif self.rows is not None:
            self.buffer.index_fill_(0, self.rows, 0)
        self.rows = grad.indices()[0]
        self.buffer.index_copy_(0, self.rows, grad.values())
        self.all_dirty = False
        param.grad = self.buffer


def sparse_embedding_grads(model: nn.Module) -> Callable[[], None]:
    """Give ``model``'s trainable ``nn.Embedding`` layers sparse gradients scattered into a
    persistent dense buffer (:class:`SparseEmbeddingGrad`); returns a function that undoes it."""
    undo = []
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.weight.requires_grad and not module.sparse:
            handle = module.weight.register_post_accumulate_grad_hook(SparseEmbeddingGrad())
            module.sparse = True
            undo.append((module, handle))

    def restore() -> None:
        for module, handle in undo:
            handle.remove()
            module.sparse = False

    return restore


def _train(
    config: TrainConfig,
    data: TaskData,
    student: nn.Module,
    teacher: TeacherFn | None,
    *,
    on_epoch: OnEpoch | None,
    resume: dict[str, Any] | None,
    device: str | torch.device,
) -> TrainResult:
    torch.set_num_threads(config.num_threads)
    method = config.build_method()
    if method.needs_teacher and teacher is None:
        raise ValueError(f"method {config.method!r} needs a teacher signal; got teacher=None")
    device = torch.device(device)
    student.to(device)
    learned = method.trainable()  # the method's own parameters (CTKD's temperature), or None
    if learned is not None:
        learned.to(device)
    params = [
        p for m in (student, learned) if m is not None for p in m.parameters() if p.requires_grad
    ]

    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    phase2_epoch = method.phase2_epoch()

    def fresh_optimizer(first_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
        """An optimizer and lr schedule over the epochs from ``first_epoch`` to the end."""
        steps = steps_per_epoch * (config.epochs - first_epoch)
        return _optimizer(config, params, steps, device)

    start_epoch, history = 0, []
    best_score, best_epoch, best_metrics, best_state = -math.inf, 0, {}, None
    if resume is not None:
        start_epoch = resume["epoch"]
    in_phase2 = phase2_epoch is not None and start_epoch > phase2_epoch
    optimizer, scheduler = fresh_optimizer(phase2_epoch if in_phase2 else 0)
    if resume is not None:
        student.load_state_dict(resume["model"])
        if learned is not None:
            learned.load_state_dict(resume["method"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        history = list(resume["history"])
        best_score, best_epoch = resume["best_score"], resume["best_epoch"]
        best_metrics = dict(resume["best_metrics"])
        best_state = resume.get("best_model") or _copy_weights(student)

    for epoch in range(start_epoch, config.epochs):
        if epoch == phase2_epoch:
            # Annealing-KD phase 2 (as the official code): start from phase 1's best weights
            # with a fresh optimizer and lr schedule over the remaining epochs
            if best_state is not None:
                student.load_state_dict(best_state)
            optimizer, scheduler = fresh_optimizer(epoch)
        _seed_epoch(config.seed, epoch)
        loader = train_loader(config, data, epoch, pin_memory=device.type == "cuda")
        student.train()
        t0, loss_sum, seen, values = time.perf_counter(), 0.0, 0, {}
        term_sums: dict[str, float] = {}
        for step, batch in enumerate(loader):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            done = (epoch * steps_per_epoch + step) / total_steps
            values = method.schedule(config.progress(done))
            with autocast(device):
                z_s = logits_of(student(**model_inputs(batch))).float()
            z_t = teacher(batch) if method.needs_teacher else None
            terms = method.loss_terms(z_s, z_t, batch["labels"], values)
            loss = total(terms)
            if not torch.isfinite(loss):
                err = NonFiniteLossError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"(method {config.method}, lr {config.lr:g})"
                )
                err.result = _result(history, best_epoch, best_score, best_metrics, best_state)
                raise err
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = batch["labels"].shape[0]
            loss_sum, seen = loss_sum + loss.item() * n, seen + n
            for name, term in terms.items():  # each term unweighted: its weight is scheduled
                term_sums[name] = term_sums.get(name, 0.0) + term.value.item() * n
        train_time = time.perf_counter() - t0

        val = evaluate(student, data, "val", batch_size=2 * config.batch_size, device=device)
        score = val[data.main_metric]
        if score > best_score:
            best_score, best_epoch, best_metrics = score, epoch + 1, dict(val)
            best_state = _copy_weights(student)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, seen),
            **{f"loss_{name}": v / max(1, seen) for name, v in term_sums.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "val_score": score,
            "best_val_score": best_score,
            "best_epoch": best_epoch,
            "examples_per_s": seen / train_time,
            **values,
            **method.learned(),
        }
        history.append(metrics)

        state = partial(
            _checkpoint, epoch + 1, student, learned, optimizer, scheduler, history,
            best_score, best_epoch, best_metrics, best_state,
        )  # fmt: skip
        if on_epoch is not None and on_epoch(epoch + 1, metrics, state):
            result = _result(history, best_epoch, best_score, best_metrics, best_state)
            result.stopped_early = epoch + 1 < config.epochs
            return result
    return _result(history, best_epoch, best_score, best_metrics, best_state)


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: Dataset,
    collate: Callable[[list[dict]], dict[str, Tensor]],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of ``model`` on every item of ``dataset``, in dataset order.

    Items with a recorded length are batched shortest first (less padding, same outputs).
    """
    model.eval()
    device = torch.device(device)
    lengths = item_lengths(dataset)
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(len(dataset))
    logits, labels = [], []
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order.tolist(),
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            logits.append(logits_of(model(**model_inputs(batch))).float().cpu())
        labels.append(batch["labels"].cpu())
    restore = np.argsort(order)
    return torch.cat(logits).numpy()[restore], torch.cat(labels).numpy()[restore]


def evaluate(
    model: nn.Module,
    data: TaskData,
    split: str,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The task's metrics for ``model`` on split ``split`` (``"val"`` or ``"test"``)."""
    logits, labels = predict(
        model, data.split(split), data.collate, batch_size=batch_size, device=device
    )
    return data.metric(logits, labels)


def train_loader(
    config: TrainConfig, data: TaskData, epoch: int, *, pin_memory: bool = False
) -> DataLoader:
    """This epoch's shuffled training batches (of similar lengths with ``group_by_length``), in
    page-locked memory with ``pin_memory`` (a GPU's copies then overlap its compute)."""
    generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
    lengths = item_lengths(data.train)
    if config.group_by_length and lengths is not None:
        sampler = LengthGroupedSampler(
            config.batch_size, lengths=list(lengths), generator=generator
        )
        return DataLoader(
            data.train,
            batch_size=config.batch_size,
            sampler=sampler,
            collate_fn=data.collate,
            pin_memory=pin_memory,
        )
    return DataLoader(
        data.train,
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=data.collate,
        generator=generator,
        pin_memory=pin_memory,
    )


def _optimizer(
    config: TrainConfig, params: list[nn.Parameter], total_steps: int, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    fused = device.type in ("cpu", "cuda")  # one kernel per step instead of one per tensor op
    if config.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            params, lr=config.lr, weight_decay=config.weight_decay, fused=fused
        )
    else:
        optimizer = torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=True,
            fused=fused,
        )
    if config.lr_schedule == "linear":
        scheduler = get_linear_schedule_with_warmup(
            optimizer, round(config.warmup_ratio * total_steps), total_steps
        )
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[total_steps // 2, (3 * total_steps) // 4], gamma=0.1
        )
    return optimizer, scheduler


def _checkpoint(
    epoch: int,
    model: nn.Module,
    learned: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    history: list[dict[str, float]],
    best_score: float,
    best_epoch: int,
    best_metrics: dict[str, float],
    best_state: dict[str, Tensor] | None,
) -> dict[str, Any]:
    """The resumable state after ``epoch`` epochs (best weights only when not the current ones;
    ``"method"``: the method's learned parameters, for a method that has some)."""
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": history,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "best_metrics": best_metrics,
        "best_model": None if best_epoch == epoch else best_state,
    }
    if learned is not None:
        state["method"] = learned.state_dict()
    return state


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _seed_epoch(seed: int, epoch: int) -> None:
    torch.manual_seed(_epoch_seed(seed, epoch))


def autocast(device: torch.device) -> torch.autocast:
    """bfloat16 autocast on a CUDA device that computes in bfloat16 natively (Ampere and later);
    a disabled context elsewhere: on CPU, and on older GPUs, where emulated bfloat16 is slower
    than float32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=uses_bf16(device))


def uses_bf16(device: torch.device) -> bool:
    """Whether :func:`autocast` computes in bfloat16 on ``device``."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def _copy_weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _result(
    history: list[dict[str, float]],
    best_epoch: int,
    best_score: float,
    best_metrics: dict[str, float],
    best_state: dict[str, Tensor] | None,
) -> TrainResult:
    return TrainResult(
        best_epoch=best_epoch,
        best_score=best_score,
        best_metrics=best_metrics,
        last_metrics=dict(history[-1]) if history else {},
        history=history,
        best_state=best_state,
    )
