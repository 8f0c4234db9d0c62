"""Deterministic benchmark data in the shapes of SimpleCoT (issue 5).

Rows have ``source`` (~620 characters, 88 to 2,000, lognormal), ``rationale`` (~300) and
``target`` (~18).  Texts are slices of one pseudo-English pool (words, punctuation, quotes,
newlines and a little non-ASCII, so JSON escaping and UTF-8 sizes are exercised) at random
offsets: fast to make for millions of rows, and the same for a given seed every time.

The collect fixture is one Bedrock output file of a Claude job over the first ``n`` rows:
every line echoes the full request (``modelInput``) as Bedrock does, successes carry a
Claude response of ~300 characters with usage, 1% are error lines, and the lines are
shuffled.  A ~1,100-character system prompt in the echoed request brings a line to ~2.8 KB,
the size the issue reports for the reference's data (135 MiB for 50,000 lines).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240307
BATCH_ROWS = 100_000
POOL_CHARS = 4_000_000
TEMPLATE = "{source}\n\nExplain: {rationale}"
NUMBERED_TEMPLATE = TEMPLATE + " (question {n})"
"""For ``frame-mixed`` rows: the template also uses their number column ``n``."""
CLAUDE_ID = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN_ID = "amazon.titan-embed-text-v2:0"
ERROR_SHARE = 0.01

_COMMON_TEXT = (
    "the of and to in is that it for was on are as with his they at be this from have or "
    "by one had not but what all were when we there can an your which their said if do will "
    "each about how up out them then she many some so these would other into has more her "
    "two like him see time could no make than first been its who now people my made over did "
    "down only way find use may water long little very after words called just where most "
    "know get through back much before go good new write our used me man too any day same "
    "right look think also around another came come work three word must because does part "
    "question answer reason therefore premise hypothesis sentence entails contradicts"
)
_COMMON = tuple(_COMMON_TEXT.split())
_ODD = ("café", "naïve", "résumé", "—", "→", "x²", "Zürich", "déjà", "“quoted”", "½")
_SEPARATORS = (" ",) * 14 + (", ", ". ", ".\n", '" ', " (", ") ", "; ", ": ", "\t")


def _pool(rs: np.random.RandomState, n_chars: int) -> str:
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ou")]
    invented = ["".join(rs.choice(syllables, rs.randint(2, 5))) for _ in range(600)]
    vocab = np.array(list(_COMMON) * 4 + invented + list(_ODD))
    n_words = n_chars // 5 + 1
    words = vocab[rs.randint(0, len(vocab), n_words)]
    seps = np.array(_SEPARATORS)[rs.randint(0, len(_SEPARATORS), n_words)]
    text = "".join(np.char.add(words, seps).tolist())
    return text[:n_chars]


def _lengths(
    rs: np.random.RandomState, n: int, median: float, sigma: float, lo: int, hi: int
) -> np.ndarray:
    return np.clip(np.round(rs.lognormal(np.log(median), sigma, n)), lo, hi).astype(np.int64)


def _slices(rs: np.random.RandomState, pool: str, lengths: np.ndarray) -> list[str]:
    starts = rs.randint(0, len(pool) - int(lengths.max()) - 1, len(lengths))
    out = [pool[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
    # No text may be blank (the engine rightly rejects blank prompts): start on a letter.
    return [t if t[:1].isalnum() else "A" + t[1:] for t in out]


def simplecot_batches(n_rows: int, seed: int = SEED) -> Iterator[pa.RecordBatch]:
    """``n_rows`` SimpleCoT-like rows, ``BATCH_ROWS`` at a time."""
    rs = np.random.RandomState(seed)
    pool = _pool(rs, POOL_CHARS)
    done = 0
    while done < n_rows:
        n = min(BATCH_ROWS, n_rows - done)
        source = _slices(rs, pool, _lengths(rs, n, 520, 0.6, 88, 2_000))
        rationale = _slices(rs, pool, _lengths(rs, n, 275, 0.42, 20, 1_500))
        target = _slices(rs, pool, _lengths(rs, n, 15, 0.6, 1, 200))
        yield pa.RecordBatch.from_arrays(
            [pa.array(source), pa.array(rationale), pa.array(target)],
            names=["source", "rationale", "target"],
        )
        done += n


def write_simplecot(path: Path, n_rows: int) -> Path:
    """Write ``n_rows`` rows as Parquet (row groups of ``BATCH_ROWS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer: pq.ParquetWriter | None = None
    for batch in simplecot_batches(n_rows):
        if writer is None:
            writer = pq.ParquetWriter(tmp, batch.schema)
        writer.write_batch(batch)
    assert writer is not None
    writer.close()
    tmp.rename(path)
    return path


SOURCE_FORMATS = (
    "parquet",
    "frame",
    "frame-object",
    "frame-mixed",
    "csv",
    "jsonl",
    "hf",
    "hf-shuffled",
    "hf-streamed",
    "hf-streamed-nopre",
)
"""The forms the prepare cases read the same rows from (``frame``: a DataFrame, read from the
Parquet file, with pandas' own string dtype; ``frame-object``: Python strings in object
columns, as pandas before 3.0 reads them; ``frame-mixed``: the same beside a number column
``n``, which ``NUMBERED_TEMPLATE`` uses, so that the rows stay in pandas; ``hf``: a saved
``datasets.Dataset``, memory-mapped when loaded, as ``load_dataset`` gives it;
``hf-shuffled``: the same after ``shuffle()``, a selection of its rows; ``hf-streamed``:
the Parquet file through ``load_dataset(..., streaming=True)``, an ``IterableDataset``;
``hf-streamed-nopre``: the same with pyarrow's pre-buffering off, see the README)."""


def simplecot_as(parquet: Path, fmt: str) -> Path:
    """Where the rows of ``parquet`` are kept in ``fmt``."""
    if fmt == "parquet" or fmt.startswith(("frame", "hf-streamed")):
        return parquet
    return parquet.with_suffix(".hf" if fmt.startswith("hf") else f".{fmt}")


def write_simplecot_as(parquet: Path, fmt: str) -> Path:
    """Write the rows of ``parquet`` again in ``fmt`` (a batch at a time; for ``hf`` through
    ``datasets``' own Parquet reader), beside it."""
    import pyarrow.csv as pa_csv

    target = simplecot_as(parquet, fmt)
    tmp = target.with_name(target.name + ".tmp")
    if fmt.startswith("hf"):
        import datasets

        with tempfile.TemporaryDirectory(dir=parquet.parent) as cache:
            dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=cache)
            dataset.save_to_disk(str(tmp))
    else:
        batches = pq.ParquetFile(parquet).iter_batches(BATCH_ROWS)
        if fmt == "csv":  # quoted cells, newlines inside them as they are
            with pa_csv.CSVWriter(tmp, pq.read_schema(parquet)) as writer:
                for batch in batches:
                    writer.write_batch(batch)
        elif fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as out:
                for batch in batches:
                    for row in batch.to_pylist():
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            raise ValueError(f"unknown format {fmt!r}: one of {SOURCE_FORMATS}")
    tmp.rename(target)
    return target


SYSTEM_PROMPT = (
    "You are a careful annotator of natural-language inference examples. For each example "
    "you receive a premise and a short rationale written by another annotator. Read both "
    "closely. Then explain, in plain English and in no more than three sentences, whether "
    "the rationale really supports the label it argues for, pointing to the exact words of "
    "the premise that matter. Do not restate the premise in full. Do not invent facts that "
    "are not in the premise. If the rationale relies on world knowledge, say which piece of "
    "knowledge it needs and whether a typical reader would share it. If the rationale is "
    "wrong, say so directly and give the correct reasoning instead. Keep a neutral tone; do "
    "not praise or criticise the annotator. Use no lists, headings or markdown: one short "
    "paragraph only. When the premise is ambiguous, name the two readings and say which one "
    "the rationale assumes. When numbers or dates are involved, check the arithmetic. When "
    "the premise is in a language other than English, answer in English but quote the "
    "original words. End with a single word on its own: SUPPORTED, UNSUPPORTED or UNCLEAR."
)


def _claude_request(prompt: str) -> dict[str, object]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "system": SYSTEM_PROMPT,
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
    }


def write_collect_fixture(directory: Path, n_lines: int) -> tuple[Path, Path]:
    """The input rows of one job (Parquet) and its Bedrock output file (JSONL, shuffled)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows_path = directory / f"collect-rows-{n_lines}.parquet"
    out_path = directory / f"collect-{n_lines}.jsonl.out"
    write_simplecot(rows_path, n_lines)
    table = pq.read_table(rows_path)
    sources = table.column("source").to_pylist()
    rationales = table.column("rationale").to_pylist()
    rs = np.random.RandomState(SEED + 1)
    pool = _pool(rs, 400_000)
    answers = _slices(rs, pool, _lengths(rs, n_lines, 290, 0.3, 40, 1_200))
    failed = rs.random_sample(n_lines) < ERROR_SHARE
    order = rs.permutation(n_lines)
    lines: list[str] = []
    for i in order.tolist():
        prompt = TEMPLATE.format(source=sources[i], rationale=rationales[i])
        record: dict[str, object] = {
            "recordId": f"R{i:010d}",
            "modelInput": _claude_request(prompt),
        }
        if failed[i]:
            record["error"] = {
                "errorCode": 400,
                "errorMessage": "Malformed input request: #/messages/0/content: expected "
                "minimum item count: 1, found: 0, please reformat your input and try again.",
            }
        else:
            text = answers[i]
            record["modelOutput"] = {
                "id": f"msg_bdrk_{i:024x}",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-haiku-20240307",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": (len(prompt) + len(SYSTEM_PROMPT)) // 4,
                    "output_tokens": max(1, len(text) // 4),
                },
            }
        lines.append(json.dumps(record, ensure_ascii=False))
    out_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    meta = {"lines": n_lines, "errors": int(failed.sum()), "bytes": out_path.stat().st_size}
    (directory / f"collect-{n_lines}.meta.json").write_text(json.dumps(meta))
    return rows_path, out_path


EMBED_DIMENSIONS = 1024


def write_embed_fixture(directory: Path, n_lines: int) -> tuple[Path, Path]:
    """One Titan embeddings job: its input rows (Parquet) and its output file (JSONL,
    shuffled): 1,024 numbers a line at full precision, 1% error lines."""
    directory.mkdir(parents=True, exist_ok=True)
    rows_path = directory / f"embed-rows-{n_lines}.parquet"
    out_path = directory / f"embed-{n_lines}.jsonl.out"
    write_simplecot(rows_path, n_lines)
    sources = pq.read_table(rows_path, columns=["source"]).column("source").to_pylist()
    rs = np.random.RandomState(SEED + 2)
    failed = rs.random_sample(n_lines) < ERROR_SHARE
    order = rs.permutation(n_lines)
    with open(out_path, "w", encoding="utf-8") as out:
        for i in order.tolist():
            record: dict[str, object] = {
                "recordId": f"R{i:010d}",
                "modelInput": {
                    "inputText": sources[i],
                    "dimensions": EMBED_DIMENSIONS,
                    "normalize": True,
                },
            }
            if failed[i]:
                record["error"] = {
                    "errorCode": 400,
                    "errorMessage": "Malformed input request: 400 Bad Request: Too many "
                    "input tokens. Max input tokens: 8192, request input token count: 9001",
                }
            else:
                vector = rs.standard_normal(EMBED_DIMENSIONS)
                vector /= np.linalg.norm(vector)
                record["modelOutput"] = {
                    "embedding": vector.tolist(),
                    "inputTextTokenCount": max(1, len(sources[i]) // 4),
                }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    meta = {"lines": n_lines, "errors": int(failed.sum()), "bytes": out_path.stat().st_size}
    (directory / f"embed-{n_lines}.meta.json").write_text(json.dumps(meta))
    return rows_path, out_path
