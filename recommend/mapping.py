"""Map source drug codes (OMOP concepts, free-text names, catalog ids) to catalog items.

Items are catalog drugs (``ingredient``: the DrugBank ``drug_id``) or ATC classes of
the catalog's codes (``atc1`` .. ``atc4``; the catalog carries level-4 codes only, so
there is no level 5: use ``ingredient``). Every code that maps to nothing is counted
with its reason and its number of events; nothing is dropped silently.

Name matching, in order (the first step that finds a unique drug wins; the step is
recorded as the ``method``): exact lower-cased catalog name, exact synonym, the same
with spaces and hyphens removed ("ethinyl estradiol" = "ethinylestradiol"), an alias
(US adopted names that differ from the catalog's INN, e.g. norethindrone →
norethisterone), a unique catalog name that extends the text ("medroxyprogesterone" →
"medroxyprogesterone acetate"). Free text (MIMIC ``drug``, clinical drug concept names)
is split into ingredients on " / " and each part is also searched for the longest
word n-gram that names a drug ("Sodium Chloride 0.9% Flush" → sodium chloride).

NDC items (MIMIC-IV ``ndc`` with the ``drug`` text, as ``NDC|drug``) map through the FDA NDC
directory (dataset ``ndc_ingredients``: package NDC → substances → catalog drugs; a substance
it left unmatched is tried with :meth:`DrugCatalog.match_name`) and fall back to the drug text
when the NDC is missing, unknown or has no catalog substance; the ``method`` says which.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from featurestore.datasets import load_dataset
from featurestore.datasets.clinical import normalize_ndc
from featurestore.datasets.drug_content import SALT_WORDS

# ATC level -> code length in characters (A, A01, A01A, A01AB).
ATC_LENGTH = {"atc1": 1, "atc2": 3, "atc3": 4, "atc4": 5}
GRANULARITIES = ("ingredient", *ATC_LENGTH)
# RxNorm (US adopted) names whose catalog (INN) name is neither a name nor a synonym there.
DEFAULT_ALIASES = {
    "norethindrone": "norethisterone",
    "alendronate": "alendronic acid",
    "vitamin b 12": "cyanocobalamin",
}
MAX_NGRAM = 5
TOP_UNMAPPED = 20
NDC_SEPARATOR = "|"  # NDC items are "NDC|drug text"; an NDC holds digits and dashes only
_SQUASH = re.compile(r"[\s\-]+")
_WORD = re.compile(r"[a-z][a-z0-9\-']*")


def _squash(text: str) -> str:
    return _SQUASH.sub("", text)


@dataclass(frozen=True)
class Match:
    """Catalog drugs found for one text, how, and the parts that found none."""

    drug_ids: tuple[str, ...]
    method: str | None
    unmatched: tuple[str, ...] = ()
    reason: str | None = None


class DrugCatalog:
    """Name/synonym lookup and item tables over the approved-drug catalog (``drugs`` dataset)."""

    def __init__(self, drugs: pl.DataFrame, aliases: Mapping[str, str] | None = None) -> None:
        self.drugs = drugs
        self.aliases = {k.lower(): v.lower() for k, v in (DEFAULT_ALIASES if aliases is None else aliases).items()}
        self._index: dict[str, dict[str, set[str]]] = {m: defaultdict(set) for m in ("name", "synonym", "squashed")}
        self._names: list[tuple[str, str]] = []
        for drug_id, name, synonyms in drugs.select("drug_id", "name", "synonyms").iter_rows():
            lowered = name.lower()
            self._names.append((lowered, drug_id))
            self._index["name"][lowered].add(drug_id)
            for text in [lowered, *(synonyms or [])]:
                self._index["synonym"][text].add(drug_id)
                self._index["squashed"][_squash(text)].add(drug_id)
        self.ids = frozenset(drugs["drug_id"])

    def match_name(self, text: str) -> Match:
        """Catalog drug for one ingredient name (no n-gram search)."""
        text = " ".join(text.lower().split())
        ambiguous: set[str] = set()
        for candidate, via_alias in ((text, False), (self.aliases.get(text), True)):
            if candidate is None:
                continue
            for method, key in (("name", candidate), ("synonym", candidate), ("squashed", _squash(candidate))):
                found = self._index[method].get(key, set())
                if len(found) == 1:
                    return Match(tuple(found), "alias" if via_alias else method)
                ambiguous |= found
        extended = {d for name, d in self._names if name.startswith(text + " ")}
        if len(extended) == 1:
            return Match(tuple(extended), "extension")
        ambiguous |= extended
        reason = f"ambiguous: {', '.join(sorted(ambiguous))}" if ambiguous else "no catalog name or synonym"
        return Match((), None, (text,), reason)

    def match_text(self, text: str) -> Match:
        """Catalog drugs for free text that may name several ingredients and doses."""
        ids: list[str] = []
        methods, unmatched = set(), []
        for part in (p for p in text.split(" / ") if p.strip()):
            match = self.match_name(part)
            if not match.drug_ids:
                match = self._longest_ngram(part)
            if match.drug_ids:
                ids += [d for d in match.drug_ids if d not in ids]
                methods.add(match.method)
            else:
                unmatched.append(part.strip().lower())
        if not ids:
            return Match((), None, tuple(unmatched), "no catalog name or synonym in the text")
        return Match(tuple(ids), "+".join(sorted(methods)), tuple(unmatched))

    def _longest_ngram(self, text: str) -> Match:
        words = _WORD.findall(text.lower())
        for n in range(min(MAX_NGRAM, len(words)), 0, -1):
            for i in range(len(words) - n + 1):
                gram = " ".join(words[i : i + n])
                if len(gram) < 4:  # short tokens ("mg", "iv") name no drug
                    continue
                for index in ("name", "synonym"):
                    found = self._index[index].get(gram, set())
                    if len(found) == 1:
                        return Match(tuple(found), "ngram")
        return Match((), None, (text.lower(),), "no catalog name or synonym in the text")

    def items(self, granularity: str) -> pl.DataFrame:
        """The item vocabulary (every catalog item, fixed order): item, name, atc."""
        _check_granularity(granularity)
        if granularity == "ingredient":
            return self.drugs.select(
                item=pl.col("drug_id"), name=pl.col("name"), atc=pl.col("atc_codes").list.join(",")
            )
        codes = self.drug_items(granularity)["item"].unique().sort()
        return pl.DataFrame({"item": codes, "name": codes, "atc": codes})

    def drug_items(self, granularity: str) -> pl.DataFrame:
        """drug_id -> item (several rows for a drug in several ATC classes)."""
        _check_granularity(granularity)
        if granularity == "ingredient":
            return self.drugs.select("drug_id", item=pl.col("drug_id"))
        return (
            self.drugs.select("drug_id", item=pl.col("atc_codes"))
            .explode("item")
            .drop_nulls("item")
            .with_columns(pl.col("item").str.slice(0, ATC_LENGTH[granularity]))
            .unique(maintain_order=True)
        )


def _check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        level5 = " (the catalog holds ATC level-4 codes only; use ingredient)" if granularity == "atc5" else ""
        raise ValueError(f"unknown granularity {granularity!r}{level5}; use one of {GRANULARITIES}")


@dataclass
class MappingReport:
    """Coverage of the code → item mapping."""

    granularity: str
    item_kind: str
    codes: int
    codes_mapped: int
    events: int
    events_mapped: int
    items_in_catalog: int
    items_used: int
    methods: dict[str, int]
    unmapped: pl.DataFrame = field(repr=False)  # code, name, events, reason
    unmatched_parts: pl.DataFrame = field(repr=False)  # part, events (of codes mapped in part)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary with the most frequent unmapped codes."""
        return {
            "granularity": self.granularity, "item_kind": self.item_kind, "codes": self.codes,
            "codes_mapped": self.codes_mapped, "events": self.events, "events_mapped": self.events_mapped,
            "events_mapped_pct": round(100 * self.events_mapped / max(self.events, 1), 2),
            "items_in_catalog": self.items_in_catalog, "items_used": self.items_used,
            "methods": self.methods, "unmapped_codes": self.codes - self.codes_mapped,
            "top_unmapped": self.unmapped.head(TOP_UNMAPPED).to_dicts(),
            "unmatched_ingredients_of_mapped_codes": self.unmatched_parts.head(TOP_UNMAPPED).to_dicts(),
        }


def _omop_texts(codes: Iterable[str], vocabulary: Mapping[str, pl.DataFrame]) -> dict[str, tuple[str, list[str]]]:
    """code -> (concept name, ingredient names from CONCEPT_ANCESTOR; empty when unknown)."""
    concept = vocabulary.get("concept")
    if concept is None:
        return {}
    concept = concept.with_columns(pl.col("concept_id").cast(pl.String))
    names = dict(concept.select("concept_id", "concept_name").iter_rows())
    ingredients: dict[str, list[str]] = defaultdict(list)
    for cid, name, cls in concept.select("concept_id", "concept_name", "concept_class_id").iter_rows():
        if cls == "Ingredient":
            ingredients[cid].append(name)
    ancestor = vocabulary.get("concept_ancestor")
    if ancestor is not None:
        ingredient_names = concept.filter(pl.col("concept_class_id") == "Ingredient").select(
            ancestor_concept_id="concept_id", ingredient="concept_name"
        )
        pairs = (
            ancestor.select(pl.col("ancestor_concept_id", "descendant_concept_id").cast(pl.Int64).cast(pl.String))
            .filter(pl.col("ancestor_concept_id") != pl.col("descendant_concept_id"))
            .join(ingredient_names, on="ancestor_concept_id")
            .sort("descendant_concept_id", "ingredient")
        )
        for descendant, ingredient in pairs.select("descendant_concept_id", "ingredient").iter_rows():
            ingredients[descendant].append(ingredient)
    return {code: (names[code], ingredients.get(code, [])) for code in codes if code in names}


def _resolve(codes: list[str], kind: str, catalog: DrugCatalog, vocabulary: Mapping[str, pl.DataFrame]) -> list[dict]:
    """One row per code: name, drug_ids, method, unmatched parts, reason."""
    rows = []
    omop = _omop_texts(codes, vocabulary) if kind == "omop_concept" else {}
    directory = _ndc_directory(codes, vocabulary.get("ndc")) if kind == "ndc" else {}
    for code in codes:
        name = code
        if kind == "drug_id":
            match = Match((code,), "drug_id") if code in catalog.ids else Match((), None, reason="not a catalog drug_id")
        elif kind == "name":
            match = catalog.match_text(code)
        elif kind == "omop_concept":
            if code not in omop:
                reason = "concept not in CONCEPT table" if "concept" in vocabulary else "no CONCEPT table given"
                match = Match((), None, reason=reason)
            else:
                name, ingredients = omop[code]
                match = _match_ingredients(catalog, ingredients) if ingredients else catalog.match_text(name)
        elif kind == "ndc":
            name, match = _match_ndc(code, catalog, directory)
        else:
            raise ValueError(f"unknown item kind {kind!r}")
        rows.append({"code": code, "name": name, "match": match})
    return rows


def _ndc_directory(codes: list[str], table: pl.DataFrame | None) -> dict[str, tuple[list[str], list[str | None]]]:
    """Normalized NDC -> (substances, catalog drug_ids or None) for the NDCs among ``NDC|drug`` codes."""
    wanted = {ndc for code in codes if (ndc := normalize_ndc(code.partition(NDC_SEPARATOR)[0]))}
    table = load_dataset("ndc_ingredients") if table is None else table
    rows = table.filter(pl.col("ndc").is_in(sorted(wanted))).select("ndc", "substances", "drug_ids")
    return {ndc: (substances, drug_ids) for ndc, substances, drug_ids in rows.iter_rows()}


def _substance_drug(substance: str, catalog: DrugCatalog) -> str | None:
    """The catalog drug of an FDA substance name the directory left unmatched, by the catalog's aliases
    and extensions, with and without trailing salt words (ALENDRONATE SODIUM -> alendronic acid)."""
    words = substance.lower().split()
    while words:
        match = catalog.match_name(" ".join(words))
        if match.drug_ids:
            return match.drug_ids[0]
        if words[-1] not in SALT_WORDS:
            return None
        words = words[:-1]
    return None


def _match_ndc(
    code: str, catalog: DrugCatalog, directory: Mapping[str, tuple[list[str], list[str | None]]]
) -> tuple[str, Match]:
    """(drug text, match) of an ``NDC|drug`` code: by the NDC's substances, else by the drug text.

    Methods: ``ndc``, or ``name after <no NDC | malformed NDC | unknown NDC | NDC without catalog
    substance>: <name method>``; an unmapped code's reason gives both failures.
    """
    raw, _, text = code.partition(NDC_SEPARATOR)
    ndc = normalize_ndc(raw)
    if ndc is None:
        category = "no NDC" if not raw.strip().strip("0") else "malformed NDC"
        why = category if category == "no NDC" else f"malformed NDC {raw!r}"
    elif ndc not in directory:
        category, why = "unknown NDC", f"NDC {ndc} not in the FDA NDC directory"
    else:
        substances, drug_ids = directory[ndc]
        found = [d if d in catalog.ids else _substance_drug(s, catalog) for s, d in zip(substances, drug_ids, strict=True)]
        ids = tuple(dict.fromkeys(d for d in found if d is not None))
        if ids:
            unmatched = tuple(s.lower() for s, d in zip(substances, found, strict=True) if d is None)
            return text, Match(ids, "ndc", unmatched)
        category = "NDC without catalog substance"
        why = f"NDC {ndc} substances not in catalog ({', '.join(substances).lower()})"
    match = catalog.match_text(text) if text.strip() else Match((), None, reason="no drug text")
    if match.drug_ids:
        return text, Match(match.drug_ids, f"name after {category}: {match.method}", match.unmatched)
    return text, Match((), None, match.unmatched, f"{why}; drug text: {match.reason}")


def _match_ingredients(catalog: DrugCatalog, ingredients: list[str]) -> Match:
    matches = [catalog.match_name(i) for i in ingredients]
    ids = tuple(dict.fromkeys(d for m in matches for d in m.drug_ids))
    unmatched = tuple(u for m in matches for u in m.unmatched)
    if not ids:
        return Match((), None, unmatched, f"ingredient(s) not in catalog: {', '.join(unmatched)}")
    methods = sorted({f"ingredient_{m.method}" for m in matches if m.method})
    return Match(ids, "+".join(methods), unmatched)


def map_events(
    events: pl.DataFrame, item_kind: str, catalog: DrugCatalog, granularity: str = "ingredient",
    vocabulary: Mapping[str, pl.DataFrame] | None = None,
) -> tuple[pl.DataFrame, MappingReport]:
    """Replace each event's source code by its catalog item(s); report what did not map.

    An exposure of a combination product becomes one event per item (amoxicillin /
    clavulanate → two ingredients); items are distinct within an exposure.
    """
    counts = events.group_by("item").len("events").sort("events", "item", descending=[True, False])
    rows = _resolve(counts["item"].to_list(), item_kind, catalog, vocabulary or {})
    drug_items = catalog.drug_items(granularity)
    code_drugs = pl.DataFrame(
        [(r["code"], d) for r in rows for d in r["match"].drug_ids], schema={"code": pl.String, "drug_id": pl.String},
        orient="row",
    )
    code_items = code_drugs.join(drug_items, on="drug_id", how="inner").select("code", "item").unique()
    no_class = set(code_drugs["code"]) - set(code_items["code"])
    status = pl.DataFrame(
        {
            "code": [r["code"] for r in rows],
            "name": [r["name"] for r in rows],
            "method": [r["match"].method for r in rows],
            "reason": [
                "catalog drug(s) without ATC code" if r["code"] in no_class else r["match"].reason for r in rows
            ],
            "unmatched": [list(r["match"].unmatched) for r in rows],
        },
        schema={"code": pl.String, "name": pl.String, "method": pl.String, "reason": pl.String,
                "unmatched": pl.List(pl.String)},
    ).join(counts.rename({"item": "code"}), on="code")
    mapped_codes = set(code_items["code"])
    unmapped = status.filter(~pl.col("code").is_in(list(mapped_codes))).select("code", "name", "events", "reason")
    parts = (
        status.filter(pl.col("code").is_in(list(mapped_codes)))
        .explode("unmatched")
        .drop_nulls("unmatched")
        .group_by(part="unmatched")
        .agg(pl.col("events").sum())
        .sort("events", "part", descending=[True, False])
    )
    # code_items is unique per (code, item), so an event's items are already distinct: no unique() over every event
    mapped = (
        events.with_row_index("event")
        .join(code_items.rename({"item": "catalog_item", "code": "item"}), on="item", how="inner")
        .drop("item")
        .rename({"catalog_item": "item"})
        .sort("event", "item")
        .drop("event")
        .select(events.columns)
    )
    methods = status.filter(pl.col("code").is_in(list(mapped_codes))).group_by("method").len().sort("method")
    report = MappingReport(
        granularity=granularity, item_kind=item_kind, codes=status.height, codes_mapped=len(mapped_codes),
        events=events.height, events_mapped=events.height - int(unmapped["events"].sum()),
        items_in_catalog=catalog.items(granularity).height, items_used=mapped["item"].n_unique(),
        methods=dict(methods.iter_rows()), unmapped=unmapped, unmatched_parts=parts,
    )
    return mapped, report
