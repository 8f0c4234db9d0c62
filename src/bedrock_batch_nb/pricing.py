"""A rough cost estimate of a run, from a small, dated and overridable price table.

Prices are on-demand list prices in US dollars per million tokens (us-east-1); a batch
job is billed at :data:`BATCH_DISCOUNT` of them.  They change: check the Bedrock pricing
page, and put your own with :func:`set_price` (or pass ``prices=`` to :func:`estimate`).

The estimate is deliberately simple and says so: input tokens are about the number of
characters sent divided by :data:`CHARS_PER_TOKEN`, and output tokens are ``max_tokens``
for every record, an upper bound.  The manifest of a finished job gives the real counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .models import base_model_id

if TYPE_CHECKING:
    from .run import BatchRun

PRICES_AS_OF = "2025-2026"
"""When the built-in prices were list prices (secondary sources, us-east-1)."""
BATCH_DISCOUNT = 0.5
"""Batch inference is billed at half the on-demand token price."""
CHARS_PER_TOKEN = 4
"""Characters per input token assumed by the estimate (English prose averages about 4)."""


@dataclass(frozen=True)
class Price:
    """On-demand US dollars per million tokens."""

    input_per_million: float
    output_per_million: float = 0.0


PRICES: dict[str, Price] = {
    "anthropic.claude-3-haiku": Price(0.25, 1.25),
    "anthropic.claude-3-5-sonnet": Price(3.0, 15.0),
    "amazon.titan-embed-text-v2": Price(0.02),
    "amazon.nova-micro": Price(0.035, 0.14),
    "amazon.nova-lite": Price(0.06, 0.24),
}
"""Base model id prefix → on-demand price; the longest matching prefix wins."""


def set_price(model_prefix: str, input_per_million: float, output_per_million: float = 0.0) -> None:
    """Add or replace the on-demand price of the models whose base id starts with
    ``model_prefix`` (e.g. ``"anthropic.claude-3-5-haiku"``)."""
    PRICES[model_prefix] = Price(input_per_million, output_per_million)


def price_for(model_id: str, prices: dict[str, Price] | None = None) -> Price | None:
    """The on-demand price of ``model_id`` (inference-profile ids and ARNs too), or None."""
    table = PRICES if prices is None else prices
    base = base_model_id(model_id)
    matches = [prefix for prefix in table if base.startswith(prefix)]
    return table[max(matches, key=len)] if matches else None


@dataclass(frozen=True)
class CostEstimate:
    """What a run would cost, roughly; see the module docstring for how it is counted."""

    model_id: str
    records: int
    input_chars: int
    input_tokens: int
    output_tokens: int
    """An upper bound: ``max_tokens`` per record (0 for embedding models)."""
    price: Price | None

    @property
    def on_demand_usd(self) -> float | None:
        if self.price is None:
            return None
        return (
            self.input_tokens * self.price.input_per_million
            + self.output_tokens * self.price.output_per_million
        ) / 1e6

    @property
    def batch_usd(self) -> float | None:
        usd = self.on_demand_usd
        return None if usd is None else usd * BATCH_DISCOUNT

    def summary(self) -> str:
        """One line: tokens and cost, with how they were estimated."""
        tokens = (
            f"~{self.input_tokens:,} input tokens (chars/{CHARS_PER_TOKEN}), "
            f"at most {self.output_tokens:,} output tokens (max_tokens per record)"
        )
        if self.batch_usd is None:
            return f"{tokens}; no price known for {self.model_id} (add one with set_price)."
        return (
            f"{tokens}; batch cost at most ~${self.batch_usd:,.4f} "
            f"(on-demand ~${self.on_demand_usd:,.4f}; {PRICES_AS_OF} list prices, "
            "batch = 50% of on-demand)."
        )


def estimate(run: BatchRun, prices: dict[str, Price] | None = None) -> CostEstimate:
    """Estimate the tokens and cost of ``run`` (which must validate)."""
    plan = run.validate()
    records = plan.records
    system = run.system_prompt or ""
    chars = plan.chars + records * len(system)
    kind = run.adapter.kind
    return CostEstimate(
        model_id=run.config.model_id,
        records=records,
        input_chars=chars,
        input_tokens=-(-chars // CHARS_PER_TOKEN),
        output_tokens=records * run.config.max_tokens if kind == "text" else 0,
        price=price_for(run.config.model_id, prices),
    )
