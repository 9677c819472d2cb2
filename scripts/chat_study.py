"""The chat world study (issue 21): a base pretrained with chat documents against one without.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/chat_study.py pretrain --chat-fraction 0.2 --out outputs/chat/chat
    OMP_NUM_THREADS=1 .venv/bin/python scripts/chat_study.py pretrain --chat-fraction 0 --out outputs/chat/plain
    OMP_NUM_THREADS=1 .venv/bin/python scripts/chat_study.py measure --chat outputs/chat/chat --plain outputs/chat/plain

`pretrain` builds a base at params.yaml's `base:` settings (one thread) and writes its metrics to
<out>/pretrain_metrics.json. `measure` writes outputs/chat/measure.json and prints:

(a) collapse on the direct chat prompts (eval split): the base's top-answer share and validity,
    exact on the support, against the teacher's aligned share p_aligned(top) and its pre-alignment
    share p_teacher(top); and at α = 1/γ (the alignment undone) the same from the oracle;
(b) VS-Standard at k = 5 on the open-ended eval questions, sampled at T = 1 by the project's
    verbalized sampler: the share of replies that parse, and the coverage, validity and distinct
    valid answers of 16 verbalized draws per prompt, against 16 direct samples of the plain
    open-ended prompt and of the direct chat prompt;
(c) the judge: the pretrained base as `TransformersJudge` with the short scheme, on every (eval
    question, answer) pair of the world's answer words: agreement with the teacher's valid/invalid
    ground truth (score ≥ 5 read as valid), and the parse rate;
(d) exact oracle numbers of both bases on the reasoning and open-ended eval rows (p^α, α = 1 and 4);
(e) pretraining seconds of both bases (from their metrics files).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's powerflow, whatever the venv installed


def base_settings(n_threads: int = 1):
    from powerflow.config.parse import section_from_dict
    from powerflow.world.config import PretrainConfig

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return section_from_dict(PretrainConfig, {**params["base"], "num_threads": n_threads}, "base")


def world_settings(chat_fraction: float):
    from powerflow.config.parse import section_from_dict
    from powerflow.world.config import WorldConfig

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return section_from_dict(WorldConfig, {**params["world"], "chat_fraction": chat_fraction}, "world")


def pretrain(args) -> None:
    from powerflow.world.pretrain import pretrain_base

    torch.set_num_threads(1)
    base = base_settings()
    if args.steps:
        from dataclasses import replace

        base = replace(base, steps=args.steps)
    metrics = pretrain_base(world_settings(args.chat_fraction), base, args.out,
                            progress=lambda m: print(m, flush=True))
    (Path(args.out) / "pretrain_metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics))


def load(directory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from powerflow.config.parse import section_from_dict
    from powerflow.world.config import WorldConfig

    world = section_from_dict(WorldConfig, json.loads((Path(directory) / "world.json").read_text()), "world")
    return (AutoModelForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory), world)


def collapse(model, tokenizer, world) -> dict:
    """(a) the base's top-answer share on the direct chat prompts, exact on the support."""
    from powerflow.world.oracle import oracle_metrics, score_supports
    from powerflow.world.teacher import aligned_answer_distribution, open_answer_distribution, world_prompt_rows

    rows = [r for r in world_prompt_rows(world, families=("open_ended", "chat")) if r["split"] == "eval"]
    supports = score_supports(world, model, tokenizer, rows)
    out = {}
    for family in ("chat", "open_ended"):
        shares, top_is_typical = [], []
        for s in (s for s in supports if s.row["family"] == family):
            probs = (s.log_p_base.exp() / s.log_p_base.exp().sum()).tolist()
            best = max(range(len(probs)), key=probs.__getitem__)
            shares.append(probs[best])
            top_is_typical.append(s.items[best].text == s.row["answer"][0])
        out[f"{family}/base_top_share"] = sum(shares) / len(shares)
        out[f"{family}/base_top_is_typical"] = sum(top_is_typical) / len(top_is_typical)
        for alpha in (1.0, 1 / world.alignment_gamma):
            m = oracle_metrics([s for s in supports if s.row["family"] == family], alpha)
            for key in ("validity", "coverage", "support_bound", "kl_uniform_population"):
                out[f"{family}/alpha_{alpha:g}/{key}"] = m[f"{family}/{key}"]
    cats = world.categories
    out["teacher/aligned_top_share"] = sum(max(aligned_answer_distribution(world, c).values()) for c in cats) / len(cats)
    out["teacher/pre_alignment_top_share"] = sum(max(open_answer_distribution(world, c).values()) for c in cats) / len(cats)
    return out


def verbalized(model, tokenizer, world, n: int = 16) -> dict:
    """(b) VS-Standard (k = chat_k) against direct sampling, on the open-ended eval questions."""
    from powerflow.eval.generation import generate_completions
    from powerflow.sampling.verbalized import VerbalizedConfig, verbalized_sampler
    from powerflow.eval.grading import answer_kind
    from powerflow.world.teacher import world_prompt_rows

    rows = [r for r in world_prompt_rows(world, families=("open_ended", "chat")) if r["split"] == "eval"]
    open_rows = [r for r in rows if r["family"] == "open_ended"]
    chat_rows = [r for r in rows if r["family"] == "chat"]
    out = {}
    start = time.perf_counter()
    sampler = verbalized_sampler(VerbalizedConfig(method="vs_standard", k=world.chat_k, max_new_tokens=40),
                                 batch_size=16)
    batch = sampler(model, tokenizer, [r["prompt"] for r in open_rows], n, 0)
    out["vs_standard/seconds"] = time.perf_counter() - start
    out.update({f"vs_standard/{k}": v for k, v in batch.stats.items()})
    answers = {"vs_standard": [[c.text for c in cs] for cs in batch.completions]}
    for name, these in (("direct_open", open_rows), ("direct_chat", chat_rows)):
        sampled = generate_completions(model, tokenizer, [r["prompt"] for r in these], n=n, greedy=False,
                                       temperature=1.0, top_p=1.0, seed=0, max_new_tokens=24, batch_size=64,
                                       progress=False)
        answers[name] = [[c.text for c in cs] for cs in sampled]
    for name, per_prompt in answers.items():
        validity, coverage, distinct = [], [], []
        for row, texts in zip(open_rows, per_prompt):
            grades = [answer_kind("world_open").grade(row["answer"], t) for t in texts]
            valid = {g.extracted for g in grades if g.valid}
            validity.append(sum(g.valid for g in grades) / len(grades))
            coverage.append(len(valid) / len(row["answer"]))
            distinct.append(len(valid))
        out[f"{name}/validity"] = sum(validity) / len(validity)
        out[f"{name}/coverage@{n}"] = sum(coverage) / len(coverage)
        out[f"{name}/distinct_valid@{n}"] = sum(distinct) / len(distinct)
        tops = [Counter(t.strip() for t in texts).most_common(1)[0][1] / len(texts) for texts in per_prompt]
        out[f"{name}/top_answer_share"] = sum(tops) / len(tops)  # per prompt, then averaged
    out.update(teacher_verbalized(world, open_rows, n))
    out["vs_standard/example"] = generate_completions(
        model, tokenizer, [__import__("powerflow.sampling.verbalized", fromlist=["x"]).render_prompt(
            tokenizer, __import__("powerflow.sampling.verbalized", fromlist=["x"]).build_messages(
                "vs_standard", open_rows[0]["prompt"], VerbalizedConfig(k=world.chat_k)))],
        n=1, greedy=True, max_new_tokens=40, batch_size=1, progress=False)[0][0].text
    return out


def teacher_verbalized(world, open_rows, n: int, repeats: int = 50) -> dict:
    """The same VS-Standard draw from the teacher's own replies (what a perfect student would give)."""
    import math as _math

    from powerflow.sampling.verbalized import sample_verbalized
    from powerflow.eval.grading import answer_kind
    from powerflow.world.teacher import verbalized_candidates

    rng = random.Random(0)
    validity, coverage, tops = [], [], []
    for _ in range(repeats):
        for row in open_rows:
            category = row["prompt"].split()[-2]
            answers = []
            for _ in range(_math.ceil(n / world.chat_k)):
                candidates = verbalized_candidates(world, category, rng)
                total = sum(p for _, p in candidates)
                answers += [sample_verbalized([(a, p / total) for a, p in candidates], rng) for _ in range(world.chat_k)]
            answers = answers[:n]
            grades = [answer_kind("world_open").grade(row["answer"], a) for a in answers]
            validity.append(sum(g.valid for g in grades) / n)
            coverage.append(len({g.extracted for g in grades if g.valid}) / len(row["answer"]))
            tops.append(Counter(answers).most_common(1)[0][1] / n)
    return {"teacher_vs/validity": sum(validity) / len(validity), f"teacher_vs/coverage@{n}": sum(coverage) / len(coverage),
            "teacher_vs/top_answer_share": sum(tops) / len(tops)}


def judge(directory, world) -> dict:
    """(c) the base as a short-scheme judge against the teacher's verdicts, on every eval question × answer word."""
    from powerflow.eval.judge import SHORT_RUBRIC, TransformersJudge, parse_scores, short_judge_prompt
    from powerflow.world.chat import answer_words
    from powerflow.world.teacher import chat_prompt, judge_score, open_prompt

    judge_model = TransformersJudge(str(directory), max_new_tokens=8, batch_size=64)
    items, truth = [], []
    words = answer_words(world) + [str(d) for d in range(10)]
    for template in world.open_eval_templates:
        for category in world.categories:
            for request in (open_prompt(template, category), chat_prompt(template, category)):
                for word in words:
                    items.append(short_judge_prompt(SHORT_RUBRIC, request, word))
                    truth.append(judge_score(category, word) > 0)
    start = time.perf_counter()
    raw = judge_model.complete(items)
    seconds = time.perf_counter() - start
    parsed = [parse_scores(t, SHORT_RUBRIC) for t in raw]
    said_valid = [p is not None and p["Score"] >= 5 for p in parsed]
    agree = [s == t for s, t in zip(said_valid, truth)]
    valid_idx = [i for i, t in enumerate(truth) if t]
    invalid_idx = [i for i, t in enumerate(truth) if not t]
    return {
        "judge/n_items": len(items), "judge/parse_rate": sum(p is not None for p in parsed) / len(parsed),
        "judge/agreement": sum(agree) / len(agree),
        "judge/agreement_on_valid": sum(agree[i] for i in valid_idx) / len(valid_idx),
        "judge/agreement_on_invalid": sum(agree[i] for i in invalid_idx) / len(invalid_idx),
        "judge/balanced_agreement": 0.5 * (sum(agree[i] for i in valid_idx) / len(valid_idx)
                                           + sum(agree[i] for i in invalid_idx) / len(invalid_idx)),
        "judge/seconds": seconds, "judge/example": raw[0],
    }


def oracle_numbers(model, tokenizer, world) -> dict:
    """(d) exact oracle numbers on the reasoning and open-ended eval rows, α = 1 and 4 (and 0.5)."""
    from powerflow.world.oracle import oracle_metrics, score_supports
    from powerflow.world.teacher import world_prompt_rows

    rows = [r for r in world_prompt_rows(world) if r["split"] == "eval"]
    supports = score_supports(world, model, tokenizer, rows)
    out = {}
    for alpha in (0.5, 1.0, 4.0):
        for key, value in oracle_metrics(supports, alpha).items():
            if key.split("/")[1] in ("accuracy", "work_fraction", "validity", "coverage", "support_bound"):
                out[f"alpha_{alpha:g}/{key}"] = value
    return out


def measure(args) -> None:
    torch.set_num_threads(1)
    results = {}
    for name, directory in (("chat", args.chat), ("plain", args.plain)):
        if directory is None:
            continue
        model, tokenizer, world = load(directory)
        r = {"pretrain": json.loads((Path(directory) / "pretrain_metrics.json").read_text())}
        r["oracle"] = oracle_numbers(model, tokenizer, world)
        if world.chat_fraction > 0:
            r["collapse"] = collapse(model, tokenizer, world)
            r["judge"] = judge(directory, world)
            r["verbalized"] = verbalized(model, tokenizer, world)
        results[name] = r
        print(name, json.dumps(r, indent=1), flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("--chat-fraction", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=0, help="0: params.yaml base.steps")
    m = sub.add_parser("measure")
    m.add_argument("--chat")
    m.add_argument("--plain")
    m.add_argument("--output", default=str(ROOT / "outputs" / "chat" / "measure.json"))
    args = parser.parse_args(argv)
    {"pretrain": pretrain, "measure": measure}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
