"""The preparation protocol of ``data/preprocess.py`` in DuckDB SQL: out of core, byte-identical output.

``symcere prepare --engine duckdb`` (the default when ``symcere[scale]`` is installed) streams the records
from the readers into an embedded, file-backed DuckDB database in batches, never holding the input in memory;
DuckDB runs every step under ``memory_limit`` and spills what does not fit to its temporary directory (a
sibling of the output, removed at the end). The steps are those of ``preprocess._protocol``:

1. dedup (user, item): the record with the earliest ``(timestamp, input position)``;
2. iterative k-core to a fixed point (user and item counts taken on the same pass, as in pandas);
3. contiguous re-index sorted by original id (ids are compared as UTF-8 bytes, which is code-point order);
4. per-user chronological split, stable on ``(timestamp, order)``, sizes from ``preprocess.split_counts``
   (RecBole ``RS`` rounding);
5. item texts: the item's non-empty training reviews in ``(timestamp, order)`` order, joined by
   ``TEXT_SEPARATOR``; a review is kept while the text so far (each review plus a separator) is shorter than
   ``text_budget`` characters, and the result is cut at the budget (``length`` / ``substring`` count code points,
   as Python does).

The three parquet files are written as ``pyarrow.parquet.write_table`` writes the pandas path's tables (the
same schema, pandas metadata and row groups of ``ROW_GROUP_ROWS``), from batches streamed out of DuckDB;
``content_hash`` and the statistics are computed by streaming the written files. ``tests/test_duckdb_prepare.py``
pins the output byte for byte against the pandas path.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from symcere.data import preprocess as pp
from symcere.data.records import Review
from symcere.errors import SymcereError
from symcere.extras import require

#: rows per parquet row group: pyarrow's ``write_table`` default (1024 * 1024)
ROW_GROUP_ROWS = 1024 * 1024
#: records per batch inserted into DuckDB, and rows per batch read back
BATCH_ROWS = 100_000

_USERS_SCHEMA = pa.schema([("user", pa.int64()), ("user_id", pa.string())])
_ITEMS_SCHEMA = pa.schema(
    [("item", pa.int64()), ("item_id", pa.string()), ("text", pa.string()), ("n_train", pa.int64())]
)
_RAW_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("timestamp", pa.int64()),
        ("rating", pa.float64()),
        ("text_len", pa.int64()),
        ("review", pa.string()),
    ]
)


def interaction_schema() -> pa.Schema:
    """The schema (with its pandas metadata) the pandas path writes ``interactions.parquet`` with: taken from
    that path itself on a one-record corpus, so it follows the installed pandas and pyarrow."""
    one = pp._collected(["u"], ["i"], [0], [1.0], ["t"], [""])
    tables = pp._protocol(one, pp._options("schema", 0, None, None, (1.0, 0.0, 0.0), 0, None))
    return pp._arrow_tables(tables)[0].schema


def prepare_duckdb(
    records: Iterable[Review],
    out: Path,
    opts: Any,
    *,
    overwrite: bool = False,
    report: Any = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Path:
    """Run the protocol on ``records`` in DuckDB and write the dataset directory ``out`` atomically (the
    caller holds the dataset lock); ``opts`` are ``preprocess._options``. ``memory_limit`` (e.g. ``"2GB"``;
    None = DuckDB's default, 80 % of RAM) bounds DuckDB's memory; ``threads`` its worker threads."""
    duckdb = require("duckdb", "prepare --engine duckdb")
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-duckdb-", dir=out.parent))
    try:
        con = duckdb.connect(str(work / "prepare.duckdb"))
        try:
            con.execute(f"SET temp_directory = '{_sql_text(str(work / 'spill'))}'")
            con.execute("SET preserve_insertion_order = false")  # every output below has an ORDER BY
            if memory_limit:
                try:
                    con.execute(f"SET memory_limit = '{_sql_text(memory_limit)}'")
                except duckdb.Error as exc:
                    raise SymcereError(f"--memory-limit {memory_limit!r}: not a size DuckDB understands ({exc})") from None
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            job = _Job(con, opts)
            job.load(records)
            job.run()
            return pp._atomic_dir(out, overwrite, lambda tmp: job.write(tmp, report))
        finally:
            con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


class _Job:
    """One preparation: the DuckDB tables ``raw`` -> ``ded`` -> ``kc`` -> ``fin`` and what is written from them."""

    def __init__(self, con: Any, opts: Any) -> None:
        self.con, self.opts = con, opts
        self.records_read = self.after_dedup = self.iterations = 0

    def q(self, sql: str, params: Any = None) -> Any:
        return self.con.execute(sql, params) if params is not None else self.con.execute(sql)

    def scalar(self, sql: str) -> Any:
        return self.q(sql).fetchone()[0]

    # -- 0. the input, streamed -----------------------------------------------------------------------------
    def load(self, records: Iterable[Review]) -> None:
        self.q(
            "CREATE TABLE raw (pos BIGINT, user_id VARCHAR, item_id VARCHAR, timestamp BIGINT, rating DOUBLE, "
            "text_len BIGINT, review VARCHAR)"
        )
        n = 0
        for batch in _batches(records, BATCH_ROWS):
            table = _raw_table(batch, n)
            self.con.register("raw_batch", table)
            self.q("INSERT INTO raw SELECT * FROM raw_batch")
            self.con.unregister("raw_batch")
            n += len(batch)
        self.records_read = n
        if n == 0:
            raise SymcereError("no records read: the input is empty")

    # -- 1-4. the protocol --------------------------------------------------------------------------------
    def run(self) -> None:
        uk, ik = self.opts.uk, self.opts.ik
        # original ids -> codes in id order (the final index is the rank among surviving codes)
        for side in ("user", "item"):
            self.q(
                f"CREATE TABLE {side}_codes AS SELECT {side}_id, (row_number() OVER (ORDER BY {side}_id) - 1) AS code "
                f"FROM (SELECT DISTINCT {side}_id FROM raw)"
            )
        # 1. dedup: the earliest (timestamp, pos) of each (user, item); order = rank of pos among the kept
        self.q(
            """CREATE TABLE ded AS
            SELECT pos, uc, ic, timestamp, (row_number() OVER (ORDER BY pos) - 1) AS ord FROM (
                SELECT arg_min(r.pos, (r.timestamp, r.pos)) AS pos, u.code AS uc, i.code AS ic,
                       min(r.timestamp) AS timestamp
                FROM raw r JOIN user_codes u USING (user_id) JOIN item_codes i USING (item_id)
                GROUP BY u.code, i.code)"""
        )
        self.after_dedup = self.scalar("SELECT count(*) FROM ded")
        # 2. iterative k-core to a fixed point
        self.q("CREATE TABLE kc AS SELECT * FROM ded")
        if uk > 0 or ik > 0:
            size = self.after_dedup
            while True:
                self.iterations += 1
                self.q(
                    """CREATE OR REPLACE TABLE kc_next AS SELECT k.* FROM kc k
                    WHERE k.uc IN (SELECT uc FROM kc GROUP BY uc HAVING count(*) >= $uk)
                      AND k.ic IN (SELECT ic FROM kc GROUP BY ic HAVING count(*) >= $ik)""",
                    {"uk": uk, "ik": ik},
                )
                new = self.scalar("SELECT count(*) FROM kc_next")
                if new == size:
                    break
                self.q("DROP TABLE kc")
                self.q("ALTER TABLE kc_next RENAME TO kc")
                size = new
            self.q("DROP TABLE IF EXISTS kc_next")
        self.n = self.scalar("SELECT count(*) FROM kc")
        if self.n == 0:
            raise SymcereError(
                f"k-core filtering left no interactions (user_k={uk}, item_k={ik}, {self.after_dedup} interactions "
                "after dedup); the data is too sparse: try --k-core 0/2"
            )
        # 3. contiguous re-index in original-id order
        for side, code in (("user", "uc"), ("item", "ic")):
            self.q(
                f'CREATE TABLE {side}_index AS SELECT {code}, (row_number() OVER (ORDER BY {code}) - 1) AS "{side}" '
                f"FROM (SELECT DISTINCT {code} FROM kc)"
            )
        self.n_users = self.scalar("SELECT count(*) FROM user_index")
        self.n_items = self.scalar("SELECT count(*) FROM item_index")
        # 4. per-user chronological split: rank in (timestamp, order) within the user, sizes from split_counts
        self.q(
            """CREATE TABLE ranked AS SELECT u."user", i."item", k.pos, k.timestamp, k.ord,
                (row_number() OVER (PARTITION BY u."user" ORDER BY k.timestamp, k.ord) - 1) AS rnk,
                count(*) OVER (PARTITION BY u."user") AS n
            FROM kc k JOIN user_index u USING (uc) JOIN item_index i USING (ic)"""
        )
        sizes = [row[0] for row in self.q("SELECT DISTINCT n FROM ranked").fetchall()]
        bounds = pa.table(
            {
                "n": pa.array(sizes, pa.int64()),
                "tr": pa.array([pp.split_counts(int(s), self.opts.ratios)[0] for s in sizes], pa.int64()),
                "va": pa.array([pp.split_counts(int(s), self.opts.ratios)[1] for s in sizes], pa.int64()),
            }
        )
        self.con.register("split_bounds", bounds)
        self.q(
            """CREATE TABLE fin AS SELECT r."user", r."item", r.pos, r.timestamp, r.ord,
                CASE WHEN r.rnk < b.tr THEN 'train' WHEN r.rnk < b.tr + b.va THEN 'valid' ELSE 'test' END AS split
            FROM ranked r JOIN split_bounds b USING (n)"""
        )
        self.con.unregister("split_bounds")
        self.q("DROP TABLE ranked")

    # -- 5. the files -------------------------------------------------------------------------------------
    def write(self, tmp: Path, report: Any) -> None:
        inter = tmp / "interactions.parquet"
        write_parquet(
            inter,
            interaction_schema(),
            self.reader(
                """SELECT f."user", f."item", r.rating, f.timestamp, f.split, r.review, f.ord AS "order"
                FROM fin f JOIN raw r USING (pos) ORDER BY f."user", f.timestamp, f.ord"""
            ),
        )
        write_parquet(
            tmp / "users.parquet",
            _USERS_SCHEMA,
            self.reader(
                """SELECT x."user", c.user_id FROM user_index x JOIN user_codes c ON c.code = x.uc
                ORDER BY x."user\""""
            ),
        )
        budget = int(self.opts.text_budget)
        sep = pp.TEXT_SEPARATOR
        keep = "TRUE" if budget == 0 else f"before < {budget}"
        cut = "t.text" if budget == 0 else f"substring(t.text, 1, {budget})"
        self.q(
            f"""CREATE TABLE item_texts AS SELECT "item", string_agg(review, $sep ORDER BY timestamp, ord) AS text
            FROM (
                SELECT "item", review, timestamp, ord,
                    coalesce(sum(length(review) + {len(sep)}) OVER (PARTITION BY "item" ORDER BY timestamp, ord
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                FROM (SELECT f."item", r.review, f.timestamp, f.ord FROM fin f JOIN raw r USING (pos)
                      WHERE f.split = 'train' AND r.review <> '')
            ) WHERE {keep} GROUP BY "item\"""",
            {"sep": sep},
        )
        write_parquet(
            tmp / "items.parquet",
            _ITEMS_SCHEMA,
            self.reader(
                f"""SELECT x."item", c.item_id, coalesce({cut}, '') AS text, coalesce(n.n_train, 0) AS n_train
                FROM item_index x JOIN item_codes c ON c.code = x.ic
                LEFT JOIN item_texts t ON t."item" = x."item"
                LEFT JOIN (SELECT "item", count(*) AS n_train FROM fin WHERE split = 'train' GROUP BY "item") n
                    ON n."item" = x."item"
                ORDER BY x."item\""""
            ),
        )
        meta: dict[str, Any] = {
            "format_version": pp.FORMAT_VERSION,
            "name": self.opts.name,
            "params": self.opts.params(),
            "stats": self.stats(inter),
            "content_hash": content_hash_file(inter),
            **self.opts.extra_meta,
        }
        if report is not None:
            meta["stats"]["skipped"] = report.as_dict()
        pp._write_meta(tmp, meta)

    def reader(self, sql: str) -> pa.RecordBatchReader:
        return self.con.sql(sql).to_arrow_reader(BATCH_ROWS)

    def stats(self, inter: Path) -> dict[str, Any]:
        """``preprocess._stats`` from the tables (the same keys, order and float arithmetic)."""
        n_u, n_i, n = self.n_users, self.n_items, self.n
        empty, text_chars, t_min, t_max = self.q(
            "SELECT count(*) FILTER (WHERE r.text_len = 0), sum(r.text_len), min(f.timestamp), max(f.timestamp) "
            "FROM fin f JOIN raw r USING (pos)"
        ).fetchone()
        counts = dict(self.q("SELECT split, count(*) FROM fin GROUP BY split").fetchall())
        no_train_count = self.scalar(
            'SELECT count(*) FROM user_index WHERE "user" NOT IN (SELECT "user" FROM fin WHERE split = \'train\')'
        )
        no_train_ids = [
            row[0]
            for row in self.q(
                f"""SELECT c.user_id FROM user_index x JOIN user_codes c ON c.code = x.uc
                WHERE x."user" NOT IN (SELECT "user" FROM fin WHERE split = 'train')
                ORDER BY x."user" LIMIT {pp.MAX_LISTED_IDS}"""
            ).fetchall()
        ]
        items_train = self.scalar("SELECT count(DISTINCT \"item\") FROM fin WHERE split = 'train'")
        # numpy's int64 mean: an exact float64 sum (integers below 2**53) divided by n
        mean_length = float(np.float64(float(int(text_chars))) / np.float64(n))
        return {
            "users": n_u,
            "items": n_i,
            "interactions": n,
            "density": n / (n_u * n_i),
            "empty_texts": int(empty),
            "mean_review_length": mean_length,
            "splits": {s: int(counts.get(s, 0)) for s in pp.SPLITS},
            "users_without_train": {"count": int(no_train_count), "ids": no_train_ids},
            "items_without_train": int(n_i - items_train),
            "records_read": self.records_read,
            "duplicates_removed": self.records_read - self.after_dedup,
            "removed_by_kcore": self.after_dedup - n,
            "kcore_iterations": self.iterations,
            "mean_rating": _mean_rating(inter),
            "time_span": [int(t_min), int(t_max)],
        }


def _batches(records: Iterable[Review], size: int) -> Iterator[list[Review]]:
    batch: list[Review] = []
    for r in records:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _raw_table(batch: list[Review], start: int) -> pa.Table:
    """One batch of records as the ``raw`` table's columns (the same conversions as ``preprocess._collect``)."""
    texts = [r.text or "" for r in batch]
    return pa.table(
        {
            "pos": pa.array(np.arange(start, start + len(batch), dtype=np.int64)),
            "user_id": pa.array([r.user for r in batch], pa.string()),
            "item_id": pa.array([r.item for r in batch], pa.string()),
            "timestamp": pa.array(np.array([r.timestamp for r in batch], dtype=np.int64)),
            "rating": pa.array(
                np.array([np.nan if r.rating is None else r.rating for r in batch], dtype=np.float64), from_pandas=True
            ),
            "text_len": pa.array(np.array([len(t) for t in texts], dtype=np.int64)),
            "review": pa.array(
                [pp.review_text(r.title or "", t) for r, t in zip(batch, texts, strict=True)], pa.string()
            ),
        },
        schema=_RAW_SCHEMA,
    )


def write_parquet(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Write ``batches`` as ``pq.write_table`` writes the whole table (row groups of ``ROW_GROUP_ROWS``, each one
    contiguous chunk per column), holding at most one row group in memory; returns the rows written."""
    pending: list[pa.Table] = []
    buffered = total = 0
    with pq.ParquetWriter(path, schema) as writer:

        def flush(rows: int) -> None:
            nonlocal pending, buffered
            table = pa.concat_tables(pending)
            writer.write_table(table.slice(0, rows).combine_chunks())
            rest = table.slice(rows)
            pending, buffered = ([rest] if rest.num_rows else []), rest.num_rows

        for batch in batches:
            table = pa.Table.from_batches([batch]).rename_columns(schema.names).cast(schema)
            pending.append(table)
            buffered += table.num_rows
            total += table.num_rows
            while buffered >= ROW_GROUP_ROWS:
                flush(ROW_GROUP_ROWS)
        if buffered or total == 0:
            if pending:
                flush(buffered)
            else:
                writer.write_table(schema.empty_table())
    return total


def content_hash_file(path: Path) -> str:
    """``preprocess.content_hash`` of an ``interactions.parquet`` file, streamed column by column."""
    h = hashlib.sha256()
    pf = pq.ParquetFile(path)
    for col in pp._INTERACTION_SCHEMA.names:
        h.update(col.encode() + b"\0")
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[col]):
            values = batch.column(0)
            if col in ("split", "review"):
                h.update(_length_prefixed(values))
            else:
                dtype = "<f8" if col == "rating" else "<i8"
                h.update(np.ascontiguousarray(values.to_numpy(zero_copy_only=False), dtype=dtype).tobytes())
    return h.hexdigest()


def _length_prefixed(values: pa.Array) -> bytes:
    """Each string as its UTF-8 length (8 bytes, little endian) followed by its bytes, concatenated."""
    if values.null_count:
        raise SymcereError("internal error: a null string in a text column of the interactions")
    arr = values.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]] if len(arr) else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    n = len(lengths)
    out = np.empty(8 * n + len(data), dtype=np.uint8)
    heads = 8 * np.arange(n, dtype=np.int64) + (offsets[:-1] - offsets[0])
    head_pos = (heads[:, None] + np.arange(8)).ravel()
    out[head_pos] = lengths.astype("<u8").view(np.uint8)
    is_data = np.ones(len(out), dtype=bool)
    is_data[head_pos] = False
    out[is_data] = data
    return out.tobytes()


def _mean_rating(inter: Path) -> float | None:
    """pandas' ``Series.dropna().mean()`` of the rating column in file order (as ``preprocess._stats``)."""
    ratings = pq.read_table(inter, columns=["rating"]).column(0).to_numpy(zero_copy_only=False)
    series = pd.Series(ratings, dtype=np.float64).dropna()
    return float(series.mean()) if len(series) else None
