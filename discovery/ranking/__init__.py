"""Ranking candidates (predictions + medicinal-chemistry context + one score) and target prediction.

``discovery.rank`` and ``discovery.predict_targets`` are the Hydra apps on top of this package.
"""

from discovery.ranking.medchem import MEDCHEM_SCHEMA, medchem_properties
from discovery.ranking.rank import (
    RankingModel, draw_top, merge_rankings, rank_candidates, read_candidates, score_molecules, write_ranking,
)
from discovery.ranking.score import RankingScore, ScoreTerm

__all__ = [
    "MEDCHEM_SCHEMA", "RankingModel", "RankingScore", "ScoreTerm", "draw_top", "medchem_properties",
    "merge_rankings", "rank_candidates", "read_candidates", "score_molecules", "write_ranking",
]
