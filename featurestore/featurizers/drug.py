"""Drug-level content views keyed by ``drug_id``, and drug-keyed molecule views.

The featurizers read ``data/drug_annotations.parquet`` (and ``atc_index.parquet``) by
drug_id, so they need no entity registration: the key is the input. A ``data`` parameter,
filled in with a digest of those files, is part of the view id, so rebuilt data files
give new views instead of mixing rows.

- ``drug_atc``: multi-hot over ATC codes at the chosen levels (``vocabulary`` names the columns).
- ``drug_classes``: multi-hot over FDA EPC / MoA classes (``"EPC: name"``, ``"MoA: name"``).
- ``drug_text``: one text document per drug (name, synonyms, definition, roles, MeSH actions)
  for BM25 / TF-IDF fitted downstream.
- ``drug_summary``: ``keywords`` (top TF-IDF terms of the drug's descriptive text against the
  whole catalog) and a template ``summary`` sentence (classes, ATC, ChEBI definition and roles).

Structure views come from the molecule store through the drug's SMILES and InChIKey
(:func:`drug_feature_table`), so a recommender uses the same ECFP as the GNNs.
:func:`build_drug_views` builds all of them once and times each.
"""

from __future__ import annotations

import copy
import hashlib
import re
import time
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from featurestore.datasets import dataset_path, load_dataset
from featurestore.featurizers.base import FeatureView, FeaturizationError, Featurizer, register_featurizer
from featurestore.featurizers.molecule import array_column
from featurestore.io import sha256_file

if TYPE_CHECKING:
    from featurestore.store import FeatureStore, MaterializeStats

ATC_LEVELS = (1, 2, 3, 4)
CLASS_KINDS = ("EPC", "MoA")
TEXT_FIELDS = ("name", "synonyms", "definition", "chebi_roles", "mesh_actions")
# Labels of the text document's parts (the name stands alone on the first line).
_TEXT_LABELS = {
    "synonyms": "Synonyms", "definition": "Definition", "chebi_roles": "Roles", "mesh_actions": "MeSH actions",
    "epc_classes": "Established pharmacologic classes", "moa_classes": "Mechanisms of action",
    "atc_codes": "ATC codes",
}
DRUG_VIEWS: dict[str, FeatureView] = {
    "drug_atc": FeatureView("drug_atc"),
    "drug_classes": FeatureView("drug_classes"),
    "drug_text": FeatureView("drug_text"),
    "drug_ecfp": FeatureView("ecfp", {"radius": 2, "n_bits": 2048}),
}
"""The drug content views :func:`build_drug_views` builds by default (ECFP4 bits, as the GNN configs use)."""


@lru_cache(maxsize=8)
def _read(path: Path, mtime_ns: int, size: int) -> tuple[pl.DataFrame, str]:
    """A data file and its sha256, cached while the file is unchanged."""
    return pl.read_parquet(path), sha256_file(path)


def _dataset(name: str) -> tuple[pl.DataFrame, str]:
    path = dataset_path(name)
    if not path.is_file():
        load_dataset(name)  # raises FileNotFoundError with the build command
    stat = path.stat()
    return _read(path, stat.st_mtime_ns, stat.st_size)


class DrugAnnotationFeaturizer(Featurizer[str, Any]):
    """Base: features of a drug_id looked up in ``drug_annotations`` (and the ``datasets`` it also reads).

    ``data`` is a digest of those files; it is filled in when not given, and a view whose
    ``data`` no longer matches the files fails rather than mixing old and new rows.
    """

    entity = "drug"
    input_column = None
    datasets: ClassVar[tuple[str, ...]] = ("drug_annotations",)

    def __init__(self, data: str | None = None, **params: Any) -> None:
        frames, digests = zip(*(_dataset(name) for name in self.datasets))
        current = hashlib.sha256("".join(digests).encode()).hexdigest()[:12]
        if data is not None and data != current:
            raise ValueError(
                f"{self.name}: view built from data {data!r}, but {', '.join(self.datasets)} now give "
                f"{current!r}; leave 'data' out to use the current files"
            )
        super().__init__(**params, data=current)
        self.frames = dict(zip(self.datasets, frames))

    @cached_property
    def rows(self) -> dict[str, dict[str, Any]]:
        """Annotation rows by drug_id (built on first lookup: views build featurizers just for ids and schemas)."""
        annotations = self.frames["drug_annotations"]
        return dict(zip(annotations.get_column("drug_id").to_list(), annotations.iter_rows(named=True)))

    def __call__(self, item: str) -> Any:
        row = self.rows.get(item)
        if row is None:
            raise FeaturizationError(f"drug_id {item!r} is not in drug_annotations")
        return self.features(row)

    @abstractmethod
    def features(self, row: dict[str, Any]) -> Any:
        """Features of one annotation row."""


class MultiHotFeaturizer(DrugAnnotationFeaturizer):
    """Base: one ``Array(UInt8, len(vocabulary))`` column ``column``; ``labels(row)`` are the set entries."""

    column: ClassVar[str]
    vocabulary: list[str]

    def schema(self) -> dict[str, pl.DataType]:
        return {self.column: pl.Array(pl.UInt8, len(self.vocabulary))}

    @abstractmethod
    def labels(self, row: dict[str, Any]) -> Iterable[str]:
        """The vocabulary entries this drug has."""

    def features(self, row: dict[str, Any]) -> np.ndarray:
        out = np.zeros(len(self.vocabulary), dtype=np.uint8)
        out[[self.index[label] for label in self.labels(row) if label in self.index]] = 1
        return out

    def to_columns(self, values: list[np.ndarray | None]) -> dict[str, pl.Series]:
        return {self.column: array_column(self.column, values, len(self.vocabulary), np.uint8)}

    def _set_vocabulary(self, vocabulary: Iterable[str]) -> None:
        self.vocabulary = sorted(set(vocabulary))
        self.index = {label: i for i, label in enumerate(self.vocabulary)}


@register_featurizer
class DrugATCFeaturizer(MultiHotFeaturizer):
    """Multi-hot over ATC codes of the chosen ``levels`` (1-4): the atc_index codes plus any catalog code it lacks."""

    name = "drug_atc"
    column = "atc"
    datasets = ("drug_annotations", "atc_index")

    def __init__(self, levels: Sequence[int] = ATC_LEVELS, data: str | None = None) -> None:
        levels = sorted({int(level) for level in levels})
        if not levels or not set(levels) <= set(ATC_LEVELS):
            raise ValueError(f"drug_atc: levels must be a non-empty subset of {list(ATC_LEVELS)}, got {levels}")
        super().__init__(data=data, levels=levels)
        index = self.frames["atc_index"].filter(pl.col("level").is_in(levels)).get_column("code")
        lengths = {len(code) for code in index}
        catalog = self.frames["drug_annotations"].get_column("atc_codes").explode().drop_nulls()
        self._set_vocabulary([*index, *(code for code in catalog if len(code) in lengths)])

    def labels(self, row: dict[str, Any]) -> Iterable[str]:
        return row["atc_codes"]


@register_featurizer
class DrugClassFeaturizer(MultiHotFeaturizer):
    """Multi-hot over the FDA pharmacologic classes of the chosen ``kinds`` (EPC, MoA) found in the catalog."""

    name = "drug_classes"
    column = "classes"

    def __init__(self, kinds: Sequence[str] = CLASS_KINDS, data: str | None = None) -> None:
        if not kinds or not set(kinds) <= set(CLASS_KINDS):
            raise ValueError(f"drug_classes: kinds must be a non-empty subset of {list(CLASS_KINDS)}, got {list(kinds)}")
        kinds = [kind for kind in CLASS_KINDS if kind in kinds]
        super().__init__(data=data, kinds=kinds)
        self.kinds = kinds
        annotations = self.frames["drug_annotations"]
        self._set_vocabulary(
            label for row in annotations.iter_rows(named=True) for label in self.labels(row)
        )

    def labels(self, row: dict[str, Any]) -> Iterable[str]:
        return [f"{kind}: {name}" for kind in self.kinds for name in row[f"{kind.lower()}_classes"]]


@register_featurizer
class DrugTextFeaturizer(DrugAnnotationFeaturizer):
    """The drug's text document: the chosen annotation ``fields``, one labelled line each, empty ones left out."""

    name = "drug_text"

    def __init__(self, fields: Sequence[str] = TEXT_FIELDS, data: str | None = None) -> None:
        fields = list(fields)
        unknown = [f for f in fields if f != "name" and f not in _TEXT_LABELS]
        if not fields or unknown:
            raise ValueError(f"drug_text: unknown field(s) {unknown}; choose from {['name', *_TEXT_LABELS]}")
        super().__init__(data=data, fields=fields)
        self.fields = fields

    def schema(self) -> dict[str, pl.DataType]:
        return {"text": pl.String}

    def features(self, row: dict[str, Any]) -> dict[str, str]:
        lines = []
        for field in self.fields:
            value = row[field]
            if not value:
                continue
            text = "; ".join(value) if isinstance(value, list) else value
            lines.append(text if field == "name" else f"{_TEXT_LABELS[field]}: {text}")
        return {"text": "\n".join(lines)}


# Boilerplate of ChEBI definitions and ATC names: frequent words that say nothing about a drug.
_KEYWORD_STOP_WORDS = frozenset({
    "acid", "agent", "agents", "attached", "based", "bearing", "carrying", "class", "combination", "combinations",
    "compound", "consisting", "containing", "contains", "derivative", "derivatives", "drug", "drugs", "excl", "form",
    "formula", "group", "groups", "having", "member", "obtained", "other", "plain", "position", "positions",
    "preparations", "products", "related", "replaced", "respectively", "resulting", "role", "structure",
    "substituent", "substituted", "use", "used", "various",
})
_KEYWORD_WORD = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_LOCANT = re.compile(r"[a-z]\d+|.*-\d+(-.*)?")  # "c17", "amino-2": positions in a structure, not keywords
_PHRASE_BREAK = re.compile(r"[\n;,.:()\[\]]")
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]])\. (?=[A-Z])")


def _keyword_terms(document: str) -> list[str]:
    """Words and two-word phrases of a document; phrases never cross a field or punctuation break."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    terms = []
    for phrase in _PHRASE_BREAK.split(document.lower()):
        words = [w for w in _KEYWORD_WORD.findall(phrase) if len(w) > 2 and w not in ENGLISH_STOP_WORDS
                 and w not in _KEYWORD_STOP_WORDS and not _LOCANT.fullmatch(w)]
        terms += words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return terms


def _distinct_terms(ranked: Iterable[str], n: int) -> list[str]:
    """The first ``n`` terms that repeat no word, and no hyphen part or plural, of a term already chosen."""
    words: set[str] = set()
    parts: set[str] = set()
    chosen = []
    for term in ranked:
        term_words = set(term.split())
        term_parts = {p.removesuffix("s") for p in re.split(r"[ -]", term)}
        if term_words & words or term_parts <= parts:
            continue
        chosen.append(term)
        words |= term_words
        parts |= term_parts
        if len(chosen) == n:
            break
    return chosen


@register_featurizer
class DrugSummaryFeaturizer(DrugAnnotationFeaturizer):
    """Keywords and a one- or two-sentence summary of a drug, generated from its annotation fields.

    ``keywords``: the ``n_keywords`` highest TF-IDF terms (words and two-word phrases,
    fitted on every catalog drug's document, terms in at least 2 drugs, sublinear tf,
    ties by term) of the drug's descriptive text: ChEBI definition and roles, MeSH
    actions, FDA EPC / MoA classes and the names of its own ATC classes. Names and
    synonyms are left out: a brand name is unique to its drug, so TF-IDF would rank it
    first, yet it tells nothing a similar drug could share. A term repeating a word of
    a better one is skipped.

    ``summary`` (template, extractive): "Atorvastatin — HMG-CoA Reductase Inhibitor [EPC];
    Hydroxymethylglutaryl-CoA Reductase Inhibitors [MoA] (ATC C10AA HMG CoA reductase
    inhibitors). ChEBI: <first sentence of the definition>; roles: <up to 3>." Null when
    the drug has none of these fields. The ATC classes are the drug's own: level-4 codes
    of the WHO level-5 entries named like the drug (atorvastatin: C10AA, not the
    combination classes C10BA / C10BX it is also listed in); failing that, its level-4
    codes whose names do not say "combination" (or, when all do, every level-4 code).

    With the shipped data, 2,531 of the 2,845 catalog drugs get a summary (the others have
    a name and synonyms only) and 2,223 get at least 3 keywords (2,514 at least one).
    """

    name = "drug_summary"
    datasets = ("drug_annotations", "atc_index")

    def __init__(self, n_keywords: int = 8, data: str | None = None) -> None:
        if n_keywords < 1:
            raise ValueError(f"drug_summary: n_keywords must be >= 1, got {n_keywords}")
        super().__init__(data=data, n_keywords=int(n_keywords))
        self.n_keywords = int(n_keywords)

    def schema(self) -> dict[str, pl.DataType]:
        return {"keywords": pl.List(pl.String), "summary": pl.String}

    @cached_property
    def atc_index(self) -> tuple[dict[str, str], dict[str, set[str]]]:
        """ATC code -> name, and lower-cased level-5 substance name -> its level-4 codes."""
        index = self.frames["atc_index"]
        substances: dict[str, set[str]] = {}
        for code, name in index.filter(pl.col("level") == 5).select("code", "name").iter_rows():
            substances.setdefault(name.lower(), set()).add(code[:5])
        return dict(index.select("code", "name").iter_rows()), substances

    def own_atc(self, row: dict[str, Any]) -> list[str]:
        """The drug's own level-4 ATC codes (see the class docstring), sorted."""
        names, substances = self.atc_index
        level4 = [code for code in row["atc_codes"] if len(code) == 5]
        own = {c for name in [row["name"].lower(), *row["synonyms"]] for c in substances.get(name, ()) if c in level4}
        return sorted(own) or [c for c in level4 if "combination" not in names.get(c, "").lower()] or level4

    def document(self, row: dict[str, Any]) -> str:
        """The drug's descriptive text, one field entry a line (the keyword corpus document)."""
        names = self.atc_index[0]
        classes = sorted({code[:n] for code in self.own_atc(row) for n in (3, 4, 5)})
        return "\n".join([row["definition"] or "", *row["chebi_roles"], *row["mesh_actions"], *row["epc_classes"],
                          *row["moa_classes"], *(names.get(code, "") for code in classes)])

    @cached_property
    def keyword_table(self) -> dict[str, list[str]]:
        """drug_id -> keywords, from one TF-IDF fit over every annotated drug."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        ids = list(self.rows)
        vectorizer = TfidfVectorizer(analyzer=_keyword_terms, min_df=2, sublinear_tf=True)
        matrix = vectorizer.fit_transform([self.document(self.rows[i]) for i in ids]).tocsr()
        terms = vectorizer.get_feature_names_out()
        table = {}
        for position, drug_id in enumerate(ids):
            row = matrix[position]
            order = np.lexsort((terms[row.indices], -row.data))  # by weight, then term: deterministic
            table[drug_id] = _distinct_terms(terms[row.indices[order]].tolist(), self.n_keywords)
        return table

    def summary(self, row: dict[str, Any]) -> str | None:
        """The template summary of one annotation row (None when it has nothing but a name)."""
        names = self.atc_index[0]
        classes = [f"{c} [EPC]" for c in row["epc_classes"][:2]] + [f"{c} [MoA]" for c in row["moa_classes"][:2]]
        atc = ", ".join(f"{code} {names[code]}" if code in names else code for code in self.own_atc(row)[:3])
        definition = _SENTENCE_END.split(row["definition"] or "")[0].strip().rstrip(".")
        if not (classes or atc or definition or row["chebi_roles"]):
            return None
        first = row["name"] + (" — " + "; ".join(classes) if classes else "") + (f" (ATC {atc})" if atc else "")
        chebi = "; ".join(filter(None, [definition, "roles: " + ", ".join(row["chebi_roles"][:3])
                                        if row["chebi_roles"] else ""]))
        return f"{first}." + (f" ChEBI: {chebi}." if chebi else "")

    def features(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"keywords": self.keyword_table[row["drug_id"]], "summary": self.summary(row)}


def drug_features_with_stats(
    store: FeatureStore, view: FeatureView, drug_ids: Iterable[str]
) -> tuple[pl.DataFrame, MaterializeStats]:
    """Like :func:`drug_feature_table` for the given ``drug_ids``, also returning what the store did."""
    drug_ids = list(drug_ids)
    if view.entity == "drug":
        # Drug views are dictionary lookups: starting worker processes costs more than the work.
        inline = copy.copy(store)
        inline.n_jobs = 1
        return inline.get_with_stats(drug_ids, view)
    if view.entity != "molecule":
        raise ValueError(f"view {view.id}: entity {view.entity!r} cannot be keyed by drug (molecule or drug only)")
    catalog = load_dataset("drugs").select("drug_id", "smiles")
    request = pl.DataFrame({"drug_id": pl.Series(drug_ids, dtype=pl.String)}).with_row_index("_order")
    request = request.join(catalog, on="drug_id", how="left")
    known = request.filter(pl.col("smiles").is_not_null())
    keyed = store.standardize(known.get_column("smiles").to_list()).table
    features, stats = store.get_with_stats(keyed.get_column("inchikey").drop_nulls().unique().to_list(), view)
    rows = (
        pl.concat([known.select("_order", "drug_id"), keyed.select("inchikey", pl.col("error").alias("_key_error"))],
                  how="horizontal")
        .join(features, on="inchikey", how="left")
        .with_columns(pl.coalesce("_key_error", "error").alias("error"))
        .drop("_key_error")
    )
    unknown = request.filter(pl.col("smiles").is_null()).select(
        "_order", "drug_id", pl.format("drug_id '{}' is not in the drug catalog", "drug_id").alias("error")
    )
    table = pl.concat([rows, unknown], how="diagonal_relaxed").sort("_order").drop("_order")
    return table, stats


def drug_feature_table(
    store: FeatureStore, view: FeatureView, drug_ids: Iterable[str] | None = None
) -> pl.DataFrame:
    """A view's features keyed by ``drug_id``, one row per requested drug (default: the whole catalog).

    Drug views are read by drug_id. Molecule views (``ecfp``...) go through the molecule
    store: the drug's catalog SMILES is keyed by the store's standardizer and the view is
    read by that InChIKey, so the rows are the ones the GNNs use; the table then has an
    ``inchikey`` column. A drug_id outside the catalog, or a SMILES that fails, is a row
    with null features and the reason in ``error``.
    """
    ids = load_dataset("drugs").get_column("drug_id").to_list() if drug_ids is None else list(drug_ids)
    return drug_features_with_stats(store, view, ids)[0]


def build_drug_views(
    store: FeatureStore, views: dict[str, FeatureView] | None = None, drug_ids: Iterable[str] | None = None
) -> pl.DataFrame:
    """Build every drug content view once for the catalog; one row per view with what was done and the seconds.

    Columns: name, view (id), entity, keys, reused, computed, errors, seconds. A second
    call computes nothing (every key is stored).
    """
    ids = load_dataset("drugs").get_column("drug_id").to_list() if drug_ids is None else list(drug_ids)
    rows = []
    for name, view in (DRUG_VIEWS if views is None else views).items():
        start = time.perf_counter()
        table, stats = drug_features_with_stats(store, view, ids)
        rows.append(
            {"name": name, "view": view.id, "entity": view.entity, "keys": stats.requested, "reused": stats.reused,
             "computed": stats.computed, "errors": int(table.get_column("error").is_not_null().sum()),
             "seconds": time.perf_counter() - start}
        )
    return pl.DataFrame(rows, schema={"name": pl.String, "view": pl.String, "entity": pl.String, "keys": pl.Int64,
                                      "reused": pl.Int64, "computed": pl.Int64, "errors": pl.Int64,
                                      "seconds": pl.Float64})
