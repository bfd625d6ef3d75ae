"""Attack-evaluation results on disk: results.json (everything) and results.md (a table to read).

Both are written atomically, so an evaluation interrupted between rows
leaves complete files holding the rows finished so far. Results of older
versions, without the checkpoints' sha256 or the subset's label counts, read
and render as they are.
"""
from __future__ import annotations

import json
from pathlib import Path

from defense_hgan.atomic import atomic_write

JSON_NAME, MARKDOWN_NAME = "results.json", "results.md"
# Row settings as results.md abbreviates them; batch_size (throughput) and the attacker's projection (in the
# header) are left out there. results.json holds them all.
SHORT = {"eps": "eps", "eps_step": "step", "max_iter": "iters", "num_random_init": "inits", "confidence": "conf",
         "learning_rate": "lr", "binary_search_steps": "search steps", "initial_const": "c0", "eot_samples": "eot"}
HIDDEN = {"batch_size", "verbose", "attacker_L", "attacker_R"}


def write_results(results: dict, out: str | Path) -> Path:
    """OUT/results.json and OUT/results.md from ``evaluation.evaluate``'s results, atomically; returns OUT."""
    out = Path(out)
    with atomic_write(out / JSON_NAME) as f:
        f.write(json.dumps(results, indent=2) + "\n")
    with atomic_write(out / MARKDOWN_NAME) as f:
        f.write(results_markdown(results))
    return out


def read_results(out: str | Path) -> dict | None:
    """OUT/results.json as ``write_results`` wrote it, or None when there is none."""
    path = Path(out) / JSON_NAME
    if not path.exists():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} could not be read as results ({err}); pass another --out") from None
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise ValueError(f"{path} is not an evaluation's results.json; pass another --out")
    return results


def results_markdown(results: dict) -> str:
    """The results as Markdown: what was run, one table row per attack and threat model, the sanity checks."""
    subset, level = results["subset"], round(100 * results["confidence_level"])
    sources = ", ".join(f"{name} `{results[name]}`{_sha256(results, name)}" for name in ("classifier", "generator")
                        if name in results)
    lines = [f"# Attack evaluation: {results['dataset']}", ""]
    if sources:
        lines.append(sources[0].upper() + sources[1:] + ".")
    lines += [f"Accuracy on {_subset(subset)}, with {level}% Wilson intervals; seed {results['seed']}; "
              f"{results['seconds']} s in all.",
              f"Defense: {_defense(results)}.", ""]
    if results.get("pending"):
        lines += [f"> **Incomplete**: still to run {', '.join(results['pending'])}; "
                  "rerun the same command to resume.", ""]
    sanity = results.get("sanity")
    if sanity and not sanity["passed"]:
        failed = ", ".join(c["name"] for c in sanity["checks"] if not c["passed"])
        lines += [f"> **Sanity checks FAILED** ({failed}): the attacks may be failing (gradient masking?), "
                  "so the defended accuracies are upper bounds, not evidence of robustness.", ""]
    lines += ["| attack | threat | undefended | defended | settings | seconds |", "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['attack']} | {row['threat']} | {_accuracy(row, 'undefended')} | "
                     f"{_accuracy(row, 'defended')} | {_attack_settings(row['settings'])} | {row['seconds']} |")
    lines += ["", "Settings abbreviated (iters: iterations, inits: random starts, c0: initial constant, "
              "eot: samples per gradient); results.json has them all."]
    if sanity:
        lines += ["", f"## Sanity checks (Carlini et al. 2019): {sanity['attack']} under {sanity['threat']}", "",
                  f"Tolerance {sanity['tolerance']}, near zero <= {sanity['near_zero']}.", ""]
        lines += [f"- {'PASS' if c['passed'] else '**FAIL**'} {c['name']}: {c['detail']}" for c in sanity["checks"]]
    return "\n".join(lines) + "\n"


def _sha256(results: dict, name: str) -> str:
    """' (sha256 9598495e2869)' when the results record the checkpoint's hash (older ones do not)."""
    digest = (results.get("sha256") or {}).get(name)
    return f" (sha256 {digest[:12]})" if digest else ""


def _subset(subset: dict) -> str:
    """'the first 500 of 10000 test images (per class: 50, 49, ...)' (or the subset as recorded, when chosen
    otherwise; older results have no label counts)."""
    n, of = subset["n"], f" of {subset['of']}" if subset.get("of") else ""
    counts = f" (per class: {', '.join(map(str, subset['label_counts']))})" if subset.get("label_counts") else ""
    if subset.get("selection") == "the first n images of the test set":
        return f"the first {n}{of} test images{counts}"
    return f"{n}{of} test images ({subset.get('selection')}){counts}"


def _defense(results: dict) -> str:
    """Defense-GAN's scoring projection and, where attacks use it, the attacker's; any other defense as recorded."""
    d = results["defense"]
    if d.get("name") != "defense-gan" or "L" not in d:
        return _settings(d)
    options = f"; {_settings(d['options'])}" if d.get("options") else ""
    text = f"Defense-GAN, projection L={d['L']}, R={d['R']} (seed {d.get('seed')}{options})"
    adaptive = any(t in ("bpda", "bpda-eot") for t in results.get("threats", [])) or results.get("sanity")
    if adaptive and "attacker_L" in d:
        text += (f". BPDA gradients taken at a projection with L={d['attacker_L']}, R={d['attacker_R']}; "
                 f"scored with L={d['L']}, R={d['R']}")
    return text


def _accuracy(row: dict, which: str) -> str:
    low, high = row[f"interval_{which}"]
    return f"{row[f'accuracy_{which}']:.3f} [{low:.3f}, {high:.3f}]"


def _attack_settings(settings: dict) -> str:
    """'Linf, eps 0.3, step 0.01, iters 40, inits 1': a row's settings in short."""
    parts = [f"L{settings['norm']}"] if "norm" in settings else []
    parts += [f"{SHORT.get(k, k)} {_number(v)}" for k, v in settings.items() if k not in HIDDEN | {"norm"}]
    return ", ".join(parts) or "-"


def _settings(settings: dict) -> str:
    return ", ".join(f"{k} {_settings(v) if isinstance(v, dict) else _number(v)}" for k, v in settings.items()) or "-"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
