"""PMO-compatible isomer oracles (``*_pmo``): PyTDC 0.3.6's total-atom rule, hand-checked against
the GuacaMol definitions, which must stay unchanged."""

import math

import pytest
from rdkit import Chem

from discovery.oracles import PMO_COMPAT, PMO_TASKS, composite_oracle, get_oracle
from discovery.oracles import tasks as T
from discovery.oracles.chem import num_atoms_pmo, num_atoms_with_h, smiles_token_atom_count
from discovery.oracles.terms import isomer

AMINOHYDROXYBENZAMIDE = "NC(=O)c1ccc(N)cc1O"  # 4-amino-2-hydroxybenzamide, C7H8N2O2, RDKit canonical


def test_the_four_variants_are_registered_beside_the_guacamol_tasks():
    assert PMO_COMPAT == {
        "isomers_c7h8n2o2": "isomers_c7h8n2o2_pmo", "isomers_c9h10n2o2pf2cl": "isomers_c9h10n2o2pf2cl_pmo",
        "sitagliptin_mpo": "sitagliptin_mpo_pmo", "zaleplon_mpo": "zaleplon_mpo_pmo",
    }
    assert set(PMO_COMPAT) <= set(PMO_TASKS) and not set(PMO_COMPAT.values()) & set(PMO_TASKS)
    for guacamol, pmo in PMO_COMPAT.items():
        assert get_oracle(pmo).name == pmo and "PyTDC 0.3.6" in get_oracle(pmo).description
        assert get_oracle(pmo)("C1CC") == 0.0


@pytest.mark.parametrize("smiles, count", [
    ("NC(=O)c1ccc(N)cc1O", 5),       # N, C, O, N, O: aromatic c's and implicit H never count
    ("Cc1ccccc1", 1),                # one token "Cc" followed by the ring-closure digit 1
    ("C12CCC1CC2", 18),              # C12 -> 12, C, C, C1 -> 1, C, C2 -> 2: 12 + 1 + 1 + 1 + 1 + 2
    ("ClCCl", 3),                    # Cl, C, Cl
    ("c1cc[nH]c1", 1),               # only the bracket H is a capital letter
    ("C[NH3+]", 5),                  # C -> 1, N -> 1, H3 -> 3
    ("CCO", 3),
])
def test_pytdc_036_token_count(smiles, count):
    assert smiles_token_atom_count(smiles) == count


def test_pmo_rule_counts_tokens_of_the_canonical_smiles():
    # the same molecule written two ways counts the same: mol_opt canonicalizes before calling TDC
    for written in ("NC(=O)c1ccc(N)cc1O", "Oc1cc(N)ccc1C(N)=O"):
        mol = Chem.MolFromSmiles(written)
        assert Chem.MolToSmiles(mol) == AMINOHYDROXYBENZAMIDE
        assert num_atoms_pmo(mol) == 5 and num_atoms_with_h(mol) == 19  # 7 + 8 + 2 + 2


def test_exact_isomer_scores_one_under_guacamol_and_exp_minus_4_9_under_pmo():
    # Element terms C7, H8, N2, O2 all exact (1 each) under both rules. Total atoms, target 19:
    # GuacaMol counts 19 -> 1; PyTDC 0.3.6 counts 5 tokens -> exp(-0.5 ((5 - 19) / 2)^2) = exp(-24.5).
    # Geometric mean of the 5 terms: exp(-24.5 / 5) = exp(-4.9) ~ 0.00745.
    assert get_oracle("isomers_c7h8n2o2")(AMINOHYDROXYBENZAMIDE) == pytest.approx(1.0)
    assert get_oracle("isomers_c7h8n2o2_pmo")(AMINOHYDROXYBENZAMIDE) == pytest.approx(math.exp(-4.9))
    assert get_oracle("isomers_c7h8n2o2_pmo")("Oc1cc(N)ccc1C(N)=O") == pytest.approx(math.exp(-4.9))


def test_near_miss_under_both_rules():
    # 2-nitrotoluene C7H7NO2, canonical Cc1ccccc1[N+](=O)[O-]: H off by 1, N by 1 (exp(-0.5) each).
    # GuacaMol: 17 atoms vs 19 -> exp(-0.5); PyTDC 0.3.6: tokens Cc1 -> 1, N, O, O = 4 vs 19 -> exp(-0.5 * 7.5^2).
    smiles = "Cc1ccccc1[N+](=O)[O-]"
    assert smiles_token_atom_count(Chem.MolToSmiles(Chem.MolFromSmiles(smiles))) == 4
    assert get_oracle("isomers_c7h8n2o2")(smiles) == pytest.approx(math.exp(-1.5 / 5))
    assert get_oracle("isomers_c7h8n2o2_pmo")(smiles) == pytest.approx(math.exp((-1.0 - 28.125) / 5))


def test_zaleplon_mpo_pmo_on_zaleplon():
    # Canonical CCN(C(C)=O)c1cccc(-c2ccnc3c(C#N)cnn23)c1: tokens C, C, N, C, C, O, C, N = 8 (vs 38 atoms).
    # Element terms as in the GuacaMol test: exp(-2) x 3 (C, H, N off by 2), exp(-0.5) (O off by 1).
    # Total-atom term, target 41: GuacaMol exp(-0.5 (3/2)^2) = exp(-1.125); PMO exp(-0.5 (33/2)^2) = exp(-136.125).
    assert smiles_token_atom_count(Chem.MolToSmiles(Chem.MolFromSmiles(T.ZALEPLON))) == 8
    guacamol = math.exp((-6.5 - 1.125) / 5)
    pmo = math.exp((-6.5 - 136.125) / 5)
    assert get_oracle("zaleplon_mpo")(T.ZALEPLON) == pytest.approx(math.sqrt(guacamol))  # similarity 1
    assert get_oracle("zaleplon_mpo_pmo")(T.ZALEPLON) == pytest.approx(math.sqrt(pmo))


def test_sitagliptin_mpo_pmo_on_sitagliptin():
    # sitagliptin is C16H15F6N5O (43 atoms): GuacaMol isomer term 1, task exp(-50 / 4) (test_oracles.py).
    # Canonical NC(CC(=O)N1CCn2c(nnc2C(F)(F)F)C1)Cc1cc(F)c(F)cc1F, tokens: N, C, C, C, O (5), N1 -> 1 (6),
    # C (7), Cn2 -> 2 (9), C (10), F, F, F (13), C1 -> 1 (14), Cc1 -> 1 (15), F, F, F (18) = 18.
    # Total-atom term exp(-0.5 ((18 - 43) / 2)^2) = exp(-78.125); isomer = its 6th root (terms C, H, F, N, O,
    # total); the task is the geometric mean of similarity exp(-50), logP 1, TPSA 1 and the isomer term.
    assert smiles_token_atom_count(Chem.MolToSmiles(Chem.MolFromSmiles(T.SITAGLIPTIN))) == 18
    assert get_oracle("sitagliptin_mpo")(T.SITAGLIPTIN) == pytest.approx(math.exp(-12.5))
    assert get_oracle("sitagliptin_mpo_pmo")(T.SITAGLIPTIN) == pytest.approx(math.exp((-50 - 78.125 / 6) / 4))


@pytest.mark.parametrize("smiles", [
    "NC(=Cc1ccc(Cl)cc1)C(=O)OP(N)(F)F", T.ZALEPLON, T.SITAGLIPTIN, T.CELECOXIB, "CCO",
])
def test_guacamol_versions_unchanged_and_variants_differ_only_in_the_atom_term(smiles):
    # The GuacaMol oracles equal a fresh isomer() with the default rule, i.e. the H-inclusive count.
    for name, formula in (("isomers_c7h8n2o2", "C7H8N2O2"), ("isomers_c9h10n2o2pf2cl", "C9H10N2O2PF2Cl")):
        mol = Chem.MolFromSmiles(smiles)
        assert get_oracle(name)(smiles) == pytest.approx(isomer(formula)(mol))
        assert get_oracle(name)(smiles) == pytest.approx(isomer(formula, atoms="guacamol")(mol))
        assert get_oracle(f"{name}_pmo")(smiles) == pytest.approx(isomer(formula, atoms="pmo")(mol))


def test_exact_c9_isomer_differs_by_the_token_count():
    # C9H10ClF2N2O2P: 9 + 10 + 1 + 2 + 2 + 2 + 1 = 27 atoms with H. RDKit writes the P-H explicitly:
    # canonical NC(=Cc1ccc(Cl)cc1)C(=O)O[PH](N)(F)F, tokens N, C, Cc1 -> 1, Cl, C, O, O, P, H, N, F, F = 12.
    # 8 terms (C, H, N, O, P, F, Cl, total) all 1 but the PMO total: exp(-0.5 ((12 - 27) / 2)^2) = exp(-28.125).
    smiles = "NC(=Cc1ccc(Cl)cc1)C(=O)OP(N)(F)F"
    assert Chem.MolToSmiles(Chem.MolFromSmiles(smiles)) == "NC(=Cc1ccc(Cl)cc1)C(=O)O[PH](N)(F)F"
    assert smiles_token_atom_count("NC(=Cc1ccc(Cl)cc1)C(=O)O[PH](N)(F)F") == 12
    assert get_oracle("isomers_c9h10n2o2pf2cl")(smiles) == pytest.approx(1.0)
    assert get_oracle("isomers_c9h10n2o2pf2cl_pmo")(smiles) == pytest.approx(math.exp(-28.125 / 8))


def test_composite_isomer_spec_takes_the_rule():
    pmo = composite_oracle("iso", [{"isomer": "C7H8N2O2", "atoms": "pmo"}])
    assert pmo(AMINOHYDROXYBENZAMIDE) == pytest.approx(math.exp(-4.9))
    with pytest.raises(ValueError, match="atom-count rule"):
        composite_oracle("iso", [{"isomer": "C7H8N2O2", "atoms": "tdc"}])
