"""PyTorch's side of `npm run compare`: the layer's self-attention timed on CPU, and exported to ONNX.

The module is what `ScaledDotProductAttention({numHeads: H, keyDim: d / H})` computes (no biases, no
output projection): Q = x·Wq, K = x·Wk, V = x·Wv as nn.Linear without bias, heads split, then
F.scaled_dot_product_attention, heads merged. Shapes: B batch, T sequence length, d dModel, H heads,
dk = dv = d / H.

Two modes:
  --export-onnx DIR   writes DIR/attention_B_T_d_H.onnx per grid point (torch.onnx.export, dynamo) and
                      DIR/manifest.json, for scripts/compare/compare_onnxruntime.mjs; times nothing.
  (default)           times forward (under torch.no_grad) and forward+backward (gradients for x, Wq, Wk,
                      Wv for a given output gradient dy, out.backward(dy), as the bench: no loss) with
                      torch.set_num_threads(n) for each n of --threads, the thread counts interleaved
                      call by call; prints medians, writes JSON with --json.

Usage: python scripts/compare/compare_attention.py [--points 32x16x64x1,...] [--threads 1,2]
           [--reps 15] [--large-reps 5] [--warmup 5] [--json FILE] [--export-onnx DIR]
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

# The grid of `npm run bench` and of the issue: (B, T, d, H).
GRID = [(32, 16, 64, 1), (8, 128, 64, 4), (1, 1024, 64, 1), (1, 4096, 64, 1)]
LARGE_T = 4096  # from this length on: --large-reps timed calls and one warm-up round, as in the bench


class SelfAttention(torch.nn.Module):
    """The layer's computation, the way scripts/app/bench/naive_attention.ts writes it."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads = heads
        # query, key, value projections, no bias (the layer's default useBias: false)
        self.wq = torch.nn.Linear(d_model, d_model, bias=False)
        self.wk = torch.nn.Linear(d_model, d_model, bias=False)
        self.wv = torch.nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        B, T, d = x.shape
        H = self.heads
        q = self.wq(x).view(B, T, H, d // H).transpose(1, 2)  # (B, H, T, dk)
        k = self.wk(x).view(B, T, H, d // H).transpose(1, 2)  # (B, H, T, dk)
        v = self.wv(x).view(B, T, H, d // H).transpose(1, 2)  # (B, H, T, dv)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, dv), scale 1/sqrt(dk)
        return y.transpose(1, 2).reshape(B, T, d)  # (B, T, H*dv)


def forward_flops(B, T, d, H):
    """scripts/app/bench/flops.ts' forwardFlops: projections 2·B·T·d·H·(2dk + dv), attention 2·B·H·T·T·(dk + dv)."""
    dk = dv = d // H
    return 2 * B * T * d * H * (2 * dk + dv) + 2 * B * H * T * T * (dk + dv)


def parse_points(text):
    points = []
    for item in text.split(','):
        parts = item.strip().split('x')
        if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f'Received an invalid value for option `--points`, expected BxTxdxH (e.g. 32x16x64x1). Received: {item}')
        B, T, d, H = map(int, parts)
        if d % H != 0:
            raise SystemExit(f'Received an invalid point: d must be a multiple of H. Received: {item}')
        points.append((B, T, d, H))
    return points


def export_onnx(points, folder):
    """One ONNX model per point, with static shapes, and a manifest the onnxruntime-web script reads."""
    os.makedirs(folder, exist_ok=True)
    manifest = []
    for B, T, d, H in points:
        torch.manual_seed(0)
        model = SelfAttention(d, H).eval()
        x = torch.randn(B, T, d)
        name = f'attention_{B}_{T}_{d}_{H}.onnx'
        torch.onnx.export(model, (x,), os.path.join(folder, name), input_names=['x'], output_names=['y'],
                          dynamo=True, external_data=False, verbose=False)
        manifest.append({'batch': B, 'length': T, 'dModel': d, 'heads': H, 'file': name})
    with open(os.path.join(folder, 'manifest.json'), 'w') as f:
        json.dump({'torch': torch.__version__, 'models': manifest}, f, indent=2)


def time_point(point, threads, reps, warmup):
    """Medians in ms per (threads, pass), the thread counts and passes interleaved call by call."""
    B, T, d, H = point
    torch.manual_seed(0)
    model = SelfAttention(d, H)
    x = torch.randn(B, T, d)
    x_grad = x.clone().requires_grad_(True)
    dy = torch.randn(B, T, d)  # the output's gradient, as the bench's forward+backward takes one (no loss)
    weights = [x_grad, model.wq.weight, model.wk.weight, model.wv.weight]

    def forward():
        with torch.no_grad():
            model(x)

    def forward_backward():
        torch.autograd.grad(model(x_grad), weights, grad_outputs=dy)  # dx, dWq, dWk, dWv

    calls = [(n, 'forward', forward) for n in threads] + [(n, 'forward+backward', forward_backward) for n in threads]
    times = {(n, p): [] for n, p, _ in calls}
    for round_index in range(warmup + reps):
        for n, p, call in calls:
            torch.set_num_threads(n)
            start = time.perf_counter()
            call()
            ms = (time.perf_counter() - start) * 1000
            if round_index >= warmup:
                times[(n, p)].append(ms)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--points', default=','.join('x'.join(map(str, p)) for p in GRID),
                        help='grid points BxTxdxH, comma-separated (default: the bench grid)')
    parser.add_argument('--threads', default='1,2', help='torch.set_num_threads values, comma-separated (default: 1,2)')
    parser.add_argument('--reps', type=int, default=15, help='timed calls per row for T < 4096 (default: 15)')
    parser.add_argument('--large-reps', type=int, default=5, help='timed calls per row for T >= 4096 (default: 5)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed rounds (default: 5; 1 for T >= 4096)')
    parser.add_argument('--json', help='also write the results to this JSON file')
    parser.add_argument('--export-onnx', metavar='DIR', help='export the ONNX models into DIR and time nothing')
    args = parser.parse_args()
    points = parse_points(args.points)
    if args.export_onnx:
        export_onnx(points, args.export_onnx)
        print(f'Wrote {len(points)} ONNX models and manifest.json to {args.export_onnx}')
        return
    threads = [int(n) for n in args.threads.split(',')]
    rows = []
    for point in points:
        large = point[1] >= LARGE_T
        times = time_point(point, threads, args.large_reps if large else args.reps, min(args.warmup, 1) if large else args.warmup)
        for (n, p), samples in times.items():
            ms = statistics.median(samples)
            flops = forward_flops(*point) * (3 if p == 'forward+backward' else 1)
            B, T, d, H = point
            rows.append({'batch': B, 'length': T, 'dModel': d, 'heads': H, 'pass': p, 'threads': n,
                         'medianMs': ms, 'gflops': flops / ms / 1e6, 'timesMs': samples})
            print(f'pytorch {n} thread(s) ({B}, {T}, {d}, {H}) {p}: {ms:.2f} ms, {flops / ms / 1e6:.1f} GFLOP/s', flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'runtime': 'pytorch', 'version': torch.__version__, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
    main()
