"""The configuration's sections and keys as frozen values, and the embedded defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from visinstruct.core.records import TASKS

SAGEMAKER_SCHEMAS = ("tgi", "lmi", "messages")
BATCH_FAMILIES = ("anthropic", "mistral", "meta")  # model providers whose batch bodies we write
# How an OpenAI-compatible request asks for JSON; "auto" finds the form each server takes,
# "response_format" is the older name of "json_schema".
OPENAI_JSON_MODES = ("auto", "json_schema", "json_object", "guided_json", "none",
                     "response_format")
JUDGE_COMBINE = ("mean", "min")
UNGROUNDED_ACTIONS = ("flag", "drop", "off")


@dataclass(frozen=True)
class SourceConfig:
    """Where the images, captions, boxes and baseline come from."""

    coco_captions: Path | None = None
    coco_instances: Path | None = None
    baseline: Path | None = None
    images_dir: Path | None = None
    limit: int = 0
    gqa_scene_graphs: Path | None = None
    gqa_questions: Path | None = None
    vqa_questions: Path | None = None
    vqa_annotations: Path | None = None
    gqa_images_dir: Path | None = None


@dataclass(frozen=True)
class GenerationConfig:
    """Which model writes the data, for which tasks, with which sampling."""

    model: str = "tiny"
    tasks: tuple[str, ...] = TASKS
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    max_pairs: int = 10      # pairs kept from one reply; a runaway reply is not one huge record


@dataclass(frozen=True)
class JudgeConfig:
    """Which model rates the pairs and the score a pair needs to be kept."""

    model: str = "tiny"
    threshold: float = 7
    max_tokens: int = 256
    temperature: float = 0.2
    models: tuple[str, ...] = ()   # a panel: every pair scored by each, then combined
    combine: str = "mean"          # mean | min: how a panel's scores become one

    @property
    def panel(self) -> tuple[str, ...]:
        """The judge models: `models` when set, else `model` alone."""
        return self.models or (self.model,)

    @property
    def identity(self) -> str:
        """The model name judgements are stored under: the one judge's, or the panel's."""
        panel = self.panel
        return panel[0] if len(panel) == 1 else f"panel:{self.combine}:{'+'.join(panel)}"


@dataclass(frozen=True)
class EvaluationConfig:
    """Which model compares our data with the baseline, on how many images."""

    model: str = "claude"
    sample: int = 200
    seed: int = 0
    max_tokens: int = 512
    temperature: float = 0.2


@dataclass(frozen=True)
class GatesConfig:
    """The quality gates (core/text/gates.py): each rule on or off, with its threshold."""

    cut_off: bool = True
    prompt_copy: bool = True
    prompt_copy_words: int = 8          # this many prompt words in a row make a copy
    same_as_question: bool = True
    placeholder: bool = True
    refusal: bool = True
    duplicate: bool = True
    duplicate_similarity: float = 0.8   # word-shingle Jaccard to an earlier pair of the image
    template_images: int = 5            # a pair word for word on this many images is flagged
    ungrounded_object: str = "flag"     # flag | drop | off
    repeated_sentence: bool = True
    repeated_sentence_similarity: float = 0.6  # content-word Jaccard of two sentences of one answer


@dataclass(frozen=True)
class BudgetConfig:
    """Spending limit; 0 means none."""

    max_usd: float = 0.0


@dataclass(frozen=True)
class DownloadConfig:
    """Where `prepare --download` fetches from and to."""

    coco_annotations_url: str = (
        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
    )
    mix665k_url: str = (
        "https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K/resolve/main/"
        "llava_v1_5_mix665k.json"
    )
    gqa_scene_graphs_url: str = "https://downloads.cs.stanford.edu/nlp/data/gqa/sceneGraphs.zip"
    gqa_questions_url: str = "https://downloads.cs.stanford.edu/nlp/data/gqa/questions1.2.zip"
    vqa_questions_url: str = (
        "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Questions_Train_mscoco.zip"
    )
    vqa_annotations_url: str = (
        "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Annotations_Train_mscoco.zip"
    )
    data_dir: Path = Path("data")


@dataclass(frozen=True)
class ModelConfig:
    """One named model: a backend and its settings (keys not used by a backend stay default)."""

    name: str
    backend: str
    endpoints: tuple[str, ...] = ()
    schema: str = "tgi"
    region: str = "us-east-1"
    max_in_flight: int = 8
    model_id: str = ""
    api: str = "invoke"
    base_url: str = ""
    base_urls: tuple[str, ...] = ()
    api_key_env: str = "OPENAI_API_KEY"
    model: str = ""
    json_mode: str = "auto"
    gguf: str = ""
    n_ctx: int = 4096
    n_threads: int = 0
    contexts: int = 1
    script: str = ""
    stream: bool = False
    read_timeout: float = 75.0
    call_timeout: float = 600.0  # one whole call (OpenAI; SageMaker streams)
    attempts: int = 4
    probe_seconds: float = 30.0
    instances: int = 1
    price_per_instance_hour: float = 0.0
    price_in_per_million: float = 0.0
    price_out_per_million: float = 0.0
    # bedrock-batch: where records and outputs go, the role Bedrock uses, and job sizes.
    s3_uri: str = ""
    role_arn: str = ""
    min_records: int = 100
    max_records_per_job: int = 50_000
    poll_seconds: float = 60.0
    timeout_hours: int = 24
    on_demand_remainder: bool = True
    # Pictures: None means the backend's default for the model id (core/config/backends.py).
    vision: bool | None = None
    image_max_side: int = 1024   # longest side, in pixels, of a picture sent to the model
    # The model's licence (an SPDX id such as apache-2.0, or free text): recorded with each
    # run and written into the dataset card of `export --mix`.
    license: str = ""


@dataclass(frozen=True)
class Config:
    """A whole, validated run configuration."""

    db: Path = Path("visinstruct.db")
    source: SourceConfig = field(default_factory=SourceConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    origin: str = "<embedded defaults>"

    def model(self, name: str) -> ModelConfig:
        """The model called `name` (validation guarantees the stages' models exist)."""
        return self.models[name]


_SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "generation": GenerationConfig,
    "judge": JudgeConfig,
    "evaluation": EvaluationConfig,
    "budget": BudgetConfig,
    "gates": GatesConfig,
    "download": DownloadConfig,
}
_TOP_KEYS = ("db", "models", *_SECTIONS)
_PATH_KEYS = {"coco_captions", "coco_instances", "baseline", "images_dir", "data_dir",
              "gqa_scene_graphs", "gqa_questions", "vqa_questions", "vqa_annotations",
              "gqa_images_dir"}
# Model settings that hold a file path but stay strings (empty means "none" / "the bundled one").
_MODEL_PATH_KEYS = {"gguf", "script"}


def default_models() -> dict[str, ModelConfig]:
    """The models every config knows without defining them."""
    return {
        "tiny": ModelConfig(name="tiny", backend="local", max_in_flight=1),
        "claude": ModelConfig(
            name="claude",
            backend="bedrock",
            model_id="anthropic.claude-3-5-sonnet-20240620-v1:0",
            max_in_flight=8,
            price_in_per_million=3.0,
            price_out_per_million=15.0,
        ),
    }


def default_config() -> Config:
    """The embedded defaults: bundled sample data, the local model, ./visinstruct.db."""
    from visinstruct.dataset import sample

    return Config(
        source=SourceConfig(
            coco_captions=sample.captions_path(),
            coco_instances=sample.instances_path(),
            baseline=sample.baseline_path(),
        ),
        models=default_models(),
    )


