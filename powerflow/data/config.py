"""The `data:` section of params.yaml: where prompts come from and how they become a training table.

Loaded with `powerflow.config.section_from_dict(DataConfig, params["data"], "data")`; every check
in `__post_init__` raises `ConfigError` naming the dotted key and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from powerflow.errors import ConfigError
from powerflow.table_files import TABLE_EXTENSIONS

# Schema fields a source column can be mapped to (`data.columns`); only `prompt` is required
# (`request`: the user's request behind a prompt the source rendered already; default the prompt).
SCHEMA_FIELDS = ("id", "prompt", "family", "split", "answer", "request")
# File sources, by extension: every table file powerflow.table_files reads (anything else names a
# `datasets` id with "hf:" or the world).
FILE_EXTENSIONS = TABLE_EXTENSIONS
PROMPT_FORMATS = ("text", "chat")
HF_PREFIX = "hf:"
# `datasets` packaged builders need data_files; without them load_dataset scans the working
# directory. A local file is named directly as data.source instead.
PACKAGED_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")


@dataclass(frozen=True)
class DataConfig:
    """Prompt source, column mapping, prompt format and validation bounds. Section `data:`.

    Sources (`source`):
    - "world": the embedded world's prompt rows (the caller passes them in).
    - "hf:<dataset id>": `datasets.load_dataset(id, hf_config, split=hf_split)`; offline, the id
      must already be in the Hugging Face cache. "hf:<local directory>" loads a directory of
      data files through the same call (e.g. a folder with train.jsonl), and a directory written
      by `Dataset.save_to_disk` is read with `datasets.load_from_disk`.
    - a path to a .jsonl, .csv or .parquet file (relative paths resolve against the project root).
    """

    source: str = field(
        default="world",
        metadata={"help": '"world", "hf:<dataset id or local dataset directory>", or a path to a .jsonl, '
                          ".csv or .parquet file (relative to the project root)."},
    )
    hf_config: str | None = field(
        default=None, metadata={"help": "Dataset configuration name for hf: sources (load_dataset's `name`)."}
    )
    hf_split: str = field(
        default="train",
        metadata={"help": 'Split of an hf: source, any load_dataset split expression ("train", "test[:100]").'},
    )
    columns: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Schema field -> source column, e.g. {prompt: problem, answer: solution}. Fields: "
                          "id, prompt, family, split, answer; an unmapped field uses the source column of "
                          "the same name when there is one."},
    )
    answer_kind: str | dict[str, str] | None = field(
        default=None,
        metadata={"help": "How answers are graded (powerflow.eval.grading): one kind for every family (math, "
                          "multiple_choice, multiple_choice_4, open_qa, none; world_integer / world_open on the "
                          "world only), or {family: kind}. null infers it: the world's kinds for the world, else "
                          "none without answers, open_qa for list answers, math otherwise. The prepared "
                          "manifest records the kinds used."},
    )
    default_family: str = field(
        default="reasoning", metadata={"help": "Family of every row when the source has no family column."}
    )
    families: tuple[str, ...] = field(
        default=("reasoning", "open_ended", "chat"),
        metadata={"help": "Allowed family values (validated). On the embedded world, also the families it writes: "
                          "chat only when world.chat_fraction > 0."}
    )
    eval_fraction: float = field(
        default=0.2,
        metadata={"help": "Share of rows put in the eval split when the source has no split column; "
                          "stable per id and seed (a row never changes split when others are added)."},
    )
    prompt_format: str = field(
        default="text",
        metadata={"help": '"text" (plain prompts, base models) or "chat" (the tokenizer\'s chat template, '
                          "instruct models)."},
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message put before each prompt (chat format only)."}
    )
    min_prompt_tokens: int = field(
        default=1, metadata={"help": "Fewest tokens a rendered prompt may have (validated)."}
    )
    max_prompt_tokens: int = field(
        default=256, metadata={"help": "Most tokens a rendered prompt may have (validated)."}
    )
    limit: int | None = field(
        default=None, metadata={"help": "Keep only the first N source rows (quick runs); null keeps all."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the train/eval assignment by id hash."})

    def __post_init__(self):
        self._check_source()
        for name, column in self.columns.items():
            if name not in SCHEMA_FIELDS:
                raise ConfigError(
                    f"data.columns.{name} is not a schema field: map any of {', '.join(SCHEMA_FIELDS)} "
                    "to a source column, e.g. {prompt: question}."
                )
            if not isinstance(column, str) or not column.strip():
                raise ConfigError(f"data.columns.{name} is empty: write the source column that holds the {name}.")
        self._check_answer_kind()
        if not self.families or any(not isinstance(f, str) or not f.strip() for f in self.families):
            raise ConfigError(f"data.families={list(self.families)}: list one or more non-empty family names.")
        if len(set(self.families)) != len(self.families):
            raise ConfigError(f"data.families={list(self.families)} repeats a name: list each family once.")
        if self.default_family not in self.families:
            raise ConfigError(
                f"data.default_family={self.default_family!r} is not in data.families "
                f"{list(self.families)}: add it there or pick one of them."
            )
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction={self.eval_fraction}: use a number in [0, 1), e.g. 0.2.")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(
                f"data.prompt_format={self.prompt_format!r}: use \"text\" for base models or \"chat\" for "
                "instruct models with a chat template."
            )
        if self.system_prompt is not None and self.prompt_format != "chat":
            raise ConfigError(
                "data.system_prompt is set but data.prompt_format is \"text\": set prompt_format: chat, "
                "or remove system_prompt (plain-text prompts have no system message)."
            )
        if self.min_prompt_tokens < 0:
            raise ConfigError(f"data.min_prompt_tokens={self.min_prompt_tokens}: use 0 or more (1 refuses empty prompts).")
        if self.max_prompt_tokens < max(1, self.min_prompt_tokens):
            raise ConfigError(
                f"data.max_prompt_tokens={self.max_prompt_tokens}: must be >= 1 and >= data.min_prompt_tokens "
                f"({self.min_prompt_tokens})."
            )
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit={self.limit}: use a row count >= 1, or null to keep every row.")

    def _check_answer_kind(self) -> None:
        from powerflow.eval.grading import check_answer_kind

        kinds = self.answer_kind
        if kinds is None:
            return
        if isinstance(kinds, str):
            check_answer_kind(kinds, "data.answer_kind")
            return
        if not isinstance(kinds, dict) or not kinds:
            raise ConfigError(
                f"data.answer_kind={kinds!r}: write one kind (e.g. math) or a mapping {{family: kind}}, or null to infer."
            )
        for family, kind in kinds.items():
            if family not in self.families:
                raise ConfigError(
                    f"data.answer_kind.{family}: {family!r} is not in data.families {list(self.families)}: key the "
                    "mapping by family."
                )
            check_answer_kind(kind, f"data.answer_kind.{family}")

    def _check_source(self) -> None:
        source = self.source.strip()
        if not source:
            raise ConfigError('data.source is empty: write "world", "hf:<dataset id>" or a path to a .jsonl/.csv/.parquet file.')
        if source == "world":
            return
        if source.startswith(HF_PREFIX):
            dataset = source[len(HF_PREFIX):].strip()
            if not dataset:
                raise ConfigError('data.source is "hf:" with no dataset: write "hf:<dataset id>", e.g. "hf:openai/gsm8k".')
            if dataset in PACKAGED_BUILDERS:
                raise ConfigError(
                    f"data.source={source!r} names a `datasets` file builder without files: point data.source "
                    f"at the file itself (a path ending in {', '.join(FILE_EXTENSIONS)}) or at a local "
                    "dataset directory as \"hf:<directory>\"."
                )
            return
        if PurePath(source).suffix.lower() not in FILE_EXTENSIONS:
            raise ConfigError(
                f"data.source={source!r} is not a known source: write \"world\", \"hf:<dataset id>\", or a "
                f"path to a file ending in {', '.join(FILE_EXTENSIONS)}."
            )

    @property
    def is_world(self) -> bool:
        """True when prompts come from the embedded world (the caller passes its rows in)."""
        return self.source.strip() == "world"

    @property
    def hf_dataset(self) -> str | None:
        """The dataset id or directory after "hf:", or None for world and file sources."""
        source = self.source.strip()
        return source[len(HF_PREFIX):].strip() if source.startswith(HF_PREFIX) else None
