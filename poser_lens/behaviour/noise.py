"""Poser App. C on a real LM: greedy answers with noise injected into an early layer.

An experiment, not a model loader: :func:`noise_generations` answers a few plain questions
with :class:`poser_lens.hooks.AddNoise` at every position of an early residual stream, over a
range of noise magnitudes (``benchmarks/smol_app_c.py`` runs it on SmolLM2-135M).
"""

from __future__ import annotations

from typing import Any

import torch

from poser_lens.hooks import AddNoise, NoiseKind, applied, hook_name, resolve_layer

#: Questions of the App. C table (our own wording).
NOISE_QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Name a colour of the sky on a clear day.",
)


@torch.no_grad()
def greedy_generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    max_new_tokens: int = 20,
    hooks: list[tuple[str, Any]] | None = None,
) -> str:
    """Greedy continuation of a prompt by a hooked model, optionally under forward hooks.

    Every step reruns the whole sequence (no KV cache), so a hook sees every position, the
    generated ones included, exactly as in one forward pass over the final text.

    Example:
        ``lm``, ``tok``: the examples' random 1-layer tiny model, its tokenizer (``conftest.py``).

        >>> isinstance(greedy_generate(lm, tok, "<<prompt>> x", max_new_tokens=2), str)
        True
    """
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    start = ids.shape[1]
    eos = tokenizer.eos_token_id
    for _ in range(max_new_tokens):
        with applied(model, hooks or []):
            logits = model(ids)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        if eos is not None and int(nxt) == eos:
            break
    return tokenizer.decode(ids[0, start:], skip_special_tokens=True).strip()


def noise_generations(
    model: Any,
    tokenizer: Any,
    questions: tuple[str, ...] = NOISE_QUESTIONS,
    magnitudes: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0),
    *,
    layer: int | float = 0.1,
    kind: NoiseKind = "gaussian",
    seed: int = 0,
    max_new_tokens: int = 20,
    chat: bool = True,
    relative: bool = True,
) -> list[dict[str, Any]]:
    """Poser App. C Table 1: greedy answers with noise added to an early layer's residual stream.

    The noise (:class:`poser_lens.hooks.AddNoise`, one seeded unit direction) is added at every
    position of ``blocks.L.hook_resid_post`` with a norm of ``magnitude`` times that position's
    own activation norm.

    Args:
        model: A hooked model (e.g. :func:`poser_lens.models.smol.load_smol`).
        tokenizer: Its tokenizer.
        questions: Questions to answer.
        magnitudes: Noise magnitudes in units of the activation norm.
        layer: Block index or fraction of depth (default: 10% of depth, an early layer).
        kind: Noise distribution (``gaussian``, ``uniform`` as Poser's S2, ``sphere``).
        seed: Noise seed.
        max_new_tokens: Generation length.
        chat: Wrap each question in the tokenizer's chat template (instruct models).
        relative: Magnitudes in units of each position's activation norm (default); False
            makes them absolute noise norms.

    Returns:
        One row per (question, magnitude): ``question``, ``magnitude``, ``relative``,
        ``layer``, ``answer``.

    Example:
        ``lm``, ``tok``: the examples' random 1-layer tiny model, its tokenizer (``conftest.py``).

        >>> rows = noise_generations(lm, tok, ("x y",), (0.0, 5.0), max_new_tokens=2, chat=False)
        >>> [r["magnitude"] for r in rows]
        [0.0, 5.0]
    """
    n_layers = int(model.cfg.n_layers)
    block = resolve_layer(n_layers, layer)
    name = hook_name("resid_post", block, n_layers)
    rows = []
    for q in questions:
        prompt = q
        if chat and getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
            )
        for mag in magnitudes:
            noise = AddNoise(
                d=int(model.cfg.d_model),
                kind=kind,
                seed=seed,
                relative=float(mag) if relative else None,
                norm=float(mag),
                positions="all",
            )
            hooks = [(name, noise)] if mag else []
            answer = greedy_generate(
                model, tokenizer, prompt, max_new_tokens=max_new_tokens, hooks=hooks
            )
            rows.append(
                {
                    "question": q,
                    "magnitude": mag,
                    "relative": relative,
                    "layer": block,
                    "answer": answer,
                }
            )
    return rows


def generations_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`noise_generations` rows (one row per question, magnitude).

    Example:
        >>> print(generations_markdown([{"question": "Q?", "magnitude": 0.0, "layer": 3,
        ...                              "answer": "A|b"}]))
        | question | noise (x norm) | layer | greedy answer |
        |---|---|---|---|
        | Q? | 0 | 3 | A\\|b |
    """
    unit = "noise (x norm)" if all(r.get("relative", True) for r in rows) else "noise norm"
    lines = [f"| question | {unit} | layer | greedy answer |", "|---|---|---|---|"]
    for r in rows:
        answer = " ".join(str(r["answer"]).split()).replace("|", "\\|")
        lines.append(f"| {r['question']} | {r['magnitude']:g} | {r['layer']} | {answer} |")
    return "\n".join(lines)
