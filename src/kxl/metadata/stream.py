"""Write a parquet table chunk by chunk, with the same bytes `kxl.tables.write_table` gives.

The relation table is too large (234M rows at full scale) to hold whole in memory, so it is
written as it is read (captions too, as they are computed). Same writer settings as
`write_table`, and rows are regrouped into row groups of exactly the same size, each handed
to the writer as one contiguous chunk (the writer's page cuts follow chunk boundaries), so the
file is byte-identical to writing the whole table at once from one chunk, however it was cut
into pieces (tested).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from kxl import tables
from kxl.atomic import atomic_path
from kxl.tables import Schema, check_schema


class TableStream:
    """Context manager: `write(df)` chunks in order; renamed into place only on success."""

    def __init__(self, path: str | os.PathLike[str], schema: Schema) -> None:
        self.path, self.schema = Path(path), schema
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._written = False

    def __enter__(self) -> TableStream:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def write(self, df: pl.DataFrame) -> None:
        table = check_schema(df, self.schema, self.path.name).to_arrow()
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self._tmp, table.schema, compression=tables._COMPRESSION,
                compression_level=tables._LEVEL, write_statistics=True, use_dictionary=True,
            )
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= tables._ROW_GROUP:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        assert self._writer is not None
        whole = pa.concat_tables(self._buffer)
        cut = len(whole) if final else len(whole) - len(whole) % tables._ROW_GROUP
        # an empty table still gets its one empty row group, as pq.write_table writes it
        if cut or (final and not self._written):
            self._writer.write_table(whole.slice(0, cut).combine_chunks(),
                                     row_group_size=tables._ROW_GROUP)
            self._written = True
        self._buffer = [whole.slice(cut)]
        self._buffered = len(whole) - cut

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                if self._writer is None:  # no chunk at all: an empty table
                    self.write(pl.DataFrame(schema=self.schema))
                self._flush(final=True)
            if self._writer is not None:
                self._writer.close()
        finally:
            # atomic_path renames the temporary file only when no exception is passed in
            self._stack.__exit__(exc_type, exc, tb)
