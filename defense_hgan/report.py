"""Attack-evaluation results on disk: results.json (everything) and results.md (a table to read)."""
from __future__ import annotations

import json
from pathlib import Path


def write_results(results: dict, out: str | Path) -> Path:
    """OUT/results.json and OUT/results.md from ``evaluation.evaluate``'s results; returns OUT."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    return out


def results_markdown(results: dict) -> str:
    """The results as Markdown: what was run, one table row per attack and threat model, the sanity checks."""
    subset, level = results["subset"], round(100 * results["confidence_level"])
    of = f" of {subset['of']}" if subset.get("of") else ""
    lines = [
        f"# Attack evaluation: {results['dataset']}",
        "",
        f"Accuracy on {subset['n']}{of} test images ({subset['selection']}), with {level}% Wilson intervals "
        f"for n = {subset['n']}. Seed {results['seed']}; {results['seconds']} s in all.",
        f"Defense: {_settings(results['defense'])}.",
        "",
    ]
    sanity = results.get("sanity")
    if sanity and not sanity["passed"]:
        failed = ", ".join(c["name"] for c in sanity["checks"] if not c["passed"])
        lines += [f"> **Sanity checks FAILED** ({failed}): the attacks may be failing (gradient masking?), "
                  "so the defended accuracies are upper bounds, not evidence of robustness.", ""]
    lines += ["| attack | threat | undefended | defended | settings | seconds |", "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['attack']} | {row['threat']} | {_accuracy(row, 'undefended')} | "
                     f"{_accuracy(row, 'defended')} | {_settings(row['settings'])} | {row['seconds']} |")
    if sanity:
        lines += ["", f"## Sanity checks (Carlini et al. 2019): {sanity['attack']} under {sanity['threat']}", "",
                  f"Tolerance {sanity['tolerance']}, near zero <= {sanity['near_zero']}.", ""]
        lines += [f"- {'PASS' if c['passed'] else '**FAIL**'} {c['name']}: {c['detail']}" for c in sanity["checks"]]
    return "\n".join(lines) + "\n"


def _accuracy(row: dict, which: str) -> str:
    low, high = row[f"interval_{which}"]
    return f"{row[f'accuracy_{which}']:.3f} [{low:.3f}, {high:.3f}]"


def _settings(settings: dict) -> str:
    return ", ".join(f"{k} {_settings(v) if isinstance(v, dict) else _number(v)}" for k, v in settings.items()) or "-"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
