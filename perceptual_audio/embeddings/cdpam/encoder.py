"""A faster evaluation of CDPAM's ``base_encoder``: same function, about half the CPU time.

``cdpam.models.base_encoder`` is 16 blocks of Conv1d(kernel 15, "same") + BatchNorm +
LeakyReLU(0.1), the time axis halved by ``x[:, :, ::2]`` after every fourth block. Four changes
of evaluation order, none of the function (checked against the package's loop in
``tests/test_cdpam.py``; measured figures in ``docs/performance.md``):

1. **BatchNorm folded into the convolution** (eval mode: an affine map per channel), computed
   in float64 and rounded once to float32.
2. **Decimation as a stride.** The block before each ``::2`` computes only the outputs that
   are kept (a strided convolution gives exactly ``conv(x)[..., ::2]``): 20% fewer FLOPs.
3. **Only the channels asked for** in the last block (the acoustic half: 512 of 1024 channels,
   all that the CDPAM distance and the default frames use), another 5% of the FLOPs.
4. **FFT convolution for the wide blocks** (block 4 onwards, 128-1024 channels): overlap-save
   with ``FFT_SIZE``-point real FFTs; per output sample and channel pair it costs about 4.6
   multiply-adds instead of 15. A stride-2 block is written as a stride-1 convolution of the
   even and odd phases (kernel 8 over twice the channels). Its float32 rounding error is no
   larger than the direct convolution's (both about 3e-7 of the output scale against a float64
   reference, measured per block).

The result differs from the package's loop by float32 rounding only: about 1e-6 of the scale
of the feature map, 5e-7 of the pooled embeddings (the tolerances tested are in
``tests/test_cdpam.py``). On CUDA the direct convolutions are used (cuDNN is already fast there;
the FFT path exists on every device).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Kernel length of every encoder convolution, and its "same" padding per side.
KERNEL_SIZE = 15
PADDING = KERNEL_SIZE // 2
#: Negative slope of the encoder's LeakyReLU.
LEAKY_SLOPE = 0.1
#: The time axis is halved after every this many blocks.
BLOCKS_PER_DECIMATION = 4
#: Blocks from this index on use the FFT convolution (the 128+ channel blocks, where it wins;
#: measured per block in docs/performance.md).
FFT_FROM_BLOCK = 4
#: FFT length of the overlap-save convolution (128 - 14 = 114 outputs per block of input).
FFT_SIZE = 128
#: Algorithms: "fft" (FFT for the wide blocks, direct for the first ones), "direct" (strided
#: direct convolutions only).
ALGORITHMS = ("fft", "direct")


@dataclass(frozen=True)
class _Block:
    """One folded Conv+BN block: direct weights (Cout, Cin, 15) or spectral weights."""

    kind: str  # "direct" or "fft"
    weight: torch.Tensor  # direct: (Cout, Cin, 15); fft: (F, 2 Cout, 2 Cin') real-block form
    bias: torch.Tensor  # (Cout,)
    stride: int
    taps: int  # kernel length seen by the FFT (15, or 8 for a stride-2 block in phases)
    decimate: bool = False  # unstrided encoder: keep every other sample after this block


def _fold(conv: torch.nn.Conv1d, bn: torch.nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv1d followed by eval-mode BatchNorm as one Conv1d (float64 weights and bias)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv.weight.double() * scale[:, None, None]
    b = (conv.bias.double() - bn.running_mean.double()) * scale + bn.bias.double()
    return w, b


def _spectral(w: torch.Tensor, fft_size: int) -> torch.Tensor:
    """Real-block spectral weights (F, 2 Cout, 2 Cin) of a correlation kernel (Cout, Cin, K).

    ``[[Re, -Im], [Im, Re]]`` of ``conj(rfft(w))`` per frequency, so that one real batched
    matrix product does the complex channel mixing.
    """
    spec = torch.fft.rfft(w.double(), n=fft_size, dim=-1)  # (Cout, Cin, F)
    # Each float64 value rounded once, then laid out as (F, re/im, Cout, Cin): the same
    # float32 numbers as building the matrix in float64 and rounding it, at a fraction of the
    # memory traffic (the widest blocks hold 65 x 1024 x 2048 values; building them in float64
    # took ~20 s per process). conj(spec) = re - i im, so the blocks are [[re, im], [-im, re]].
    parts = torch.view_as_real(spec).float().permute(2, 3, 0, 1).contiguous()
    re, im = parts[:, 0], parts[:, 1]
    c_out, c_in = w.shape[0], w.shape[1]
    out = torch.empty((spec.shape[-1], 2 * c_out, 2 * c_in), dtype=torch.float32)
    out[:, :c_out, :c_in] = re
    out[:, :c_out, c_in:] = im
    out[:, c_out:, :c_in] = -im
    out[:, c_out:, c_in:] = re
    return out


def fft_correlate_valid(
    x: torch.Tensor, spectral_weight: torch.Tensor, taps: int, fft_size: int
) -> torch.Tensor:
    """Valid cross-correlation (what Conv1d computes, no padding, no bias) by overlap-save.

    Parameters
    ----------
    x : torch.Tensor [shape=(B, Cin, L)]
    spectral_weight : torch.Tensor [shape=(fft_size // 2 + 1, 2 Cout, 2 Cin)]
        From :func:`_spectral` of a (Cout, Cin, taps) kernel.
    taps : int
        Kernel length.

    Returns
    -------
    torch.Tensor [shape=(B, Cout, L - taps + 1)]
    """
    batch, channels, length = x.shape
    n_out = length - taps + 1
    valid = fft_size - taps + 1
    n_blocks = -(-n_out // valid)
    x = F.pad(x, (0, n_blocks * valid + taps - 1 - length))
    spec = torch.fft.rfft(x.unfold(-1, fft_size, valid), dim=-1)  # (B, Cin, nb, F)
    n_freq = spec.shape[-1]
    stacked = torch.view_as_real(spec).permute(0, 3, 4, 1, 2)  # (B, F, re/im, Cin, nb)
    stacked = stacked.reshape(batch, n_freq, 2 * channels, n_blocks)
    # One product per batch item: a GEMM's rounding can depend on where a column sits, and an
    # item's embedding must not depend on what it was batched with (distance(x, x) == 0).
    mixed = torch.stack([torch.bmm(spectral_weight, item) for item in stacked])
    c_out = mixed.shape[2] // 2
    mixed = mixed.reshape(batch, n_freq, 2, c_out, n_blocks).permute(0, 3, 4, 1, 2)
    out = torch.fft.irfft(torch.view_as_complex(mixed.contiguous()), n=fft_size, dim=-1)
    return out[..., :valid].reshape(batch, c_out, n_blocks * valid)[..., :n_out]


def _conv_per_item(h: torch.Tensor, blk: _Block) -> torch.Tensor:
    """A direct block, one batch item at a time: oneDNN picks its algorithm (and so its
    rounding) by the batch size and thread count, and an item's result must not depend on
    what it was batched with (``distance(x, x) == 0``)."""
    items = [
        F.conv1d(item[None], blk.weight, blk.bias, padding=PADDING, stride=blk.stride) for item in h
    ]
    return items[0] if len(items) == 1 else torch.cat(items)


class FastEncoder:
    """``base_encoder`` evaluated faster (see the module docstring); differentiable in ``x``.

    Parameters
    ----------
    base_encoder : torch.nn.Module
        The loaded ``cdpam.models.base_encoder`` (eval mode).
    out_channels : slice
        Channels of the last block to compute (``slice(0, 512)``: the acoustic half).
    algorithm : {"fft", "direct"}
        FFT convolution from block :data:`FFT_FROM_BLOCK` on, or direct convolutions only.
    strided : bool
        True: decimation as strides (change 2). False: every block computes its whole output
        and the time axis is halved after it by ``[..., ::2]``, as the package does: what
        :meth:`activations` needs (the deep-feature loss compares each block's output before
        decimation).
    """

    def __init__(
        self,
        base_encoder: torch.nn.Module,
        *,
        out_channels: slice = slice(None),
        algorithm: str = "fft",
        fft_size: int = FFT_SIZE,
        strided: bool = True,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        self.algorithm = algorithm
        self.fft_size = fft_size
        self.strided = bool(strided)
        n_blocks = base_encoder.num_layers
        device = base_encoder.encoder[0].weight.device
        self.blocks: list[_Block] = []
        for i in range(n_blocks):
            w, b = _fold(base_encoder.encoder[i], base_encoder.ebatch[i])
            if i == n_blocks - 1:
                w, b = w[out_channels], b[out_channels]
            decimates = (i + 1) % BLOCKS_PER_DECIMATION == 0
            stride = 2 if decimates and self.strided else 1
            if algorithm == "fft" and i >= FFT_FROM_BLOCK:
                if stride == 2:
                    # y[m] = sum_k w[k] xp[2m + k] = sum_q w[2q] xe[m + q] + w[2q + 1] xo[m + q]
                    w = torch.cat([w[:, :, 0::2], F.pad(w[:, :, 1::2], (0, 1))], dim=1)
                taps = w.shape[-1]
                block = _Block("fft", _spectral(w, fft_size), b.float(), stride, taps)
            else:
                block = _Block("direct", w.float().contiguous(), b.float(), stride, KERNEL_SIZE)
            self.blocks.append(
                _Block(
                    block.kind,
                    block.weight.to(device),
                    block.bias.to(device),
                    block.stride,
                    block.taps,
                    decimates and not self.strided,
                )
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n) int16-scaled audio -> feature map (B, C, ceil(n / 16)), as the package's loop."""
        h, _ = self._run(x, keep=False)
        return h

    def activations(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The feature map and every block's output before decimation, ``"layer00"`` ...
        ``"layer15"`` (B, C_i, ceil(n / 2**(i // 4))), as the package's loop computes them.

        Needs ``strided=False`` (a strided block never computes the samples it drops).
        """
        if self.strided:
            raise ValueError("FastEncoder.activations needs strided=False")
        return self._run(x, keep=True)

    def _run(self, x: torch.Tensor, *, keep: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = x[:, None, :]
        acts: dict[str, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks):
            h = F.leaky_relu(self._block(h, blk), LEAKY_SLOPE)
            if keep:
                acts[f"layer{i:02d}"] = h
            if blk.decimate:
                h = h[:, :, ::2]
        return h, acts

    def _block(self, h: torch.Tensor, blk: _Block) -> torch.Tensor:
        """One folded Conv+BN block (before the LeakyReLU)."""
        if blk.kind == "direct":
            return _conv_per_item(h, blk)
        if blk.stride == 1:
            out = fft_correlate_valid(
                F.pad(h, (PADDING, PADDING)), blk.weight, blk.taps, self.fft_size
            )
            return out + blk.bias[:, None]
        length = h.shape[-1]
        n_out = -(-length // 2)
        # Pad to 2 (n_out + taps) samples: PADDING zeros in front, the rest behind.
        hp = F.pad(h, (PADDING, 2 * (n_out + blk.taps) - length - PADDING))
        phases = torch.cat([hp[:, :, 0::2], hp[:, :, 1::2]], dim=1)
        out = fft_correlate_valid(phases, blk.weight, blk.taps, self.fft_size)
        return out[..., :n_out] + blk.bias[:, None]
