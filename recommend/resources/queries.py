"""Query text for a drug, a patient or free text. Drug queries never read MeSH.

A drug's query is built from its name, synonyms and ChEBI definition
(``drug_annotations``), or its name only when that file is absent: by default the name
is the query and the synonyms and definition its weighted context
(:meth:`recommend.resources.retrieval.ResourceIndex.scores`). :func:`drug_texts` keeps exactly the columns
``drug_id, name, synonyms, definition``; every MeSH column of the catalogs
(``mesh_ids``, ``mesh_tree_numbers``, ``mesh_actions``) is dropped before any query is
built, so MeSH, the evaluation's relevance labels, cannot leak into a query.

A patient's query is their ingredients and conditions: drug names given as clinical drug
concepts ("Acetaminophen 325 MG Oral Tablet") lose strengths, units, dose forms, pack
counts and brand names first (:func:`ingredient_names`), so BM25 matches the ingredient,
not "mg" and "tablet".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from featurestore.datasets import dataset_path, load_dataset

QUERY_FIELDS = ("name", "synonyms", "definition")
TEXT_COLUMNS = ("drug_id", "name", "synonyms", "definition")
# RxNorm clinical drug names: "[ingredient strength] / ... dose form", quantities in front
# ("1 ML", "12 HR"), packs "{28 (... Oral Tablet) } Pack [Brand]", names cut at 255 characters.
_BRAND = re.compile(r"\[[^\]]*(\]|$)")
_APPLICATION = re.compile(r"\bNDA\d+\b")
_PACK_COUNT = re.compile(r"\b\d+\s*\(")
_STRENGTH = re.compile(r"\b\d+(\.\d+)?\s*(MG|MCG|ML|HR|ACTUAT|DAY|UNT|MEQ|%)(/(MG|ML|HR|ACTUAT|DAY))?(?![a-z])",
                       re.IGNORECASE)
DOSE_FORM_WORDS = frozenset(
    "auto-injector buccal capsule cartridge chewable coated cream delayed disintegrating dose drops drug dry "
    "elixir emulsion enteric extended film foam gel granules implant inhalant inhaler injectable injection injector "
    "intrauterine jelly kit lotion lozenge medicated metered mucosal nasal ointment ophthalmic oral otic pack "
    "paste patch pen powder prefilled rectal release ring shampoo solution spray sublingual suppository suspension "
    "syringe syrup system tab tablet topical transdermal vaginal wafer".split())
"""Dose-form words stripped from the end of each ingredient part of a drug concept name."""


def drug_texts(annotations: str | Path | None = None, drugs: str | Path | None = None) -> tuple[pl.DataFrame, str]:
    """``drug_id, name, synonyms, definition`` per catalog drug and a note saying where they came from.

    ``annotations`` (default: the shipped ``drug_annotations`` file, if built) gives
    synonyms and definitions; without it the drug catalog (``drugs``) gives names only.
    """
    path = Path(annotations) if annotations else dataset_path("drug_annotations")
    if path.is_file():
        table = pl.read_parquet(path, columns=list(TEXT_COLUMNS))
        return table, f"name, synonyms and definition from {path}"
    catalog = pl.read_parquet(drugs, columns=["drug_id", "name"]) if drugs else load_dataset("drugs").select(
        "drug_id", "name")
    fallback = catalog.with_columns(
        synonyms=pl.lit([], dtype=pl.List(pl.String)), definition=pl.lit(None, dtype=pl.String)
    )
    return fallback, f"name only ({path} not found: no synonyms or definitions)"


def drug_query(name: str, synonyms: Sequence[str] | None, definition: str | None,
               fields: Sequence[str] = QUERY_FIELDS) -> str:
    """Query text from the chosen fields of a drug (``name``, ``synonyms``, ``definition``)."""
    unknown = set(fields) - set(QUERY_FIELDS)
    if unknown:
        raise ValueError(f"unknown drug query field(s) {sorted(unknown)}; use {list(QUERY_FIELDS)}")
    parts = [name] if "name" in fields else []
    if "synonyms" in fields:
        parts += list(synonyms or [])
    if "definition" in fields and definition:
        parts.append(definition)
    return " ".join(p for p in parts if p)


def drug_queries(drugs: pl.DataFrame, fields: Sequence[str] = QUERY_FIELDS,
                 context_fields: Sequence[str] = ()) -> pl.DataFrame:
    """``drug_id, name, query, context`` per drug (context: secondary text from ``context_fields``).

    Reads only name, synonyms and definition.
    """
    texts = drugs.select(TEXT_COLUMNS)  # the only columns a query may see
    rows = list(texts.iter_rows(named=True))
    queries = [drug_query(r["name"], r["synonyms"], r["definition"], fields) for r in rows]
    contexts = [drug_query(r["name"], r["synonyms"], r["definition"], context_fields) for r in rows]
    return texts.select("drug_id", "name", query=pl.Series(queries, dtype=pl.String),
                        context=pl.Series(contexts, dtype=pl.String))


def find_drug(drugs: pl.DataFrame, key: str) -> dict:
    """The drug row whose drug_id, name or synonym equals ``key`` (case-insensitive)."""
    wanted = key.strip().lower()
    match = drugs.filter(
        (pl.col("drug_id").str.to_lowercase() == wanted)
        | (pl.col("name").str.to_lowercase() == wanted)
        | pl.col("synonyms").list.eval(pl.element().str.to_lowercase() == wanted).list.any()
    )
    if match.is_empty():
        raise KeyError(f"no catalog drug has id, name or synonym {key!r}")
    return match.row(0, named=True)


def ingredient_names(drug_name: str) -> list[str]:
    """The ingredient names in a drug concept name (each once), without strengths, units, dose forms, packs or brands.

    "Acetaminophen 325 MG / Hydrocodone Bitartrate 7.5 MG Oral Tablet" -> ["Acetaminophen",
    "Hydrocodone Bitartrate"]; a plain ingredient name comes back as it is.
    """
    text = _STRENGTH.sub(" ", _PACK_COUNT.sub(" ", _APPLICATION.sub(" ", _BRAND.sub(" ", drug_name))))
    names = []
    for part in re.sub(r"[{}()]", " ", text).split("/"):
        words = part.split()
        while words and words[-1].lower() in DOSE_FORM_WORDS:
            words.pop()
        name = " ".join(words).strip(" ,")
        if name and name.lower() != "inert ingredients":  # placebo tablets of a pack
            names.append(name)
    return _distinct(names)


def _distinct(texts: Iterable[str]) -> list[str]:
    """Texts in first-seen order, case-insensitive duplicates left out."""
    first: dict[str, str] = {}
    for text in texts:
        first.setdefault(text.lower(), text)
    return list(first.values())


def patient_query(drug_names: Sequence[str], condition_names: Sequence[str]) -> str:
    """A patient's query: the ingredients of their drugs (:func:`ingredient_names`) and their conditions, each once."""
    return " ".join(_distinct([*(i for name in drug_names for i in ingredient_names(name)), *condition_names]))


def eunomia_patient(person_id: int) -> tuple[list[str], list[str]]:
    """Distinct drug and condition concept names of one Eunomia person (OMOP CDM tables)."""
    concepts = load_dataset("eunomia_concept").select("concept_id", "concept_name")

    def names(table: str, column: str) -> list[str]:
        rows = load_dataset(table).filter(pl.col("person_id") == person_id)
        joined = rows.join(concepts, left_on=column, right_on="concept_id", how="inner")
        return joined["concept_name"].unique(maintain_order=True).to_list()

    drugs = names("eunomia_drug_exposure", "drug_concept_id")
    conditions = names("eunomia_condition_occurrence", "condition_concept_id")
    if not drugs and not conditions:
        raise KeyError(f"Eunomia person {person_id} has no drug exposure or condition")
    return drugs, conditions
