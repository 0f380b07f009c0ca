"""The memory plot of linear_cross_entropy's page, drawn from that page's own table.

The numbers live once, in the "Memory and time" table of
``losses/linear_cross_entropy.md`` (written from ``benchmarks/linear_ce.py``);
this module reads the table and draws the peak memory of one training step,
naive composition against fused, per library and token count::

    import memoryplot
    memoryplot.draw()
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt

PAGE = os.path.join(os.path.dirname(__file__), "..", "losses", "linear_cross_entropy.md")
COLORS = ("#d1242f", "#1f6feb")


def rows(page: str = PAGE) -> list[dict]:
    """The rows of the page's memory table: library, N, naive and fused peak (MiB)."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Memory and time", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    out = []
    for line in table[1:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
        out.append({
            "library": cells["library"],
            "n": int(cells["N"]),
            "naive": float(cells["naive peak (MiB)"]),
            "fused": float(cells["fused peak (MiB)"]),
        })
    if not out:
        raise ValueError(f"no memory table in {page}")
    return out


def draw() -> plt.Figure:
    """Grouped bars: the naive and the fused step's peak memory for each table row."""
    data = rows()
    fig, ax = plt.subplots(figsize=(8.0, 3.2))
    positions = range(len(data))
    width = 0.38
    for shift, key, label, color in ((-width / 2, "naive", "logits materialized (x @ W.T, then cross entropy)",
                                      COLORS[0]),
                                     (width / 2, "fused", "linear_cross_entropy", COLORS[1])):
        bars = ax.bar([p + shift for p in positions], [row[key] for row in data], width, label=label, color=color)
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(list(positions), [f"{row['library']}\nN = {row['n']}" for row in data], fontsize=7)
    ax.set_ylabel("peak extra memory (MiB)")
    ax.set_title("one training step, D = 256, V = 32768, float32", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
