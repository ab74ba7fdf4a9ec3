import pytest

from featurestore import Standardizer, standardize_smiles
from tests.molecules import ASPIRIN, ASPIRIN_KEY, CAFFEINE, CAFFEINE_KEY


def test_known_inchikeys():
    assert standardize_smiles(ASPIRIN).inchikey == ASPIRIN_KEY
    assert standardize_smiles(CAFFEINE).inchikey == CAFFEINE_KEY


@pytest.mark.parametrize(
    "salt, parent_smiles",
    [
        ("CC(=O)[O-].[Na+]", "CC(=O)O"),  # sodium acetate -> acetic acid
        ("C[NH3+].[Cl-]", "CN"),  # methylamine hydrochloride -> methylamine
        ("Cl.CN1CCC[C@H]1c1cccnc1", "CN1CCC[C@H]1c1cccnc1"),  # nicotine HCl -> nicotine
        ("[O-]C(=O)c1ccccc1", "O=C(O)c1ccccc1"),  # benzoate -> benzoic acid
    ],
)
def test_salts_and_charges_are_stripped(salt, parent_smiles):
    result = standardize_smiles(salt)
    assert result.error is None
    assert result.smiles == parent_smiles
    assert result.inchikey == standardize_smiles(parent_smiles).inchikey


def test_quaternary_ammonium_keeps_its_charge():
    # A permanent charge cannot be neutralized; the standardizer must not invent a structure.
    assert standardize_smiles("C[N+](C)(C)C.[Cl-]").smiles == "C[N+](C)(C)C"


def test_config_switches_change_the_key():
    raw = Standardizer(cleanup=False, largest_fragment=False, neutralize=False)
    assert standardize_smiles("CC(=O)[O-].[Na+]", raw).inchikey != standardize_smiles("CC(=O)O").inchikey
    assert Standardizer().id != raw.id
    assert Standardizer().id == Standardizer().id


def test_stereo_removal_is_optional():
    l_alanine = "C[C@H](N)C(=O)O"
    assert standardize_smiles(l_alanine).inchikey == "QNAYBMKLOCPYGJ-REOHCLBHSA-N"
    assert standardize_smiles(l_alanine, Standardizer(remove_stereo=True)).inchikey == "QNAYBMKLOCPYGJ-UHFFFAOYSA-N"


@pytest.mark.parametrize(
    "smiles, reason",
    [
        ("", "empty SMILES"),
        ("   ", "empty SMILES"),
        ("C1CC", "SMILES syntax error"),
        ("CC(C)(C)(C)C", "Explicit valence for atom # 1 C, 5"),
        ("c1cccc1", "Can't kekulize"),
    ],
)
def test_bad_smiles_give_a_reason_not_an_exception(smiles, reason):
    result = standardize_smiles(smiles)
    assert result.inchikey is None and result.smiles is None
    assert reason in result.error


def test_inchi_failure_is_an_error_row_not_an_exception():
    molsidomine = "CCOC(=O)[N-]c1c[n+](N2CCOCC2)no1"  # RDKit raises KekulizeException inside InChI generation
    result = standardize_smiles(molsidomine)
    assert result.inchikey is None
    assert result.error.startswith("InChI/SMILES generation failed")
