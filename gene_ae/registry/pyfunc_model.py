"""MLflow models-from-code entry: the encoder as a pyfunc (weights as an artifact, no pickled classes).

Input: a DataFrame with a string column `sequence` (or a list of strings), and a column per feature the
model's vector takes (model.features with use = "vector"; missing values as null); output: float32 [n, D].
An input without a required feature column is refused (HTTP 400 when served), naming it.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel


class EncoderPyfunc(PythonModel):
    def load_context(self, context) -> None:
        from gene_ae.model.encoder import Encoder

        self.encoder = Encoder.load(context.artifacts["checkpoint"])

    # The type hint is what MLflow hands over given the logged column signature; a DataFrame hint also tells
    # MLflow (3.x) to infer no schema from it and to skip its "add type hints" warning.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        try:
            return self._predict(model_input)
        except ValueError as exc:  # served as HTTP 400 with the reason, not a 500
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None

    def _predict(self, model_input) -> np.ndarray:
        if isinstance(model_input, pd.DataFrame):
            if "sequence" not in model_input.columns:
                raise ValueError(f"input needs a 'sequence' column, got {list(model_input.columns)}")
            seqs = model_input["sequence"].tolist()
            features = {
                name: [None if pd.isna(v) else v for v in model_input[name].tolist()]
                for name in self.encoder.required_features
                if name in model_input.columns
            }
        elif isinstance(model_input, pd.Series | np.ndarray | list | tuple):
            seqs, features = list(np.asarray(model_input, dtype=object).reshape(-1)), {}
        elif isinstance(model_input, dict) and "sequence" in model_input:
            seqs = list(model_input["sequence"])
            features = {k: list(model_input[k]) for k in self.encoder.required_features if k in model_input}
        else:
            raise ValueError(f"expected strings in a 'sequence' column, got {type(model_input).__name__}")
        return self.encoder.embed(_uncoerced(seqs), features=features)


# MLflow's schema enforcement turns every JSON value in a string column into text before predict sees it: null,
# true and false arrive as these words (none of them DNA); the reason is said as the JSON the client sent.
COERCED = {"None": "null", "nan": "null", "True": "true", "False": "false"}


def _uncoerced(seqs: list) -> list:
    """seqs, with JSON null, booleans and numbers (as MLflow passes them on: text, NaN, numbers) refused as what
    was sent."""
    for i, s in enumerate(seqs):
        if isinstance(s, str) and (s in COERCED or _is_number(s)):
            raise ValueError(f"row {i}: expected a DNA string, got {COERCED.get(s, s)}")
        if s is None or (isinstance(s, float) and s != s):
            raise ValueError(f"row {i}: expected a DNA string, got null")
        if isinstance(s, bool | int | float):
            raise ValueError(f"row {i}: expected a DNA string, got {str(s).lower() if isinstance(s, bool) else s}")
    return seqs


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


mlflow.models.set_model(EncoderPyfunc())
