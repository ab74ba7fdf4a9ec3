"""Training loop for the neural models: Adam, warmup + exponential decay, early stopping, masked losses.

Targets are a ``(molecules, tasks)`` matrix with a boolean mask of the labels that count,
so missing labels (multitask) and labels of other folds never enter a loss. Regression
uses MSE on standardized targets, binary classification BCE on logits, multiclass
cross-entropy on ``(molecules, classes)`` logits against a ``(molecules, 1)`` class-index target.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainerConfig:
    """``conf/trainer`` options.

    The learning rate rises linearly from ``init_lr`` to ``max_lr`` over ``warmup_epochs``,
    then decays exponentially to ``final_lr`` at ``max_epochs`` (chemprop's schedule).
    Training stops after ``patience`` epochs without a better validation loss (``None``:
    never) and the best epoch's weights are restored. Without validation labels (a final
    model on all training data, e.g. ``split.val_fraction=0``) every epoch runs and the last
    is kept; that needs ``patience: null``. ``num_threads`` caps torch's CPU
    threads (``None``: torch's default); on a shared machine 1 avoids oversubscription.
    """

    max_epochs: int = 50
    batch_size: int = 50
    eval_batch_size: int = 500
    init_lr: float = 1e-4
    max_lr: float = 1e-3
    final_lr: float = 1e-4
    warmup_epochs: float = 2.0
    weight_decay: float = 0.0
    patience: int | None = 15
    grad_clip: float | None = 10.0
    device: str = "auto"
    num_threads: int | None = None


@dataclass
class FitResult:
    """Per-epoch history (``epoch, train_loss, val_loss, lr``) and the epoch whose weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def masked_loss(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, task_type: str) -> torch.Tensor:
    """Mean loss over the labelled entries (``mask`` True) of ``(molecules, tasks)`` tensors; 0 if none.

    ``multiclass``: ``outputs`` are ``(molecules, classes)`` logits of the single task, ``targets``
    and ``mask`` ``(molecules, 1)`` class indices and flags; the loss is the cross-entropy.
    """
    targets = torch.where(mask, targets, torch.zeros_like(targets))  # NaN * 0 would still be NaN
    if task_type == "multiclass":
        losses = nn.functional.cross_entropy(outputs, targets[:, 0].long(), reduction="none")
        weights = mask[:, 0].to(losses.dtype)
        return (losses * weights).sum() / weights.sum().clamp(min=1.0)
    if task_type == "classification":
        losses = nn.functional.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
    else:
        losses = (outputs - targets) ** 2
    weights = mask.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


def labelled_examples(inputs: Sequence[Data], rows: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> list[Data]:
    """Shallow copies of ``inputs[rows]`` carrying ``y`` and ``mask`` ``(1, tasks)`` for the loader."""
    examples = []
    for row in rows:
        example = copy.copy(inputs[row])
        example.y = torch.as_tensor(targets[row : row + 1], dtype=torch.float32)
        example.mask = torch.as_tensor(mask[row : row + 1])
        examples.append(example)
    return examples


def lr_schedule(config: TrainerConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Step -> learning-rate factor relative to ``max_lr``: linear warmup then exponential decay."""
    warmup = max(int(config.warmup_epochs * steps_per_epoch), 1)
    decay_steps = max(config.max_epochs * steps_per_epoch - warmup, 1)
    decay = (config.final_lr / config.max_lr) ** (1.0 / decay_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (config.init_lr + (config.max_lr - config.init_lr) * step / warmup) / config.max_lr
        return decay ** (step - warmup)

    return factor


def _loss_over(model: nn.Module, loader: DataLoader, device: torch.device, task_type: str) -> float:
    """Label-weighted mean loss of ``model`` over ``loader`` (no gradients)."""
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            labelled = float(batch.mask.sum())
            total += float(masked_loss(model(batch), batch.y, batch.mask, task_type)) * labelled
            count += labelled
    return total / max(count, 1.0)


def fit(
    model: nn.Module, train: list[Data], val: list[Data], config: TrainerConfig, task_type: str, seed: int,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` in place on labelled examples; keeps the weights of the best validation epoch.

    With no validation examples, all ``max_epochs`` run and the last epoch's weights are kept
    (``val_loss`` is NaN in the history); early stopping (``patience``) then has nothing to watch.
    """
    if not train:
        raise ValueError("training needs a non-empty training set")
    if not val and config.patience is not None:
        raise ValueError("early stopping needs validation examples; with none (a final fit on all training data) "
                         "set trainer.patience=null to run all max_epochs and keep the last")
    device = resolve_device(config.device)
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    # A trailing batch of one molecule breaks batch norm when that molecule is a single atom
    # (methane is in ESOL and FreeSolv); dropping it skips a different molecule each epoch.
    single_tail = len(train) % config.batch_size == 1 and len(train) > 1
    train_loader = DataLoader(train, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=single_tail)
    val_loader = DataLoader(val, batch_size=config.eval_batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.max_lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config, len(train_loader)))
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict()) if val else None  # None: keep the last epoch's weights
    for epoch in range(config.max_epochs):
        model.train()
        total, count = 0.0, 0.0
        for batch in train_loader:
            batch = batch.to(device)
            optimizer.zero_grad()
            loss = masked_loss(model(batch), batch.y, batch.mask, task_type)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            labelled = float(batch.mask.sum())
            total, count = total + loss.item() * labelled, count + labelled
        record = {"epoch": epoch, "train_loss": total / max(count, 1.0),
                  "val_loss": _loss_over(model, val_loader, device, task_type) if val else math.nan,
                  "lr": scheduler.get_last_lr()[0]}
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
        if not val:
            result.best_epoch, result.best_val_loss = epoch, math.nan
        elif record["val_loss"] < result.best_val_loss:
            result.best_epoch, result.best_val_loss = epoch, record["val_loss"]
            best_state = copy.deepcopy(model.state_dict())
        elif config.patience is not None and epoch - result.best_epoch >= config.patience:
            log.info("early stop at epoch %d: no better validation loss since epoch %d", epoch, result.best_epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def predict_outputs(model: nn.Module, examples: Sequence[Data], batch_size: int, device: str = "auto") -> np.ndarray:
    """Raw ``(molecules, tasks)`` outputs in float64, in the order of non-empty ``examples`` (eval mode, no gradients)."""
    target = resolve_device(device)
    model.to(target).eval()
    outputs = []
    with torch.no_grad():
        for batch in DataLoader(list(examples), batch_size=batch_size):
            outputs.append(model(batch.to(target)).double().cpu())
    return torch.cat(outputs).numpy()
