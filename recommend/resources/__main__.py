"""Medical resource recommendation over PubMed: ``python -m recommend.resources`` (Hydra app).

Examples::

    python -m recommend.resources query="statin induced myopathy"
    python -m recommend.resources drug=metformin retriever=bm25
    python -m recommend.resources 'patient.drugs=[ibuprofen]' 'patient.conditions=[Osteoarthritis]'
    python -m recommend.resources eval=true
    python -m recommend.resources query=asthma catalog.path=my_catalog.jsonl

See :mod:`recommend.resources.run` for the outputs.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from recommend.resources.run import run_resources


@hydra.main(version_base="1.3", config_path="../../conf", config_name="resources")
def main(cfg: DictConfig) -> float | None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    result = run_resources(cfg, out_dir)
    if result["mode"] == "evaluate":
        for method, values in result["metrics"].items():
            print(f"{method:14s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "queries"))
        print(f"outputs: {out_dir}")
        return result["metrics"][cfg.retriever]["ndcg@10"] if cfg.retriever in result["metrics"] else None
    table = result["table"]
    for row in table.head(10).iter_rows(named=True):
        print(f"{row['rank']:3d}  {row['score']:8.3f}  {row['doc_id']}  {row['title'][:90]}  [{', '.join(row['matched_terms'])}]")
    print(f"outputs: {out_dir}")
    return None


if __name__ == "__main__":
    main()
