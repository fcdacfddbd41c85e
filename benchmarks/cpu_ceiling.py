"""How fast can one speed-run step be on this CPU? The arithmetic of airbench94's network against the
convolution rates this machine reaches.

Counts the floating-point operations of one training step of the ``cifar10-speedrun`` network at
batch 2000 (:class:`torch.utils.flop_counter.FlopCounterMode`: forward and backward, with and
without the whitening bias's gradient, which airbench drops after 3 epochs), then times each of
its convolutions alone, forward, input gradient and weight gradient, in the layout the recipe
uses (channels-last, fp32). The sum of those times is a floor for a step: it leaves out every
other op (BatchNorm, GELU, pooling, the loss, the optimizer). Prints one JSON object with the
floor in seconds per epoch of 50,000 images, next to airbench's own 215 s reported for this CPU.

    python benchmarks/cpu_ceiling.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from epochal.models import AirbenchNet
from epochal.runs.folder import cpu_info

IMAGES = 50_000


def step_flops(model: AirbenchNet, x: torch.Tensor, y: torch.Tensor, whiten_bias_grad: bool) -> int:
    model.stem.whiten.bias.requires_grad_(whiten_bias_grad)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def best_of(fn, repeats: int) -> float:
    fn()  # first call: oneDNN picks and caches its kernel
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def conv_times(model: AirbenchNet, x: torch.Tensor, repeats: int) -> list[dict]:
    """Every 3x3 convolution of the network at its input shape: forward, input and weight gradients."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, inp, out: shapes.append((m, inp[0].shape)))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    rows = []
    for conv, shape in shapes:
        inp = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        out = F.conv2d(inp, weight, padding=1)
        grad = torch.randn_like(out)

        def backward(mask, grad=grad, inp=inp, weight=weight):
            return lambda: torch.ops.aten.convolution_backward(
                grad, inp, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

        def forward(inp=inp, weight=weight):
            return F.conv2d(inp, weight, padding=1)

        flops = 2 * out.numel() * weight[0].numel()
        row = {"shape": list(shape), "out_channels": weight.shape[0], "gflop": round(flops / 1e9, 2)}
        row["forward_s"] = best_of(forward, repeats)
        row["grad_input_s"] = best_of(backward([True, False, False]), repeats)
        row["grad_weight_s"] = best_of(backward([False, True, False]), repeats)
        for key in ("forward", "grad_input", "grad_weight"):
            row[f"{key}_gflops"] = round(flops / row[f"{key}_s"] / 1e9, 1)
        rows.append(row)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2000, help="the recipe's batch size")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AirbenchNet(widths=(64, 256, 256), scale=1 / 256, head_std=1.0).to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    model.init_whitening(x[:500])
    load = os.getloadavg()
    flops = {"whiten_bias_trained": step_flops(model, x, y, True), "whiten_bias_frozen": step_flops(model, x, y, False)}
    rows = conv_times(model, x, args.repeats)
    first = rows[0]  # the first group's conv: its input gradient exists only while the whitening bias trains
    floor_trained = sum(r["forward_s"] + r["grad_input_s"] + r["grad_weight_s"] for r in rows)
    floor_frozen = floor_trained - first["grad_input_s"]
    steps = IMAGES / args.batch
    # airbench's schedule: the whitening bias trains for 3 of the 8 epochs
    floor_epoch = steps * (3 * floor_trained + 5 * floor_frozen) / 8
    result = {
        "benchmark": "cpu_ceiling", "torch": torch.__version__, "cpu": cpu_info(), "threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load], "batch": args.batch,
        "step_tflop": {k: round(v / 1e12, 4) for k, v in flops.items()},
        "convs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        "conv_floor_step_s": round(floor_trained, 3), "conv_floor_step_s_whiten_frozen": round(floor_frozen, 3),
        "conv_floor_epoch_s_at_50000_images": round(floor_epoch, 1),
        "airbench_reported_epoch_s_at_50000_images": 215,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
