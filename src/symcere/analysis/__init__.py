"""Analyses of trained runs (symcere.md section 6; sampled-softmax study section 4.3), one module each:

- :mod:`~symcere.analysis.geometry`: magnitude as popularity, cosine-similarity statistics (Table 4),
  dimension utilisation (Figure 4);
- :mod:`~symcere.analysis.longtail`: popularity-group contributions to Recall@K / NDCG@K;
- :mod:`~symcere.analysis.anchoring`: LIME semantic anchoring (Tables 5-8);
- :mod:`~symcere.analysis.embedding_map`: 2-D map of graph and text embeddings (Figure 1);
- :mod:`~symcere.analysis.report`: loads runs, runs the analyses, writes ``report.md`` / ``report.html``
  (``symcere analyze``).

The analysis modules hold pure functions on arrays; only ``report`` touches runs and models.
"""

from symcere.analysis.report import AnalyzeOptions, analyze

__all__ = ["AnalyzeOptions", "analyze"]
