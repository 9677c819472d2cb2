"""The world's pretrained base: written atomically, reloadable, deterministic, and shaped as designed.

The slow tests pretrain the default base once (module fixture) and check, with real generation on
the eval prompts, the property the world exists for: greedy decoding goes the wrong way (it opens
with "guess") while the likeliest complete sequence is the right worked solution; and on the
open-ended prompts, p^α with α < 1 (importance resampling of base samples) covers more valid answers
while α = 0.5 also shows the cost of flattening: it amplifies the base's junk tail.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from powerflow.world.config import PretrainConfig, WorldConfig
from powerflow.world.grading import grade
from powerflow.world.pretrain import pretrain_base
from powerflow.world.teacher import world_prompt_rows

TINY = PretrainConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, n_documents=256,
                      steps=4, batch_size=16, warmup_steps=1)


def load(directory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)


# --- fast: the output directory -------------------------------------------------------------


def test_pretrain_writes_a_reloadable_model_tokenizer_and_world(tmp_path):
    messages = []
    metrics = pretrain_base(WorldConfig(), TINY, tmp_path / "base", progress=messages.append)
    assert {"base/final_loss", "base/seconds", "base/n_parameters"} <= set(metrics)
    assert messages and "step 4/4" in messages[-1]
    model, tokenizer = load(tmp_path / "base")
    assert (tmp_path / "base" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "base" / "world.json").read_text())["p_guess"] == WorldConfig().p_guess
    assert metrics["base/n_parameters"] == sum(p.numel() for p in model.parameters())
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 0
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer("Q 1 + 2 + 3 = work")["input_ids"][-1] == tokenizer.convert_tokens_to_ids("work")
    out = model.generate(**tokenizer(["Q 1 + 2 + 3 ="], return_tensors="pt"), do_sample=False, max_new_tokens=3)
    assert out.shape == (1, 10)


def test_pretraining_is_deterministic_and_changes_the_weights(tmp_path):
    from safetensors.torch import load_file

    pretrain_base(WorldConfig(), TINY, tmp_path / "a", progress=lambda _: None)
    pretrain_base(WorldConfig(), TINY, tmp_path / "b", progress=lambda _: None)
    pretrain_base(WorldConfig(), PretrainConfig(**{**TINY.__dict__, "steps": 1, "warmup_steps": 0}),
                  tmp_path / "c", progress=lambda _: None)
    a, b, c = (load_file(tmp_path / d / "model.safetensors") for d in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_a_failed_pretraining_leaves_no_output(tmp_path):
    def fail(message):
        if "step 4/" in message:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        pretrain_base(WorldConfig(), TINY, tmp_path / "base", progress=fail)
    assert list(tmp_path.iterdir()) == []


def test_pretraining_restores_the_thread_count(tmp_path):
    before = torch.get_num_threads()
    pretrain_base(WorldConfig(), PretrainConfig(**{**TINY.__dict__, "num_threads": 1}), tmp_path / "b",
                  progress=lambda _: None)
    assert torch.get_num_threads() == before


# --- slow: the default base has the designed shape ------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    directory = tmp_path_factory.mktemp("world") / "base"
    metrics = pretrain_base(WorldConfig(), PretrainConfig(), directory, progress=lambda _: None)
    model, tokenizer = load(directory)
    return model, tokenizer, metrics


def eval_rows(family):
    return [r for r in world_prompt_rows(WorldConfig()) if r["family"] == family and r["split"] == "eval"]


def generate(model, tokenizer, prompts, n, sample):
    """Completions [len(prompts)·n, T] (prompt-major), padded with EOS after the first EOS; and the prompt ids."""
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    batch = {k: v.repeat_interleave(n, 0) for k, v in batch.items()}
    torch.manual_seed(0)
    extra = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=24, **extra)
    return batch, out[:, batch["input_ids"].shape[1]:]


def completion_logprob(model, batch, completions, eos_id):
    """log p_base(y|q) = Σ_t log p(y_t | q, y_<t) over completion tokens up to and including the first EOS."""
    ids = torch.cat([batch["input_ids"], completions], 1)
    mask = torch.cat([batch["attention_mask"], torch.ones_like(completions)], 1)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    start = batch["input_ids"].shape[1] - 1
    token_logp = logp[:, start:].gather(-1, completions.unsqueeze(-1)).squeeze(-1)
    is_eos = (completions == eos_id).long()
    before_first_eos = (is_eos.cumsum(1) - is_eos) == 0
    return (token_logp * before_first_eos).sum(1)


@pytest.mark.slow
def test_default_base_size_and_loss(base):
    _, _, metrics = base
    assert 1e6 <= metrics["base/n_parameters"] <= 5e6
    assert metrics["base/final_loss"] < 1.0


@pytest.mark.slow
def test_greedy_is_wrong_where_the_likeliest_sequence_is_right(base):
    model, tokenizer, _ = base
    rows = eval_rows("reasoning")
    prompts = [r["prompt"] for r in rows]

    def accuracy(completions, take=None):
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        return [grade("reasoning", rows[i // (len(texts) // len(rows))]["answer"], t) for i, t in enumerate(texts)]

    greedy = accuracy(generate(model, tokenizer, prompts, 1, sample=False)[1])
    n = 32
    batch, samples = generate(model, tokenizer, prompts, n, sample=True)
    sampled = accuracy(samples)
    logp = completion_logprob(model, batch, samples, tokenizer.eos_token_id).view(len(rows), n)
    best = logp.argmax(1)
    sequence_mode = [sampled[i * n + int(best[i])] for i in range(len(rows))]

    greedy_acc = sum(g.correct for g in greedy) / len(greedy)
    sampled_acc = sum(g.correct for g in sampled) / len(sampled)
    mode_acc = sum(g.correct for g in sequence_mode) / len(sequence_mode)
    assert sum(g.valid for g in sampled) / len(sampled) > 0.95  # the format is learned
    assert greedy_acc < 0.25  # greedy opens with "guess" ...
    assert mode_acc > 0.85  # ... the likeliest complete sequence is the right worked solution
    assert mode_acc > greedy_acc + 0.5
    assert 0.25 < sampled_acc < 0.6  # the teacher's 0.42, give or take
    texts = tokenizer.batch_decode(samples, skip_special_tokens=True)
    worked = [g.correct for g, t in zip(sampled, texts) if t.startswith("work")]
    assert sum(worked) / len(worked) > 0.85  # the base can do the arithmetic when it works


def expected_valid_coverage(dist: dict[str, float], valid: set[str], k: int) -> float:
    """E[distinct valid answers among k i.i.d. draws from dist] = Σ_{y valid} 1 − (1 − dist(y))^k."""
    return sum(1 - (1 - q) ** k for y, q in dist.items() if y in valid)


@pytest.mark.slow
def test_power_below_one_covers_more_valid_open_answers_than_plain_samples(base):
    """Self-normalised importance resampling of a pool of base samples toward p^α, α < 1.

    q_α(y) ∝ Σ_{i: y_i = y} p(y_i)^(α−1) over the pool; coverage = expected distinct valid answers in
    k draws (computed, not drawn, so no resampling noise). α = 0.75 flattens the valid answers and
    keeps validity high. α = 0.5 flattens further but also amplifies the base's junk tail (single
    junk tokens at 1e-5..1e-4: other categories' answers, numbers): its validity is lower and
    depends on the pool, tending to the full-sequence p^0.5's (measured on the default base: 0.60
    at 512 samples per prompt, 0.52 at 4096, where α = 0.75 keeps 0.89).
    """
    model, tokenizer, _ = base
    rows = eval_rows("open_ended")
    pool, k = 512, 16
    batch, samples = generate(model, tokenizer, [r["prompt"] for r in rows], pool, sample=True)
    logp = completion_logprob(model, batch, samples, tokenizer.eos_token_id).view(len(rows), pool)
    texts = tokenizer.batch_decode(samples, skip_special_tokens=True)
    cover, validity = {}, {}
    for alpha in (1.0, 0.75, 0.5):
        covers, valids = [], []
        for i, row in enumerate(rows):
            answers = [grade("open_ended", row["answer"], t).extracted for t in texts[i * pool:(i + 1) * pool]]
            valid = {a for a in answers if grade("open_ended", row["answer"], a or "").valid}
            weights = torch.softmax((alpha - 1) * logp[i], 0).tolist()  # p^α / p = p^(α−1), normalised
            q = Counter()
            for answer, w in zip(answers, weights):
                q[answer] += w
            covers.append(expected_valid_coverage(q, valid, k))
            valids.append(sum(q[a] for a in valid))
        cover[alpha], validity[alpha] = sum(covers) / len(rows), sum(valids) / len(rows)
    assert validity[1.0] > 0.9
    assert cover[0.75] > cover[1.0] + 0.3  # measured 6.5 against 5.9 (teacher-exact: 6.7, 5.9)
    assert validity[0.75] > 0.8
    assert validity[1.0] > validity[0.75] > validity[0.5]  # α < 1 moves mass into the (junk) tail
