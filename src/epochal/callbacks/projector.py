"""The TensorBoard Embedding Projector data of a run: a layer's outputs for fixed validation items.

Keras' ``TensorBoard(embeddings_freq=N)`` writes projector data every ``N`` epochs; here the
points are a chosen layer's outputs (by default the features the final linear layer sees) for
the same first ``embeddings_samples`` validation items every time, with their labels as
metadata, so the projector's PCA / t-SNE (van der Maaten & Hinton, *Visualizing Data using
t-SNE*, JMLR 2008) views of successive epochs show how the classes separate as training goes on.
Each write lands in ``<log_dir>/<step>/<tag>/`` (``tensors.tsv``, ``metadata.tsv``) through
``SummaryWriter.add_embedding``.

The model runs in eval mode without gradients for these items, and its train/eval mode is
restored afterwards, also on error: the projector never changes what training computes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from epochal.utils import to_device, unknown_name_error

__all__ = ["embedding_layer", "layer_outputs", "sample_labels"]


def embedding_layer(model: nn.Module, name: str | None) -> tuple[nn.Module, bool]:
    """The module whose outputs (``name``) or inputs (None: the final linear layer's) are projected.

    Returns:
        ``(module, use_inputs)``.

    Raises:
        ValueError: ``name`` is not a module of ``model``, naming the closest ones.
    """
    if name is None:
        from epochal.models.init import output_layer

        return output_layer(model), True
    modules = dict(model.named_modules())
    if name not in modules or not name:
        raise unknown_name_error("TensorBoard embeddings_layer", name, [k for k in modules if k])
    return modules[name], False


@torch.no_grad()
def layer_outputs(
    model: nn.Module, layer: nn.Module, use_inputs: bool, batches, n: int, device, memory_format=None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(N, D)`` outputs (or inputs) of ``layer`` for the first ``n`` items of ``batches``, and their targets."""
    captured: list[torch.Tensor] = []

    def keep(module, args, output=None):
        value = args[0] if use_inputs else output
        captured.append(value.detach().flatten(1).float().cpu())

    handle = layer.register_forward_pre_hook(keep) if use_inputs else layer.register_forward_hook(keep)
    was_training = model.training
    targets: list[torch.Tensor] = []
    seen = 0
    try:
        model.eval()
        for inputs, target in batches:
            inputs = to_device(inputs, device, memory_format=memory_format)
            model(*inputs) if isinstance(inputs, tuple | list) else model(inputs)
            targets.append(target.cpu())
            seen += len(target)
            if seen >= n:
                break
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise ValueError("TensorBoard embeddings: the validation loader gave no batches")
    return torch.cat(captured)[:n], torch.cat(targets)[:n]


def sample_labels(targets: torch.Tensor, classes: Sequence[str] | None) -> list[str]:
    """A projector label per item: its class name (multi-label: the names joined by ``|``), or the target."""
    if targets.ndim == 2:
        names = classes or [str(i) for i in range(targets.shape[1])]
        return ["|".join(names[j] for j in torch.nonzero(row > 0.5).flatten().tolist()) or "-" for row in targets]
    if classes is not None and not targets.is_floating_point():
        return [str(classes[int(t)]) for t in targets]
    return [str(t.item()) for t in targets]
