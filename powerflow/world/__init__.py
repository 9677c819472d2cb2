"""Worlds the project builds itself (no hub downloads).

- `powerflow.world.enumerable`: tiny models small enough to enumerate, for exact checks.
- The embedded world of docs/design.md section 3: `WorldConfig` / `PretrainConfig` (config.py),
  `build_tokenizer` (tokenizer.py), `world_prompt_rows` / `teacher_corpus` (teacher.py),
  `grade` / `Grade` and the world's answer kinds (grading.py), `pretrain_base` (pretrain.py),
  the exact oracle of the world's answers (oracle.py).

This package imports nothing: import each name from its module (`from powerflow.world.config
import WorldConfig`), so `import powerflow.world` pulls in neither torch nor transformers.
"""
