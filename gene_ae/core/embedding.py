"""The shape of the function that turns sequences into an index's vectors, named once for those that take one
(the build, the search, the checks) without importing what computes it (the model's Encoder, or an index's bag
tables, gene_ae/core/bagvec.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# token arrays -> L2-normalised vectors; called with features= (name -> one value per array) only for a model
# whose vector takes features (ModelInfo.features), so a plain callable serves every other model
Embed = Callable[..., np.ndarray]
