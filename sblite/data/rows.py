"""``load_rows``: one dataset in, validated rows and rejects out (read → resolve fields → validate).

``sblite prepare`` and ``sblite eval`` both start here, so a record means the same thing to both: every
record read becomes exactly one ``Row`` or ``Reject`` (``read == len(rows) + len(rejects)``).

This module only composes ``sblite.data.readers`` and ``sblite.data.fields``: it must not label, tokenize,
write files or turn ``SourceError`` into a stage's own error (each caller does that with the same message).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sblite.data.fields import FieldMap, Reject, Row, Validator, collect_columns, resolve_fields
from sblite.data.readers import Source, SourceError, read_records, resolve_source


@dataclass
class LoadedRows:
    """What ``load_rows`` read: the resolved source and field map, then every record read, accounted for."""

    source: Source
    fields: FieldMap
    rows: list[Row]
    rejects: list[Reject]
    read: int  # records consumed: always len(rows) + len(rejects)


def load_rows(
    spec: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    max_rows: int | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    solution_field: str | None = None,
    level_field: str | None = None,
    id_field: str | None = None,
) -> LoadedRows:
    """Resolve ``spec``, read its records, map fields and validate them in order.

    ``limit`` stops after that many records (``prepare --limit``: kept and rejected alike); ``max_rows``
    stops once that many rows are kept (``eval --limit``: the questions asked). Raises ``SourceError`` for
    problems with the source as a whole (unknown name, unreadable or empty file, a column no record has).
    """
    source = resolve_source(spec, data_dir)
    records = list(read_records(source))
    fields = resolve_fields(
        source,
        collect_columns(records),
        question_field=question_field,
        answer_field=answer_field,
        solution_field=solution_field,
        level_field=level_field,
        id_field=id_field,
    )
    if not records:
        raise SourceError(f"{spec}: no records to read")
    validate = Validator(source, fields)
    rows: list[Row] = []
    rejects: list[Reject] = []
    read = 0
    for rec in records:
        if limit is not None and read >= limit:
            break
        read += 1
        res = validate(rec)
        if isinstance(res, Row):
            rows.append(res)
            if max_rows and len(rows) >= max_rows:
                break
        else:
            rejects.append(res)
    assert read == len(rows) + len(rejects)
    return LoadedRows(source=source, fields=fields, rows=rows, rejects=rejects, read=read)
