"""A trained predictor and its checkpoint: plain JSON + tensors, loaded without unpickling.

``checkpoint/model.json`` holds the model name and hyperparameters, the task names and
type, the target scaler, the feature view spec and id (and the protein view's, for a
drug–target pair model), and the standardizer;
``checkpoint/weights.pt`` holds ``{"members": [state_dict, ...]}`` (one per ensemble member)
and is read with ``torch.load(weights_only=True)``. The training app computes its saved
predictions with the same :class:`Predictor` that :func:`load_predictor` returns, so a
reloaded checkpoint reproduces them exactly (same inputs, same order).

A multiclass checkpoint also stores ``classes`` (the class names, in the order of the
model's outputs; a neural model is built with ``n_tasks`` = number of classes outputs,
a classical one with ``n_classes``). It predicts softmax probabilities; an ensemble
averages them, and its ``std`` is the spread over members of the predicted class's
probability. Its prediction tables (:meth:`Predictor.predict`, the training app's
``predictions.parquet``) give ``prediction`` = the predicted class name, ``probability`` =
its probability, and one ``p_<class>`` column per class.

::

    predictor = load_predictor("outputs/train/esol/dmpnn/<time>/checkpoint")
    predictor.predict(["CCO", "BSYNRYMUTXBXSQ-UHFFFAOYSA-N"], FeatureStore())

A list of checkpoints loads as one ensemble (:class:`RunEnsemble`): the runs of a sweep such as
``-m seed=0,1,2,3``, trained in parallel, predict as the mean and std of all their members.
:func:`save_ensemble` copies such runs into one folder, which then loads (and ranks) as that ensemble.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch_geometric.data import Data

from featurestore import FeatureStore, FeatureView, Standardizer
from featurestore.io import atomic_path, write_json_atomic

from discovery.inputs import fingerprint_array, model_inputs
from discovery.models import ClassicalModel, build_model
from discovery.trainer import predict_outputs

CHECKPOINT_FORMAT = 1
ENSEMBLE_FILE = "ensemble.json"  # a folder of runs saved as one ensemble (save_ensemble)
RUN_NAME = re.compile(r"run\d+")
RUN_FILES = ("data.parquet", "splits.json", "metrics.json", "run.json", ".hydra")
INCHIKEY = re.compile(r"[A-Z]{14}-[A-Z]{10}-[A-Z]")


@dataclass
class TargetScaler:
    """Per-task standardization ``(y - mean) / std`` fitted on training labels; identity for classification."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, targets: np.ndarray, mask: np.ndarray) -> TargetScaler:
        """Mean and standard deviation of each task's labels where ``mask`` is True (std 1 if undefined)."""
        means, stds = [], []
        for t in range(targets.shape[1]):
            values = targets[mask[:, t], t]
            mean = float(values.mean()) if len(values) else 0.0
            std = float(values.std()) if len(values) > 1 else 0.0
            means.append(mean)
            stds.append(std if std > 0 else 1.0)
        return cls(means, stds)

    @classmethod
    def identity(cls, n_tasks: int) -> TargetScaler:
        return cls([0.0] * n_tasks, [1.0] * n_tasks)

    def transform(self, targets: np.ndarray) -> np.ndarray:
        return (targets - np.asarray(self.mean)) / np.asarray(self.std)

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        return scaled * np.asarray(self.std) + np.asarray(self.mean)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(molecules, classes)`` logits (shifted by the row maximum: no overflow)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass
class Predictor:
    """Ensemble members + everything needed to go from SMILES or InChIKeys to predictions in target units."""

    model_name: str
    members: list[Any]
    tasks: list[str]
    task_type: str
    scaler: TargetScaler
    view: FeatureView
    standardizer: Standardizer
    batch_size: int
    device: str = "auto"
    protein_view: FeatureView | None = None  # pair models: the protein side's view
    classes: list[str] | None = None  # multiclass: class names, in output order

    @property
    def input_kind(self) -> str:
        return self.members[0].input_kind

    @property
    def outputs(self) -> int:
        """Columns of :meth:`predict_examples`: one per task, or one per class (multiclass)."""
        return len(self.classes) if self.task_type == "multiclass" else len(self.tasks)

    def predict_examples(self, examples: Sequence[Data]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over members, ``(molecules, tasks)`` each, in target units (probabilities).

        Multiclass: ``(molecules, classes)`` class probabilities and their standard deviation over members."""
        if not examples:
            empty = np.zeros((0, self.outputs))
            return empty, empty.copy()
        stacked = np.stack(self.member_outputs(examples))
        return stacked.mean(axis=0), stacked.std(axis=0)

    def member_outputs(self, examples: Sequence[Data]) -> list[np.ndarray]:
        """Each member's ``(molecules, outputs)`` prediction in target units (probabilities)."""
        per_member = []
        fingerprints = None  # built once, shared by the classical members
        for member in self.members:
            if isinstance(member, ClassicalModel):
                if fingerprints is None:
                    fingerprints = fingerprint_array(list(examples))
                raw = member.predict(fingerprints)
            else:
                raw = predict_outputs(member, examples, self.batch_size, self.device)
                if self.task_type == "classification":
                    raw = 1.0 / (1.0 + np.exp(-raw))
                elif self.task_type == "multiclass":
                    raw = softmax(raw)
            per_member.append(self.scaler.inverse(raw) if self.task_type == "regression" else raw)
        return per_member

    def class_columns(self, mean: np.ndarray, std: np.ndarray) -> list[pl.Series]:
        """Multiclass prediction columns from :meth:`predict_examples`'s ``(molecules, classes)`` mean and std:
        ``prediction`` (class name; the first class on a tie), ``probability``, ``std``, ``p_<class>``...
        (rows with NaN probabilities get nulls)."""
        usable = ~np.isnan(mean).any(axis=1)
        best = np.argmax(np.where(usable[:, None], mean, 0.0), axis=1)
        rows = np.arange(len(mean))
        names = np.asarray(self.classes, dtype=object)[best]
        return [
            pl.Series("prediction", [name if ok else None for name, ok in zip(names, usable)], dtype=pl.String),
            pl.Series("probability", mean[rows, best], dtype=pl.Float64),
            pl.Series("std", std[rows, best], dtype=pl.Float64),
            *[pl.Series(f"p_{name}", mean[:, k], dtype=pl.Float64) for k, name in enumerate(self.classes)],
        ]

    def predict_features(self, features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`predict_examples` for rows of this predictor's feature view."""
        return self.predict_examples(model_inputs(self.input_kind, features) if features.height else [])

    def predict(self, smiles_or_keys: Iterable[str], store: FeatureStore) -> pl.DataFrame:
        """One row per input x task: ``input, inchikey, smiles, task, prediction`` (+ ``std`` for ensembles), ``error``.

        An item shaped like an InChIKey is used as a key; anything else is standardized as
        SMILES (an InChIKey is never a valid SMILES). Inputs that fail get a null
        prediction and the reason in ``error``. Multiclass: ``prediction`` is the class name, followed by
        ``probability`` (+ ``std``) and ``p_<class>`` columns (see :meth:`class_columns`).
        """
        items = [str(item) for item in smiles_or_keys]
        is_key = [bool(INCHIKEY.fullmatch(item)) for item in items]
        smiles_items = [item for item, key in zip(items, is_key) if not key]
        keyed = iter(store.standardize(smiles_items, self.standardizer).table.iter_rows(named=True) if smiles_items else [])
        rows = []
        for item, key in zip(items, is_key):
            if key:
                rows.append({"input": item, "inchikey": item, "smiles": None, "error": None})
            else:
                row = next(keyed)
                rows.append({"input": item, "inchikey": row["inchikey"], "smiles": row["smiles"], "error": row["error"]})
        table = pl.DataFrame(rows, schema={"input": pl.String, "inchikey": pl.String, "smiles": pl.String, "error": pl.String})
        if any(is_key):  # keys come without SMILES: take the stored canonical ones
            known = store.read_entities("molecule").select("inchikey", pl.col("smiles").alias("stored_smiles"))
            table = table.join(known, on="inchikey", how="left", maintain_order="left").with_columns(
                pl.coalesce("smiles", "stored_smiles").alias("smiles")
            ).drop("stored_smiles")
        return self.predict_keyed(table, store)

    def predict_keyed(self, table: pl.DataFrame, store: FeatureStore) -> pl.DataFrame:
        """:meth:`predict` for inputs already keyed by this predictor's standardizer: ``table`` has one row per
        input with ``input, inchikey, smiles, error`` (a caller that standardized them need not do it twice)."""
        if self.protein_view is not None:
            raise ValueError(f"{self.model_name} predicts drug–target pairs: build their features with "
                             "discovery.dta.pair_features and call predict_features")
        features = store.get(table.get_column("inchikey").fill_null("").to_list(), self.view)
        table = table.with_columns(pl.coalesce(pl.col("error"), features.get_column("error")).alias("error"))
        usable = table.get_column("error").is_null().to_numpy()
        mean, std = self.predict_features(features.filter(pl.Series(usable)))
        full_mean = np.full((table.height, self.outputs), np.nan)
        full_std = full_mean.copy()
        full_mean[usable], full_std[usable] = mean, std
        if self.task_type == "multiclass":
            columns = self.class_columns(full_mean, full_std)
            if len(self.members) == 1:
                columns = [c for c in columns if c.name != "std"]
            frame = table.with_columns(pl.lit(self.tasks[0]).alias("task"), *columns).with_columns(
                pl.col(c.name for c in columns if c.dtype == pl.Float64).fill_nan(None))
            return frame.select("input", "inchikey", "smiles", "task", *[c.name for c in columns], "error")
        frame = table.with_columns(
            pl.lit(self.tasks, dtype=pl.List(pl.String)).alias("task"),
            pl.Series("prediction", full_mean.tolist()),
            pl.Series("std", full_std.tolist()),
        ).explode("task", "prediction", "std").with_columns(pl.col("prediction", "std").fill_nan(None))
        columns = ["input", "inchikey", "smiles", "task", "prediction", *(["std"] if len(self.members) > 1 else []), "error"]
        return frame.select(columns)

    def save(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write ``weights.pt`` and ``model.json`` into ``directory`` (atomically); returns the folder."""
        directory = Path(directory)
        with atomic_path(directory / "weights.pt") as tmp:
            torch.save({"members": [member.state_dict() for member in self.members]}, tmp)
        write_json_atomic(directory / "model.json", {
            "format": CHECKPOINT_FORMAT,
            "model": self.model_name,
            "hparams": self.members[0].hparams,
            "members": len(self.members),
            "tasks": self.tasks,
            "task_type": self.task_type,
            **({"classes": self.classes} if self.classes is not None else {}),
            "scaler": asdict(self.scaler),
            "view": {"id": self.view.id, **self.view.spec()},
            **({"protein_view": {"id": self.protein_view.id, **self.protein_view.spec()}} if self.protein_view else {}),
            "standardizer": asdict(self.standardizer),
            "batch_size": self.batch_size,
            **(extra or {}),
        })
        return directory


def _stored_view(directory: Path, stored: dict[str, Any]) -> FeatureView:
    """The view a checkpoint was trained on, checked against the id this code computes for it."""
    view = FeatureView(stored["featurizer"], stored["params"])
    if view.id != stored["id"]:
        raise ValueError(
            f"{directory}: trained on feature view {stored['id']}, but this code builds {view.id} from the same "
            "spec (the featurizer version changed); retrain or pin the older featurizer"
        )
    return view


def _checkpoint_spec(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(checkpoint folder, its model.json) of a checkpoint or run folder; refuses another format."""
    directory = Path(path)
    if (directory / "checkpoint").is_dir():
        directory = directory / "checkpoint"
    spec = json.loads((directory / "model.json").read_text())
    if spec.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{directory}: checkpoint format {spec.get('format')!r}, this code reads {CHECKPOINT_FORMAT}")
    return directory, spec


@dataclass
class RunEnsemble(Predictor):
    """Several training runs' checkpoints as one predictor: every member of every run counts once in the mean
    and std, each with its own run's target scaler (e.g. the runs of ``-m seed=0,1,2,3``, trained in parallel).
    Built by :func:`load_predictor` from a list of checkpoints (or a :func:`save_ensemble` folder); its
    :meth:`save` is refused: copy the runs with :func:`save_ensemble`."""

    parts: list[Predictor] = field(default_factory=list)

    def member_outputs(self, examples: Sequence[Data]) -> list[np.ndarray]:
        return [output for part in self.parts for output in part.member_outputs(examples)]

    def save(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        raise ValueError("an ensemble of several runs is not saved as one checkpoint: copy its runs into one folder "
                         "with discovery.checkpoint.save_ensemble(runs, folder)")


def ensemble_of(predictors: Sequence[Predictor], names: Sequence[str] | None = None) -> Predictor:
    """One predictor averaging ``predictors`` (one is returned as it is). They must predict the same tasks (and
    classes) from the same feature view(s) and standardizer; ``names`` (their paths) make the error say which."""
    if not predictors:
        raise ValueError("an ensemble needs at least one checkpoint")
    if len(predictors) == 1:
        return predictors[0]
    names = list(names) if names is not None else [f"checkpoint {i}" for i in range(len(predictors))]
    first = predictors[0]

    def signature(p: Predictor) -> dict[str, Any]:
        return {"tasks": p.tasks, "task_type": p.task_type, "classes": p.classes, "view": p.view.id,
                "input kind": p.input_kind, "protein view": p.protein_view.id if p.protein_view else None,
                "standardizer": p.standardizer}

    for name, predictor in zip(names[1:], predictors[1:]):
        differs = [key for key, value in signature(predictor).items() if value != signature(first)[key]]
        if differs:
            raise ValueError(f"{name} cannot join an ensemble with {names[0]}: its {', '.join(differs)} differ")
    model_name = "+".join(dict.fromkeys(p.model_name for p in predictors))
    # Predictions use each run's own scaler; this one, the runs' mean, only describes the ensemble's targets.
    scaler = TargetScaler(*(np.mean([getattr(p.scaler, k) for p in predictors], axis=0).tolist() for k in ("mean", "std")))
    return RunEnsemble(model_name, [m for p in predictors for m in p.members], first.tasks, first.task_type,
                       scaler, first.view, first.standardizer, min(p.batch_size for p in predictors),
                       first.device, first.protein_view, first.classes, parts=list(predictors))


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """The train run folder of a checkpoint given as the run folder or its ``checkpoint/`` subfolder."""
    path = Path(checkpoint)
    return path.parent if path.name == "checkpoint" and not (path / "checkpoint").is_dir() else path


def _saved_ensemble_runs(directory: Path) -> list[Path]:
    """The run folders listed by a saved ensemble's ``ensemble.json``; names other than ``run<k>`` are refused, so
    a crafted file cannot point outside the folder."""
    names = json.loads((directory / ENSEMBLE_FILE).read_text()).get("runs")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and RUN_NAME.fullmatch(n) for n in names):
        raise ValueError(f"{directory / ENSEMBLE_FILE}: 'runs' must list the folders run0, run1, ... (got {names!r})")
    missing = [name for name in names if not (directory / name / "checkpoint").is_dir()]
    if missing:
        raise ValueError(f"{directory}: the saved ensemble lacks the runs {missing}")
    return [directory / name for name in names]


def checkpoint_paths(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """One checkpoint (or run folder) or a list of them (an ensemble of runs), as paths; a folder written by
    :func:`save_ensemble` stands for its runs."""
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not paths:
        raise ValueError("no checkpoint given")
    return [run for p in paths for run in (_saved_ensemble_runs(p) if (p / ENSEMBLE_FILE).is_file() else [p])]


def save_ensemble(runs: Sequence[str | os.PathLike], directory: str | os.PathLike) -> Path:
    """Copy the train runs of an ensemble into one folder that loads wherever a checkpoint is read.

    Each run (its folder or ``checkpoint/``) becomes ``directory/run<k>/`` with its checkpoint and the files the
    ranking apps read beside it (``data.parquet``, ``splits.json``; ``metrics.json``, ``run.json`` and
    ``.hydra/`` for provenance); ``ensemble.json`` lists them. The runs must form an ensemble (:func:`ensemble_of`);
    an existing ``directory`` is refused, and the folder appears whole or not at all.
    """
    destination = Path(directory)
    if destination.exists():
        raise ValueError(f"{destination} exists; save the ensemble into a new folder")
    run_dirs = [run_dir_of(p) for p in checkpoint_paths(runs)]
    if len(run_dirs) < 2:
        raise ValueError("an ensemble needs at least two runs; a single run's folder is already its checkpoint")
    load_predictor(run_dirs, "cpu")  # refuses runs that do not form an ensemble, naming the one that differs
    staging = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for k, run_dir in enumerate(run_dirs):
            target = staging / f"run{k}"
            shutil.copytree(_checkpoint_spec(run_dir)[0], target / "checkpoint")
            for name in RUN_FILES:
                if (run_dir / name).is_dir():
                    shutil.copytree(run_dir / name, target / name)
                elif (run_dir / name).is_file():
                    shutil.copy2(run_dir / name, target / name)
        write_json_atomic(staging / ENSEMBLE_FILE, {"format": CHECKPOINT_FORMAT,
                                                    "runs": [f"run{k}" for k in range(len(run_dirs))],
                                                    "sources": [str(d.resolve()) for d in run_dirs]})
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def load_predictor(path: str | os.PathLike | Sequence[str | os.PathLike], device: str = "auto") -> Predictor:
    """Rebuild a :class:`Predictor` from a checkpoint folder (or a run folder containing ``checkpoint/``);
    a list of them loads as one ensemble (:func:`ensemble_of`)."""
    paths = checkpoint_paths(path)
    if len(paths) > 1:
        return ensemble_of([load_predictor(p, device) for p in paths], [str(p) for p in paths])
    directory, spec = _checkpoint_spec(paths[0])
    view = _stored_view(directory, spec["view"])
    protein_view = _stored_view(directory, spec["protein_view"]) if "protein_view" in spec else None
    states = torch.load(directory / "weights.pt", weights_only=True, map_location="cpu")["members"]
    members = []
    for state in states:
        member = build_model(spec["model"], spec["hparams"])
        member.load_state_dict(state)
        members.append(member)
    return Predictor(
        spec["model"], members, spec["tasks"], spec["task_type"], TargetScaler(**spec["scaler"]), view,
        Standardizer(**spec["standardizer"]), spec["batch_size"], device, protein_view, spec.get("classes"),
    )


ENCODER_HPARAMS = ("atom_dim", "bond_dim", "hidden", "depth")


def pretrained_encoder(path: str | os.PathLike, model_name: str, hparams: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The graph encoder weights of a checkpoint's first member, to warm-start a model of ``model_name`` built with
    ``hparams`` (fine-tuning: the head, sized by the new tasks and molecule features, starts fresh).

    Raises ``ValueError`` when the checkpoint holds another model or an encoder of another shape or depth.
    """
    directory, spec = _checkpoint_spec(path)
    if spec["model"] != model_name:
        raise ValueError(f"init_from: {directory} holds a {spec['model']!r} model, this run trains {model_name!r}")
    stored = spec["hparams"]
    different = {k: (stored.get(k), hparams.get(k)) for k in ENCODER_HPARAMS if stored.get(k) != hparams.get(k)}
    if different:
        raise ValueError(f"init_from: {directory}'s encoder differs from this run's (checkpoint, run): {different}")
    state = torch.load(directory / "weights.pt", weights_only=True, map_location="cpu")["members"][0]
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder:
        raise ValueError(f"init_from: {directory}'s {spec['model']!r} model has no graph encoder to start from")
    return encoder
