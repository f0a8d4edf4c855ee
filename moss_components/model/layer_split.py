"""``LayerSplitSpeechLM``: a pretrained text LLM split into a shared trunk, a text branch and a speech branch.

The text branch *is* the original model: the same embedding, upper layers, final norm and lm_head objects, so the
text path stays bit-identical to the base model while those parameters are frozen. The speech branch is deep copies
of the upper layers, a copy of the final norm, a new speech head and a new speech embedding table (MOSS-Speech).

Every stack runs the trunk's own decoder layers with its own ``rotary_emb`` and ``create_causal_mask``, so every
``attn_implementation`` (eager, sdpa, flash, our Triton kernels) works unchanged, packed sequences included.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from moss_components.model.loss import IGNORE_INDEX, combine_losses, head_loss, shift_labels
from moss_components.model.output import SpeechLMOutput
from moss_components.routers.base import BranchInputs, BranchOutputs, SpeechLMRouter
from moss_components.special_ids import SpeechSpecialIds

__all__ = ["LayerSplitSpeechLM", "SplitError"]


# transformers 5.2x renamed the KV-cache argument of decoder layers and mask builders from `past_key_values` to
# `cache`. Layers take **kwargs, so the wrong name would be dropped silently and generation would run uncached.
CACHE_KWARG = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"


class SplitError(ValueError):
    """A trunk cannot be split (a module is missing, or the split index is out of range)."""


def _layer_type(config, index: int) -> str:
    """The mask key a trunk layer uses, as its own model's forward would choose it."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return layer_types[index]
    # Mistral: no layer_types; every layer slides when sliding_window is set
    if getattr(config, "sliding_window", None) is not None and not hasattr(config, "use_sliding_window"):
        return "sliding_attention"
    return "full_attention"


def _find_parts(model: PreTrainedModel) -> dict[str, Any]:
    """The modules a split needs, with an error naming the first one that is missing."""
    inner = getattr(model, "model", None)
    if inner is None:
        raise SplitError(
            f"{type(model).__name__} cannot be split: it has no `.model` attribute (expected a *ForCausalLM of the "
            "Llama / Qwen2 / Qwen3 / Mistral family)"
        )
    parts = {
        "layers": getattr(inner, "layers", None),
        "norm": getattr(inner, "norm", None),
        "rotary_emb": getattr(inner, "rotary_emb", None),
        "embed_tokens": getattr(inner, "embed_tokens", None),
        "lm_head": getattr(model, "lm_head", None),
    }
    for name, module in parts.items():
        if module is None:
            where = "" if name == "lm_head" else "model."
            raise SplitError(f"{type(model).__name__} cannot be split: it has no `{where}{name}` attribute")
    if not isinstance(parts["layers"], nn.ModuleList) or len(parts["layers"]) == 0:
        raise SplitError(f"{type(model).__name__} cannot be split: `model.layers` is not a non-empty nn.ModuleList")
    return parts


def _init_like(module: nn.Module, reference: torch.Tensor) -> None:
    """Normal init at the reference weight's scale, so a new table/head matches the pretrained ones."""
    with torch.no_grad():
        std = reference.float().std().item() if reference.device.type != "meta" else 0.02
        module.weight.normal_(mean=0.0, std=std if std > 0 else 0.02)


class LayerSplitSpeechLM(nn.Module):
    """A speech LM whose lower layers are shared and whose top layers are split into a text and a speech branch.

    Build it with :meth:`from_text_model`. Modules (their names are the parameter prefixes the freezing policies use):

    - ``embed_tokens`` text embedding (the base model's), ``speech_embed`` new ``(V_speech, D)`` table
    - ``shared_layers`` the base model's layers ``0..k-1``
    - ``text_layers``, ``text_norm``, ``text_head``: the base model's layers ``k..N-1``, final norm and lm_head
    - ``speech_layers``, ``speech_norm``: deep copies of those (absent under the no-split router), ``speech_head``
    - ``rotary_emb`` the base model's rotary embedding; ``router`` (no weights)

    Attributes:
        special_ids, num_shared_layers, num_hidden_layers (N of the base), text_vocab_size, speech_vocab_size,
        config (the base model's HF config), router, fused_loss.
        system_prompts: the SFT system prompt of each mode (``data/sft.py``) the model was trained with, saved with
            its weights; None: the library's defaults.
    """

    def __init__(
        self,
        *,
        config,
        embed_tokens: nn.Embedding,
        speech_embed: nn.Embedding,
        shared_layers: nn.ModuleList,
        text_layers: nn.ModuleList,
        text_norm: nn.Module,
        text_head: nn.Linear,
        speech_layers: nn.ModuleList | None,
        speech_norm: nn.Module | None,
        speech_head: nn.Linear,
        rotary_emb: nn.Module,
        special_ids: SpeechSpecialIds,
        router: SpeechLMRouter,
        fused_loss: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.speech_embed = speech_embed
        self.shared_layers = shared_layers
        self.text_layers = text_layers
        self.text_norm = text_norm
        self.text_head = text_head
        self.speech_layers = speech_layers
        self.speech_norm = speech_norm
        self.speech_head = speech_head
        self.rotary_emb = rotary_emb
        self.router = router
        self.special_ids = special_ids
        self.system_prompts: dict[str, str] | None = None
        self.fused_loss = fused_loss
        self.num_shared_layers = len(shared_layers)
        self.num_hidden_layers = len(shared_layers) + len(text_layers)
        self.text_vocab_size = text_head.out_features
        self.speech_vocab_size = speech_head.out_features
        self._layer_types = [_layer_type(config, i) for i in range(self.num_hidden_layers)]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_text_model(
        cls,
        model: PreTrainedModel,
        num_shared_layers: int,
        speech_vocab_size: int,
        special_ids: SpeechSpecialIds,
        router: SpeechLMRouter | None = None,
        fused_loss: bool = False,
    ) -> LayerSplitSpeechLM:
        """Split a transformers causal LM after layer ``num_shared_layers - 1``.

        Args:
            model: a ``*ForCausalLM`` with ``model.layers``, ``model.norm``, ``model.rotary_emb``,
                ``model.embed_tokens`` and ``lm_head`` (Llama, Qwen2, Qwen3, Mistral ...). Its modules are reused,
                not copied: the text branch shares them with ``model``.
            num_shared_layers: k, in ``[0, N]`` for an N-layer model.
            speech_vocab_size: rows of the speech embedding and the speech head (codes + end-of-speech + pad ...).
            special_ids: the grid's special ids; the speech ids must be ``< speech_vocab_size``.
            router: how positions flow through the branches; default :class:`DualBranchRouter` (MOSS-Speech).
        """
        from moss_components.routers.dual_branch import DualBranchRouter

        router = DualBranchRouter() if router is None else router
        if not isinstance(router, SpeechLMRouter):
            raise TypeError(f"router must be a SpeechLMRouter, got {type(router).__name__}")
        parts = _find_parts(model)
        layers = parts["layers"]
        n = len(layers)
        if not 0 <= num_shared_layers <= n:
            raise SplitError(
                f"split layer {num_shared_layers} is out of range: the trunk has {n} layers, so num_shared_layers "
                f"must be in [0, {n}]"
            )
        biggest = max(special_ids.speech_end_of_speech, special_ids.speech_pad)
        if biggest >= speech_vocab_size:
            raise ValueError(
                f"speech_vocab_size={speech_vocab_size} is too small: special speech id {biggest} must be < it"
            )
        for name in ("text_start_of_speech", "text_modality_pad"):
            if getattr(special_ids, name) >= parts["embed_tokens"].num_embeddings:
                raise ValueError(
                    f"special_ids.{name}={getattr(special_ids, name)} is outside the text embedding "
                    f"[0, {parts['embed_tokens'].num_embeddings}); resize the token embeddings first"
                )
        config = model.config
        hidden = parts["embed_tokens"].embedding_dim
        weight = parts["embed_tokens"].weight
        factory = {"device": weight.device, "dtype": weight.dtype}

        speech_embed = nn.Embedding(speech_vocab_size, hidden, **factory)
        _init_like(speech_embed, parts["embed_tokens"].weight)
        speech_head = nn.Linear(hidden, speech_vocab_size, bias=False, **factory)
        _init_like(speech_head, parts["lm_head"].weight)

        upper = list(layers[num_shared_layers:])
        speech_layers = speech_norm = None
        if router.uses_speech_branch:
            # share the config object so set_attn_implementation on the base reaches the copies too
            memo = {id(config): config}
            speech_layers = nn.ModuleList(copy.deepcopy(layer, memo) for layer in upper)
            for j, layer in enumerate(speech_layers):
                # distinct cache slots: shared 0..k-1, text k..N-1, speech N..2N-k-1
                layer.self_attn.layer_idx = n + j
            speech_norm = copy.deepcopy(parts["norm"], memo)
        return cls(
            config=config,
            embed_tokens=parts["embed_tokens"],
            speech_embed=speech_embed,
            shared_layers=nn.ModuleList(layers[:num_shared_layers]),
            text_layers=nn.ModuleList(upper),
            text_norm=parts["norm"],
            text_head=parts["lm_head"],
            speech_layers=speech_layers,
            speech_norm=speech_norm,
            speech_head=speech_head,
            rotary_emb=parts["rotary_emb"],
            special_ids=special_ids,
            router=router,
            fused_loss=fused_loss,
        )

    # ------------------------------------------------------------------ helpers used by routers and generation

    def new_cache(self) -> DynamicCache:
        """An empty KV cache with one slot per layer instance: shared, text branch, then speech branch."""
        cache = DynamicCache(config=self.config)
        if len(cache.layers) < self.num_hidden_layers:  # lazily grown cache (config without layer types)
            return DynamicCache()
        if self.speech_layers is not None:
            # empty slots copied from the text branch's, so sliding-window slots stay sliding
            cache.layers.extend(
                copy.deepcopy(cache.layers[i]) for i in range(self.num_shared_layers, len(cache.layers))
            )
        return cache

    def split_grid(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, L, 2)`` grid or ``(B, L)`` text ids -> text ids, speech ids, speech-position mask, each ``(B, L)``."""
        if input_ids.dim() == 2:
            text_ids = input_ids
            speech_ids = torch.full_like(input_ids, self.special_ids.speech_pad)
        elif input_ids.dim() == 3 and input_ids.shape[-1] == 2:
            text_ids, speech_ids = input_ids[..., 0], input_ids[..., 1]
        else:
            raise ValueError(
                f"input_ids must be (B, L) text ids or a (B, L, 2) grid, got shape {tuple(input_ids.shape)}"
            )
        return text_ids, speech_ids, text_ids == self.special_ids.text_modality_pad

    def predicts_speech(self, text_ids: torch.Tensor, speech_ids: torch.Tensor, speech_positions: torch.Tensor):
        """``(B, L)`` bool: the token after each position is a speech token (MOSS-Speech's modality state machine)."""
        ids = self.special_ids
        return (text_ids == ids.text_start_of_speech) | (speech_positions & (speech_ids != ids.speech_end_of_speech))

    def embed(self, text_ids: torch.Tensor, speech_ids: torch.Tensor, speech_positions: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)``: the text table at text positions, the speech table at speech positions."""
        hidden = self.embed_tokens(text_ids)
        if speech_positions.any():
            speech = self.speech_embed(speech_ids.clamp(0, self.speech_vocab_size - 1))
            hidden = torch.where(speech_positions.unsqueeze(-1), speech.to(hidden.dtype), hidden)
        return hidden

    def run_layers(
        self, layers: nn.ModuleList, first_index: int, hidden: torch.Tensor, inputs: BranchInputs, **overrides
    ) -> torch.Tensor:
        """Run decoder layers that stand at base indices ``first_index, first_index + 1, ...``.

        ``overrides`` replace fields of ``inputs`` (a router running a compacted sequence passes its own masks,
        positions and rotary embeddings).
        """
        masks = overrides.get("masks", inputs.masks)
        position_ids = overrides.get("position_ids", inputs.position_ids)
        position_embeddings = overrides.get("position_embeddings", inputs.position_embeddings)
        cache = overrides.get("cache", inputs.cache)
        layer_kwargs = overrides.get("layer_kwargs", inputs.layer_kwargs)
        for j, layer in enumerate(layers):
            hidden = layer(
                hidden,
                attention_mask=masks[self._layer_types[first_index + j]],
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                use_cache=inputs.use_cache,
                **{CACHE_KWARG: cache},
                **layer_kwargs,
            )
        return hidden

    def make_masks(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache,
        position_ids: torch.Tensor,
    ) -> dict[str, Any]:
        """The masks the trunk's layers expect, built by transformers (packing detected from ``position_ids``)."""
        kwargs = {
            "config": self.config,
            "inputs_embeds": hidden,
            "attention_mask": attention_mask,
            CACHE_KWARG: cache,
            "position_ids": position_ids,
        }
        masks = {"full_attention": create_causal_mask(**kwargs)}
        if "sliding_attention" in self._layer_types:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)
        return masks

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SpeechLMOutput:
        """Score a grid.

        Args:
            input_ids: ``(B, L, 2)`` grid (channel 0 text ids, channel 1 speech ids) or ``(B, L)`` text ids.
            attention_mask: ``(B, L_past + L)`` 1 = attend, 0 = padding; None for no padding (and for packing).
            position_ids: ``(B, L)``; restarting per document with ``attention_mask=None`` gives a block-diagonal
                causal mask (packed sequences). Default: ``arange`` after the cached length.
            past_key_values: a cache from :meth:`new_cache` or a previous output (also accepted as ``cache=``).
            use_cache: write keys/values to the cache (one is created when None).
            labels: ``(B, L, 2)`` unshifted labels, ``-100`` ignored (``(B, L)`` = text labels only).
            **kwargs: passed to every decoder layer (``cu_seq_lens_q``, ``max_length_q`` ... for varlen kernels).

        Returns:
            :class:`SpeechLMOutput` with ``text_logits (B, L, V_text)``, ``speech_logits (B, L, V_speech)``.
        """
        if past_key_values is None:
            past_key_values = kwargs.pop("cache", None)
        cache = past_key_values
        if (use_cache or cache is not None) and not self.router.supports_cache:
            raise ValueError(f"{type(self.router).__name__} does not support a KV cache; pass use_cache=False")
        if use_cache and cache is None:
            cache = self.new_cache()
        text_ids, speech_ids, speech_positions = self.split_grid(input_ids)
        hidden = self.embed(text_ids, speech_ids, speech_positions)
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(past, past + hidden.shape[1], device=hidden.device).unsqueeze(0)
        inputs = BranchInputs(
            hidden=hidden,
            position_ids=position_ids,
            position_embeddings=self.rotary_emb(hidden, position_ids),
            masks=self.make_masks(hidden, attention_mask, cache, position_ids),
            attention_mask=attention_mask,
            cache=cache,
            use_cache=use_cache,
            speech_positions=speech_positions,
            predicts_speech=self.predicts_speech(text_ids, speech_ids, speech_positions),
            layer_kwargs=kwargs,
        )
        inputs.hidden = self.run_layers(self.shared_layers, 0, hidden, inputs)
        branches = self.router(self, inputs)
        return self._heads(branches, labels, cache if use_cache else None)

    def _heads(self, branches: BranchOutputs, labels: torch.Tensor | None, cache) -> SpeechLMOutput:
        fused = self.fused_loss and self.training and labels is not None
        text_logits = speech_logits = None
        if not fused:
            text_logits = self.text_head(branches.text_hidden)
            speech_logits = self.speech_head(branches.speech_hidden)
        out = SpeechLMOutput(
            text_logits=text_logits,
            speech_logits=speech_logits,
            past_key_values=cache,
            text_hidden=branches.text_hidden,
            speech_hidden=branches.speech_hidden,
            text_computed=branches.text_computed,
            speech_computed=branches.speech_computed,
        )
        if labels is not None:
            out.loss, out.text_loss, out.speech_loss = self._loss(branches, text_logits, speech_logits, labels, fused)
        return out

    def _loss(self, branches: BranchOutputs, text_logits, speech_logits, labels: torch.Tensor, fused: bool):
        if labels.dim() == 2:
            labels = torch.stack([labels, torch.full_like(labels, IGNORE_INDEX)], dim=-1)
        text_targets = shift_labels(labels[..., 0])
        speech_targets = shift_labels(labels[..., 1])
        # a router that skipped a head at some positions cannot be trained there
        if branches.text_computed is not None:
            text_targets = text_targets.masked_fill(~branches.text_computed, IGNORE_INDEX)
        if branches.speech_computed is not None:
            speech_targets = speech_targets.masked_fill(~branches.speech_computed, IGNORE_INDEX)
        if self.router.joint_softmax:
            return combine_losses(
                *self._joint_losses(branches, text_logits, speech_logits, text_targets, speech_targets, fused)
            )
        text = head_loss(
            branches.text_hidden, self.text_head.weight, self.text_head.bias, text_targets, text_logits, fused
        )
        speech = head_loss(
            branches.speech_hidden, self.speech_head.weight, self.speech_head.bias, speech_targets, speech_logits, fused
        )
        return combine_losses(text, speech)

    def _joint_losses(self, branches, text_logits, speech_logits, text_targets, speech_targets, fused):
        """One softmax over text + speech ids (speech id s is joint id ``V_text + s``): the no-split baseline."""
        speech_targets = torch.where(
            speech_targets == IGNORE_INDEX, speech_targets, speech_targets + self.text_vocab_size
        )
        weight = torch.cat([self.text_head.weight, self.speech_head.weight], dim=0)
        logits = None if fused else torch.cat([text_logits, speech_logits], dim=-1)
        hidden = branches.text_hidden
        text = head_loss(hidden, weight, None, text_targets, logits, fused)
        speech = head_loss(hidden, weight, None, speech_targets, logits, fused)
        return text, speech

    def gradient_checkpointing_enable(self, enable: bool = True) -> None:
        """Recompute every decoder layer (trunk and both branches) in backward instead of storing activations.

        Uses transformers' own mechanism (``GradientCheckpointingLayer``) with non-reentrant checkpointing, which
        works when the trunk is frozen. Training only: a layer running with a cache is not checkpointed.
        """
        from functools import partial

        from torch.utils.checkpoint import checkpoint
        from transformers.modeling_layers import GradientCheckpointingLayer

        for module in self.modules():
            if isinstance(module, GradientCheckpointingLayer):
                module.gradient_checkpointing = enable
                module._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)

    # ------------------------------------------------------------------ introspection

    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter-name prefixes by role, bottom to top (what the freezing policies act on).

        Keys: ``text_embedding``, ``speech_embedding``, ``shared.{i}``, ``text_branch.{j}``, ``text_norm``,
        ``text_head``, ``speech_branch.{j}``, ``speech_norm``, ``speech_head``.
        """
        groups: dict[str, list[str]] = {"text_embedding": ["embed_tokens."], "speech_embedding": ["speech_embed."]}
        for i in range(self.num_shared_layers):
            groups[f"shared.{i}"] = [f"shared_layers.{i}."]
        for j in range(len(self.text_layers)):
            groups[f"text_branch.{j}"] = [f"text_layers.{j}."]
        groups["text_norm"] = ["text_norm."]
        groups["text_head"] = ["text_head."]
        if self.speech_layers is not None:
            for j in range(len(self.speech_layers)):
                groups[f"speech_branch.{j}"] = [f"speech_layers.{j}."]
            groups["speech_norm"] = ["speech_norm."]
        groups["speech_head"] = ["speech_head."]
        return groups

    def extra_repr(self) -> str:
        return (
            f"num_shared_layers={self.num_shared_layers}, num_hidden_layers={self.num_hidden_layers}, "
            f"text_vocab_size={self.text_vocab_size}, speech_vocab_size={self.speech_vocab_size}"
        )
