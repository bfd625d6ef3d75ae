"""ART's attacks behind one interface, with the papers' settings as defaults.

Settings are ART keyword arguments, so every knob ART has can be overridden::

    attack = build_attack("pgd", estimator, "mnist", eps=0.2)
    x_adv = attack.generate(x, y)        # numpy NCHW in [0, 1]

``attacks.threats`` puts an attack under a threat model as one call on tensors,
``make_attack(name, threat, classifier, defense, dataset=...)(images, labels)``;
it also runs ``autoattack``, the worst case over several of these attacks.

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
    apgd-ce, apgd-dlr
          ART's AutoProjectedGradientDescent with the cross-entropy or the difference-of-logits-
          ratio loss: eps 0.3, 100 iterations, initial step 2 x eps (0.6; the step then halves
          where progress stalls), one random start: Croce & Hein 2020 ("Reliable evaluation of
          adversarial robustness with an ensemble of diverse parameter-free attacks", Sec. 3 and
          AutoAttack's standard version: 100 iterations, initial step 2 eps, one run each). ART's
          own defaults (step 0.1, 5 random starts) are not the paper's. Each iteration evaluates
          the model twice (a gradient and a loss), so under BPDA it costs two projections.
    square
          ART's SquareAttack, query-based (no gradient, so a masked gradient cannot fool it):
          eps 0.3, 5,000 queries, p_init 0.8, one restart: AutoAttack's standard settings (Croce &
          Hein 2020; Andriushchenko et al. 2020's Square Attack). Under BPDA each query projects the
          images still robust: lower ``max_iter`` where projections are dear, and say so.
    autoattack
          The per-image worst case over apgd-ce, apgd-dlr and square, each with its own settings
          above (AutoAttack's rule: an image counts as robust only if every attack fails; run by
          ``attacks.threats``). AutoAttack's standard version uses targeted APGD-DLR and FAB-T
          in place of untargeted APGD-DLR. Overrides of ``autoattack`` go to every part
          (``eps=0.2``), or to one (``square={"max_iter": 1000}``).
cifar10
    fgsm  eps 0.3, as HGAN Table 9 states for CIFAR-10. The standard CIFAR-10 budget is
          8/255: pass ``eps=8/255`` (``--eps`` on the command line).
    pgd   eps 8/255, step 2/255, 20 iterations, one random start: Madry et al. 2018's
          CIFAR-10 evaluation (HGAN Table 9 gives no PGD settings).
    cw    as for MNIST (HGAN Table 9 states only "CW (l2 norm)").
    apgd-ce, apgd-dlr, square, autoattack
          as for MNIST at Croce & Hein's CIFAR-10 budget eps 8/255 (APGD's initial step 16/255).

``batch_size`` 100 is a throughput setting, not a paper's. Overriding a PGD's
``eps`` without ``eps_step`` scales the step with it, keeping the source's
step-to-budget ratio (and so its reach, iterations x step / eps).

ART is imported only when an attack is built, so reading the defaults is cheap.
"""
from __future__ import annotations

import copy

AUTOATTACK = ("apgd-ce", "apgd-dlr", "square")  # the attacks autoattack takes the per-image worst case over
ATTACKS = ("fgsm", "pgd", "cw", *AUTOATTACK, "autoattack")
LINF_ATTACKS = ("fgsm", "pgd", *AUTOATTACK, "autoattack")  # the attacks with an L-inf budget, eps
_BATCH = {"batch_size": 100}
_APGD = {"norm": "inf", "eps": 0.3, "eps_step": 0.6, "max_iter": 100, "nb_random_init": 1, **_BATCH}
_MNIST = {
    "fgsm": {"norm": "inf", "eps": 0.3, **_BATCH},
    "pgd": {"norm": "inf", "eps": 0.3, "eps_step": 0.01, "max_iter": 40, "num_random_init": 1, **_BATCH},
    "cw": {"confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 1, "max_iter": 100,
           "initial_const": 100.0, **_BATCH},
    "apgd-ce": {**_APGD, "loss_type": "cross_entropy"},
    "apgd-dlr": {**_APGD, "loss_type": "difference_logits_ratio"},
    "square": {"norm": "inf", "eps": 0.3, "max_iter": 5000, "p_init": 0.8, "nb_restarts": 1, **_BATCH},
}
_CIFAR_EPS = {"eps": 8 / 255}
_DEFAULTS = {
    "mnist": _MNIST,
    "fashion-mnist": _MNIST,
    "cifar10": {
        "fgsm": _MNIST["fgsm"],
        "pgd": {**_MNIST["pgd"], **_CIFAR_EPS, "eps_step": 2 / 255, "max_iter": 20},
        "cw": _MNIST["cw"],
        "apgd-ce": {**_MNIST["apgd-ce"], **_CIFAR_EPS, "eps_step": 16 / 255},
        "apgd-dlr": {**_MNIST["apgd-dlr"], **_CIFAR_EPS, "eps_step": 16 / 255},
        "square": {**_MNIST["square"], **_CIFAR_EPS},
    },
}


def attack_defaults(dataset: str) -> dict[str, dict]:
    """The dataset's default settings per attack (a fresh copy, safe to edit); autoattack's are its parts'."""
    if dataset not in _DEFAULTS:
        raise ValueError(f"no attack defaults for dataset {dataset!r}; expected one of {sorted(_DEFAULTS)}")
    defaults = copy.deepcopy(_DEFAULTS[dataset])
    return {**defaults, "autoattack": {part: defaults[part] for part in AUTOATTACK}}


def attack_settings(name: str, dataset: str, **overrides) -> dict:
    """The settings ``build_attack`` uses: the defaults with ``overrides`` on top.

    autoattack's are ``{part: settings}``: an override named after a part
    applies to that part, any other to every part.
    """
    if _check_name(name) == "autoattack":
        shared = {k: v for k, v in overrides.items() if k not in AUTOATTACK}
        return {part: attack_settings(part, dataset, **{**shared, **overrides.get(part, {})}) for part in AUTOATTACK}
    settings = attack_defaults(dataset)[name]
    if "eps" in overrides and "eps_step" in settings and "eps_step" not in overrides:
        settings["eps_step"] *= overrides["eps"] / settings["eps"]
    return {**settings, **overrides}


def build_attack(name: str, estimator, dataset: str = "mnist", *, verbose: bool = False, **overrides):
    """An untargeted ART evasion attack on ``estimator`` (an ART classifier) with ``attack_settings``.

    ``verbose`` turns on ART's progress bars where the attack has them.
    """
    from art.attacks.evasion import (AutoProjectedGradientDescent, CarliniL2Method, FastGradientMethod,
                                     ProjectedGradientDescent, SquareAttack)

    if _check_name(name) == "autoattack":
        raise ValueError("autoattack is the worst case over several ART attacks, not one: "
                         "run it with attacks.threats.make_attack")
    cls = {"fgsm": FastGradientMethod, "pgd": ProjectedGradientDescent, "cw": CarliniL2Method,
           "apgd-ce": AutoProjectedGradientDescent, "apgd-dlr": AutoProjectedGradientDescent,
           "square": SquareAttack}[name]
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
