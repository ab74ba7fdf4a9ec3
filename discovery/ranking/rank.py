"""Rank candidate molecules: model predictions, medicinal-chemistry context, applicability domain, one score.

:func:`rank_candidates` keeps every input row: unique SMILES are scored once, chunk by chunk
(memory bounded by the chunk, not the library), then joined back to their rows. Rows whose
SMILES fail get the reason in ``error``, no score, and rank last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import polars.selectors as cs
from rdkit import Chem
from rdkit.Chem import Draw
from tqdm.auto import tqdm

from featurestore import FeatureStore, FeatureView, Standardizer, fingerprint_matrix
from featurestore.io import atomic_path, read_table, require_columns, write_parquet_atomic, write_text_atomic
from featurestore.similarity import max_tanimoto

from discovery.checkpoint import Predictor, load_predictor
from discovery.data import select_task
from discovery.oracles import Oracle
from discovery.ranking.medchem import MEDCHEM, MEDCHEM_SCHEMA
from discovery.ranking.score import RankingScore
from discovery.ranking.similarity import ECFP4, run_dirs_of, training_fingerprints

KEY_COLUMNS = ("rank", "input_row", "input_smiles", "smiles", "inchikey")


@dataclass
class RankingModel:
    """A checkpoint scoring candidates: its predictor, the task(s) used, and its training fingerprints."""

    name: str
    predictor: Predictor
    tasks: list[str]
    training_bits: np.ndarray
    min_similarity: float = 0.3
    class_name: str | None = None  # multiclass checkpoints: the class whose probability is the prediction

    @classmethod
    def load(cls, spec: Mapping[str, Any], store: FeatureStore, view: FeatureView = ECFP4,
             min_similarity: float = 0.3) -> RankingModel:
        """From ``{path, name, task?, class?}``: ``path`` is a train run folder or its ``checkpoint/``; a candidate is
        in the model's domain when its max Tanimoto to the training fold is at least ``min_similarity``. A multiclass
        checkpoint needs ``class``: its prediction column is the probability of that class (no std column)."""
        predictor = load_predictor(spec["path"])
        tasks = [select_task(predictor.tasks, spec["task"])] if spec.get("task") else predictor.tasks
        class_name = spec.get("class")
        if predictor.task_type == "multiclass":
            if class_name is None or str(class_name) not in predictor.classes:
                raise ValueError(f"checkpoint {spec['path']} is multiclass: name the class to score with, "
                                 f"class=<one of {predictor.classes}> (got {class_name!r})")
            class_name = str(class_name)
        elif class_name is not None:
            raise ValueError(f"checkpoint {spec['path']} is {predictor.task_type}: class= is for multiclass checkpoints")
        _, bits = training_fingerprints(run_dirs_of(spec["path"]), store, view)
        return cls(spec["name"], predictor, tasks, bits, min_similarity, class_name)

    def column(self, prefix: str, task: str) -> str:
        """``pred_<name>`` for one task, ``pred_<name>_<task>`` when several are kept."""
        return f"{prefix}_{self.name}" if len(self.tasks) == 1 else f"{prefix}_{self.name}_{task}"

    def score(self, keyed: pl.DataFrame, standardizer: Standardizer, store: FeatureStore
              ) -> tuple[pl.DataFrame, list[str | None]]:
        """Prediction (and ensemble std) columns for the ``keyed`` candidates (``input_smiles, inchikey, smiles,
        error``, keyed by ``standardizer``), and each row's prediction error. A checkpoint trained with another
        standardizer keys the input SMILES its own way."""
        if self.predictor.standardizer == standardizer:
            long = self.predictor.predict_keyed(keyed.select(pl.col("input_smiles").alias("input"), "inchikey",
                                                             "smiles", "error"), store)
        else:
            long = self.predictor.predict(keyed.get_column("input_smiles").to_list(), store)
        if self.class_name is not None:  # multiclass: one row per input, the chosen class's probability
            probability = long.get_column(f"p_{self.class_name}").cast(pl.Float64)
            return pl.DataFrame([probability.alias(f"pred_{self.name}")]), long.get_column("error").to_list()
        width = len(self.predictor.tasks)
        errors = long.get_column("error").gather_every(width).to_list()
        columns = []
        for prefix, source in (("pred", "prediction"), ("std", "std")):
            if source not in long.columns:
                continue
            matrix = long.get_column(source).cast(pl.Float64).to_numpy().reshape(keyed.height, width)
            columns += [pl.Series(self.column(prefix, task), matrix[:, self.predictor.tasks.index(task)]) for task in self.tasks]
        return pl.DataFrame(columns), errors


def read_candidates(path: str | Path, column: str) -> pl.DataFrame:
    """A candidate table: parquet/CSV/TSV via :func:`featurestore.io.read_table`, or a ``.smi`` file
    (whitespace-separated SMILES and optional name, no header) as columns ``column`` and ``name``."""
    path = Path(path)
    if path.suffix.lower() != ".smi":
        return read_table(path, [column])
    rows = [line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"input file has no rows: {path}")
    return pl.DataFrame({column: [r[0] for r in rows], "name": [r[1].strip() if len(r) > 1 else None for r in rows]},
                        schema={column: pl.String, "name": pl.String})


def score_molecules(
    smiles: Sequence[str], models: Sequence[RankingModel], store: FeatureStore,
    standardizer: Standardizer = Standardizer(), view: FeatureView = ECFP4, oracles: Sequence[Oracle] = (),
) -> pl.DataFrame:
    """One row per SMILES: ``input_smiles, inchikey, smiles``, predictions, ``max_tanimoto_<model>``,
    ``oracle_<name>`` (each oracle on the standardized molecule; null where it did not standardize),
    the medicinal-chemistry columns and ``error`` (standardization, then feature/prediction errors)."""
    smiles = list(smiles)
    keyed = store.standardize(smiles, standardizer).table
    valid_keys = keyed.filter(pl.col("error").is_null()).get_column("inchikey")
    valid = keyed.get_column("error").is_null().to_numpy()
    medchem = store.get(keyed.get_column("inchikey").fill_null("").to_list(), MEDCHEM)
    errors = keyed.select(pl.coalesce("error", medchem.get_column("error"))).to_series().to_list()
    columns = []
    if models:
        bits = fingerprint_matrix(store.get(valid_keys.to_list(), view))
        for model in models:
            predictions, prediction_errors = model.score(keyed, standardizer, store)
            errors = [e or p for e, p in zip(errors, prediction_errors)]
            similarity = np.full(len(smiles), np.nan)
            similarity[valid] = max_tanimoto(bits, model.training_bits)
            domain = pl.DataFrame([pl.Series(f"max_tanimoto_{model.name}", similarity).fill_nan(None)]).with_columns(
                (pl.col(f"max_tanimoto_{model.name}") >= model.min_similarity).alias(f"in_domain_{model.name}"))
            columns += [predictions, domain]
    if oracles:
        standardized = keyed.get_column("smiles").to_list()
        columns.append(pl.DataFrame([
            pl.Series(f"oracle_{oracle.name}", [None if s is None else oracle(s) for s in standardized], dtype=pl.Float64)
            for oracle in oracles
        ]))
    parts = [keyed.select("input_smiles", "inchikey", "smiles"), *columns, medchem.select(list(MEDCHEM_SCHEMA))]
    return pl.concat(parts, how="horizontal").with_columns(
        cs.float().fill_nan(None), pl.Series("error", errors, dtype=pl.String)
    )


def _extra_columns(table: pl.DataFrame, smiles_column: str, taken: set[str]) -> pl.DataFrame:
    """The input's other columns, renamed ``input_<name>`` where they clash with an output column."""
    extras = table.drop(smiles_column)
    return extras.rename({c: f"input_{c}" for c in extras.columns if c in taken})


def rank_candidates(
    table: pl.DataFrame, smiles_column: str, models: Sequence[RankingModel], score: RankingScore, store: FeatureStore,
    standardizer: Standardizer = Standardizer(), chunk_size: int = 5000, progress: bool = True,
    oracles: Sequence[Oracle] = (),
) -> pl.DataFrame:
    """Score and rank every row of ``table``: ``rank, input_row, input_smiles, smiles, inchikey``, the input's
    other columns, the score columns, ``d_<term>`` desirabilities, ``score`` and ``error``; best first."""
    require_columns(table, [smiles_column], "candidates")
    inputs = table.get_column(smiles_column).cast(pl.String).fill_null("")
    unique = inputs.unique(maintain_order=True).to_list()
    frames = []
    with tqdm(total=len(unique), desc="ranking", unit="mol", disable=not progress) as bar:
        for start in range(0, len(unique), chunk_size):
            chunk = unique[start:start + chunk_size]
            frames.append(score_molecules(chunk, models, store, standardizer, oracles=oracles))
            bar.update(len(chunk))
    scored = score(pl.concat(frames, how="vertical_relaxed"))
    rows = pl.DataFrame({"input_row": pl.int_range(len(inputs), eager=True), "input_smiles": inputs})
    ranked = rows.join(scored, on="input_smiles", how="left", maintain_order="left")
    ranked = ranked.sort(["score", "input_row"], descending=[True, False], nulls_last=True).with_columns(
        pl.int_range(1, ranked.height + 1).alias("rank")
    )
    extras = _extra_columns(table.with_row_index("input_row"), smiles_column, set(ranked.columns) - {"input_row"})
    ranked = ranked.join(extras, on="input_row", how="left", maintain_order="left")
    rest = [c for c in ranked.columns if c not in KEY_COLUMNS and c not in extras.columns and c != "error"]
    return ranked.select(*KEY_COLUMNS, *[c for c in extras.columns if c != "input_row"], *rest, "error")


def merge_rankings(parts: Sequence[Path], out: Path) -> pl.DataFrame:
    """Shard rankings (from :func:`rank_candidates`, ``input_row`` global) -> one ranking, streamed to ``out``.

    Same order as ranking everything at once: score descending (failed rows last), then input row.
    """
    ordered = (
        pl.scan_parquet(list(parts))
        .sort(["score", "input_row"], descending=[True, False], nulls_last=True)
        .with_columns(pl.int_range(1, pl.len() + 1).alias("rank"))
    )
    with atomic_path(out) as tmp:
        ordered.sink_parquet(tmp)
    return pl.read_parquet(out)


def csv_ready(table: pl.DataFrame) -> pl.DataFrame:
    """List columns joined with ``"; "`` and other nested columns as JSON text, so the table fits a CSV."""
    nested = [name for name, dtype in table.schema.items() if dtype.is_nested()]
    return table.with_columns(
        pl.col(name).cast(pl.List(pl.String)).list.join("; ") if isinstance(table.schema[name], pl.List)
        else pl.col(name).struct.json_encode()
        for name in nested
    )


def draw_top(ranked: pl.DataFrame, out_stem: Path, top_n: int = 24, per_row: int = 6,
             legend_column: str | None = None) -> tuple[Path, Path]:
    """PNG and SVG grids of the ``top_n`` best-ranked valid molecules, legends ``#rank [legend] score``."""
    top = ranked.filter(pl.col("score").is_not_null()).head(top_n)
    mols = [Chem.MolFromSmiles(s) for s in top.get_column("smiles")]
    names = top.get_column(legend_column).cast(pl.String).to_list() if legend_column in top.columns else [None] * top.height
    legends = [" ".join(filter(None, [f"#{rank}", (name or "")[:24], f"{score:.3f}"]))
               for rank, name, score in zip(top.get_column("rank"), names, top.get_column("score"))]
    options = {"molsPerRow": per_row, "subImgSize": (250, 250), "legends": legends}
    png, svg = out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")
    image = Draw.MolsToGridImage(mols, **options)
    with atomic_path(png) as tmp:
        image.save(tmp, format="PNG")
    write_text_atomic(svg, Draw.MolsToGridImage(mols, useSVG=True, **options))
    return png, svg


def write_ranking(ranked: pl.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """``ranked.parquet`` and ``ranked.csv`` in ``out_dir``."""
    parquet = write_parquet_atomic(ranked, out_dir / "ranked.parquet")
    csv = out_dir / "ranked.csv"
    with atomic_path(csv) as tmp:
        csv_ready(ranked).write_csv(tmp)
    return parquet, csv
