"""What the toolkit uses of a hooked model: the :class:`HookedModel` protocol.

Strategies, activations, patching and hooks run TransformerLens ``TransformerBridge`` models
(the tiny zoo's :func:`poser_lens.models.tiny.wrap`, the smol zoo's
:func:`poser_lens.models.hf.wrap_hf`) and use only this of them: the shape of the model
(``cfg``), a forward (``model(ids)``), hooked forwards (``hooks``, ``run_with_hooks``,
``run_with_cache``) and its parameters. The protocol is ``runtime_checkable``, so
``isinstance(model, HookedModel)`` (and beartype, which checks the annotations in the shape
tests) accepts any bridge; it checks only that the members exist, not their signatures.

The final norm and the unembedding (``ln_final``, ``unembed``) are submodules a bridge looks
up through ``torch.nn.Module.__getattr__``, which a runtime protocol check cannot see on
Python 3.12 and later, so they are not members: the one reader of them
(:func:`poser_lens.strategies.common.logits_from_final_residual`) says so where it reads them.

Readout functions that also take native tiny modules and Hugging Face models
(:func:`poser_lens.readout.last_logits`) keep ``Any``: those are not hooked models.

Example:
    >>> from poser_lens.models.tiny import TinyConfig, build_native, wrap
    >>> cfg = TinyConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=8)
    >>> isinstance(wrap(build_native(cfg, 5)), HookedModel)
    True
    >>> isinstance(build_native(cfg, 5), HookedModel)  # the native module has no hooks
    False
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from typing_extensions import Self

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

#: Forward hooks as a bridge takes them: ``(hook name or name filter, hook function)`` pairs.
FwdHooks = list[tuple[str | Callable[..., Any], Callable[..., Any]]]

#: Which activations ``run_with_cache`` keeps: a hook name, names, or a filter on names.
NamesFilter = str | list[str] | Callable[[str], bool] | None


class ModelShape(Protocol):
    """The part of a hooked model's config the toolkit reads (``model.cfg``)."""

    @property
    def n_layers(self) -> int:
        """Transformer blocks."""

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""

    @property
    def n_heads(self) -> int:
        """Attention heads per block."""

    @property
    def d_vocab(self) -> int:
        """Vocabulary size."""

    @property
    def n_ctx(self) -> int:
        """Longest sequence (positions)."""


class ActivationLookup(Protocol):
    """A cache of activations by hook name (a ``run_with_cache`` result)."""

    def __getitem__(self, key: str, /) -> Tensor:
        """The activation recorded at hook point ``key``."""


@runtime_checkable
class HookedModel(Protocol):
    """What the toolkit uses of a TransformerLens ``TransformerBridge``.

    Attributes:
        cfg: Its shape (:class:`ModelShape`): blocks, widths, heads, vocabulary, context.
    """

    @property
    def cfg(self) -> ModelShape:
        """The model's config (its shape)."""

    def __call__(self, input: Tensor, /) -> Tensor:
        """Logits ``[batch, pos, vocab]`` of token ids ``[batch, pos]``."""

    def hooks(
        self,
        fwd_hooks: list[Any] = ...,
        bwd_hooks: list[Any] = ...,
        reset_hooks_end: bool = ...,
        clear_contexts: bool = ...,
    ) -> AbstractContextManager[Any]:
        """A context with forward (and backward) hooks added, removed on exit."""

    def run_with_hooks(self, input: Any, fwd_hooks: FwdHooks = ..., **kwargs: Any) -> Any:
        """A forward under ``fwd_hooks`` (``stop_at_layer=`` etc. as keywords)."""

    def run_with_cache(
        self, input: Any, *, names_filter: NamesFilter = ..., **kwargs: Any
    ) -> tuple[Any, ActivationLookup]:
        """A forward and the activations ``names_filter`` selects."""

    def parameters(self, recurse: bool = ...) -> Iterator[torch.nn.Parameter]:
        """Its parameters (their device and dtype are the model's)."""

    def eval(self) -> Self:
        """Evaluation mode."""

    def float(self) -> Self:
        """Parameters in float32 (in place)."""


if TYPE_CHECKING:

    def _bridge_is_hooked(model: TransformerBridge) -> HookedModel:
        """Checked by mypy only: a ``TransformerBridge`` (tiny or smol) satisfies the protocol."""
        return model
