"""Layer rules: shard_tools is the bottom layer, and inference needs no training code.

Each import runs in a fresh interpreter so that what one test imported cannot hide another's leak.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _loaded_after(imports: str) -> set[str]:
    code = f"import sys, json\n{imports}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "imports",
    ["import shard_tools", "import shard_tools.cli, shard_tools.inputs, shard_tools.writer, shard_tools.verify"],
)
def test_shard_tools_imports_nothing_from_gene_ae_nor_torch(imports: str) -> None:
    loaded = _loaded_after(imports)
    assert "gene_ae" not in loaded
    assert "torch" not in loaded


def test_inference_imports_neither_webdataset_nor_ray() -> None:
    loaded = _loaded_after("import gene_ae.encoder, gene_ae.pyfunc_model, gene_ae.serving\nfrom gene_ae import Encoder")
    assert "torch" in loaded  # the check itself ran: the encoder did load
    assert not loaded & {"webdataset", "ray"}, loaded & {"webdataset", "ray"}
