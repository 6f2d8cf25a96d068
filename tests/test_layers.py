"""Layer rules: which side may import which, read from the source (every import, also inside functions),
and, in fresh interpreters, the heavy packages each entry point pulls in.

The sides, bottom up: shard_tools (the on-disk format) < gene_ae.core (numpy only) < model / index <
search < evaluate, train, registry < cli. Search never imports training; the config layer imports no MLflow.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Which gene_ae sides each side may import (itself always); "config" is gene_ae/config.py.
ALLOWED = {
    "core": set(),
    "config": {"core", "model.config", "model.features"},
    "model": {"core"},  # the model reads its own ModelConfig only (issue 36)
    "index": {"core", "model"},  # index/build.py embeds records with the Encoder
    "search": {"core", "index", "model"},  # search/searcher.py loads the index's encoder when vectors are asked
    "evaluate": {"core", "model", "index", "search"},
    "registry": {"core", "config", "model"},
    "train": {"core", "config", "model", "registry", "evaluate.metrics"},
    "cli": {"core", "config", "model", "index", "search", "evaluate", "registry"},
    "demo": {"config", "registry"},
    "demo_features": {"demo"},
}


def _side(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from gene_ae.model import config`
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _allowed(side: str, target: str) -> bool:
    rest = target.split(".", 1)[1] if "." in target else ""
    return _side(target) == side or any(rest == a or rest.startswith(a + ".") for a in ALLOWED[side])


@pytest.mark.parametrize("path", sorted((REPO / "gene_ae").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_each_side_imports_only_the_sides_below_it(path: Path) -> None:
    rel = path.relative_to(REPO / "gene_ae")
    side = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else ""
    if side == "":
        return  # gene_ae/__init__.py: the lazy public API
    wrong = {t for t in _imports(path) if t.startswith("gene_ae.") and t.count(".") >= 1 and not _allowed(side, t)}
    # `from gene_ae.x import y` adds both gene_ae.x and gene_ae.x.y; report the module only.
    wrong = {t for t in wrong if not any(t.startswith(o + ".") for o in wrong)}
    assert not wrong, f"{rel} ({side}) imports {sorted(wrong)}; allowed: {sorted(ALLOWED[side])}"


def test_shard_tools_imports_nothing_of_gene_ae() -> None:
    for path in (REPO / "shard_tools").rglob("*.py"):
        assert not {t for t in _imports(path) if t.split(".")[0] == "gene_ae"}, path


def _loaded_after(imports: str) -> set[str]:
    code = f"import sys, json\n{imports}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_light_layers_pull_in_no_torch_and_no_mlflow() -> None:
    loaded = _loaded_after(
        "import shard_tools.cli, shard_tools.inputs, shard_tools.writer, shard_tools.verify\n"
        "import gene_ae.config, gene_ae.core.kmers, gene_ae.core.records, gene_ae.index.directory, gene_ae.cli"
    )
    top = {m.split(".")[0] for m in loaded}
    assert "gene_ae.index.directory" in loaded  # the check itself ran
    assert not top & {"torch", "mlflow", "ray", "webdataset"}, top & {"torch", "mlflow", "ray", "webdataset"}


def test_inference_and_search_pull_in_neither_training_nor_ray() -> None:
    loaded = _loaded_after(
        "import gene_ae.model.encoder, gene_ae.registry.pyfunc_model, gene_ae.registry.serve_model\n"
        "import gene_ae.search.engine\nfrom gene_ae import Encoder"
    )
    top = {m.split(".")[0] for m in loaded}
    assert "torch" in top  # the check itself ran: the encoder did load
    assert not top & {"webdataset", "ray"}, top & {"webdataset", "ray"}
    assert not {m for m in loaded if m.startswith("gene_ae.train")}
