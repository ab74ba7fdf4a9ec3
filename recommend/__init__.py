"""recommend: drug recommendation from usage records (ingest, mapping, splits, models, metrics, run app).

``python -m recommend.run`` is the Hydra app; the pieces are importable::

    from recommend.ingest import load_usage
    from recommend.mapping import DrugCatalog, map_events
    from recommend.splits import time_split
    from recommend.interactions import Weighting, build_interactions
    from recommend.models import build_model
    from recommend.predict import load_trained   # a trained run, for patients it never saw
"""

import os

# implicit's BLAS-backed solvers run their own threads; a multi-threaded OpenBLAS under
# them oversubscribes the cores (implicit warns). Must be set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
