"""An oracle from a trained predictor: ``discovery.train`` checkpoint -> desirability in [0, 1].

    oracle = checkpoint_oracle("solubility", "outputs/train/esol/gin/<time>/checkpoint",
                               transform={"kind": "max_gaussian", "mu": -2.0, "sigma": 1.0})

The molecule is standardized with the checkpoint's own standardizer and featurized with
its own feature view in memory (no store), so it sees exactly the inputs the model was
trained on. ``kappa`` adds an uncertainty bonus for ensembles: the transform is applied
to ``mean + kappa * std``. A molecule the view cannot featurize scores 0. The checkpoint
loader reads JSON and ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rdkit import Chem

from discovery.oracles.registry import Oracle
from discovery.oracles.transforms import Transform, make_transform


@dataclass(frozen=True)
class CheckpointPrediction:
    """Term: ``transform(mean + kappa * std)`` of one task of a :class:`~discovery.checkpoint.Predictor`."""

    predictor: Any = field(repr=False)
    task: int
    transform: Transform
    kappa: float = 0.0
    # The view's featurizer, built once here rather than on every oracle call.
    _featurizer: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_featurizer", self.predictor.view.build())

    def raw(self, mol: Chem.Mol) -> tuple[float, float] | None:
        """``(mean, std)`` of the task in target units, or None if the molecule cannot be featurized."""
        standardized = self.predictor.standardizer(Chem.MolToSmiles(mol))
        if standardized.error is not None:
            return None
        features = self._featurizer.batch([standardized.smiles])
        if features.get_column("error")[0] is not None:
            return None
        mean, std = self.predictor.predict_features(features)
        return float(mean[0, self.task]), float(std[0, self.task])

    def __call__(self, mol: Chem.Mol) -> float:
        prediction = self.raw(mol)
        if prediction is None:
            return 0.0
        value = self.transform(prediction[0] + self.kappa * prediction[1])
        # kappa can lift a probability (identity transform) past 1; a non-finite prediction is no score.
        return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


def checkpoint_oracle(
    name: str, path: str | os.PathLike | Sequence[str | os.PathLike], task: str | None = None, transform: Mapping[str, Any] | None = None,
    kappa: float = 0.0, device: str = "cpu", description: str = "",
) -> Oracle:
    """An oracle scoring ``transform(prediction)`` of the checkpoint at ``path`` (a list: one ensemble of runs).

    ``task`` names the task of a multitask checkpoint (optional when there is one task);
    ``transform`` is a :func:`~discovery.oracles.transforms.make_transform` spec mapping the
    prediction into [0, 1]; ``None`` (identity) is allowed only for classifiers, whose
    predictions are probabilities.
    """
    # Imported here so the RDKit-only oracles do not pull in torch.
    from discovery.checkpoint import load_predictor

    predictor = load_predictor(path, device=device)
    if predictor.task_type == "multiclass":  # its outputs are class probabilities, not tasks
        raise ValueError(f"{path} is a multiclass checkpoint: checkpoint oracles read regression or binary ones")
    if transform is None and predictor.task_type == "regression":
        raise ValueError(f"{path}: a regression checkpoint needs a transform mapping its predictions into [0, 1]")
    if task is None:
        if len(predictor.tasks) != 1:
            raise ValueError(f"{path} predicts {len(predictor.tasks)} tasks {predictor.tasks}: choose one with task=")
        index = 0
    elif task in predictor.tasks:
        index = predictor.tasks.index(task)
    else:
        raise ValueError(f"{path} has no task {task!r}; its tasks are {predictor.tasks}")
    term = CheckpointPrediction(predictor, index, make_transform(transform), kappa)
    return Oracle(name, term, description=description or f"{predictor.model_name} prediction of {predictor.tasks[index]}")
