"""The base class of models that know their graph and accept ``member=``."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

__all__ = ["GatedModel"]


class GatedModel(nn.Module):
    """A model whose forward is traced into a gated graph and run by the engine.

    Subclasses build their network from ordinary modules and
    :class:`~layershare.nn.Join` nodes and write a plain ``forward``. Calling
    the model runs that forward's traced graph through the layershare engine,
    which supplies the gate weights:

    * ``model(x, member=m)``: the deterministic subnetwork ``m``;
    * ``model(x)`` in training mode with a scheme: a fresh draw of the
      scheme's gates per mini-batch or per sample (drawn from torch's global
      random number generator, so ``torch.manual_seed`` fixes it);
    * ``model(x)`` in eval mode: the scheme's deterministic inference rule;
    * ``model(x)`` with no scheme: every gate kept (the plain network).

    Args:
        scheme: The sampling scheme the model trains with, or ``None``
            (default: ``None``).

    .. warning::
        Forward hooks registered on the model itself do not run, because the
        engine interprets the traced graph instead of calling ``forward``.
        Hooks on submodules run as usual.
    """

    #: Extra module classes the tracer keeps whole.
    layershare_leaves: tuple[type[nn.Module], ...] = ()

    def __init__(self, scheme: Any = None) -> None:
        super().__init__()
        self.scheme = scheme
        self._graph_cache: dict[Hashable, Any] = {}

    def graph_key(self) -> Hashable:
        """Return a key that changes whenever the traced structure changes."""
        return None

    @property
    def graph(self):
        """The model's :class:`~layershare.graph.Graph`, traced once per structure."""
        from layershare.tracing import trace_graph

        key = self.graph_key()
        if key not in self._graph_cache:
            self._graph_cache[key] = trace_graph(self, self.layershare_leaves)
        return self._graph_cache[key]

    def __call__(self, *args: Any, member: Any = None, **kwargs: Any) -> Any:
        if is_fx_symbolic_tracing():
            return super().__call__(*args, **kwargs)
        from layershare.engine import forward

        return forward(self, args, kwargs, member)
