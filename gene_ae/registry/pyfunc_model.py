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
        from gene_ae.model.encoder import validate

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
        return self.encoder.embed_tokens(validate(seqs), features=features)


mlflow.models.set_model(EncoderPyfunc())
