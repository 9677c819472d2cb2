"""Worlds the project builds itself (no hub downloads).

- `powerflow.world.enumerable`: tiny models small enough to enumerate, for exact checks.
- The embedded world of DESIGN.md section 3: `WorldConfig` / `PretrainConfig` (config.py),
  `build_tokenizer` (tokenizer.py), `world_prompt_rows` / `teacher_corpus` (teacher.py),
  `grade` / `Grade` (grading.py) and `pretrain_base` (pretrain.py).

Names are imported lazily, so `import powerflow.world` pulls in neither torch nor transformers.
"""

from __future__ import annotations

from powerflow._lazy import lazy_exports

_EXPORTS = {
    "WorldConfig": "powerflow.world.config",
    "PretrainConfig": "powerflow.world.config",
    "build_tokenizer": "powerflow.world.tokenizer",
    "world_prompt_rows": "powerflow.world.teacher",
    "teacher_corpus": "powerflow.world.teacher",
    "grade": "powerflow.world.grading",
    "Grade": "powerflow.world.grading",
    "pretrain_base": "powerflow.world.pretrain",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("powerflow.world", _EXPORTS)
