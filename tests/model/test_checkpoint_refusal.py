"""Corrupted or foreign checkpoints are refused with one clear CheckpointError; nothing is loaded at random.

Each case starts from a real, loadable model directory (the world's tiny Llama built from a config
and its tokenizer, saved with save_pretrained) and breaks one thing about it.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from powerflow.checkpoints import CheckpointError, check_checkpoint_dir, check_remote_code
from powerflow.errors import UserError
from powerflow.objectives import LogZHead
from powerflow.pipeline.loading import load_causal_lm, load_tokenizer
from powerflow.trainer import LOGZ_HEAD_FILE, load_logz_head
from tests.model_dirs import HIDDEN_SIZE, save_world_model

WEIGHTS = "model.safetensors"
RESIZED = "model.layers.0.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    """A whole model directory: config.json, model.safetensors, tokenizer files, a log Z head."""
    path = save_world_model(tmp_path_factory.mktemp("model") / "good")
    head = LogZHead(HIDDEN_SIZE, 16)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, path / LOGZ_HEAD_FILE,
              metadata={"hidden_size": "32", "width": "16"})
    return path


@pytest.fixture
def model_dir(good_dir, tmp_path):
    """A fresh copy of the good directory for one test to break."""
    return shutil.copytree(good_dir, tmp_path / "model")


def _rewrite_weights(path, edit):
    tensors = load_file(path / WEIGHTS)
    edit(tensors)
    save_file(tensors, path / WEIGHTS, metadata={"format": "pt"})


def test_a_whole_directory_loads_with_its_saved_weights(model_dir):
    model = load_causal_lm(str(model_dir))
    saved = load_file(model_dir / WEIGHTS)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert load_logz_head(model_dir, hidden_size=32).width == 16


def test_pickle_only_weights_are_refused_with_the_conversion_command(model_dir):
    model = load_causal_lm(str(model_dir))
    (model_dir / WEIGHTS).unlink()
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as err:
        load_causal_lm(str(model_dir))
    message = str(err.value)
    assert "pytorch_model.bin" in message and "safetensors only" in message
    assert f"from_pretrained('{model_dir}').save_pretrained('{model_dir}-safetensors')" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors_are_refused(model_dir, damage):
    data = (model_dir / WEIGHTS).read_bytes()
    (model_dir / WEIGHTS).write_bytes(b"not a safetensors file" * 4 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_causal_lm(str(model_dir))
    assert str(model_dir / WEIGHTS) in str(err.value)


def test_a_sharded_checkpoint_with_a_missing_shard_is_refused(model_dir):
    (model_dir / WEIGHTS).rename(model_dir / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                                            "lm_head.weight": "model-00002-of-00002.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors is missing"):
        check_checkpoint_dir(model_dir)


def test_weights_of_the_wrong_shape_are_refused_not_reinitialised(model_dir):
    _rewrite_weights(model_dir, lambda t: t.update({RESIZED: torch.zeros(33, 64)}))
    with pytest.raises(CheckpointError) as err:
        load_causal_lm(str(model_dir))
    message = str(err.value)
    assert RESIZED in message and "[33, 64]" in message and "[32, 64]" in message
    assert "wrong shape" in message


def test_missing_and_unexpected_weights_are_refused(model_dir):
    _rewrite_weights(model_dir, lambda t: (t.pop(RESIZED), t.update({"extra.weight": torch.zeros(2)})))
    with pytest.raises(CheckpointError) as err:
        load_causal_lm(str(model_dir))
    message = str(err.value)
    assert f"1 weight(s) missing: {RESIZED}" in message
    assert "extra.weight" in message


def test_custom_code_is_refused_unless_trusted_and_never_runs(model_dir, tmp_path):
    marker = tmp_path / "remote-code-ran"
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModelForCausalLM": "custom.Model"}
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    for load in (load_causal_lm, load_tokenizer):
        with pytest.raises(CheckpointError) as err:
            load(str(model_dir))
        assert "model.trust_remote_code: true" in str(err.value)
        assert "AutoModelForCausalLM -> custom.Model" in str(err.value)
    assert not marker.exists()
    check_remote_code(model_dir, trust_remote_code=True)  # the user's explicit choice lets it through


def test_a_tokenizer_asking_for_custom_code_is_refused(model_dir):
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["custom.Tok", None]}
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"tokenizer_config.json auto_map: AutoTokenizer -> custom.Tok"):
        load_tokenizer(str(model_dir))


def test_a_log_z_head_of_the_wrong_shape_is_refused(model_dir):
    head = model_dir / LOGZ_HEAD_FILE
    tensors = load_file(head)
    tensors["proj.weight"] = torch.zeros(16, 48)
    save_file(tensors, head, metadata={"hidden_size": "32", "width": "16"})
    with pytest.raises(CheckpointError) as err:
        load_logz_head(model_dir)
    assert "proj.weight [16, 48] (expected [16, 32])" in str(err.value)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):  # the directory check reads every file
        head.write_bytes(head.read_bytes()[:40])
        check_checkpoint_dir(model_dir)


def test_a_log_z_head_for_another_model_or_without_metadata_is_refused(model_dir):
    with pytest.raises(CheckpointError, match="hidden size 32, but the policy's hidden size is 64"):
        load_logz_head(model_dir, hidden_size=64)
    save_file(load_file(model_dir / LOGZ_HEAD_FILE), model_dir / LOGZ_HEAD_FILE)
    with pytest.raises(CheckpointError, match="hidden_size/width metadata"):
        load_logz_head(model_dir)
    (model_dir / LOGZ_HEAD_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"has no {LOGZ_HEAD_FILE}"):
        load_logz_head(model_dir)


def test_checkpoint_errors_are_user_errors():
    assert issubclass(CheckpointError, UserError)
