"""CLIPascene's two small networks (docs/method.md#fidelity-axis and #simplicity-axis), many independent copies at once.

A scene job trains one MLP_loc (and later one MLP_simp) per part x layer column x seed. They are
independent problems with the same architecture, so their weights are stacked along a batch
dimension and run with batched matrix products: one call serves every problem. Adam keeps a step
count per problem (`BatchedAdam`), because problems are warm-started from different iterations and
stop at different iteration counts; otherwise it is torch's Adam, element by element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class BatchedMLP:
    """B copies of Linear -> SELU -> Linear -> SELU -> Linear (-> Sigmoid), one per problem.

    weights[i]: (B, in_i, out_i), biases[i]: (B, out_i); leaf tensors that require grad.
    """

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    sigmoid: bool = False

    def __call__(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(b, in) -> (b, out), with the copies `rows` (all when None) applied to the rows of x."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if rows is not None:
                w, b = w[rows], b[rows]
            x = torch.baddbmm(b[:, None], x[:, None], w)[:, 0]
            if i < len(self.weights) - 1:
                x = F.selu(x)
        return torch.sigmoid(x) if self.sigmoid else x

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    @property
    def size(self) -> int:
        """Parameters of one copy."""
        return sum(p[0].numel() for p in self.parameters())


def _mlp(sizes: list[int], seeds: list[int], weight_init, bias_init, sigmoid: bool, device) -> BatchedMLP:
    """Copy i initialised from torch.Generator(seeds[i]): same seed, same network."""
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = torch.empty(len(seeds), fan_in, fan_out)
        b = torch.empty(len(seeds), fan_out)
        weights.append(w)
        biases.append(b)
    for row, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(seed)
        for w, b in zip(weights, biases):
            weight_init(w[row], generator)
            bias_init(b[row], w.shape[1], generator)
    return BatchedMLP(
        [w.to(device).requires_grad_() for w in weights], [b.to(device).requires_grad_() for b in biases], sigmoid
    )


def location_mlp(seeds: list[int], size: int, hidden: int = 1000, device="cpu") -> BatchedMLP:
    """MLP_loc: size -> hidden -> hidden -> size with SELUs, torch.nn.Linear's default init."""

    def uniform_fan_in(w, generator):  # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
        bound = 1 / math.sqrt(w.shape[0])
        w.uniform_(-bound, bound, generator=generator)

    def bias(b, fan_in, generator):
        bound = 1 / math.sqrt(fan_in)
        b.uniform_(-bound, bound, generator=generator)

    return _mlp([size, hidden, hidden, size], seeds, uniform_fan_in, bias, False, device)


def simplicity_mlp(seeds: list[int], strokes: int, hidden: int = 1000, device="cpu") -> BatchedMLP:
    """MLP_simp: strokes -> hidden -> hidden -> strokes, sigmoid; Xavier-uniform weights, bias 0.01."""

    def xavier(w, generator):
        bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))
        w.uniform_(-bound, bound, generator=generator)

    def bias(b, _fan_in, _generator):
        b.fill_(0.01)

    return _mlp([strokes, hidden, hidden, strokes], seeds, xavier, bias, True, device)


class BatchedAdam:
    """Adam (torch's defaults, no weight decay) over stacked parameters, with a step count per row.

    `step(grads, rows)` updates only those rows, so finished problems stay as they are.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(params[0].shape[0], dtype=torch.long, device=params[0].device)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], rows: torch.Tensor) -> None:
        """grads[i]: the gradient of params[i] for `rows` (len(rows), ...)."""
        beta1, beta2 = self.betas
        everyone = len(rows) == len(self.steps)  # the common case: update in place, no row copies
        self.steps[rows] += 1
        # Bias corrections in float64 as torch.optim.Adam computes them (Python floats), on the CPU:
        # Apple's MPS has no float64.
        t = self.steps[rows].to("cpu", torch.float64)
        device = self.steps.device
        correction1 = (1 - beta1**t).to(device, torch.float32)
        correction2 = (1 - beta2**t).to(device, torch.float32)
        for p, m, v, g in zip(self.params, self.exp_avg, self.exp_avg_sq, grads):
            shape = (-1,) + (1,) * (p.dim() - 1)
            m_rows = m if everyone else m[rows]
            v_rows = v if everyone else v[rows]
            m_rows.mul_(beta1).add_(g, alpha=1 - beta1)
            v_rows.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v_rows / correction2.view(shape)).sqrt_().add_(self.eps)
            update = (m_rows / correction1.view(shape)).div_(denom).mul_(-self.lr)
            if everyone:
                p.add_(update)
            else:
                m[rows], v[rows] = m_rows, v_rows
                p[rows] = p[rows] + update

    def state(self) -> list[torch.Tensor]:
        """Everything a warm start copies: moments and step counts (the parameters are separate)."""
        return [*self.exp_avg, *self.exp_avg_sq, self.steps]

    def reset(self, rows: torch.Tensor) -> None:
        """Fresh optimiser state for `rows`."""
        for t in self.state():
            t[rows] = 0


def keep_logits(p: torch.Tensor) -> torch.Tensor:
    """(..., n) keep probabilities -> (..., n, 2) logits [log p, log(1 - p)], both clamped >= 1e-8."""
    return torch.stack([p.clamp(min=1e-8).log(), (1 - p).clamp(min=1e-8).log()], dim=-1)


def gumbel_keep(p: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """The keep component of a soft Gumbel-softmax sample: differentiable presence in (0, 1)
    (docs/method.md#simplicity-axis).

    As torch.nn.functional.gumbel_softmax(hard=False), with noise from `generator` (reproducible).
    """
    u = torch.rand((*p.shape, 2), generator=generator).to(p.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))
    return torch.softmax((keep_logits(p) + gumbel) / tau, dim=-1)[..., 0]


def expected_keep(p: torch.Tensor, tau: float) -> torch.Tensor:
    """The keep component without Gumbel noise: the deterministic presence used for export.

    The official export draws a fresh Gumbel sample, so the same model exports different sketches;
    the noise-free value (the sample at the noise's mode, zero) makes export reproducible.
    """
    return torch.softmax(keep_logits(p) / tau, dim=-1)[..., 0]
