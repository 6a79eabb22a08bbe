"""What an attention variant must be, and what it may declare (not a variant: leading underscore).

**Must** (checked by ``register``; the conformance tests use nothing else):

* an ``nn.Module`` class with a class attribute ``Config``: a frozen dataclass of its switches,
  each field annotated (``Literal`` for choices, ``bool``, ``Annotated[float, Range(0, 1)]``...),
  checked by ``variants._config``;
* the constructor ``(dim, num_heads, window_size, shift_size=0, cfg=Config())``;
* ``forward(x)`` mapping ``[B, H, W, C]`` to ``[B, H, W, C]`` for any ``H, W >= 1``.

**Window geometry belongs to the variant**: the backbone hands over the whole feature map and the
shift it would like (0 or M/2, alternating); the variant partitions, shifts, pads and masks as it
needs (``variants._window`` has timm's exact geometry to reuse) or ignores windows altogether.

**May** declare, with a class attribute ``capabilities = Capabilities(...)`` read at registration:

* ``records_attention``: the class mixes in ``AttentionRecorder`` and, while ``recording`` is on,
  keeps the weights of its last forward as an ``AttentionRecord`` (attention statistics and maps
  are computed only for such variants; the report names the arms without them);
* ``shifts(cfg)``: the config really applies the cyclic shift it was given (the shift-mask test
  runs only then);
* ``respects_mask(cfg)``: with a shift, no token sees tokens of another image region;
* ``reference``: a naive ``reference(module, x)`` the conformance tests compare the module with;
* ``fused_switch``: the name of a boolean ``Config`` field that selects a fused kernel, so the
  tests compare both paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor


def _never(cfg: Any) -> bool:
    return False


def _always(cfg: Any) -> bool:
    return True


@dataclass(frozen=True)
class Capabilities:
    """What a variant class declares beyond the required contract (see the module docstring)."""

    records_attention: bool = False
    shifts: Callable[[Any], bool] = _never
    respects_mask: Callable[[Any], bool] = _always
    reference: Callable[[Any, Tensor], Tensor] | None = None
    fused_switch: str | None = None


@dataclass(frozen=True)
class AttentionRecord:
    """The weights of one recorded forward.

    ``weights`` ``[B_, h, N, N]`` are what multiplies the values; ``weights_softmax`` the same
    before a post-softmax term such as LSLA's outer bias (None when there is none). Each of the
    ``B_`` maps is a ``grid`` (rows, cols) of tokens; ``valid_queries`` ``[B_, N]`` is False for
    padding tokens, which statistics must leave out (None: there is no padding).
    """

    weights: Tensor
    weights_softmax: Tensor | None
    grid: tuple[int, int]
    valid_queries: Tensor | None = None

    @property
    def before_outer(self) -> Tensor:
        """The softmax weights: ``weights_softmax``, or ``weights`` when nothing followed."""
        return self.weights if self.weights_softmax is None else self.weights_softmax


class AttentionRecorder:
    """Mixin for variants that declare ``records_attention``.

    Set ``recording``, run a forward, read ``record``; ``clear_record`` switches it off again.
    """

    # Left unannotated: TorchScript reads class annotations as attribute types, and a record
    # (Python-only) must not make a scripted variant fail to compile.
    recording = False  # bool
    record = None  # AttentionRecord | None

    def keep_record(self, record: AttentionRecord) -> None:
        if self.recording:
            self.record = record

    def clear_record(self) -> None:
        self.recording = False
        self.record = None
