"""FGSM, PGD and Carlini-Wagner L2 from ART behind one interface, with the papers' settings as defaults.

Settings are ART keyword arguments, so every knob ART has can be overridden::

    attack = build_attack("pgd", estimator, "mnist", eps=0.2)
    x_adv = attack.generate(x, y)        # numpy NCHW in [0, 1]

Defaults and where they come from (L-inf budgets on images in [0, 1]):

mnist, fashion-mnist
    fgsm  eps 0.3. Defense-GAN (Samangouei et al. 2018, whitebox.py ``fgsm_eps``) and
          HGAN Tables 8/9 ("FGSM (eps = 0.3)").
    pgd   eps 0.3, step 0.01, 40 iterations, one random start: Madry et al. 2018's MNIST
          attack. HGAN Table 8 lists PGD without settings; Defense-GAN has no PGD.
    cw    L2, confidence 0, 1 binary-search step, 100 iterations, initial constant 100:
          Defense-GAN's whitebox.py (cleverhans CarliniWagnerL2; confidence is cleverhans's
          default 0). HGAN Table 8 states only "CW (l2 norm)". Defense-GAN's learning rate 10
          was for cleverhans's Adam; ART's CW searches its step size (halving and doubling),
          so ART's own initial rate 0.01 is kept.
cifar10
    fgsm  eps 0.3, as HGAN Table 9 states for CIFAR-10. The standard CIFAR-10 budget is
          8/255: pass ``eps=8/255`` (``--eps`` on the command line).
    pgd   eps 8/255, step 2/255, 20 iterations, one random start: Madry et al. 2018's
          CIFAR-10 evaluation (HGAN Table 9 gives no PGD settings).
    cw    as for MNIST (HGAN Table 9 states only "CW (l2 norm)").

``batch_size`` 100 is a throughput setting, not a paper's. Overriding a PGD's
``eps`` without ``eps_step`` scales the step with it, keeping the source's
step-to-budget ratio (and so its reach, iterations x step / eps).

ART is imported only when an attack is built, so reading the defaults is cheap.
"""
from __future__ import annotations

import copy

ATTACKS = ("fgsm", "pgd", "cw")
_BATCH = {"batch_size": 100}
_MNIST = {
    "fgsm": {"norm": "inf", "eps": 0.3, **_BATCH},
    "pgd": {"norm": "inf", "eps": 0.3, "eps_step": 0.01, "max_iter": 40, "num_random_init": 1, **_BATCH},
    "cw": {"confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 1, "max_iter": 100,
           "initial_const": 100.0, **_BATCH},
}
_DEFAULTS = {
    "mnist": _MNIST,
    "fashion-mnist": _MNIST,
    "cifar10": {
        "fgsm": _MNIST["fgsm"],
        "pgd": {**_MNIST["pgd"], "eps": 8 / 255, "eps_step": 2 / 255, "max_iter": 20},
        "cw": _MNIST["cw"],
    },
}


def attack_defaults(dataset: str) -> dict[str, dict]:
    """The dataset's default settings per attack (a fresh copy, safe to edit)."""
    if dataset not in _DEFAULTS:
        raise ValueError(f"no attack defaults for dataset {dataset!r}; expected one of {sorted(_DEFAULTS)}")
    return copy.deepcopy(_DEFAULTS[dataset])


def attack_settings(name: str, dataset: str, **overrides) -> dict:
    """The settings ``build_attack`` uses: the defaults with ``overrides`` on top."""
    _check_name(name)
    settings = attack_defaults(dataset)[name]
    if "eps" in overrides and "eps_step" in settings and "eps_step" not in overrides:
        settings["eps_step"] *= overrides["eps"] / settings["eps"]
    return {**settings, **overrides}


def build_attack(name: str, estimator, dataset: str = "mnist", *, verbose: bool = False, **overrides):
    """An untargeted ART evasion attack on ``estimator`` (an ART classifier) with ``attack_settings``.

    ``verbose`` turns on ART's progress bars where the attack has them.
    """
    from art.attacks.evasion import CarliniL2Method, FastGradientMethod, ProjectedGradientDescent

    cls = {"fgsm": FastGradientMethod, "pgd": ProjectedGradientDescent, "cw": CarliniL2Method}[_check_name(name)]
    settings = attack_settings(name, dataset, **overrides)
    unknown = sorted(set(settings) - set(cls.attack_params))
    if unknown:
        raise ValueError(f"{name} has no setting(s) {unknown}; ART's {cls.__name__} takes {sorted(cls.attack_params)}")
    if "verbose" in cls.attack_params:
        settings["verbose"] = verbose
    return cls(estimator, **settings)


def _check_name(name: str) -> str:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; expected one of {list(ATTACKS)}")
    return name
