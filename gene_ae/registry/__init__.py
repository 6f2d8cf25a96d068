"""MLflow: tracking runs, logging and registering the encoder (a models-from-code pyfunc), aliases, serving."""
