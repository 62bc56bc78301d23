"""The bounds that keep a template from exhausting memory or time, whatever its author writes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateLimits:
    """Bounds checked while compiling and rendering; exceeding one is a ``TemplateError``.

    The defaults leave room for any realistic notification payload (a Teams card is limited to
    28 KB, a Slack message to 40 000 characters) while capping what one render can cost.
    """

    max_source_chars: int = 1024 * 1024
    max_nesting: int = 100  # nested if/range/with/parentheses, checked while parsing
    max_output_chars: int = 256 * 1024  # the rendered payload, and any single string built on the way
    max_work_chars: int = 16 * 1024 * 1024  # all characters built by functions in one render
    max_range_iterations: int = 100_000  # over all range loops of one render
    max_template_depth: int = 100  # nested {{template}} calls
