"""Where in a model: a layer given as a block index or as a fraction of depth.

:data:`LayerSpec` is an ``int`` (a block index; negative counts from the end) or a ``float``
in ``[0, 1]`` (a fraction of depth), so Poser's "layer 15 of 40" is ``15 / 40`` on any model.
Hooks, adapters, probes and the persona adapters of the smol zoo all resolve layers here.
"""

from __future__ import annotations

LayerSpec = int | float


def resolve_layer(n_layers: int, layer: LayerSpec) -> int:
    """A block index from an int or a fraction of depth.

    A float ``f`` in ``[0, 1]`` maps to ``round(f * n_layers)``, clamped to the last block,
    so ``15 / 40`` is block 15 of a 40-layer model and block 1 of a 2-layer one.

    Raises:
        ValueError: for an index outside the model or a fraction outside [0, 1].

    Example:
        >>> resolve_layer(40, 15 / 40), resolve_layer(2, 15 / 40), resolve_layer(2, -1)
        (15, 1, 1)
    """
    if isinstance(layer, bool):
        raise ValueError("layer must be an int or a float, not a bool")
    if isinstance(layer, float):
        if not 0.0 <= layer <= 1.0:
            raise ValueError(f"layer fraction {layer} is outside [0, 1]")
        return min(round(layer * n_layers), n_layers - 1)
    index = layer + n_layers if layer < 0 else layer
    if not 0 <= index < n_layers:
        raise ValueError(f"layer {layer} is outside a model with {n_layers} layers")
    return index
