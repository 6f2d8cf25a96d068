"""What both servers refuse (issue 34): JSON null, booleans and numbers where a sequence belongs are a 4xx with one
line saying what was sent (MLflow's schema turns them into the text "None", "True", "5" before the model sees them),
and a sequence too short for anything the model counts is refused, not given a zero vector with HTTP 200.

The encoder's requests go through MLflow's own scoring code (`invocations`, as `mlflow models serve` calls it) on
a model logged to a real sqlite store; the index's through its request parser."""

from __future__ import annotations

import json
import os

import mlflow
import pytest
import torch
from mlflow.pyfunc import scoring_server

from gene_ae import Encoder
from gene_ae.config import Config
from gene_ae.model import checkpoint
from gene_ae.model.autoencoder import GeneAE
from gene_ae.model.config import ModelConfig
from gene_ae.registry import tracking
from gene_ae.search.serve_index import ServeConfig, parse_request


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(the logged encoder as `mlflow models serve` loads it, its input schema, the checkpoint)."""
    root = tmp_path_factory.mktemp("store")
    torch.manual_seed(0)
    cfg = Config()
    cfg.model = ModelConfig(channels=32, embed_dim=16, lstm_hidden=32, vector_dim=32, window=256, downsample=4)
    ckpt = checkpoint.save(root / "ckpt", cfg, GeneAE(cfg.model))
    old_cwd, old_uri = os.getcwd(), mlflow.get_tracking_uri()
    os.chdir(root)
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    try:
        with mlflow.start_run():
            info = tracking.log_encoder(ckpt)
        model = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(old_uri)
        os.chdir(old_cwd)
    return model, model.metadata.get_input_schema(), ckpt


def _invoke(served, payload: dict) -> tuple[int, str]:
    model, schema, _ = served
    try:
        answer = scoring_server.invocations(json.dumps(payload), "application/json", model, schema)
    except mlflow.exceptions.MlflowException as exc:
        return exc.get_http_status_code(), exc.message
    return answer.status, answer.response


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": [None]}, "row 0: expected a DNA string, got null"),
        ({"inputs": ["ACGTTGCA", None]}, "row 1: expected a DNA string, got null"),
        ({"inputs": [True]}, "row 0: expected a DNA string, got true"),
        ({"inputs": ["ACGTTGCA", 5]}, "row 1: expected a DNA string, got 5"),
        ({"inputs": [2.5]}, "row 0: expected a DNA string, got 2.5"),
        ({"dataframe_split": {"columns": ["sequence"], "data": [["ACGTTGCA"], [None]]}}, "row 1: expected a DNA "
         "string, got null"),
        ({"dataframe_records": [{"sequence": None}]}, "row 0: expected a DNA string, got null"),
        ({"dataframe_split": {"columns": ["sequence"], "data": [[False]]}}, "row 0: expected a DNA string, got false"),
        ({"inputs": ["ACG"]}, "row 0: 3 bases give this model nothing to count"),
    ],
)  # fmt: skip
def test_the_encoder_server_refuses_what_is_not_a_sequence_in_one_line(served, payload, message) -> None:
    status, text = _invoke(served, payload)  # MLflow puts "Failed to predict data ...\nError: " before the reason
    assert 400 <= status < 500 and text.splitlines()[-1].startswith(f"Error: {message}"), (status, text)


def test_the_encoder_server_still_embeds_sequences(served) -> None:
    status, text = _invoke(served, {"inputs": ["ACGTTGCAAGGCTTAACC", "GGATTACAGATTACA"]})
    assert status == 200 and len(json.loads(text)["predictions"]) == 2, text


def test_encoder_embed_refuses_a_sequence_too_short_to_count(served) -> None:
    encoder = Encoder.load(str(served[2]))
    with pytest.raises(ValueError, match=r"^row 1: 4 bases give this model nothing to count"):
        encoder.embed(["ACGTTGCAAG", "ACGT"])


@pytest.mark.parametrize("value", [None, True, 5, ["ACGT"], {"s": "ACGT"}])
def test_the_index_server_refuses_a_sequence_that_is_not_a_string(value) -> None:
    with pytest.raises(ValueError) as exc:
        parse_request({"sequences": [{"id": "q", "sequence": value}]}, (), ServeConfig())
    assert str(exc.value) == 'request: sequence 1: an object with string "id" and "sequence" expected', exc.value


def test_the_index_server_refuses_digits_in_a_sequence_as_the_encoder_does() -> None:
    """`ACGT...1234` was searched as `ACGT...` (HTTP 200): the readers drop digits, which number a file's sequence
    lines, but a JSON string holding one is a mistake; the encoder's server already refused it."""
    with pytest.raises(ValueError) as exc:
        parse_request({"sequences": [{"id": "q7", "sequence": "ACGTTGCAAGGC1234"}]}, (), ServeConfig())
    assert str(exc.value) == "request: record 'q7': digit '1' at position 13: a sequence is letters only", exc.value
    assert len(parse_request({"sequences": [{"id": "q", "sequence": "ACGTTGCAAGGC"}]}, (), ServeConfig()).records)


def test_the_index_server_answers_json_nested_too_deep_with_a_400_line() -> None:
    """Arrays nested 100,000 deep: json.loads' RecursionError went past the handler as HTTP 500."""
    from gene_ae.search.serve_index import parse_body

    with pytest.raises(ValueError) as exc:
        parse_body(b"[" * 100_000 + b"]" * 100_000)
    assert str(exc.value).startswith("request: not JSON (") and "\n" not in str(exc.value), exc.value
    assert parse_body(b'{"sequences": []}') == {"sequences": []}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [({}, (40, 300)), ({"fast": True}, (3, 0)), ({"fast": True, "rerank": 7}, (7, 0)), ({"fast": False}, (40, 300))],
)
def test_a_request_asks_for_the_fast_search_as_the_cli_does(extra, expected) -> None:
    cfg = parse_request({"sequences": [{"id": "q", "sequence": "ACGTTGCAAGGC"}], **extra}, (), ServeConfig()).cfg
    assert (cfg.rerank, cfg.deep) == expected


def test_a_request_whose_fast_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(ValueError, match="request: fast must be true or false, got 'yes'"):
        parse_request({"sequences": [{"id": "q", "sequence": "ACGTTGCAAGGC"}], "fast": "yes"}, (), ServeConfig())
