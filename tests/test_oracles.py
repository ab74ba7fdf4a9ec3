"""Oracles: the 20 PMO tasks against values derived from their definitions and values TDC computed,
penalized logP / SA, composite objectives from YAML, transforms, and their configs."""

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from rdkit import Chem
from rdkit.Chem import Descriptors
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from discovery.oracles import PMO_COMPAT, PMO_TASKS, Oracle, composite_oracle, get_oracle, list_oracles
from discovery.oracles import tasks as T
from discovery.oracles.chem import long_ring_penalty, penalized_logp, sa_score
from discovery.oracles.transforms import Clipped, Gaussian, MaxGaussian, MinGaussian, make_transform
from tests.molecules import ASPIRIN

CONF = Path(__file__).resolve().parents[1] / "conf"
VALSARTAN = "CCCCC(=O)N(Cc1ccc(cc1)-c1ccccc1-c1nn[nH]n1)C(C(C)C)C(=O)O"


def test_registry_holds_the_20_pmo_tasks_and_the_extras():
    assert len(PMO_TASKS) == 20
    assert set(list_oracles()) == set(PMO_TASKS) | set(PMO_COMPAT.values()) | {"penalized_logp", "sa"}


@pytest.mark.parametrize("name, target", [
    ("celecoxib_rediscovery", T.CELECOXIB), ("troglitazone_rediscovery", T.TROGLITAZONE),
    ("thiothixene_rediscovery", T.THIOTHIXENE), ("albuterol_similarity", T.ALBUTEROL),
    ("mestranol_similarity", T.MESTRANOL),
])
def test_rediscovery_and_similarity_targets_score_one(name, target):
    assert get_oracle(name)(target) == pytest.approx(1.0)
    assert get_oracle(name)(ASPIRIN) < 0.5


@pytest.mark.parametrize("name, formula, isomer", [
    ("isomers_c7h8n2o2", "C7H8N2O2", "Cc1ccc([N+](=O)[O-])cc1N"),
    ("isomers_c7h8n2o2", "C7H8N2O2", "NC(=O)c1ccc(N)cc1O"),
    ("isomers_c9h10n2o2pf2cl", "C9H10ClF2N2O2P", "NC(=Cc1ccc(Cl)cc1)C(=O)OP(N)(F)F"),
])
def test_exact_isomers_score_one(name, formula, isomer):
    assert CalcMolFormula(Chem.MolFromSmiles(isomer)) == formula  # RDKit writes Hill order
    assert get_oracle(name)(isomer) == pytest.approx(1.0)


def test_isomer_score_of_a_near_miss():
    # 2-nitrotoluene, C7H7NO2 vs C7H8N2O2: H off by 1, N by 1, total atoms (17 vs 19) by 2;
    # each Gaussian term exp(-0.5 z^2): exp(-0.5), exp(-0.5), exp(-0.5 * (2/2)^2); geometric mean of 5 terms.
    expected = math.exp((-0.5 - 0.5 - 0.5) / 5)
    assert get_oracle("isomers_c7h8n2o2")("Cc1ccccc1[N+](=O)[O-]") == pytest.approx(expected)


def test_qed_of_aspirin():
    assert get_oracle("qed")(ASPIRIN) == pytest.approx(0.5501, abs=1e-4)


@pytest.mark.parametrize("name", list_oracles())
@pytest.mark.parametrize("bad", ["not a smiles", "C1CC", "", "c1cccc1"])
def test_invalid_smiles_scores_the_invalid_score(name, bad):
    oracle = get_oracle(name)
    assert oracle(bad) == (0.0 if name in PMO_TASKS or name in PMO_COMPAT.values() else oracle.invalid_score)


def test_invalid_score_is_zero_for_bounded_and_below_everything_for_penalized_logp():
    assert all(get_oracle(n).invalid_score == 0.0 and get_oracle(n).bounded for n in PMO_TASKS)
    assert get_oracle("sa")("C1CC") == 0.0
    assert get_oracle("penalized_logp")("C1CC") == -100.0 and not get_oracle("penalized_logp").bounded


# Values computed with TDC's oracles (the PMO code path) for this ZINC molecule, as published in the
# Hugging Face dataset MolGen/ZINC_250K_prop_train_val_split (columns Albuterol_Similarity, ...).
@pytest.mark.parametrize("name, value", [
    ("albuterol_similarity", 0.194444), ("amlodipine_mpo", 0.095698),
    ("celecoxib_rediscovery", 0.0625), ("deco_hop", 0.524572),
])
def test_scores_match_values_published_from_tdc(name, value):
    assert get_oracle(name)("CC[C@@H]1CCCC[C@H]1c1noc(-c2cn3c(n2)COCC3)n1") == pytest.approx(value, abs=1e-6)


def test_hop_tasks_on_their_start_molecule():
    # deco_hop: pharmacophore 1, both decorations present (anti-patterns 0), scaffold kept 1 -> mean 2/4.
    assert get_oracle("deco_hop")(T.DECO_HOP_TARGET) == pytest.approx(0.5)
    # scaffold_hop: pharmacophore 1, decoration pattern present 1, scaffold still there (anti) 0 -> 2/3.
    assert get_oracle("scaffold_hop")(T.DECO_HOP_TARGET) == pytest.approx(2 / 3)


def test_mpo_reference_molecules_hand_checked():
    # perindopril has no aromatic ring: sqrt(1 * exp(-0.5 (2/0.5)^2)) = exp(-4).
    assert get_oracle("perindopril_mpo")(T.PERINDOPRIL) == pytest.approx(math.exp(-4))
    # amlodipine has 2 rings (target 3, sigma 0.5): sqrt(exp(-2)) = exp(-1).
    assert get_oracle("amlodipine_mpo")(T.AMLODIPINE) == pytest.approx(math.exp(-1))
    # zaleplon is C17H15N5O, the target formula C19H17N3O2: C, H, N off by 2 (exp(-2) each), O by 1
    # (exp(-0.5)), 38 vs 41 atoms (exp(-0.5 (3/2)^2)); isomer = geometric mean; task = sqrt(1 * isomer).
    isomer = math.exp((-2 - 2 - 2 - 0.5 - 1.125) / 5)
    assert get_oracle("zaleplon_mpo")(T.ZALEPLON) == pytest.approx(math.sqrt(isomer))
    # sitagliptin against itself: its own logP, TPSA and formula (three terms 1), similarity 1 under
    # Gaussian(0, 0.1) is exp(-50); geometric mean of four terms: exp(-12.5).
    assert get_oracle("sitagliptin_mpo")(T.SITAGLIPTIN) == pytest.approx(math.exp(-12.5))
    # osimertinib: FCFP4 term 1, ECFP6 similarity 1 above 0.85 -> exp(-1.125), TPSA >= 100 and logP <= 1 terms.
    mol = Chem.MolFromSmiles(T.OSIMERTINIB)
    terms = [1.0, math.exp(-1.125), MaxGaussian(100, 10)(Descriptors.TPSA(mol)), MinGaussian(1, 1)(Descriptors.MolLogP(mol))]
    assert get_oracle("osimertinib_mpo")(T.OSIMERTINIB) == pytest.approx(math.prod(terms) ** 0.25)


def test_valsartan_smarts_needs_the_pattern():
    oracle = get_oracle("valsartan_smarts")
    assert oracle(T.SITAGLIPTIN_VALSARTAN) == 0.0  # right properties, no biphenyl-methyl-amide
    assert 0.0 < oracle(VALSARTAN) < 1e-6       # pattern present, properties far from sitagliptin's


def test_sa_score_loads_from_rdkit_contrib_and_penalized_logp_decomposes():
    assert sa_score(Chem.MolFromSmiles(ASPIRIN)) == pytest.approx(1.580, abs=1e-3)
    assert get_oracle("sa")(ASPIRIN) == pytest.approx((10 - 1.580) / 9, abs=1e-3)
    ring = Chem.MolFromSmiles("C1CCCCCCCCCCC1")  # cyclododecane: a 12-ring, penalty 12 - 6
    assert long_ring_penalty(ring) == 6
    expected = ((Descriptors.MolLogP(ring) - 2.4570953396190123) / 1.434324401111988
                + (-sa_score(ring) + 3.0525811293166134) / 0.8335207024513095
                + (-6 + 0.0485696876403053) / 0.2860212110245455)
    assert penalized_logp(ring) == pytest.approx(expected)
    assert get_oracle("penalized_logp")("C1CCCCCCCCCCC1") == pytest.approx(expected)


def test_transforms():
    assert Gaussian(2, 0.5)(2) == 1.0 and Gaussian(2, 0.5)(3) == pytest.approx(math.exp(-2))
    assert MinGaussian(1, 1)(-5) == 1.0 and MinGaussian(1, 1)(3) == pytest.approx(math.exp(-2))
    assert MaxGaussian(100, 10)(150) == 1.0 and MaxGaussian(100, 10)(90) == pytest.approx(math.exp(-0.5))
    assert Clipped(0.75)(0.3) == pytest.approx(0.4) and Clipped(0.75)(0.9) == 1.0 and Clipped(0.75)(-1) == 0.0
    assert Clipped(upper=2, lower=4)(3) == pytest.approx(0.5) and Clipped(upper=2, lower=4)(1) == 1.0
    with pytest.raises(ValueError, match="unknown transform kind 'sigmoid'"):
        make_transform({"kind": "sigmoid"})
    with pytest.raises(ValueError, match="sigma > 0"):
        make_transform({"kind": "gaussian", "mu": 0, "sigma": 0})


def _compose_optimize(option: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("optimize", overrides=[f"oracle={option}"])


# checkpoint.yaml needs a trained model (oracle.path=...); tests/test_surrogate_ga.py trains one and covers it.
@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "oracle").glob("*.yaml") if p.stem != "checkpoint"))
def test_every_oracle_config_instantiates_its_oracle(option):
    oracle = instantiate(_compose_optimize(option).oracle)
    assert isinstance(oracle, Oracle) and oracle.name == option
    assert oracle("C1CC") == oracle.invalid_score


def test_custom_mpo_yaml_is_a_weighted_geometric_mean():
    oracle = instantiate(_compose_optimize("custom_mpo").oracle)
    mol = Chem.MolFromSmiles(ASPIRIN)
    terms = {  # value, weight; aspirin is its own similarity target (clipped at 0.5 -> 1)
        "qed": (Descriptors.qed(mol), 1.0), "logp": (Gaussian(2.5, 1.0)(Descriptors.MolLogP(mol)), 1.0),
        "sa": (MinGaussian(3.0, 1.0)(sa_score(mol)), 0.5), "similarity": (1.0, 1.0),
    }
    expected = math.prod(v ** w for v, w in terms.values()) ** (1 / sum(w for _, w in terms.values()))
    assert oracle(ASPIRIN) == pytest.approx(expected)


def test_composite_arithmetic_mean_and_nested_oracle():
    oracle = composite_oracle("mix", [
        {"oracle": "celecoxib_rediscovery", "weight": 3},
        {"descriptor": "count:F", "transform": {"kind": "gaussian", "mu": 0, "sigma": 1}},
    ], mean="arithmetic")
    assert oracle(T.CELECOXIB) == pytest.approx((3 * 1.0 + math.exp(-0.5 * 9)) / 4)


@pytest.mark.parametrize("components, message", [
    ([{"descriptor": "NoSuchThing"}], r"components\[0\]: unknown descriptor 'NoSuchThing'"),
    ([{"descriptor": "qed"}, {"descriptor": "qed", "smarts": "C"}], r"components\[1\]: give exactly one of"),
    ([{"similarity": "C1CC"}], r"components\[0\]: similarity target 'C1CC' is not a valid SMILES"),
    ([{"smarts": "[C"}], r"components\[0\]: invalid SMARTS"),
    ([{"descriptor": "qed", "weight": 0}], "positive weight"),
    ([{"descriptor": "qed", "fingerprint": "ECFP4"}], r"unknown key\(s\) \['fingerprint'\]"),
    ([{"isomer": "C7h8"}], "not a molecular formula"),
    ([], "'components' is empty"),
])
def test_composite_spec_errors_name_the_component(components, message):
    with pytest.raises(ValueError, match=message):
        composite_oracle("bad", components)
