"""Running experiments: the runner behind ``run.py``, run folders, sweeps' preflight, shards,
re-scoring, W&B, benchmarks' timing helpers and Transfer-Entropy layer selection.

The library (``reduction``, ``engine``, ``models``, ``data``, ``tasks``, ``metrics``) never imports
from here; ``analysis`` reads the run folders this package writes."""
