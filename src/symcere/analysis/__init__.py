"""Analyses of trained runs (symcere.md section 6; sampled-softmax study section 4.3).

Computations (arrays in, numbers out; no plotting):

- :mod:`~symcere.analysis.geometry`: magnitude as popularity, cosine-similarity statistics (Table 4),
  dimension utilisation (Figure 4);
- :mod:`~symcere.analysis.longtail`: popularity-group contributions to Recall@K / NDCG@K;
- :mod:`~symcere.analysis.anchoring`: LIME semantic anchoring (Tables 5-8);
- :mod:`~symcere.analysis.embedding_map`: 2-D map of graph and text embeddings (Figure 1);
- :mod:`~symcere.analysis.compute`: loads runs and computes all of the above per run.

Report (``symcere analyze``): :mod:`~symcere.analysis.plots` (every figure), :mod:`~symcere.analysis.document`
(Markdown + HTML builder), :mod:`~symcere.analysis.sections` (the prose sections) and
:mod:`~symcere.analysis.report` (writes ``report.md`` / ``report.html``).
"""

from symcere.analysis.report import AnalyzeOptions, analyze

__all__ = ["AnalyzeOptions", "analyze"]
