"""Every option of every model, declared once: the typed schema and the only source of defaults.

A model's configuration is a dataclass tree (``LightGCNConfig``, ``SymCEREConfig``, ...): sections (``model``,
``train``, ``eval``, ``loss``, ``text``, ``views``) of typed, documented fields. YAML files (presets in
``configs/``, user files, experiment plans) and ``--set`` overrides only change values; ``symcere.config``
validates them against these types. A resolved configuration is stored as the plain nested mapping
``asdict(config)`` (the run directory's ``config.yaml``).

Shared sections carry one idea under one name in every model: ``text`` (the text encoder of SymCERE and DGCLR),
``views`` (the edge-dropout graph views of SGL and SymCERE). Temperatures have distinct names
(``loss.ssm_tau``, ``loss.cross_tau``, ``loss.intra_tau``, ``model.ssl_tau``, ``loss.cl_tau``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal


def opt(default: Any, doc: str) -> Any:
    """A documented field (lists are copied per instance)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def section(cls: type, doc: str, **changes: Any) -> Any:
    """A documented sub-section whose defaults may differ from ``cls``'s own (``changes``)."""
    return field(default_factory=lambda: cls(**changes), metadata={"doc": doc})


def doc_of(cls: type, name: str) -> str:
    for f in fields(cls):
        if f.name == name:
            return str(f.metadata.get("doc", ""))
    return ""


# -- sections shared by every model ----------------------------------------------------------------------------
@dataclass
class TrainOptions:
    lr: float = opt(1e-3, "Adam learning rate")
    batch_size: int = opt(2048, "training interactions per optimizer step")
    max_epochs: int = opt(1000, "upper bound on epochs")
    reg: float = opt(1e-4, "L2 on the batch's zero-th layer embeddings (users, positives, negatives), LightGCN's")
    eval_every_steps: int = opt(50, "validate at the end of the first epoch after at least this many steps")
    patience_steps: int = opt(600, "stop after this many optimizer steps without a better validation metric")
    min_steps: int = opt(0, "never stop before this many optimizer steps")
    max_minutes: float | None = opt(None, "optional wall-clock budget (the run's metrics say when it stopped it)")
    threads: int | None = opt(None, "torch threads; null = the CPU cores available (under torchrun: shared by its local ranks)")
    num_negatives: int = opt(1, "negatives sampled per positive (uniform over items the user has not seen)")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N (auto = cuda when available; under torchrun cuda:LOCAL_RANK)")
    grad_share: bool = opt(
        False, "log each loss term's gradient norm on the graph parameters at every epoch's first step (one process)"
    )


@dataclass
class EvalOptions:
    ks: list[int] = opt([10, 20], "cut-offs K of the metrics")
    metric: str = opt("ndcg@10", "early-stopping and model-selection metric, on validation")
    max_batch_elements: int = opt(16_777_216, "bound on user-batch size x n_items when scoring")


@dataclass
class RecLoss:
    rec: Literal["bpr", "bce", "ssm", "sm"] = opt("bpr", "recommendation loss (sampled-softmax paper, section 2)")
    ssm_tau: float = opt(0.1, "temperature of ssm / sm (cosine logits)")
    ssm_mask: bool = opt(True, "ssm: in-batch copies of the positive item leave the denominator (false: kept)")


@dataclass
class ViewOptions:
    """Edge-dropout views of the training graph (SGL, SymCERE's intra-modal graph term)."""

    edge_dropout: float = opt(0.1, "fraction of training edges dropped in each view")
    every: Literal["epoch", "step"] = opt("epoch", "how often a new view is drawn")


@dataclass
class TextOptions:
    """The text encoder f_text over each item's training reviews (SymCERE section 3.1.2; DGCLR's features)."""

    model: str = opt("minilm", "'minilm' (packaged all-MiniLM-L6-v2), 'mpnet', a local path or a cached HF name")
    pooling: Literal["mean", "cls", "last"] = opt("mean", "token pooling of the encoder output")
    max_tokens: int = opt(128, "truncation of each encoded sequence")
    item_pooling: Literal["concat", "review_mean"] = opt(
        "review_mean", "concat: the item text as one sequence | review_mean: mean of its reviews' embeddings"
    )
    shuffle_items: bool = opt(False, "control: each item gets another item's text (seeded permutation)")
    mode: Literal["frozen", "lora", "full"] = opt("frozen", "frozen (cached embeddings) | lora (the paper) | full")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA scaling alpha")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    lora_targets: list[str] | None = opt(None, "modules that get LoRA; null = the architecture's attention q, v")
    lora_layers: int | None = opt(
        None, "LoRA on the top N encoder layers only, lower layers' states cached once per text; null = all (paper)"
    )
    mask_strategy: Literal["drop", "token"] = opt("drop", "word masking of the text view: drop words | mask token")
    mask_rate: float = opt(0.15, "word-masking rate of the text view (Eq. 10-11)")
    n_views: int = opt(4, "pre-computed masked views per item; the text view t' draws one of them per step")
    lr: float | None = opt(None, "learning rate of the text encoder (null = train.lr)")
    batch_size: int = opt(32, "encoding without gradients: padded-token budget of a forward, in max_tokens sequences")
    micro_batch: int = opt(64, "training (lora / full): sequences of max_tokens per forward with gradients")
    checkpointing: bool | None = opt(
        None, "recompute micro-batch activations in backward (memory: one micro-batch); null = when >1 per step"
    )
    bf16: bool = opt(False, "bf16 autocast for the text encoder (CPU or CUDA where supported)")
    cache_dir: str | None = opt(None, "frozen-embedding cache; null = $SYMCERE_CACHE or ~/.cache/symcere")

    def __post_init__(self) -> None:
        checks = (
            (0.0 <= self.mask_rate <= 1.0, f"text.mask_rate must be in [0, 1], got {self.mask_rate}"),
            (self.max_tokens >= 2, f"text.max_tokens must be >= 2, got {self.max_tokens}"),
            (self.batch_size >= 1, f"text.batch_size must be >= 1, got {self.batch_size}"),
            (self.lora_r >= 1, f"text.lora_r must be >= 1, got {self.lora_r}"),
            (self.n_views >= 0, f"text.n_views must be >= 0, got {self.n_views}"),
            (self.micro_batch >= 1, f"text.micro_batch must be >= 1, got {self.micro_batch}"),
            (self.lora_layers is None or self.lora_layers >= 1, f"text.lora_layers must be >= 1, got {self.lora_layers}"),
        )
        for ok, message in checks:
            if not ok:
                from symcere.errors import ConfigError

                raise ConfigError(message)


# -- per-model sections ---------------------------------------------------------------------------------------
@dataclass
class MFModel:
    name: str = opt("mf", "the model (set by the loader)")
    dim: int = opt(64, "embedding size")
    normalize: bool = opt(False, "score and train on L2-normalised embeddings (cosine)")


@dataclass
class LightGCNModel(MFModel):
    name: str = opt("lightgcn", "the model (set by the loader)")
    layers: int = opt(3, "propagation layers (output = mean of layers 0..layers, Eq. 2)")


@dataclass
class NGCFModel(LightGCNModel):
    name: str = opt("ngcf", "the model (set by the loader)")
    message_dropout: float = opt(0.1, "dropout on NGCF messages")


@dataclass
class NeuMFModel:
    name: str = opt("neumf", "the model (set by the loader)")
    dim: int = opt(64, "embedding size of each tower (GMF factors; each side of the MLP input)")
    mlp_layers: list[int] = opt([64, 32, 16], "hidden sizes of the MLP tower after the 2*dim concatenation")
    dropout: float = opt(0.0, "dropout after every hidden ReLU of the MLP tower")


@dataclass
class SGLModel(LightGCNModel):
    name: str = opt("sgl", "the model (set by the loader)")
    ssl_tau: float = opt(0.2, "InfoNCE temperature between the two views (cosine logits)")
    ssl_weight: float = opt(0.1, "weight of the SSL loss (paper's lambda_1)")


@dataclass
class DGCLRModel:
    name: str = opt("dgclr", "the model (set by the loader)")
    dim: int = opt(64, "embedding size (a multiple of factors)")
    layers: int = opt(2, "factorised propagation layers (output = mean of layers 0..layers)")
    factors: int = opt(4, "K latent factor channels")
    routing_iters: int = opt(2, "routing iterations per layer (DGCF-style)")
    routing_tau: float = opt(1.0, "softmax temperature of the per-edge distribution over factors")
    text_features: Literal["text", "random", "none"] = opt(
        "text", "review side information: text (frozen encoder of the text section) | random (tests) | none"
    )
    normalize: bool = opt(False, "score and train on L2-normalised embeddings (cosine)")


@dataclass
class DGCLRLoss(RecLoss):
    cl_weight: float = opt(0.1, "weight of the user/item-level channel-aware InfoNCE")
    cl_inter_weight: float = opt(0.05, "weight of the interaction-level channel-aware InfoNCE")
    cl_tau: float = opt(0.2, "temperature of both contrastive terms")
    indep_weight: float = opt(0.01, "weight of the cross-channel decorrelation term")


@dataclass
class SymCEREModel:
    name: str = opt("symcere", "the model (set by the loader)")
    dim: int = opt(64, "embedding size of the graph (and projected text) embeddings")
    backbone: Literal["lightgcn", "ngcf"] = opt("lightgcn", "graph encoder (section 3.1.1; NGCF: Table 3)")
    layers: int = opt(3, "propagation layers")
    message_dropout: float = opt(0.1, "NGCF only: dropout on messages")
    normalize: bool = opt(True, "L2-normalise every embedding before the alignment losses (Eq. 3); false: w/o Norm")
    rank_normalize: bool = opt(
        False, "the ranking term (Eq. 12) and the score on normalised embeddings (true: the paper) or dot product"
    )


@dataclass
class SymCERELoss:
    cross: Literal["sincere", "infonce"] = opt("sincere", "cross-modal loss: sincere (Eq. 6-9) | infonce (Eq. 4)")
    cross_weight: float = opt(0.032, "weight of L_cross-modal (Eq. 13 has 1)")
    cross_tau: float = opt(0.27, "temperature of the cross-modal loss")
    alpha: float = opt(0.0, "weight of L_intra-modal (Eq. 13: 0.5)")
    intra_tau: float = opt(0.1, "temperature of the intra-modal InfoNCE (Eq. 10-11)")
    beta: float = opt(1.0, "weight of the ranking term (Eq. 13: 0.05)")
    bpr_reduction: Literal["mean", "sum"] = opt("mean", "Eq. 12 averaged over the batch | summed as written")
    user_weight: float = opt(
        0.0, "weight of a user-side alignment of g_u with the user's own review profile (not in the paper; 0 = off)"
    )


# -- one configuration class per model -------------------------------------------------------------------------
@dataclass
class ModelConfig:
    seed: int = opt(0, "seed of every random draw (weights, sampling, views)")
    preset: str | None = opt(None, "the preset applied (configs/<model>.<preset>.yaml), null = none")
    train: TrainOptions = section(TrainOptions, "optimisation and early stopping")
    eval: EvalOptions = section(EvalOptions, "validation and test metrics")


@dataclass
class MFConfig(ModelConfig):
    """Matrix factorisation: the ID-only reference."""

    model: MFModel = section(MFModel, "model")
    loss: RecLoss = section(RecLoss, "loss")


@dataclass
class LightGCNConfig(ModelConfig):
    """LightGCN (He et al. 2020; SymCERE Eq. 1-2)."""

    model: LightGCNModel = section(LightGCNModel, "model")
    loss: RecLoss = section(RecLoss, "loss")


@dataclass
class NGCFConfig(ModelConfig):
    """NGCF (Wang et al. 2019)."""

    model: NGCFModel = section(NGCFModel, "model")
    loss: RecLoss = section(RecLoss, "loss")


@dataclass
class NeuMFConfig(ModelConfig):
    """NeuMF (He et al. 2017): GMF + MLP towers, pointwise BCE with 4 negatives, no L2 (the paper's)."""

    model: NeuMFModel = section(NeuMFModel, "model")
    train: TrainOptions = section(TrainOptions, "optimisation", num_negatives=4, reg=0.0)


@dataclass
class SGLConfig(ModelConfig):
    """SGL-ED (Wu et al. 2021): LightGCN + InfoNCE between two edge-dropout views."""

    model: SGLModel = section(SGLModel, "model")
    loss: RecLoss = section(RecLoss, "loss (on the original graph)")
    views: ViewOptions = section(ViewOptions, "the two edge-dropout views")


@dataclass
class DGCLRConfig(ModelConfig):
    """DGCLR, our reconstruction (models/dgclr.py): disentangled graph CL with frozen review features."""

    model: DGCLRModel = section(DGCLRModel, "model")
    loss: DGCLRLoss = section(DGCLRLoss, "loss")
    text: TextOptions = section(
        TextOptions, "frozen text encoder of the review features", batch_size=64, item_pooling="concat"
    )


@dataclass
class SymCEREConfig(ModelConfig):
    """SymCERE (symcere.md section 3). These defaults are the preset chosen on validation (docs/RESULTS.md);
    ``--preset paper`` is Eq. 13 as written."""

    preset: str | None = opt("default", "the preset applied: default (these values) | paper (Eq. 13 as written)")
    model: SymCEREModel = section(SymCEREModel, "graph side")
    text: TextOptions = section(TextOptions, "text side")
    loss: SymCERELoss = section(SymCERELoss, "Eq. 13")
    views: ViewOptions = section(ViewOptions, "graph view g' of the intra-modal InfoNCE (Eq. 10)")
    train: TrainOptions = section(TrainOptions, "optimisation", lr=4.3e-4, reg=6.5e-4)


#: the configuration class of each model, by name
SCHEMAS: dict[str, type[ModelConfig]] = {
    "mf": MFConfig,
    "lightgcn": LightGCNConfig,
    "ngcf": NGCFConfig,
    "neumf": NeuMFConfig,
    "sgl": SGLConfig,
    "dgclr": DGCLRConfig,
    "symcere": SymCEREConfig,
}
