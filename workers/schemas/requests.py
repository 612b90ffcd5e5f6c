"""Request bodies of the REST API: the job specifications (pydantic v2, unknown keys rejected). The API
accepts them; the workers run them. Response bodies: :mod:`workers.schemas.responses`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backends.base import Fallback
from backends.options import Budget
from sqsnn.neuron import MemoryMode, Surrogate

DatasetName = Literal["digits", "mnist-5k", "mnist", "fmnist", "kmnist", "mnist-dvs"]
BackendName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[a-z][a-z0-9-]*(:[A-Za-z0-9_.:/-]+)?$",
        description="Backend registry entry, e.g. `exact`, `aer`, `ibm-local:<fake>`, `braket-local:sv`",
    ),
]

FALLBACK_HELP = "where to run when the backend is unavailable (recorded in the result); none = fail"


NotBefore = Annotated[
    AwareDatetime | None,
    Field(description="run at or after this time (ISO 8601 with a time zone); the job waits queued until then"),
]
BackendOptions = Annotated[
    dict[str, Any] | None,
    Field(
        description="options of the backend, checked by its kind's option model: e.g. for `ibm:` the execution "
        "mode (session or batch), for `braket:` a reservation ARN, for every circuit backend neurons_per_circuit"
    ),
]


def parse_not_before(spec: dict[str, Any]) -> datetime | None:
    """The ``not_before`` of a stored job spec (None when absent)."""
    value = spec.get("not_before")
    return datetime.fromisoformat(value) if value else None


def check_backend_options(backend: str, options: dict[str, Any] | None) -> None:
    """Validate ``options`` with the option model of ``backend``'s registry kind (ValueError naming the field);
    kinds outside the registry (providers added through ``SQSNN_QPU_BACKENDS``) validate their own."""
    from backends.registry import KINDS

    model = KINDS.get(backend.split(":", 1)[0])
    if options is None or model is None:
        return
    try:
        model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"options for {backend!r}: {problems}") from None


class StrictModel(BaseModel):
    """Base model that rejects unknown fields."""

    model_config = ConfigDict(extra="forbid")


class ModelShape(StrictModel):
    """Network shape: hidden layer sizes between the dataset's input size and its class count."""

    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [1000], max_length=8)
    mode: MemoryMode = "quantum"
    bias: bool = False
    direct: bool = False
    surrogate: Surrogate = "sigmoid"


class DatasetSpec(StrictModel):
    """Which embedded dataset to train and test on, optionally restricted to classes and limited in size."""

    name: DatasetName
    classes: list[Annotated[int, Field(ge=0, le=9)]] | None = Field(default=None, min_length=2, max_length=10)
    limit_train: int | None = Field(default=None, ge=1, le=1_000_000)
    limit_test: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("classes")
    @classmethod
    def _distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("classes must be distinct")
        return v


class EncoderSpec(StrictModel):
    """Rate encoding: T time steps, spike probability min(intensity, p_max) per step (frames ignore p_max)."""

    T: int = Field(default=5, ge=1, le=1000)
    p_max: float = Field(default=0.5, gt=0.0, le=1.0)


class TrainingSpec(StrictModel):
    """Training method and hyper-parameters.

    ``bptt``: surrogate-gradient backpropagation through time (``loss`` and ``logit_scale`` apply).
    ``local``: the paper's local rule; ``estimator`` picks its gradient estimator (``exact``,
    ``shift`` = parameter shift + SPSA, ``chain`` = parameter shift + chain rule, ``official`` = the
    reference recipe) and ``samples``, ``shots``, ``directions``, ``spsa_step`` tune it.
    """

    method: Literal["bptt", "local"] = "bptt"
    estimator: Literal["exact", "shift", "chain", "official"] | None = None
    epochs: int = Field(default=5, ge=1, le=1000)
    batch_size: int | None = Field(default=None, ge=1, le=4096, description="default: the trainer's")
    lr: float | None = Field(default=None, gt=0.0, le=10.0, description="default: the trainer's")
    loss: Literal["counts", "probs"] = "counts"
    logit_scale: float | None = Field(
        default=None, gt=0.0, le=100.0, description="bptt: scale of the output rates inside the softmax"
    )
    samples: int | None = Field(default=None, ge=1, le=64, description="local: forward runs per training sample")
    shots: int | None = Field(default=None, ge=0, le=100_000, description="local: shots per probability (0 = exact)")
    directions: int | None = Field(default=None, ge=1, le=64, description="local: SPSA directions K")
    spsa_step: float | None = Field(default=None, gt=0.0, le=1.0, description="local: SPSA step c")
    eval_runs: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="single-shot runs of each validation / test sample per evaluation, accuracy averaged "
        "(default: the trainer's, 1)",
    )

    @model_validator(mode="after")
    def _local_options(self) -> TrainingSpec:
        local_only = ("estimator", "samples", "shots", "directions", "spsa_step")
        if self.method == "bptt":
            given = [name for name in local_only if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply only to method 'local'")
        elif self.logit_scale is not None:
            raise ValueError("logit_scale applies only to method 'bptt'")
        return self


class TrainJobSpec(StrictModel):
    """A training job."""

    kind: Literal["train"]
    name: str | None = Field(default=None, max_length=100)
    model: ModelShape = Field(default_factory=ModelShape)
    dataset: DatasetSpec
    encoder: EncoderSpec = Field(default_factory=EncoderSpec)
    training: TrainingSpec = Field(default_factory=lambda: TrainingSpec())
    backend: BackendName = "exact"
    options: BackendOptions = None
    fallback: Annotated[Fallback, Field(description=FALLBACK_HELP)] = "none"
    budget: Budget | None = None
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    not_before: NotBefore = None

    @model_validator(mode="after")
    def _backend_options(self) -> TrainJobSpec:
        check_backend_options(self.backend, self.options)
        return self

    @field_validator("backend")
    @classmethod
    def _backend_can_train(cls, backend: str, info: ValidationInfo) -> str:
        """Training off the exact engine is the local rule with the backend in the loop; say what to change.
        (A field validator, declared after ``model`` and ``training``, so that the error names ``backend``.)"""
        training, model = info.data.get("training"), info.data.get("model")
        if backend == "exact" or training is None or model is None:
            return backend
        if training.method == "bptt":
            raise ValueError(
                f"method 'bptt' cannot train on backend {backend!r}: backpropagation needs the gradient of every "
                "spike probability through time, and a circuit backend returns only sampled spikes, so there is "
                "nothing to backpropagate through; set training.method to 'local' (the local rule, which measures "
                "its probabilities on the backend) or backend to 'exact'"
            )
        if training.estimator not in (None, "exact") and not training.shots:
            raise ValueError(
                f"training.shots must be >= 1 with estimator {training.estimator!r} on backend {backend!r}: its "
                "probabilities are measured there as fractions of `shots` runs"
            )
        if model.mode == "official":
            raise ValueError(
                f"model.mode 'official' is the reference code's classical neuron and has no circuit on backend "
                f"{backend!r}; use mode 'quantum' or 'memoryless', or backend 'exact'"
            )
        return backend


class ImageInputs(StrictModel):
    """Images given inline: each a flat list of D intensities in [0, 1] (row-major H x W)."""

    source: Literal["images"]
    images: list[list[Annotated[float, Field(ge=0.0, le=1.0)]]] = Field(min_length=1, max_length=10_000)
    labels: list[int] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ImageInputs:
        widths = {len(row) for row in self.images}
        if len(widths) != 1 or 0 in widths:
            raise ValueError("images must all have the same, non-zero length")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError("labels must have one entry per image")
        return self


class DatasetSlice(StrictModel):
    """Samples ``start:stop`` of a dataset split."""

    source: Literal["dataset"]
    name: DatasetName
    split: Literal["train", "test"] = "test"
    start: int = Field(default=0, ge=0)
    stop: int = Field(ge=1)
    classes: list[Annotated[int, Field(ge=0, le=9)]] | None = Field(default=None, min_length=2, max_length=10)

    @model_validator(mode="after")
    def _range(self) -> DatasetSlice:
        if self.stop <= self.start:
            raise ValueError("stop must be greater than start")
        if self.stop - self.start > 10_000:
            raise ValueError("a slice holds at most 10000 samples")
        return self


class InferJobSpec(StrictModel):
    """An inference job: run a stored model on inputs and return predictions and spike trains."""

    kind: Literal["infer"]
    model_id: uuid.UUID
    inputs: Annotated[ImageInputs | DatasetSlice, Field(discriminator="source")]
    encoder: EncoderSpec | None = Field(default=None, description="defaults to the encoder the model was trained with")
    backend: BackendName = "exact"
    options: BackendOptions = None
    fallback: Annotated[Fallback, Field(description=FALLBACK_HELP)] = "none"
    budget: Budget | None = None
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    not_before: NotBefore = None

    @model_validator(mode="after")
    def _backend_options(self) -> InferJobSpec:
        check_backend_options(self.backend, self.options)
        return self


JobSpec = Annotated[TrainJobSpec | InferJobSpec, Field(discriminator="kind")]
