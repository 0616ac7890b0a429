"""The HTTP API of ``symcere serve``: a FastAPI application over a ``Service`` (JSON in and out, OpenAPI at /docs).

Endpoints: ``GET /health``, ``GET /recommend``, ``GET /similar-items``, ``POST /cold-start``, ``GET /explain``.
Unknown ids are 404, a feature the model lacks (cold start or explanations without a text tower) 400, an item
that cannot be served from reviews 409, malformed parameters 422 naming the field; every response is JSON, an
unexpected failure a logged 500 (the server keeps running). Model work runs in FastAPI's threadpool (the
endpoints are plain functions), so ``/health`` (a coroutine that touches no model) answers while it is busy.
One log line per request on the ``symcere.serve`` logger: client, method, path and query, status, milliseconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel, Field

from symcere.errors import SymcereError
from symcere.extras import require
from symcere.serving.service import Conflict, NotFound, Service

log = logging.getLogger("symcere.serve")


class Error(BaseModel):
    detail: str = Field(description="what was wrong")


class RankedItem(BaseModel):
    item: str
    rank: int = Field(ge=1)
    score: float


class RankedUser(BaseModel):
    user: str
    rank: int = Field(ge=1)
    score: float


class Health(BaseModel):
    status: str
    model: str
    users: int = Field(description="users of the run")
    items: int = Field(description="items served (the run's plus cold items added)")
    cold_items: int = Field(description="items served from their reviews")
    text_tower: bool = Field(description="cold start and explanations are available")
    index: dict[str, Any] = Field(description="top-K search: exact or FAISS (with its recall@10 against exact)")
    uptime_s: float
    explanations_cached: int | None = None


class Recommendations(BaseModel):
    user: str
    items: list[RankedItem]


class SimilarItems(BaseModel):
    item: str
    similarity: str = Field(description="how items are compared")
    items: list[RankedItem]


class ColdStartRequest(BaseModel):
    reviews: list[str] = Field(min_length=1, max_length=1000, description="review texts of the new item")
    k: int = Field(10, ge=1, le=100_000, description="users to return")
    item: str | None = Field(
        None, min_length=1, max_length=512, description="an id: serve the item from now on (in memory)"
    )


class ColdStart(BaseModel):
    users: list[RankedUser]
    method: str
    item: str | None
    added: bool
    catalogue_items: int
    placement: str | None = None
    fit_items: int | None = None
    r2: float | None = None
    heldout_r2: float | None = None


class Word(BaseModel):
    word: str
    weight: float


class Explanation(BaseModel):
    user: str
    item: str
    similarity: float = Field(description="text similarity of the user and the item's reviews")
    method: str
    words: list[Word] = Field(description="largest |weight| first; positive = the word pulls the item to the user")
    words_tested: int
    words_in_text: int
    anchors: list[Word] = Field(description="the item's anchor words (semantic anchoring, section 6)")
    anchor_method: str


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


def create_app(service: Service) -> Any:
    """The FastAPI application serving ``service``."""
    fastapi = require("fastapi", "symcere serve")
    responses = require("fastapi.responses", "symcere serve")
    Query, JSONResponse = fastapi.Query, responses.JSONResponse

    app = fastapi.FastAPI(
        title="symcere",
        description=f"Top-K recommendations of a trained {service.model_name} run.",
        version="1",
    )
    app.state.service = service
    errors: dict[int | str, dict[str, Any]] = {400: {"model": Error}, 404: {"model": Error}}

    @app.middleware("http")
    async def one_line_per_request(request: Any, call_next: Any) -> Any:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            response = JSONResponse({"detail": "internal error (logged by the server)"}, status_code=500)
        ms = 1000 * (time.perf_counter() - start)
        client = request.client.host if request.client else "-"
        query = f"?{request.url.query}" if request.url.query else ""
        log.info('%s "%s %s%s" %d %.1fms', client, request.method, request.url.path, query, response.status_code, ms)
        return response

    def status_of(exc: SymcereError) -> int:
        if isinstance(exc, NotFound):
            return 404
        if isinstance(exc, Conflict):
            return 409
        return 400  # Unsupported (no text tower) and every other user error

    @app.exception_handler(SymcereError)
    async def user_error(request: Any, exc: SymcereError) -> Any:
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        """Liveness and what is served (answers while model work is running)."""
        return service.health()

    @app.get("/recommend", response_model=Recommendations, responses=errors)
    def recommend(
        user: str = Query(..., min_length=1, description="original user id"),
        k: int = Query(10, ge=1, le=10_000),
        exclude_seen: bool = Query(True, description="never an item of the user's training or validation data"),
    ) -> dict[str, Any]:
        """Top-K items of a user, identical to ``symcere recommend RUN_DIR --k K``."""
        frame = service.recommend([user], k=k, exclude_seen=exclude_seen)
        items = [
            {"item": str(i), "rank": int(r), "score": float(s)}
            for i, r, s in zip(frame["item"], frame["rank"], frame["score"], strict=True)
        ]
        return {"user": user, "items": items}

    @app.get("/similar-items", response_model=SimilarItems, responses=errors)
    def similar_items(
        item: str = Query(..., min_length=1, description="original item id"), k: int = Query(10, ge=1, le=10_000)
    ) -> dict[str, Any]:
        """Items by cosine similarity of their vectors in the model's scoring space."""
        frame = service.similar_items(item, k=k)
        items = [
            {"item": str(i), "rank": int(r), "score": float(s)}
            for i, r, s in zip(frame["item"], frame["rank"], frame["score"], strict=True)
        ]
        return {"item": item, "similarity": "cosine of the item vectors", "items": items}

    @app.post("/cold-start", response_model=ColdStart, responses={**errors, 409: {"model": Error}})
    def cold_start(body: ColdStartRequest) -> dict[str, Any]:
        """Users a new item should be shown to, ranked through the text tower from its reviews; with ``item`` the
        item joins the served catalogue (in memory) so that /recommend can return it."""
        out = service.cold_start(body.reviews, k=body.k, item=body.item)
        for key in ("r2", "heldout_r2"):
            if key in out:
                out[key] = _finite(float(out[key]))
        return out

    @app.get("/explain", response_model=Explanation, responses=errors)
    def explain(
        user: str = Query(..., min_length=1, description="original user id"),
        item: str = Query(..., min_length=1, description="original item id (or a cold item added)"),
        n: int = Query(10, ge=1, le=1000, description="words and anchor words to return"),
    ) -> dict[str, Any]:
        """The item's review words whose removal most changes the user-item text similarity, and its anchors."""
        return service.explain(user, item, n=n)

    return app


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the application with uvicorn until interrupted (one ``symcere.serve`` log line per request)."""
    uvicorn = require("uvicorn", "symcere serve")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    uvicorn.run(create_app(service), host=host, port=port, access_log=False, log_level="info")
