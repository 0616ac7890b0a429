"""Serving a trained run: top-K over HTTP, cold-start items ranked by their reviews, the words behind a
recommendation, and embedding export.

- ``index``: exact top-K (one matrix product per batch) and a FAISS inner-product index, with its recall;
- ``explain``: exact leave-one-word-out through the text tower, the item's anchor words (section 6);
- ``service``: ``Service``, everything the server answers over a loaded ``symcere.api.Run``;
- ``app``: the FastAPI application (``symcere serve``; ``pip install 'symcere[serve]'``);
- ``export``: user / item / text-tower embeddings as Parquet or safetensors (``symcere export``).

Importing this package imports neither FastAPI nor FAISS.
"""

from symcere.serving.service import Conflict, NotFound, Service, Unsupported

__all__ = ["Conflict", "NotFound", "Service", "Unsupported"]
