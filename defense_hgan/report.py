"""Results on disk: an attack evaluation's results.json (everything) and results.md (a table to read), and the
resumable CSV tables of sweeps and training curves (``read_table``, ``write_table``).

Both are written atomically, so an evaluation interrupted between chunks
leaves complete files holding the work finished so far. Results of older
versions, without the checkpoints' sha256 or the subset's label counts, read
and render as they are.

``ResultsStore`` owns one evaluation's results while it runs: it resumes
OUT's, refusing those of another run (other settings, or checkpoints whose
sha256 differs), keeps the finished chunks of unfinished rows (``partial``,
and ``sanity_partial`` for the sanity checks' own measurements), and
rewrites both files after every change.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

from defense_hgan.atomic import atomic_write
from defense_hgan.checkpoints import checkpoint_difference
from defense_hgan.scoring import interval_text

JSON_NAME, MARKDOWN_NAME = "results.json", "results.md"
# Row settings as results.md abbreviates them; batch_size (throughput), the attacker's projection (in the
# header) and APGD's loss_type (the attack's name says it) are left out there. results.json holds them all.
SHORT = {"eps": "eps", "eps_step": "step", "max_iter": "iters", "num_random_init": "inits", "confidence": "conf",
         "learning_rate": "lr", "binary_search_steps": "search steps", "initial_const": "c0", "eot_samples": "eot",
         "nb_random_init": "inits", "nb_restarts": "restarts"}
HIDDEN = {"batch_size", "verbose", "attacker_L", "attacker_R", "attacker_warm_L", "loss_type"}


def write_results(results: dict, out: str | Path) -> Path:
    """OUT/results.json and OUT/results.md from an evaluation's results, atomically; returns OUT."""
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


def read_table(path: str | Path, columns: tuple[str, ...], older: tuple[str, ...] | None = None,
               what: str = "CSV table") -> list[dict]:
    """A CSV table's rows, values as strings; a ValueError, calling the file ``what`` should be, for one whose
    columns are neither ``columns`` nor ``older`` (an older version's, whose missing columns then read empty)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) not in (columns, older):
            raise ValueError(f"{path} is not a {what} of this version: its columns are {reader.fieldnames}, "
                             f"expected {list(columns)}")
        return [{name: row.get(name, "") for name in columns} for row in reader]


def write_table(path: str | Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    """Write the CSV table atomically (temp file + rename): an interruption leaves the previous complete file."""
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


# What grows as an evaluation runs; everything else in the results is the run's identity.
PROGRESS_KEYS = ("attacks", "threats", "pending", "partial", "rows", "sanity", "sanity_rows", "sanity_partial",
                 "seconds")
FIX = "rerun with the same settings to resume it, or pass another --out"


class ResultsStore:
    """One evaluation's results as it runs: the run's identity, its rows (finished, or finished chunk by chunk),
    its sanity checks, and what is pending; written to OUT (when given) after every change.

    A row is keyed by (attack, threat); its unfinished chunks by "attack/threat" in ``partial``; a sanity
    measurement's chunks by any key in ``sanity_partial``.
    """

    def __init__(self, identity: dict, out: str | Path | None = None, sources: tuple[str, ...] = ()):
        """``identity`` (the checkpoints named by ``sources``, their sha256 and the settings that make the run)
        and, with ``out``, what OUT's results of the same run hold; a ValueError for OUT's results of another."""
        self.out, self.results = out, dict(identity)
        stored = read_results(out) if out is not None else None
        self.resumed = stored is not None
        if stored is not None:
            check_same_run(stored, self.results, list(sources), out)
            self.results.update({name: stored[name] for name in sources if name in stored})  # the first spelling
            if "label_counts" not in stored["subset"]:  # an older run's counts are unknown: never stamp new ones on
                self.results["subset"] = stored["subset"]
        self.earlier = earlier = stored or {}
        self.results.update({"attacks": [], "threats": [], "pending": [], "partial": dict(earlier.get("partial") or {}),
                             "rows": [], "sanity": earlier.get("sanity"),
                             "sanity_rows": list(earlier.get("sanity_rows", [])),
                             "sanity_partial": dict(earlier.get("sanity_partial") or {}), "seconds": 0.0})
        self.done = {(row["attack"], row["threat"]): row for row in self.earlier.get("rows", [])}
        self.runs: list[tuple[str, str]] = []
        self.todo: list[tuple[str, str]] = []
        self.sanity_wanted = False

    def check_rows(self, expected: Callable[[str, str], dict]) -> None:
        """Refuse stored rows and chunks whose settings differ from ``expected(attack, threat)``, this run's."""
        partial = [part for parts in self.results["partial"].values() for part in parts]
        for row in self.earlier.get("rows", []) + partial:
            settings = expected(row["attack"], row["threat"])
            if plain(row["settings"]) != plain(settings):
                raise ValueError(f"{self.out} holds {row['attack']} under {row['threat']} with settings "
                                 f"{row['settings']}, but this run's are {settings}; {FIX}")

    def check_sanity(self, settings: dict) -> None:
        """Refuse stored sanity checks measured with other settings than ``settings``."""
        stored = self.results["sanity"]
        if stored is not None and plain(stored.get("settings")) != plain(settings):
            raise ValueError(f"{self.out} holds sanity checks with settings {stored.get('settings')}, but this "
                             f"run's are {settings}; {FIX}")

    def plan(self, attacks: list[str], threats: list[str], sanity: bool) -> list[tuple[str, str]]:
        """The rows to run (no attack, then every attack under every threat), skipping finished ones; the results
        keep OUT's earlier rows of attacks or threat models not asked for this time."""
        kept = [*self.done, *(tuple(key.split("/")) for key in self.results["partial"])]
        self.results["attacks"] = _with_earlier(attacks, self.earlier.get("attacks", []), [a for a, _ in kept])
        self.results["threats"] = _with_earlier(threats, self.earlier.get("threats", []), [t for _, t in kept])
        self.runs = [("none", "none")] + [(a, t) for a in self.results["attacks"] for t in self.results["threats"]]
        wanted = [("none", "none")] + [(a, t) for a in attacks for t in threats]
        self.todo = [run for run in wanted if run not in self.done]
        self.sanity_wanted = sanity
        self.write()
        return self.todo

    def parts(self, key: str, sanity: bool = False) -> list[dict]:
        """The finished chunks of the row (or sanity measurement) ``key``."""
        return self.results["sanity_partial" if sanity else "partial"].setdefault(key, [])

    def add_part(self, key: str, part: dict, sanity: bool = False) -> None:
        self.parts(key, sanity).append(part)
        self.write()

    def finish(self, key: str, row: dict, sanity: bool = False) -> dict:
        """Record ``row``, merged from ``key``'s chunks, as finished; return it."""
        del self.results["sanity_partial" if sanity else "partial"][key]
        if sanity:
            self.results["sanity_rows"].append(row)
        else:
            self.done[row["attack"], row["threat"]] = row
        self.write()
        return row

    def find(self, attack: str, threat: str, settings: dict) -> dict | None:
        """A finished row (of the evaluation or of the sanity checks) of this attack, threat and settings."""
        for row in list(self.done.values()) + self.results["sanity_rows"]:
            if (row["attack"], row["threat"]) == (attack, threat) and plain(row["settings"]) == plain(settings):
                return row
        return None

    def set_sanity(self, checks: dict, settings: dict) -> None:
        seconds = round(sum(row["seconds"] for row in self.results["sanity_rows"]), 2)
        self.results["sanity"] = {**checks, "settings": settings, "seconds": seconds}
        self.write()

    def chunks_left(self, chunks_per_row: int) -> int:
        """Chunks still to run in the planned rows."""
        partial = self.results["partial"]
        return len(self.todo) * chunks_per_row - sum(len(partial.get(f"{a}/{t}", [])) for a, t in self.todo)

    def write(self) -> None:
        """Bring rows, pending and seconds up to date; rewrite OUT's files (when there is an OUT)."""
        results, partial, n = self.results, self.results["partial"], self.results["subset"]["n"]
        results["rows"] = [self.done[run] for run in self.runs if run in self.done]
        results["pending"] = [f"{a}/{t}" + _chunks_done(partial.get(f"{a}/{t}"), n) for a, t in self.runs
                              if (a, t) not in self.done and ((a, t) in self.todo or f"{a}/{t}" in partial)]
        if self.sanity_wanted and results["sanity"] is None:
            results["pending"].append("sanity")
        unfinished = [part for chunks in (partial, results["sanity_partial"]) for parts in chunks.values()
                      for part in parts]
        timed = results["rows"] + results["sanity_rows"] + unfinished
        results["seconds"] = round(sum(entry["seconds"] for entry in timed), 2)
        if self.out is not None:
            write_results(results, self.out)


def check_same_run(stored: dict, results: dict, sources: list[str], out) -> None:
    """A ValueError naming the first difference when OUT's results come from another run's settings or checkpoints.

    Checkpoints compare by content (``checkpoint_difference``). Results of an
    older version recorded paths only: they are refused, saying how to vouch
    for them; and no label counts, which are then not compared (MNIST kept its
    order) or, for CIFAR-10, whose images were others, refused.
    """
    if results["dataset"] == "cifar10" and "label_counts" not in stored.get("subset", {}):
        raise ValueError(f"{out} holds a CIFAR-10 evaluation from before the test set was read class-interleaved: "
                         f"its images were others (the first 1,000 all airplanes); pass another --out")
    compared = [name for name in sources if name in stored]
    for name in compared:
        recorded = (stored.get("sha256") or {}).get(name)
        reason = checkpoint_difference(name, stored[name], recorded, results[name], results["sha256"][name])
        if reason and not recorded and results["sha256"][name]:
            raise ValueError(f"{out} holds an evaluation with {reason}; if it is, add "
                             f"{json.dumps({'sha256': results['sha256']})} to {out}/results.json to resume it, "
                             f"or pass another --out")
        if reason:
            raise ValueError(f"{out} holds an evaluation with {reason}; {FIX}")
    skipped = [*PROGRESS_KEYS, *compared, "sha256"]
    before = plain({k: v for k, v in stored.items() if k not in skipped})
    now = plain({k: v for k, v in results.items() if k not in skipped})
    if "label_counts" not in before.get("subset", {}):
        now.get("subset", {}).pop("label_counts", None)
    if before != now:
        where, old, new = _difference(before, now)
        raise ValueError(f"{out} holds an evaluation with {where} {old!r}, but this one has {new!r}; {FIX}")


def plain(value):
    """``value`` as it reads back from JSON (tuples as lists, keys as strings), to compare with stored results."""
    return json.loads(json.dumps(value))


def _difference(a, b, where: str = ""):
    """(path, a's value, b's value) of the first difference between two JSON values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
    return where or "results", a, b


def _with_earlier(asked: list[str], earlier: list[str], kept: list[str]) -> list[str]:
    """The names asked for, and the earlier ones not asked for that still have rows (finished or in chunks) to keep,
    in the earlier order."""
    return [name for name in dict.fromkeys([*earlier, *kept, *asked])
            if name in asked or (name != "none" and name in kept)]


def _chunks_done(parts: list[dict] | None, n: int) -> str:
    """' (200 of 500 images done)' for a row with finished chunks, else ''."""
    return f" ({sum(part['n'] for part in parts)} of {n} images done)" if parts else ""


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
        failed = ", ".join(failed_checks(results))
        lines += [f"> **Sanity checks FAILED** ({failed}): the attacks may be failing (gradient masking?), "
                  "so the defended accuracies are upper bounds, not evidence of robustness.", ""]
    lines += ["| attack | threat | undefended | defended | settings | seconds |", "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['attack']} | {row['threat']} | {accuracy_text(row, 'undefended')} | "
                     f"{accuracy_text(row)} | {_attack_settings(row['settings'])} | {row['seconds']} |")
    lines += ["", *strongest_lines(results["rows"]),
              "Settings abbreviated (iters: iterations, inits: random starts, c0: initial constant, "
              "eot: samples per gradient); results.json has them all."]
    cached = cached_text(results["rows"])
    if cached:
        lines += ["", f"Adversarial images read from the adversarial cache, not crafted: {cached}; those rows' "
                      "seconds are the scoring's alone."]
    if sanity:
        lines += ["", f"## Sanity checks (Carlini et al. 2019): {sanity['attack']} under {sanity['threat']}", "",
                  f"Tolerance {sanity['tolerance']}, near zero <= {sanity['near_zero']}.", ""]
        lines += [f"- {'PASS' if c['passed'] else '**FAIL**'} {c['name']}: {c['detail']}" for c in sanity["checks"]]
    return "\n".join(lines) + "\n"


def cached_text(rows: list[dict]) -> str:
    """'fgsm/oblivious (200 of 200 images), ...' for the rows whose adversarial images came from the cache."""
    return ", ".join(f"{row['attack']}/{row['threat']} ({row['cached_images']} of {row['n']} images)"
                     for row in rows if row.get("cached_images"))


def strongest(rows: list[dict], threat: str, which: str = "defended") -> dict | None:
    """The row of the attack run under ``threat`` that leaves the lowest ``which`` accuracy (None: none run)."""
    attacked = [row for row in rows if row["threat"] == threat and row["attack"] != "none"]
    return min(attacked, key=lambda row: row[f"accuracy_{which}"], default=None)


def strongest_lines(rows: list[dict]) -> list[str]:
    """'Strongest attack (lowest defended accuracy) under bpda: autoattack 0.060 [0.028, 0.125]; ...' and a blank
    line, or nothing when no attack ran."""
    threats = list(dict.fromkeys(row["threat"] for row in rows if row["attack"] != "none"))
    named = [f"{threat}: **{row['attack']}** {accuracy_text(row)}"
             for threat in threats if (row := strongest(rows, threat))]
    return [f"Strongest attack run (lowest defended accuracy) under {'; '.join(named)}.", ""] if named else []


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
        text += f". BPDA gradients taken at a projection with L={d['attacker_L']}, R={d['attacker_R']}"
        if "attacker_warm_L" in d:
            text += (f", then warm-started: {d['attacker_warm_L']} steps from each image's latent of the previous "
                     f"attack iteration, 1 restart")
        text += f"; scored with L={d['L']}, R={d['R']}"
    return text


def accuracy_text(row: dict | None, which: str = "defended") -> str:
    """'0.990 [0.977, 0.996]': a row's accuracy with its interval, or '-' for a row not run (yet)."""
    if row is None:
        return "-"
    return interval_text(row[f"accuracy_{which}"], row[f"interval_{which}"])


def failed_checks(results: dict) -> list[str]:
    """The names of the sanity checks a run failed; none where they passed or did not run."""
    sanity = results.get("sanity")
    return [check["name"] for check in sanity["checks"] if not check["passed"]] if sanity else []


def _attack_settings(settings: dict) -> str:
    """'Linf, eps 0.3, step 0.01, iters 40, inits 1': a row's settings in short; a worst case's as
    'apgd-ce: Linf, ...; square: ...'."""
    parts = [f"L{settings['norm']}"] if "norm" in settings else []
    parts += [f"{SHORT.get(k, k)} {_number(v)}" for k, v in settings.items()
              if k not in HIDDEN | {"norm"} and not isinstance(v, dict)]
    nested = [f"{k}: {_attack_settings(v)}" for k, v in settings.items() if isinstance(v, dict)]
    return "; ".join([", ".join(parts)] * bool(parts) + nested) or "-"


def _settings(settings: dict) -> str:
    return ", ".join(f"{k} {_settings(v) if isinstance(v, dict) else _number(v)}" for k, v in settings.items()) or "-"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
