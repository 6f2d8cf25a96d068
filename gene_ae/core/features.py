"""The user's per-record features as typed columns, and the `--where` filter language over them.

A feature is numeric (float; missing = NaN) or categorical (text; missing = None). Columns are what an
index stores (`FeatureColumns.save`) and what a filter is evaluated on, all records at once.

Filter grammar (`gene-ae search --where`), over feature names:

    expr   := term ('or' term)*
    term   := factor ('and' factor)*
    factor := 'not' factor | '(' expr ')' | NAME OP value | NAME ['not'] 'in' '[' value (',' value)* ']'
    OP     := == | != | < | <= | > | >=          value := NUMBER | "text" | 'text'

Numeric features take numbers and every comparison; categorical ones take text with ==, != and in. A
missing value matches no comparison, `!=` and `not in` included (`not (...)` then includes it). An
unknown name or a type mismatch is a one-line ValueError naming it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("numeric", "categorical")
FILE = "features.npz"


@dataclass
class FeatureColumns:
    """Features of n records: kinds[name] in KINDS; values[name] float64 (NaN missing) or object (None missing)."""

    kinds: dict[str, str] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, kinds: Mapping[str, str], rows: Iterable[Mapping[str, object]]) -> FeatureColumns:
        rows = list(rows)
        out = cls(dict(kinds))
        for name, kind in kinds.items():
            got = [r.get(name) for r in rows]
            if kind == "numeric":
                out.values[name] = np.array([math.nan if v is None else float(v) for v in got], dtype=np.float64)
            else:
                out.values[name] = np.array([None if v is None else str(v) for v in got], dtype=object)
        return out

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def value(self, name: str, row: int) -> float | str | None:
        """One record's value as a reader gives it: None when missing."""
        v = self.values[name][row]
        return None if v is None or (self.kinds[name] == "numeric" and math.isnan(v)) else v

    def text(self, name: str, row: int) -> str:
        """A value as hits.tsv writes it: numbers as given, text as is, missing as the empty string."""
        v = self.values[name][row]
        if self.kinds[name] == "numeric":
            return "" if math.isnan(v) else f"{v:g}"
        return "" if v is None else v

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE
        arrays: dict[str, np.ndarray] = {"kinds": np.array(json.dumps(self.kinds))}
        for i, (name, kind) in enumerate(self.kinds.items()):
            col = self.values[name]
            if kind == "numeric":
                arrays[f"f{i}"] = col
            else:
                cats = sorted({v for v in col if v is not None})
                lookup = {c: j for j, c in enumerate(cats)}
                arrays[f"f{i}"] = np.array([-1 if v is None else lookup[v] for v in col], dtype=np.int32)
                arrays[f"c{i}"] = np.array(json.dumps(cats))
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> FeatureColumns:
        path = Path(directory) / FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                kinds = json.loads(str(z["kinds"]))
                out = cls(kinds)
                for i, (name, kind) in enumerate(kinds.items()):
                    if kind == "numeric":
                        out.values[name] = z[f"f{i}"].astype(np.float64)
                    else:
                        cats = np.array([None, *json.loads(str(z[f"c{i}"]))], dtype=object)
                        out.values[name] = cats[z[f"f{i}"].astype(np.int64) + 1]
        except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"{path}: not a readable feature table ({exc})") from None
        return out


# ---------------------------------------------------------------------------------------------- --where

_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"|(?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)
_WORDS = ("and", "or", "not", "in")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")  # a feature name --where can write (the readers allow only these)
MAX_DEPTH = 100  # nested parentheses and `not`s a filter may hold: deeper is refused, not a RecursionError


def _tokens(text: str) -> list[tuple[str, object]]:
    out, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        m = _TOKEN.match(text, at)
        if not m or m.end() == at:
            raise ValueError(f"--where {text!r}: cannot read {text[at:].strip()[:20]!r}")
        at = m.end()
        if m.group("num") is not None:
            out.append(("value", float(m.group("num"))))
        elif m.group("str") is not None:
            out.append(("value", re.sub(r"\\(.)", r"\1", m.group("str")[1:-1])))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            word = m.group("name")
            out.append(("word", word) if word in _WORDS else ("name", word))
    return out


class _Parser:
    def __init__(self, text: str, columns: FeatureColumns):
        self.text, self.cols, self.toks, self.at = text, columns, _tokens(text), 0

    def fail(self, what: str) -> ValueError:
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return ValueError(f"--where {shown!r}: {what}")

    def peek(self) -> tuple[str, object] | None:
        return self.toks[self.at] if self.at < len(self.toks) else None

    def take(self, kind: str, value: object = None) -> object:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            got = "the end" if tok is None else repr(tok[1])
            raise self.fail(f"expected {value or kind}, got {got}")
        self.at += 1
        return tok[1]

    def parse(self) -> np.ndarray:
        if not self.toks:
            raise self.fail("empty filter")
        mask = self.expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")
        return mask

    def expr(self, depth: int = 0) -> np.ndarray:
        mask = self.term(depth)
        while self.peek() == ("word", "or"):
            self.at += 1
            mask = mask | self.term(depth)
        return mask

    def term(self, depth: int) -> np.ndarray:
        mask = self.factor(depth)
        while self.peek() == ("word", "and"):
            self.at += 1
            mask = mask & self.factor(depth)
        return mask

    def factor(self, depth: int) -> np.ndarray:
        tok = self.peek()
        if depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} deep")
        if tok == ("word", "not"):
            self.at += 1
            return ~self.factor(depth + 1)
        if tok == ("op", "("):
            self.at += 1
            mask = self.expr(depth + 1)
            self.take("op", ")")
            return mask
        name = str(self.take("name"))
        if name not in self.cols.kinds:
            known = ", ".join(sorted(self.cols.kinds)) or "none: build the index with --feature-column"
            raise self.fail(f"unknown feature {name!r} (this index has: {known})")
        if self.peek() == ("word", "not"):  # NAME not in [...]: present and none of them
            self.at += 1
            self.take("word", "in")
            return self._present(name) & ~self._in(name)
        if self.peek() == ("word", "in"):
            self.at += 1
            return self._in(name)
        op = str(self.take("op"))
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            raise self.fail(f"expected a comparison after {name!r}, got {op!r}")
        return self._compare(name, op, self._value(name))

    def _value(self, name: str) -> object:
        value = self.take("value")
        numeric = self.cols.kinds[name] == "numeric"
        if numeric != isinstance(value, float):
            want = "a number" if numeric else "quoted text"
            raise self.fail(f"{name!r} is {self.cols.kinds[name]}: compare it with {want}, not {value!r}")
        return value

    def _in(self, name: str) -> np.ndarray:
        self.take("op", "[")
        values = [self._value(name)]
        while self.peek() == ("op", ","):
            self.at += 1
            values.append(self._value(name))
        self.take("op", "]")
        mask = np.zeros(len(self.cols), dtype=bool)
        for v in values:
            mask |= self._compare(name, "==", v)
        return mask

    def _present(self, name: str) -> np.ndarray:
        col = self.cols.values[name]
        if self.cols.kinds[name] == "numeric":
            return ~np.isnan(col)
        return np.array([v is not None for v in col], dtype=bool)

    def _compare(self, name: str, op: str, value: object) -> np.ndarray:
        col = self.cols.values[name]
        if self.cols.kinds[name] == "numeric":
            with np.errstate(invalid="ignore"):
                return {"==": col == value, "!=": (col != value) & ~np.isnan(col), "<": col < value,
                        "<=": col <= value, ">": col > value, ">=": col >= value}[op]  # fmt: skip
        if op not in ("==", "!="):
            raise self.fail(f"{name!r} is categorical: use ==, != or in, not {op}")
        equal = np.array([v == value for v in col], dtype=bool)
        return equal if op == "==" else self._present(name) & ~equal


def where(text: str, columns: FeatureColumns) -> np.ndarray:
    """The records (a boolean mask over len(columns)) that pass the filter `text`."""
    return _Parser(text, columns).parse()
