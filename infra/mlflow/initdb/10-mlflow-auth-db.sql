-- Run once by the postgres image on an empty data volume (after it creates POSTGRES_DB=mlflow):
-- a second database for MLflow's basic-auth users and permissions, owned by the same role.
CREATE DATABASE mlflow_auth OWNER mlflow;
