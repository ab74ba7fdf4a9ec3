import numpy as np
import polars as pl
import pytest
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem, Descriptors

from featurestore import ATOM_DIM, BOND_DIM, DESCRIPTOR_NAMES, FeatureView, fingerprint_matrix, graphs_from_frame
from featurestore.featurizers.graph import GraphFeaturizer
from featurestore.featurizers.molecule import descriptor_vector
from featurestore.standardize import RDKIT_VERSION
from tests.molecules import ASPIRIN

ASPIRIN_ECFP4_ON_BITS = [
    389, 456, 650, 695, 807, 909, 1017, 1035, 1047, 1057, 1088, 1199,
    1380, 1410, 1447, 1468, 1616, 1729, 1750, 1775, 1873, 1917, 1970, 1991,
]


def test_ecfp4_on_bits_of_aspirin():
    fp = FeatureView("ecfp").build()(ASPIRIN)
    assert fp.dtype == np.uint8 and fp.shape == (2048,)
    assert np.flatnonzero(fp).tolist() == ASPIRIN_ECFP4_ON_BITS


def test_ecfp_matches_rdkit_legacy_morgan_api():
    smiles = ["CCO", "c1ccncc1", "C[C@H](N)C(=O)O", ASPIRIN]
    featurizer = FeatureView("ecfp", {"radius": 3, "n_bits": 1024}).build()
    for s in smiles:
        legacy = AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(s), 3, nBits=1024)
        expected = np.zeros(1024, dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(legacy, expected)
        assert np.array_equal(featurizer(s), expected), s


def test_ecfp_counts_and_fcfp_differ_from_bits():
    bits = FeatureView("ecfp").build()(ASPIRIN)
    counts = FeatureView("ecfp", {"counts": True}).build()(ASPIRIN)
    fcfp = FeatureView("ecfp", {"features": True}).build()(ASPIRIN)
    assert np.array_equal(counts > 0, bits > 0)
    assert counts.max() == 4  # the aromatic CH environment occurs four times
    assert not np.array_equal(fcfp, bits)


def test_view_ids_are_stable_and_default_filled():
    assert FeatureView("ecfp").id == FeatureView("ecfp", {"radius": 2, "n_bits": 2048}).id
    assert FeatureView("ecfp").id != FeatureView("ecfp", {"radius": 3}).id
    assert FeatureView("ecfp").id.startswith("ecfp-")
    with pytest.raises(KeyError, match="unknown featurizer 'nope'"):
        FeatureView("nope").id


def test_rdkit2d_has_every_descriptor_with_known_values():
    assert len(DESCRIPTOR_NAMES) == len(Descriptors._descList)
    row = FeatureView("rdkit2d").build()(ASPIRIN)
    assert row["MolWt"] == pytest.approx(180.159, abs=1e-3)
    assert row["qed"] == pytest.approx(0.5501, abs=1e-4)
    assert row["NumHDonors"] == 1
    assert row["nonfinite"] == []


def test_maccs_width_and_batch_error_rows():
    frame = FeatureView("maccs").build().batch([ASPIRIN, "not smiles"])
    assert frame.columns == ["fp", "error"]
    assert frame["fp"].dtype.size == 167
    assert frame["fp"][1] is None and "SMILES syntax error" in frame["error"][1]
    assert fingerprint_matrix(frame.head(1)).shape == (1, 167)


def test_graph_round_trip_to_pyg_without_rdkit():
    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "C[C@H](N)C(=O)O", "[Na+].[Cl-]", "C"]
    frame = FeatureView("graph").build().batch(smiles)
    graphs = graphs_from_frame(frame)
    for s, g in zip(smiles, graphs):
        mol = Chem.MolFromSmiles(s)
        assert g.num_nodes == mol.GetNumAtoms()
        assert g.edge_index.shape == (2, 2 * mol.GetNumBonds())
        assert g.x.shape == (mol.GetNumAtoms(), ATOM_DIM)
        assert g.edge_attr.shape == (2 * mol.GetNumBonds(), BOND_DIM)
        # every atom has exactly one element slot set
        assert g.x[:, :101].sum().item() == mol.GetNumAtoms()
    alanine = graphs_from_frame(frame[1:2], one_hot=False)[0]
    assert alanine.x[:, 0].tolist() == [6, 6, 7, 6, 8, 8]  # atomic numbers
    assert alanine.x[1, 3].item() != 0  # the stereocentre keeps its chiral tag
    assert alanine.edge_index[:, 0].tolist() == [0, 1] and alanine.edge_index[:, 1].tolist() == [1, 0]


def test_graph_view_with_a_fingerprint_carries_the_ecfp_view_as_molecule_features():
    # Unset, the view is the plain graph: its id (the store folder) is the one stored views were built under.
    assert FeatureView("graph").id == "graph-18227e6a5c44"
    params = {"radius": 2, "n_bits": 256, "counts": True}
    view = FeatureView("graph", {"fingerprint": params})
    assert view.id != FeatureView("graph").id
    smiles = ["CCO", "oops", "c1ccccc1C(=O)O"]
    frame = view.build().batch(smiles)
    ecfp = FeatureView("ecfp", params).build().batch(smiles)
    assert frame["error"].is_null().to_list() == [True, False, True]
    good = frame.filter(pl.col("error").is_null())
    expected = fingerprint_matrix(ecfp.filter(pl.col("error").is_null()))
    np.testing.assert_array_equal(fingerprint_matrix(good, "mol_features"), expected)
    assert expected.max() > 1  # counts, not bits
    graphs = graphs_from_frame(good)
    assert graphs[1].mol_features.shape == (1, 256) and graphs[1].mol_features.dtype == torch.float32
    np.testing.assert_array_equal(graphs[1].mol_features.numpy()[0], expected[1])
    *graph, fingerprint = view.build()("CCO")
    np.testing.assert_array_equal(fingerprint, expected[0])
    assert "mol_features" not in graphs_from_frame(FeatureView("graph").build().batch(["CCO"]))[0]


def test_graph_view_with_descriptors_appends_rdkit_2d_values_after_the_fingerprint():
    # The ECFP-only view keeps the id its stored rows were built under.
    ecfp_params = {"radius": 2, "n_bits": 2048, "counts": True}
    assert FeatureView("graph", {"fingerprint": ecfp_params}).id == "graph-53883f17d4d7"
    view = FeatureView("graph", {"fingerprint": {"radius": 2, "n_bits": 16, "counts": True}, "descriptors": True})
    assert view.resolved_params["rdkit"] == RDKIT_VERSION
    frame = view.build().batch(["CCO", "c1ccccc1C(=O)O"])
    features = fingerprint_matrix(frame, "mol_features")
    assert features.dtype == np.float32 and features.shape == (2, 16 + len(DESCRIPTOR_NAMES))
    ethanol = dict(zip(DESCRIPTOR_NAMES, features[0, 16:]))
    assert ethanol["MolWt"] == pytest.approx(46.069, abs=1e-3) and ethanol["NumHDonors"] == 1
    assert ethanol["MolLogP"] == pytest.approx(Descriptors.MolLogP(Chem.MolFromSmiles("CCO")), abs=1e-5)
    *_, single = view.build()("CCO")
    np.testing.assert_array_equal(single, features[0])
    with pytest.raises(ValueError, match="computed with RDKit 2000.01.1"):
        GraphFeaturizer(descriptors=True, rdkit="2000.01.1")


def test_descriptor_vector_zeroes_non_finite_values_and_clips_huge_ones(monkeypatch):
    names = DESCRIPTOR_NAMES[:3]
    monkeypatch.setattr(Descriptors, "CalcMolDescriptors",
                        lambda mol, **_: {names[0]: float("nan"), names[1]: 1e80, names[2]: -2.5})
    vector = descriptor_vector(Chem.MolFromSmiles("C"))
    assert vector[:3].tolist() == [0.0, pytest.approx(1e30, rel=1e-6), -2.5] and np.isfinite(vector).all()


def test_graph_rows_with_errors_are_refused():
    frame = FeatureView("graph").build().batch(["C", "oops"])
    with pytest.raises(ValueError, match="filter them first"):
        graphs_from_frame(frame)


def test_protein_kmer_composition_sums_to_one_per_block():
    featurizer = FeatureView("protein_kmer", {"ks": [1, 2]}).build()
    vector = featurizer("MKVLAAGX")
    assert vector.shape == (420,)
    assert vector[:20].sum() == pytest.approx(1.0) and vector[20:].sum() == pytest.approx(1.0)
    assert vector["ACDEFGHIKLMNPQRSTVWY".index("A")] == pytest.approx(2 / 7)  # X is skipped
    with pytest.raises(ValueError, match="ks must be"):
        FeatureView("protein_kmer", {"ks": [4]}).build()


def test_graph_keeps_double_bond_stereo():
    trans, cis = (graphs_from_frame(FeatureView("graph").build().batch([s]), one_hot=False)[0] for s in ("C/C=C/C", "C/C=C\\C"))
    stereo = 3  # column of BOND_FEATURES
    assert trans.edge_attr[:, stereo].max().item() != 0
    assert set(trans.edge_attr[:, stereo].tolist()) != set(cis.edge_attr[:, stereo].tolist())
