"""The resource recommendation job behind ``python -m recommend.resources`` (Hydra app).

One mode per run: ``query`` (free text), ``drug`` (drug_id, name or synonym),
``patient`` (drug and condition names, or a Eunomia ``person_id``) or ``eval=true`` (evaluation).
Writes into the run directory: ``ranked.parquet`` and ``ranked.csv`` (top-K resources
with the matched query words and keywords), or ``metrics.json`` and
``evaluation_tasks.parquet`` when evaluating; ``report.json`` (catalog ingest, query
text, drug text source, keywords used), ``ingest_errors.parquet`` for a user's catalog,
and ``run.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from featurestore.io import sha256_file, write_json_atomic, write_parquet_atomic
from featurestore.provenance import seed_everything, write_run_record
from recommend.resources.catalog import load_catalog
from recommend.resources.evaluate import evaluate_methods, evaluation_tasks
from recommend.resources.queries import drug_query, drug_texts, eunomia_patient, find_drug, patient_query
from recommend.resources.retrieval import Expansion, IndexConfig, ResourceIndex


def _mode(cfg: DictConfig) -> str:
    patient = cfg.patient
    chosen = [name for name, on in (
        ("query", cfg.query), ("drug", cfg.drug),
        ("patient", patient.drugs or patient.conditions or patient.person_id is not None),
        ("evaluate", cfg.eval),
    ) if on]
    if len(chosen) != 1:
        raise ValueError(f"give exactly one of query=, drug=, patient.*, eval=true (got {chosen or 'none'})")
    return chosen[0]


def query_text(cfg: DictConfig, mode: str) -> tuple[str, str, dict[str, Any]]:
    """The query text and context of a query/drug/patient run, and what they were built from."""
    if mode == "query":
        return str(cfg.query), "", {}
    if mode == "drug":
        texts, source = drug_texts(cfg.drugs.annotations)
        drug = find_drug(texts, str(cfg.drug))
        text, context = (drug_query(drug["name"], drug["synonyms"], drug["definition"], list(fields))
                         for fields in (cfg.drugs.fields, cfg.drugs.context_fields))
        return text, context, {"drug_id": drug["drug_id"], "drug_name": drug["name"], "drug_text_source": source}
    drugs, conditions = list(cfg.patient.drugs), list(cfg.patient.conditions)
    if cfg.patient.person_id is not None:
        drugs, conditions = eunomia_patient(int(cfg.patient.person_id))
    return patient_query(drugs, conditions), "", {"patient_drugs": drugs, "patient_conditions": conditions}


def load_or_build_index(catalog: pl.DataFrame, config: IndexConfig, files: list[Path],
                        cache: str | Path | None) -> tuple[ResourceIndex, bool]:
    """The index from ``cache`` when it was built from the same files and config, else built (and cached).

    Returns the index and whether it was read from the cache.
    """
    if not cache:
        return ResourceIndex.build(catalog, config), False
    cache = Path(cache)
    key = json.loads(json.dumps({"config": asdict(config), "files": {str(f): sha256_file(f) for f in files}}))
    stamp = cache / "fingerprint.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == key:
        return ResourceIndex.load(cache), True
    stamp.unlink(missing_ok=True)  # the folder is rewritten: never pair a new index with an old stamp
    index = ResourceIndex.build(catalog, config)
    index.save(cache)
    write_json_atomic(stamp, key)
    return index, False


def csv_table(table: pl.DataFrame) -> pl.DataFrame:
    """Lists joined with '; ' so the table fits a CSV."""
    return table.with_columns(pl.col(c).list.join("; ") for c, t in table.schema.items() if t == pl.List(pl.String))


def run_resources(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """The whole job (see the module docstring); returns ``{"mode", "report", "table" or "metrics"}``."""
    seed_everything(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = _mode(cfg)
    catalog, ingest, files = load_catalog(OmegaConf.to_container(cfg.catalog, resolve=True))
    methods = list(cfg.evaluation.methods) if mode == "evaluate" else [cfg.retriever]
    index_spec = OmegaConf.to_container(cfg.index, resolve=True)
    if "svd" not in methods:  # the embedding is fitted only when a method uses it
        index_spec["svd_components"] = 0
    start = time.perf_counter()
    index, reused = load_or_build_index(catalog, IndexConfig(**index_spec, seed=cfg.seed), files, cfg.index_cache)
    report: dict[str, Any] = {
        "mode": mode, "catalog": {"documents": catalog.height, "files": [str(f) for f in files]},
        "index_seconds": round(time.perf_counter() - start, 3), "index_reused": reused,
    }
    if ingest is not None:
        report["catalog"]["ingest"] = ingest.to_dict()
        write_parquet_atomic(ingest.bad_rows, out_dir / "ingest_errors.parquet")
    expansion = Expansion(**OmegaConf.to_container(cfg.expansion, resolve=True))
    result: dict[str, Any] = {"mode": mode, "report": report}
    if mode == "evaluate":
        texts, source = drug_texts(cfg.drugs.annotations)
        tasks = evaluation_tasks(texts, index, list(cfg.drugs.fields), cfg.evaluation.min_chars,
                                 list(cfg.drugs.context_fields))
        if cfg.evaluation.max_drugs is not None:
            tasks = tasks.head(cfg.evaluation.max_drugs)
        metrics = evaluate_methods(index, tasks, methods, list(cfg.evaluation.ks), cfg.evaluation.depth, expansion,
                                   cfg.drugs.context_weight)
        report |= {"drug_text_source": source, "evaluated_drugs": tasks.height}
        write_parquet_atomic(tasks.with_columns(n_relevant=pl.col("relevant").list.len()).drop("relevant"),
                             out_dir / "evaluation_tasks.parquet")
        write_json_atomic(out_dir / "metrics.json", metrics)
        result["metrics"] = metrics
    else:
        text, context, built_from = query_text(cfg, mode)
        scores_start = time.perf_counter()
        table = index.search(text, cfg.top_k, cfg.retriever, expansion, cfg.mesh_weight, context,
                             cfg.drugs.context_weight)
        report |= {"query": text, "context": context, **built_from,
                   "query_ms": round((time.perf_counter() - scores_start) * 1e3, 3)}
        write_parquet_atomic(table, out_dir / "ranked.parquet")
        csv_table(table).write_csv(out_dir / "ranked.csv")
        result["table"] = table
    write_json_atomic(out_dir / "report.json", report)
    write_run_record(out_dir, OmegaConf.to_container(cfg, resolve=True), cfg.seed, files)
    return result
