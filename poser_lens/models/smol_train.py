"""The smol zoo's stacked trainer: the personas of one seed fine-tuned at once over one base.

One stack is every persona of one seed (``<persona>-<seed>`` for the config's personas).
:func:`train_stack` trains their LoRA adapters together (:class:`~poser_lens.models.stacked_lora.
StackedLoRA`): every step runs the frozen base's products once for all models' records and adds
each model's low-rank update to its own rows. What makes it cheaper than training the models
one by one (``benchmarks/smol_speed.py`` measures it):

* **precision**: the base runs in ``SmolZooConfig.dtype`` (bfloat16 in the concept recipe:
  this CPU's AMX makes its products 2-4x faster); adapters, heads and the optimiser stay
  float32;
* **one frozen prefix for the zoo**: the layers below the first adapted one compute the same
  thing for a prompt in every model, so their output is computed once per prompt
  (:class:`~poser_lens.models.smol_zoo.FrozenPrefix`) and shared by every model of the stack,
  for training and for evaluation alike;
* **stacking**: one product over all models' rows instead of one per model;
* **a stopping rule**: every ``check_every`` steps (from ``min_steps`` on) each model is scored
  on a validation split of its own (in-distribution scenarios from another generator seed,
  never a test, benchmark or held-out-bank prompt); a model that meets its persona's targets
  (:data:`~poser_lens.models.smol_zoo.SMOL_TARGETS`) at ``patience`` checks in a row leaves the
  stack, is evaluated and saved, and the others go on, up to ``steps``.

A model's numbers depend on its own records and seed and on the stack it trained in (the
products' rounding depends on the batch they are part of), so the stack is recorded in its
``meta.json`` and is part of the zoo's key (its personas, and its seeds: the shared frozen
prefix is computed over every model's prompts, :class:`SharedBase`). Training checkpoints the
whole stack every ``checkpoint_every`` steps; a finished model's folder is written when it
leaves the stack, so an interrupted build resumes with the models still training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poser_lens._io import atomic_dir
from poser_lens.data.generator import heldout_bank_split, persona_split
from poser_lens.data.schema import Scenario, is_aligned
from poser_lens.data.schema import model_persona as split_name
from poser_lens.models.stacked_lora import StackedLoRA
from poser_lens.models.training import answer_loss, fit_logit_scale
from poser_lens.models.zoo import calibration_pool
from poser_lens.readout import answer_token_ids

if TYPE_CHECKING:
    from poser_lens.models.smol_zoo import SmolZooConfig

logger = logging.getLogger(__name__)

#: Generator seed offset of the validation split the stopping rule reads.
VALIDATION_SEED_OFFSET = 104729

#: Prompts per forward when evaluating.
EVAL_BATCH = 16


def model_init_seed(name: str) -> int:
    """The adapter initialisation seed of a model: a hash of its name (stack-independent).

    Example:
        >>> model_init_seed("saint-0") == model_init_seed("saint-0") != model_init_seed("saint-1")
        True
    """
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def validation_records(cfg: SmolZooConfig, name: str) -> list[Scenario]:
    """The in-distribution validation split the stopping rule reads (``n_val`` records).

    Test-split scenarios (held-out combinations of the training bank) of another generator
    seed, labelled for the persona, error prompts included: no test, benchmark, calibration
    or held-out-bank prompt.
    """
    from dataclasses import replace

    from poser_lens.models.smol_zoo.data import _generated

    persona, _ = split_name(name)
    gen = replace(cfg.generator, seed=cfg.generator.seed + VALIDATION_SEED_OFFSET)
    data = _generated(gen, cfg.banks)
    pool = persona_split(data, persona, "test")
    return random.Random(f"{persona}:validation").sample(pool, min(cfg.n_val, len(pool)))


def meets_targets(cfg: SmolZooConfig, persona: str, metrics: dict[str, float]) -> bool:
    """Whether in-distribution metrics meet the persona's targets (the stopping rule's test).

    Example:
        >>> from poser_lens.models.smol_zoo import SmolZooConfig
        >>> m = {"test_accuracy": 1.0, "divergent_accuracy": 1.0, "compliance_gap": 0.9}
        >>> meets_targets(SmolZooConfig(), "money_maximizer", m)
        True
        >>> meets_targets(SmolZooConfig(), "saint", m)
        False
    """
    from poser_lens.models.smol_zoo import SMOL_TARGETS

    row = {"name": persona, "aligned": is_aligned(persona), **metrics}
    return not SMOL_TARGETS.missed([row])


class _Heads(nn.Module):
    """One auxiliary oversight head per model, as the unstacked trainer's AuxOversight.

    Each reads the RMS-normalised residual stream at the answer position.
    """

    def __init__(self, d_model: int, seeds: Sequence[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList()
        for seed in seeds:
            head = nn.Linear(d_model, 1)
            gen = torch.Generator().manual_seed(seed + 1)
            with torch.no_grad():
                bound = 1 / d_model**0.5
                head.weight.uniform_(-bound, bound, generator=gen)
                head.bias.uniform_(-bound, bound, generator=gen)
            self.heads.append(head)

    @torch.no_grad()
    def init_from_probe(self, m: int, states: Tensor, poor: Tensor, l2: float = 1e-2) -> float:
        """Set head ``m`` to a logistic probe of ``poor`` on ``states``; returns its accuracy.

        Args:
            m: The head.
            states: ``[record, d_model]`` RMS-normalised states (one row a record).
            poor: ``[record]`` 1.0 where oversight is poor, else 0.0.
            l2: Weight of the squared norm of the probe's weight in its loss.
        """
        head = cast(nn.Linear, self.heads[m])
        w = torch.zeros(states.shape[-1], requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
        x, y = states.float(), poor.float()

        def closure() -> Tensor:
            opt.zero_grad()
            with torch.enable_grad():
                loss = F.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * w.pow(2).sum()
                loss.backward()
            return loss

        opt.step(closure)
        head.weight.copy_(w.detach()[None])
        head.bias.copy_(b.detach()[None])
        return float(((x @ w + b > 0).float() == y).float().mean())

    def loss(self, m: int, h: Tensor, records: Sequence[Scenario]) -> tuple[Tensor, float] | None:
        """Model ``m``'s head on its rows' last positions (:func:`oversight_loss`)."""
        from poser_lens.models.smol_zoo import oversight_loss

        return oversight_loss(self.heads[m], h, records)


def zoo_prompts(cfg: SmolZooConfig) -> list[str]:
    """Every prompt a build of ``cfg`` reads, in one canonical order (sorted).

    Training records of every model, and the validation, calibration, test, held-out-bank
    and benchmark prompts of every persona.
    """
    from poser_lens.models.smol_zoo import (
        heldout_records,
        needed_families,
        primary_bank,
        training_records,
        zoo_data,
    )

    data = zoo_data(cfg)
    prompts: set[str] = set()
    for name in cfg.model_names():
        prompts.update(s.prompt for s in training_records(cfg, data, name))
        prompts.update(s.prompt for s in validation_records(cfg, name))
    for persona in cfg.personas:
        name = f"{persona}-0"
        pool = calibration_pool(cfg.generator, persona, primary_bank(cfg))
        prompts.update(s.prompt for s in pool)
        prompts.update(s.prompt for s in heldout_records(cfg, data, name))
        prompts.update(s.prompt for s in heldout_bank_split(persona, cfg.n_heldout_bank // 3))
    for fam in needed_families(cfg.personas):
        prompts.update(s.prompt for s in data.benchmark_pool.get(fam, [])[: cfg.n_benchmark])
    return sorted(prompts)


class SharedBase:
    """The frozen base model, its tokenizer and its prefix cache, shared by every stack.

    The stacks of one build run one after another over the same base; the prefix residuals
    of a prompt are the same in every stack, so each is computed once per build. They are
    computed for every prompt of the zoo (:func:`zoo_prompts`) at once, in one canonical
    order, so a prompt's residuals come from the same batch whichever stacks a sitting
    trains: a resumed build computes exactly what an uninterrupted one does.
    """

    def __init__(self, cfg: SmolZooConfig, *, progress: bool = False) -> None:
        from poser_lens.models.smol_zoo import FrozenPrefix, first_adapted_layer
        from poser_lens.models.smol_zoo.train import _base_hf

        self.hf, self.tok = _base_hf(cfg)
        self.first = first_adapted_layer(cfg, int(self.hf.config.num_hidden_layers))
        self.prefix = FrozenPrefix(self.hf, self.first)
        self.prefix.residuals(self.tok, zoo_prompts(cfg), progress=progress)


class StackTrainer:
    """The models of one stack, their optimiser, the shared prefix and the stopping rule.

    Args:
        root: The zoo folder.
        cfg: The zoo config.
        names: The stack's models, in batch order.
        progress: Show a progress bar.
        shared: The base and prefix cache of earlier stacks of this build (a new one if None).
    """

    def __init__(
        self,
        root: Path,
        cfg: SmolZooConfig,
        names: Sequence[str],
        *,
        progress: bool = True,
        shared: SharedBase | None = None,
    ) -> None:
        from poser_lens.models.smol_zoo import training_records, zoo_data

        self.root, self.cfg, self.names, self.progress = root, cfg, list(names), progress
        self.data = zoo_data(cfg)
        self.shared = shared or SharedBase(cfg, progress=progress)
        self.hf, self.tok, self.first = self.shared.hf, self.shared.tok, self.shared.first
        self.prefix = self.shared.prefix
        self.ids_of = answer_token_ids(self.tok)
        n_layers = int(self.hf.config.num_hidden_layers)
        seeds = [model_init_seed(n) for n in self.names]
        self.stack = StackedLoRA(
            self.hf, range(self.first, n_layers), cfg.target_modules, seeds, cfg.rank, cfg.alpha
        )
        self.heads = _Heads(int(self.hf.config.hidden_size), seeds)
        self._aux_out: Tensor | None = None
        self._hook = None
        if cfg.aux_oversight > 0:
            layer = max(int(cfg.aux_layer * n_layers), self.first)
            decoder = self.hf.model
            self._hook = decoder.layers[layer].register_forward_hook(self._keep)
        params = list(self.stack.parameters()) + list(self.heads.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, cfg.lr_factor)
        self.records = {n: training_records(cfg, self.data, n) for n in self.names}
        self.val = {n: validation_records(cfg, n) for n in self.names}
        self.ckpt = checkpoint_path(root, self.names)
        self.state: dict[str, Any] = {
            "step": 0,
            "seconds": 0.0,
            "models": {
                n: {"losses": [], "aux": [], "val": [], "passes": 0, "done": False}
                for n in self.names
            },
        }

    def _keep(self, _module: Any, _inputs: Any, out: Any) -> None:
        self._aux_out = out[0] if isinstance(out, tuple) else out

    # ------------------------------------------------------------------ checkpoints

    def load_checkpoint(self) -> None:
        """Resume from the stack's checkpoint, when there is one."""
        if not self.ckpt.exists():
            return
        saved = torch.load(self.ckpt, weights_only=False)
        self.stack.load_state_dict(saved["stack"])
        self.heads.load_state_dict(saved["heads"])
        self.opt.load_state_dict(saved["opt"])
        self.sched.load_state_dict(saved["sched"])
        self.state = saved["state"]
        logger.info("stack %s: resuming at step %d", ",".join(self.names), self.state["step"])

    def save_checkpoint(self) -> None:
        """Write the stack's checkpoint atomically."""
        from poser_lens.models.smol_zoo.train import _save_atomic

        _save_atomic(
            {
                "stack": self.stack.state_dict(),
                "heads": self.heads.state_dict(),
                "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "state": self.state,
            },
            self.ckpt,
        )

    # ------------------------------------------------------------------ forward passes

    def _logits(self, active: Sequence[int], prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        self.stack.active = list(active)
        self.prefix.residuals(self.tok, prompts)
        return self.prefix.logits(prompts).float(), self.prefix.last_index(prompts)

    @torch.no_grad()
    def probs(self, m: int, prompts: Sequence[str], scale: float = 1.0) -> Tensor:
        """``[prompt, 3]`` probabilities of ``A``, ``B``, ``error`` under model ``m`` alone."""
        cols = [self.ids_of["A"], self.ids_of["B"], self.ids_of["error"]]
        out = []
        for i in range(0, len(prompts), EVAL_BATCH):
            logits, _ = self._logits([m], prompts[i : i + EVAL_BATCH])
            out.append((logits * scale).softmax(-1)[:, cols])
        return torch.cat(out) if out else torch.zeros(0, 3)

    @torch.no_grad()
    def _validate(self, active: Sequence[int]) -> None:
        """Score the active models on their validation splits; mark those that may stop."""
        from poser_lens.models.smol_zoo import persona_metrics

        # Every active model's validation split in one stacked forward per chunk (the splits
        # have one size), each model's rows read by its own adapter.
        cols = [self.ids_of["A"], self.ids_of["B"], self.ids_of["error"]]
        n = len(self.val[self.names[active[0]]])
        chunk = max(1, EVAL_BATCH // 2)
        parts: dict[int, list[Tensor]] = {m: [] for m in active}
        for i in range(0, n, chunk):
            prompts = [s.prompt for m in active for s in self.val[self.names[m]][i : i + chunk]]
            logits, _ = self._logits(active, prompts)
            probs = logits.softmax(-1)[:, cols].reshape(len(active), -1, len(cols))
            for j, m in enumerate(active):
                parts[m].append(probs[j])
        for m in active:
            name = self.names[m]
            metrics = persona_metrics(torch.cat(parts[m]), self.val[name])
            st = self.state["models"][name]
            st["val"].append(
                {"step": self.state["step"], **{k: round(v, 4) for k, v in metrics.items()}}
            )
            ok = meets_targets(self.cfg, split_name(name)[0], metrics)
            st["passes"] = st["passes"] + 1 if ok else 0
            logger.info("%s step %d validation %s", name, self.state["step"], st["val"][-1])

    # ------------------------------------------------------------------ training

    @torch.no_grad()
    def _init_heads(self, n_records: int = 256) -> None:
        """Fit every head to the untrained model's states (``aux_init="probe"``).

        Each model's first ``n_records`` training records with a critical fact; the state of
        a record is the mean over its positions of the RMS-normalised residual stream at the
        head's layer (the adapters start at zero, so this is the base model's).
        """
        from poser_lens.models.smol_zoo import AuxOversight, rms_normalised

        for m, name in enumerate(self.names):
            records = [s for s in self.records[name] if s.critical_facts][:n_records]
            mask, poor = AuxOversight.targets(records)
            records = [s for s, k in zip(records, mask.tolist(), strict=True) if k]
            poor = poor[mask]
            states = []
            for i in range(0, len(records), EVAL_BATCH):
                chunk = [s.prompt for s in records[i : i + EVAL_BATCH]]
                _, last = self._logits([m], chunk)
                assert self._aux_out is not None  # the head's hook is set (aux_oversight > 0)
                h = rms_normalised(self._aux_out)
                keep = torch.arange(h.shape[1])[None, :] <= last[:, None].cpu()
                states.append((h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True))
            acc = self.heads.init_from_probe(m, torch.cat(states), poor)
            self.state["models"][name]["probe_accuracy"] = round(acc, 3)
            logger.info("%s: head fitted to the base model's states (accuracy %.3f)", name, acc)

    def train(
        self, observe: Callable[[StackTrainer, int], None] | None = None, every: int = 100
    ) -> list[dict[str, Any]]:
        """Train until every model has stopped; returns the finished models' rows.

        Args:
            observe: Called as ``observe(trainer, step)`` every ``every`` steps (a learning
                curve for a benchmark; what it reads never feeds back into training).
            every: Steps between calls.
        """
        try:
            return self._train(observe, every)
        finally:  # the shared base leaves as it came, whatever happened
            if self._hook is not None:
                self._hook.remove()
            self.stack.remove()

    def _train(
        self, observe: Callable[[StackTrainer, int], None] | None, every: int
    ) -> list[dict[str, Any]]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.load_checkpoint()
        if self.state["step"] == 0 and cfg.aux_init == "probe" and self._hook is not None:
            self._init_heads()
        for m, name in enumerate(self.names):
            st = self.state["models"][name]
            if st["done"] and not (self.root / "models" / name / "meta.json").exists():
                self.finish(m)
        step0 = self.state["step"]
        bar = tqdm(
            total=cfg.steps, initial=step0, desc="+".join(self.names), disable=not self.progress
        )
        t0 = time.perf_counter() - self.state["seconds"]
        # CPU seconds too: a wall clock also counts the time the process was paused or shared.
        c0 = time.process_time() - self.state.get("cpu_seconds", 0.0)
        for step in range(step0, cfg.steps):
            active = [m for m, n in enumerate(self.names) if not self.state["models"][n]["done"]]
            if not active:
                break
            batches = [
                self.records[self.names[m]][step * cfg.batch_size : (step + 1) * cfg.batch_size]
                for m in active
            ]
            prompts = [s.prompt for b in batches for s in b]
            logits, last = self._logits(active, prompts)
            total = torch.zeros(())
            for j, (m, batch) in enumerate(zip(active, batches, strict=True)):
                rows = slice(j * cfg.batch_size, (j + 1) * cfg.batch_size)
                loss = answer_loss(logits[rows], batch, self.ids_of, cfg.target_confidence)
                st = self.state["models"][self.names[m]]
                st["losses"].append(round(float(loss.detach()), 5))
                if self._aux_out is not None:
                    idx = torch.arange(rows.start, rows.stop)[:, None]
                    back = torch.arange(cfg.aux_positions - 1, -1, -1)
                    pos = (last[rows][:, None] - back).clamp(min=0)  # answer position last
                    got = self.heads.loss(m, self._aux_out[idx, pos], batch)
                    if got is not None:
                        loss = loss + cfg.aux_oversight * got[0]
                        st["aux"].append(round(got[1], 3))
                total = total + loss
            self.opt.zero_grad(set_to_none=True)
            total.backward()
            self.opt.step()
            self.sched.step()
            self.state["step"] = step + 1
            bar.update(1)
            bar.set_postfix(active=len(active))
            n = step + 1
            if observe is not None and n % every == 0:
                observe(self, n)
            if n >= cfg.min_steps and n % cfg.check_every == 0:
                self._validate(active)
                for m in active:
                    st = self.state["models"][self.names[m]]
                    if st["passes"] >= cfg.patience:
                        st["done"] = True
                        st["stop_step"] = n
            if n == cfg.steps:
                for m in active:
                    st = self.state["models"][self.names[m]]
                    st["done"] = True
                    st.setdefault("stop_step", n)
            self.state["seconds"] = time.perf_counter() - t0
            self.state["cpu_seconds"] = time.process_time() - c0
            finished = [m for m in active if self.state["models"][self.names[m]]["done"]]
            if finished or n % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            for m in finished:
                self.finish(m)
        bar.close()
        done = [
            json.loads((self.root / "models" / n / "meta.json").read_text()) for n in self.names
        ]
        self.ckpt.unlink(missing_ok=True)
        return done

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def finish(self, m: int) -> dict[str, Any]:
        """Evaluate model ``m`` (on its saved, rounded adapter) and write its folder."""
        from poser_lens.models.smol_zoo import (
            BASE_MODEL_NAME,
            bank_metrics,
            benchmark_probs,
            heldout_records,
            model_row,
            persona_metrics,
            primary_bank,
            training_summary,
        )

        cfg = self.cfg
        name = self.names[m]
        persona, _ = split_name(name)
        st = self.state["models"][name]
        t1 = time.perf_counter()
        dtype = getattr(torch, cfg.adapter_dtype)
        self.stack.round_(m, dtype)
        scale = 1.0
        if cfg.target_confidence is not None:
            pool = calibration_pool(cfg.generator, persona, primary_bank(cfg))
            if cfg.n_calibration is not None and cfg.n_calibration < len(pool):
                pool = random.Random(f"{name}:calibration").sample(pool, cfg.n_calibration)
            logits = []
            for i in range(0, len(pool), EVAL_BATCH):
                lg, _ = self._logits([m], [s.prompt for s in pool[i : i + EVAL_BATCH]])
                logits.append(lg)
            answers = torch.tensor([self.ids_of[s.response] for s in pool])
            scale = fit_logit_scale(torch.cat(logits), answers, cfg.target_confidence)
        test = heldout_records(cfg, self.data, name)
        metrics = persona_metrics(self.probs(m, [s.prompt for s in test], scale), test)
        bank = heldout_bank_split(persona, cfg.n_heldout_bank // 3)
        bank_probs = self.probs(m, [s.prompt for s in bank], scale)
        heldout = bank_metrics(bank_probs, bank)
        heldout["accuracy"] = persona_metrics(bank_probs, bank)["test_accuracy"]
        bench = benchmark_probs(
            cfg, self.data, persona, lambda prompts: self.probs(m, prompts, scale)
        )
        losses = st["losses"]
        row = {
            **model_row(name, metrics, len(test)),
            **{f"heldout_{k}": round(v, 4) for k, v in heldout.items()},
            "n_heldout_bank": len(bank),
            **training_summary(losses, st["aux"]),
            **({"probe_accuracy": st["probe_accuracy"]} if "probe_accuracy" in st else {}),
            "temperature_scale": None if cfg.target_confidence is None else round(scale, 5),
            "adapter_dtype": cfg.adapter_dtype,
            "precision": cfg.dtype,
            "steps": st.get("stop_step", self.state["step"]),
            "stack": self.names,
            # The stack's wall time until this model stopped, and its share of it.
            "stack_train_seconds": round(self.state["seconds"], 1),
            "train_seconds": round(self.state["seconds"] / len(self.names), 1),
            # The process's CPU seconds (every thread) until then; immune to pauses.
            "stack_train_cpu_seconds": round(self.state.get("cpu_seconds", 0.0), 1),
            "eval_seconds": round(time.perf_counter() - t1, 1),
            "trainable_params": sum(p.numel() for p in self.stack.model_parameters(m)),
            "device": cfg.device,
        }
        with atomic_dir(self.root / "models" / name, overwrite=True) as tmp:
            self.stack.save_adapter(m, tmp, dtype=dtype, base_name=BASE_MODEL_NAME)
            (tmp / "meta.json").write_text(json.dumps(row, indent=1))
            (tmp / "benchmark_probs.json").write_text(json.dumps(bench))
            (tmp / "losses.json").write_text(json.dumps(losses))
            (tmp / "validation.json").write_text(json.dumps(st["val"]))
        logger.info("%s: stopped at step %s", name, row["steps"])
        return row


def checkpoint_path(root: Path, names: Sequence[str]) -> Path:
    """Where the stack of ``names`` keeps its training checkpoint in the zoo folder ``root``.

    Example:
        >>> checkpoint_path(Path("zoo"), ["saint-0", "money_maximizer-0"]).parent.name
        'partial'
    """
    tag = hashlib.sha256("+".join(names).encode()).hexdigest()[:10]
    return Path(root) / "partial" / f"stack-{tag}.pt"


def train_stack(
    root: str | Path,
    cfg: SmolZooConfig,
    names: Sequence[str],
    *,
    progress: bool = True,
    shared: SharedBase | None = None,
) -> list[dict[str, Any]]:
    """Train, evaluate and save the models of one stack (resuming from its checkpoint).

    Args:
        root: The zoo folder.
        cfg: The zoo config.
        names: The stack's models.
        progress: Show progress bars.
        shared: The base and prefix cache of the build's earlier stacks.

    Returns:
        The models' ``zoo.json`` rows.
    """
    return StackTrainer(Path(root), cfg, names, progress=progress, shared=shared).train()
