"""Temporal splits of drug events into folds (validation, test), and the tasks on a fold.

Never random splits for usage data (DESIGN.md 3.4). Each fold holds the ``history``
(events strictly before each patient's prediction time, the only input a model sees)
and the ``future`` (events at or after it); both carry that time as ``reference``.

- ``time_split``: one global cutoff (a date, or a quantile of event start times).
  Test: history before the cutoff, future from it (optionally for ``horizon_days``).
  Validation: the same one step earlier, with the window [validation cutoff, cutoff).
- ``leave_last_split``: per patient, the last basket (all events at the patient's last
  start time) is the test future, the one before it the validation future. Other
  patients' later events stay in the history (the usual leave-last-out caveat).
- ``cold_items_split``: item cold start (DESIGN.md 3.4): every event of a random
  ``fraction`` of the drugs in use is the test future, everything else the history, so
  a test drug has no interaction at all in training; validation holds out another
  ``fraction`` of the remaining drugs the same way (its history lacks the test drugs
  too). Not a time split: the prediction time (``reference``) is after the last event.

Tasks (the targets of a patient in a fold): ``all`` (a) every distinct item of the
future; ``new`` (b) only items absent from the patient's history; ``visit`` (c) the
items of the patient's first future basket (visit-level set prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

TASKS = ("all", "new", "visit")
FILTERS = ("none", "current", "history")


@dataclass(frozen=True)
class Fold:
    """History (model input) and future (targets) of one evaluation step."""

    name: str
    history: pl.DataFrame
    future: pl.DataFrame
    info: dict[str, Any]


def _as_datetime(value: str | date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value))


def time_quantile(events: pl.DataFrame, q: float) -> datetime:
    """The event start time at quantile ``q`` (nearest lower observed time)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    return events.select(pl.col("start").sort().quantile(q, interpolation="lower")).item()


def _fold(name: str, events: pl.DataFrame, reference: datetime, end: datetime | None) -> Fold:
    with_ref = events.with_columns(reference=pl.lit(reference, dtype=pl.Datetime("us")))
    history = with_ref.filter(pl.col("start") < reference)
    future = with_ref.filter(pl.col("start") >= reference)
    if end is not None:
        future = future.filter(pl.col("start") < end)
    info = {"reference": str(reference), "window_end": str(end) if end else None,
            "history_events": history.height, "future_events": future.height}
    return Fold(name, history, future, info)


def prediction_fold(events: pl.DataFrame, at: str | date | None = None) -> Fold:
    """The records known at prediction time ``at`` as a fold's history (its future: the events from ``at`` on, which
    nothing reads); ``at=None``: the day after the last event starts, i.e. each patient's whole record."""
    if events.is_empty():
        raise ValueError("no usage event to recommend from")
    if at is None:
        reference = events["start"].max() + timedelta(days=1)
    else:
        try:
            reference = _as_datetime(at)
        except ValueError:
            raise ValueError(f"at must be a date (YYYY-MM-DD) or null, got {at!r}") from None
    return _fold("predict", events, reference, None)


def time_split(
    events: pl.DataFrame,
    cutoff: str | date | None = None,
    quantile: float = 0.8,
    validation_cutoff: str | date | None = None,
    validation_quantile: float = 0.7,
    horizon_days: float | None = None,
) -> dict[str, Fold]:
    """Global time split: ``{"validation": Fold, "test": Fold}``.

    ``cutoff`` (a date) wins over ``quantile``; likewise for the validation cutoff,
    which must fall before the test cutoff.
    """
    test_cut = _as_datetime(cutoff) if cutoff is not None else time_quantile(events, quantile)
    val_cut = (
        _as_datetime(validation_cutoff) if validation_cutoff is not None
        else time_quantile(events, validation_quantile)
    )
    if val_cut >= test_cut:
        raise ValueError(f"validation cutoff {val_cut} must be before the test cutoff {test_cut}")
    horizon = timedelta(days=horizon_days) if horizon_days else None
    return {
        "validation": _fold("validation", events, val_cut, test_cut),
        "test": _fold("test", events, test_cut, test_cut + horizon if horizon else None),
    }


def leave_last_split(events: pl.DataFrame) -> dict[str, Fold]:
    """Per-patient leave-last-basket-out: ``{"validation": Fold, "test": Fold}``."""
    times = events.select("person_id", "start").unique().sort("person_id", "start")
    ranked = times.with_columns(back=pl.col("start").rank("ordinal", descending=True).over("person_id"))
    folds = {}
    for name, back in (("validation", 2), ("test", 1)):
        reference = ranked.filter(pl.col("back") == back).select("person_id", reference="start")
        with_ref = events.join(reference, on="person_id", how="inner")
        history = with_ref.filter(pl.col("start") < pl.col("reference"))
        future = with_ref.filter(pl.col("start") == pl.col("reference"))
        info = {"reference": f"per patient: basket {back} from the end", "patients": reference.height,
                "history_events": history.height, "future_events": future.height}
        folds[name] = Fold(name, history, future, info)
    return folds


def cold_items_split(events: pl.DataFrame, fraction: float = 0.2, seed: int = 0) -> dict[str, Fold]:
    """Item cold-start folds: ``{"validation": Fold, "test": Fold}`` (see the module docstring)."""
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"cold-item fraction must be in (0, 0.5), got {fraction}")
    drugs = events["item"].unique().sort()
    n_cold = round(fraction * drugs.len())
    if n_cold < 1 or 2 * n_cold >= drugs.len():
        raise ValueError(f"{drugs.len()} drugs in use: too few to hold out {fraction:.0%} twice (test, validation)")
    shuffled = drugs.sample(fraction=1.0, shuffle=True, seed=seed)
    reference = events["start"].max() + timedelta(days=1)
    folds, history = {}, events
    for name, cold in (("test", shuffled[:n_cold]), ("validation", shuffled[n_cold : 2 * n_cold])):
        held = history["item"].is_in(cold.implode())
        with_ref = history.with_columns(reference=pl.lit(reference, dtype=pl.Datetime("us")))
        fold_history, future = with_ref.filter(~held), with_ref.filter(held)
        info = {"reference": str(reference), "cold_items": cold.sort().to_list(),
                "history_events": fold_history.height, "future_events": future.height}
        folds[name] = Fold(name, fold_history, future, info)
        history = history.filter(~held)  # validation is carved from the test fold's history
    return {"validation": folds["validation"], "test": folds["test"]}


def make_split(events: pl.DataFrame, spec: dict[str, Any]) -> dict[str, Fold]:
    """Folds from a ``usage_split/`` config (``name``: time, leave_last or cold_items)."""
    params = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "time":
        return time_split(events, **params)
    if spec["name"] == "leave_last":
        return leave_last_split(events, **params)
    if spec["name"] == "cold_items":
        return cold_items_split(events, **params)
    raise ValueError(f"unknown split {spec['name']!r}: use time, leave_last or cold_items")


def task_targets(fold: Fold, task: str) -> pl.DataFrame:
    """Distinct (person_id, item) targets of a task; only patients with a history."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {TASKS}")
    future = fold.future
    if task == "visit":
        future = future.filter(pl.col("start") == pl.col("start").min().over("person_id"))
    targets = future.select("person_id", "item").unique()
    seen = fold.history.select("person_id", "item").unique()
    if task == "new":
        targets = targets.join(seen, on=["person_id", "item"], how="anti")
    warm = seen.select("person_id").unique()
    return targets.join(warm, on="person_id", how="semi").sort("person_id", "item")


def cold_patients(fold: Fold) -> int:
    """Patients with future events but no history (a behaviour model cannot rank for them)."""
    future = fold.future.select("person_id").unique()
    return future.join(fold.history.select("person_id").unique(), on="person_id", how="anti").height


def excluded_items(fold: Fold, rule: str) -> pl.DataFrame:
    """(person_id, item) pairs a filter removes from the ranking at prediction time.

    ``none``: nothing; ``history``: every item the patient took before; ``current``:
    items the patient is still taking at the prediction time (exposure end, or start
    when the end is unknown, at or after it).
    """
    if rule not in FILTERS:
        raise ValueError(f"unknown filter {rule!r}; use one of {FILTERS}")
    history = fold.history
    if rule == "none":
        history = history.clear()
    elif rule == "current":
        history = history.filter(pl.coalesce("end", "start") >= pl.col("reference"))
    return history.select("person_id", "item").unique()
