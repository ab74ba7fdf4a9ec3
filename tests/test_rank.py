"""Ranking candidates (``discovery.ranking``, ``python -m discovery.rank``): known values, bad rows, score, grid."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from hydra import compose, initialize_config_dir

from featurestore import FeatureStore, Standardizer
from discovery.checkpoint import load_predictor
from discovery.ranking import RankingScore, ScoreTerm, draw_top, rank_candidates, read_candidates
from discovery.ranking.rank import RankingModel, score_molecules
from discovery.ranking.medchem import MedChemFeaturizer, medchem_properties
from featurestore.similarity import max_tanimoto
from discovery.train import run_training

REPO = Path(__file__).resolve().parents[1]
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
RHODANINE = "O=C1NC(=S)SC1=Cc1ccccc1"  # 5-benzylidene rhodanine: PAINS ene_rhod_A
C40 = "C" * 40                          # MW 563, logP 15.7, 37 rotatable bonds
QED_ONLY = RankingScore([ScoreTerm("qed")], "arithmetic")


def test_medchem_known_values():
    aspirin = medchem_properties(ASPIRIN)
    assert aspirin["qed"] == pytest.approx(0.5501, abs=1e-4)
    assert (aspirin["pains_alerts"], aspirin["brenk_names"]) == (0, "phenol_ester")
    rhodanine = medchem_properties(RHODANINE)
    assert (rhodanine["pains_alerts"], rhodanine["pains_names"]) == (1, "ene_rhod_A(235)")
    assert medchem_properties("Oc1ccccc1O")["pains_names"] == "catechol_A(92)"
    big = medchem_properties(C40)
    assert (big["lipinski_violations"], big["veber_violations"]) == (2, 1)


def test_invalid_and_duplicate_rows_are_kept_and_ranked_last(store, monkeypatch):
    calls = []
    original = MedChemFeaturizer.__call__
    monkeypatch.setattr(MedChemFeaturizer, "__call__", lambda self, item: calls.append(item) or original(self, item))
    table = pl.DataFrame({
        "smiles": [ASPIRIN, "bad((", RHODANINE, ASPIRIN, "", "OCC"],
        "name": ["aspirin", "broken", "rhodanine", "aspirin again", "empty", "ethanol"],
    })
    ranked = rank_candidates(table, "smiles", [], QED_ONLY, store, progress=False)
    assert ranked.height == 6
    assert sorted(calls) == sorted(["CC(=O)Oc1ccccc1C(=O)O", "O=C1NC(=S)SC1=Cc1ccccc1", "CCO"])  # once per molecule
    by_name = {row["name"]: row for row in ranked.iter_rows(named=True)}
    assert by_name["aspirin"]["qed"] == pytest.approx(0.5501, abs=1e-4)
    assert by_name["aspirin"]["score"] == by_name["aspirin again"]["score"]
    assert by_name["rhodanine"]["pains_alerts"] == 1
    assert by_name["broken"]["error"] == "SMILES syntax error in 'bad(('"
    assert by_name["empty"]["error"] == "empty SMILES"
    # Valid rows by QED (rhodanine 0.582 > aspirin 0.550 > ethanol 0.407), duplicates by input row; errors last.
    assert ranked.get_column("input_row").to_list() == [2, 0, 3, 5, 1, 4]
    assert ranked.get_column("rank").to_list() == [1, 2, 3, 4, 5, 6]
    assert ranked.tail(2).get_column("score").null_count() == 2
    assert ranked.columns[:6] == ["rank", "input_row", "input_smiles", "smiles", "inchikey", "name"]


def test_score_combination_by_hand():
    table = pl.DataFrame({"a": [0.5, 1.0, 0.2], "b": [5.0, 0.0, None]})
    terms = [ScoreTerm("a", weight=1.0), ScoreTerm("b", {"kind": "clipped", "upper": 10.0}, weight=2.0)]
    geometric = RankingScore(terms, "geometric")(table)
    arithmetic = RankingScore(terms, "arithmetic")(table)
    assert geometric.get_column("d_b").to_list() == [0.5, 0.0, None]
    assert geometric.get_column("score").to_list()[:2] == pytest.approx([(0.5 * 0.5 ** 2) ** (1 / 3), 0.0])
    assert arithmetic.get_column("score").to_list()[:2] == pytest.approx([(0.5 + 2 * 0.5) / 3, 1.0 / 3])
    assert geometric.get_column("score")[2] is None and arithmetic.get_column("score")[2] is None
    with pytest.raises(KeyError, match="'c'"):
        RankingScore([ScoreTerm("c")])(table)
    with pytest.raises(ValueError, match="aggregate"):
        RankingScore(terms, "median")


def test_max_tanimoto_by_hand():
    query = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=np.uint8)
    reference = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], dtype=np.uint8)
    assert max_tanimoto(query, reference, block_size=1).tolist() == [pytest.approx(2 / 3), 0.0]


def test_grid_images_and_smi_input(store, tmp_path):
    path = tmp_path / "hits.smi"
    path.write_text(f"{ASPIRIN} aspirin\n{RHODANINE}\nbad((  broken one\n")
    table = read_candidates(path, "smiles")
    assert table.to_dicts()[2] == {"smiles": "bad((", "name": "broken one"}
    ranked = rank_candidates(table, "smiles", [], QED_ONLY, store, progress=False)
    png, svg = draw_top(ranked, tmp_path / "top", top_n=5, per_row=1, legend_column="name")
    with Image.open(png) as image:  # one column: the two valid molecules stacked, the broken row left out
        assert (image.format, image.size) == ("PNG", (250, 500))
    assert "width='250px' height='500px'" in svg.read_text()


@pytest.fixture(scope="module")
def esol_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-member ECFP MLP trained on the first 100 ESOL molecules (in process): (run folder, store root)."""
    base = tmp_path_factory.mktemp("esol_rank")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "trainer=fast", "trainer.num_threads=1", "store.progress=false", "store.n_jobs=1",
            f"store.root={base / 'store'}", "data.max_rows=100", "model=ecfp_mlp", "model.hparams.hidden=32",
            "ensemble=2",
        ])
    run_training(cfg, base / "run")
    return base / "run", base / "store"


def test_rank_app_with_checkpoint_matches_predictor(esol_run, tmp_path):
    run, store_root = esol_run
    candidates = tmp_path / "candidates.csv"
    train_smiles = pl.read_parquet(run / "data.parquet").get_column("smiles")[0]
    smiles = [ASPIRIN, "bad((", "c1ccccc1O", train_smiles]
    pl.DataFrame({"smiles": smiles, "name": ["aspirin", "broken", "phenol", "train"]}).write_csv(candidates)
    out = tmp_path / "rank_run"
    result = subprocess.run(
        [sys.executable, "-m", "discovery.rank", f"input.path={candidates}", "score=esol_solubility",
         f"checkpoints=[{{path: {run / 'checkpoint'}, name: esol}}]", f"store.root={store_root}",
         "store.n_jobs=1", "progress=false", f"hydra.run.dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranked = pl.read_parquet(out / "ranked.parquet").sort("input_row")
    assert {"ranked.csv", "top.png", "top.svg", "run.json"} <= {p.name for p in out.iterdir()}
    expected = load_predictor(run).predict(smiles, FeatureStore(store_root, n_jobs=1, progress=False))
    assert ranked.get_column("pred_esol").to_list() == pytest.approx(expected.get_column("prediction").to_list(),
                                                                     nan_ok=True)
    assert ranked.get_column("std_esol").to_list() == pytest.approx(expected.get_column("std").to_list(), nan_ok=True)
    similarity = ranked.get_column("max_tanimoto_esol").to_list()
    assert similarity[3] == pytest.approx(1.0) and 0 < similarity[0] < 1 and similarity[1] is None
    assert ranked.get_column("in_domain_esol").to_list() == [similarity[0] >= 0.3, None, similarity[2] >= 0.3, True]
    assert ranked.filter(pl.col("name") == "broken").get_column("rank").item() == 4
    assert not math.isnan(ranked.get_column("score")[0])


def test_a_checkpoint_keys_candidates_with_its_own_standardizer(esol_run):
    """The ranking's standardizer keys its own columns; the model still sees molecules keyed its way."""
    run, store_root = esol_run
    store = FeatureStore(store_root, n_jobs=1, progress=False)
    model = RankingModel.load({"path": str(run), "name": "esol"}, store)
    salt = "CC(=O)Oc1ccccc1C(=O)[O-].[Na+]"  # the model's default standardizer strips and neutralizes it
    raw = Standardizer(cleanup=False, largest_fragment=False, neutralize=False)
    scored = score_molecules([salt, ASPIRIN], [model], store, standardizer=raw)
    assert scored.get_column("inchikey")[0] != scored.get_column("inchikey")[1]
    expected = load_predictor(run).predict([salt, ASPIRIN], store).get_column("prediction").to_list()
    assert scored.get_column("pred_esol").to_list() == pytest.approx(expected)
    assert expected[0] == pytest.approx(expected[1])


def test_sharded_ranking_merges_to_the_unsharded_ranking(tmp_path):
    from discovery.rank import run_ranking, shard_markers

    candidates = tmp_path / "candidates.csv"
    smiles = [ASPIRIN, "bad((", "c1ccccc1O", RHODANINE, ASPIRIN, "CCO", C40, "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]
    pl.DataFrame({"smiles": smiles, "id": range(len(smiles))}).write_csv(candidates)
    common = [f"input.path={candidates}", f"store.root={tmp_path / 'store'}", "store.n_jobs=1", "progress=false",
              "oracles=[qed]"]  # oracle scoring is sharded with the ranking

    def config(*overrides):
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            return compose("rank", overrides=[*common, *overrides])

    whole = run_ranking(config(), tmp_path / "whole")
    with pytest.raises(RuntimeError, match="3 of 3 shards have not finished"):
        run_ranking(config("num_shards=3", "reduce=true"), tmp_path / "early")
    for shard in range(3):
        part = run_ranking(config("num_shards=3", f"shard={shard}"), tmp_path / f"shard{shard}")
        assert part.height in (2, 3)
    assert shard_markers(config("num_shards=3", "shard=1")).is_done(1)
    merged = run_ranking(config("num_shards=3", "reduce=true"), tmp_path / "reduce")
    assert merged.equals(whole)
    assert merged.filter(pl.col("input_smiles") == "bad((")["input_row"].item() == 1  # the row in the whole file
    qed = dict(merged.select("input_row", "oracle_qed").iter_rows())
    assert qed[0] == qed[4] == pytest.approx(0.5501, abs=1e-3) and qed[1] is None  # aspirin twice, then "bad(("
    assert {"ranked.parquet", "ranked.csv", "top.png"} <= {p.name for p in (tmp_path / "reduce").iterdir()}
