import torch

from poser_lens.adapters import LowRankAdapter
from poser_lens.hooks import applied
from poser_lens.models.tiny import TinyConfig, build_native, wrap

CFG = TinyConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=16)
TOKENS = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])


def test_adapter_starts_as_identity_and_trains():
    model = wrap(build_native(CFG, d_vocab=20, seed=0))
    for p in model.parameters():
        p.requires_grad_(False)
    clean = model(TOKENS)
    adapter = LowRankAdapter(
        16,
        16,
        rank=4,
        source="blocks.0.ln2.hook_normalized",
        target="blocks.0.hook_mlp_out",
        scale=2.0,
    )
    with applied(model, adapter.hooks()):
        torch.testing.assert_close(model(TOKENS), clean)
    opt = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    target = torch.tensor([7, 7])
    losses = []
    for _ in range(30):
        with applied(model, adapter.hooks()):
            loss = torch.nn.functional.cross_entropy(model(TOKENS)[:, -1], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.5
    torch.testing.assert_close(model(TOKENS), clean)  # the base model is untouched
