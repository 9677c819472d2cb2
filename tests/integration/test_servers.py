"""The loopback servers of powerflow/servers.py start, answer, restart on the same port, and stop."""

from __future__ import annotations

import urllib.request

import pytest

from powerflow.servers import mlflow_server, moto_s3_server


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_mlflow_server_keeps_its_store_across_a_restart(tmp_path):
    from mlflow import MlflowClient

    with mlflow_server(tmp_path / "mlflow") as server:
        assert server.url.startswith("http://127.0.0.1:")
        experiment_id = MlflowClient(server.url).create_experiment("restart-me")
        server.stop()
        assert not _answers(f"{server.url}/health")
        port = server.port
        server.start()
        assert server.port == port and _answers(f"{server.url}/health")
        assert MlflowClient(server.url).get_experiment_by_name("restart-me").experiment_id == experiment_id
        assert (tmp_path / "mlflow" / "mlflow.db").is_file()
    assert not _answers(f"{server.url}/health")


def test_moto_server_stores_objects_in_a_bucket():
    with moto_s3_server() as s3:
        env = s3.env()
        assert env["MLFLOW_S3_ENDPOINT_URL"] == s3.endpoint_url == env["AWS_ENDPOINT_URL"]
        s3.create_bucket("powerflow")
        s3.client().put_object(Bucket="powerflow", Key="dvc/ab/cdef", Body=b"x")
        assert s3.list_keys("powerflow") == ["dvc/ab/cdef"]
        assert s3.list_keys("powerflow", prefix="mlartifacts/") == []
    assert not _answers(f"{s3.endpoint_url}/moto-api/data.json")
