"""What gradient does the reference Defense-GAN code's white-box FGSM see through its projection?

The papers' Table 8 numbers (Defense-GAN 0.961, Defense-HGAN 0.974 under
FGSM eps 0.3) come from kabkabm/defensegan's whitebox.py, which the HGAN paper
says it follows. There the classifier gets the projection as its first layer
(a TF1 ``tf.while_loop`` of MomentumOptimizer steps on a latent *variable*,
then the best restart picked with ``argmin``), and cleverhans' FGSM takes
``tf.gradients`` of the loss with respect to the input through that layer.
A variable update (``ApplyMomentum``) carries no gradient and ``argmin`` has
none, so the input's only route to the output is the while loop's plumbing.

This probe rebuilds that graph structure from the description above (TF1
graph mode: ref variables, control flow v1, a momentum optimiser inside the
loop) around a tiny random generator and classifier, and reports what
``tf.gradients(loss, input)`` returns: None (cleverhans would fail), all
zeros (FGSM leaves the image unchanged), or a real gradient. It needs
TensorFlow, which is not a dependency of this project: run it in its own
environment (``python -m venv /tmp/tf && /tmp/tf/bin/pip install
tensorflow-cpu numpy``):

    /tmp/tf/bin/python benchmarks/defensegan_gradient_probe.py --out benchmarks/results/defensegan_gradient_probe.md
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import tensorflow as tf

LATENT, PIXELS, CLASSES, IMAGES, RESTARTS, STEPS = 8, 16, 3, 4, 3, 20


def build(seed: int):
    """(input placeholder, logits through the projection, logits on the input itself) of the TF1 graph."""
    tf.compat.v1.set_random_seed(seed)
    v1 = tf.compat.v1
    images = v1.placeholder(tf.float32, [IMAGES, PIXELS])
    gen_w = tf.constant(np.random.default_rng(seed).normal(size=(LATENT, PIXELS)), tf.float32)
    cls_w = tf.constant(np.random.default_rng(seed + 1).normal(size=(PIXELS, CLASSES)), tf.float32)

    def generator(z):
        return tf.sigmoid(tf.matmul(z, gen_w))

    tiled = tf.reshape(tf.tile(images, [1, RESTARTS]), [IMAGES * RESTARTS, PIXELS])
    step = v1.get_variable("step", initializer=tf.constant(0), trainable=False, use_resource=False)
    z = v1.get_variable("z", [IMAGES * RESTARTS, LATENT], use_resource=False,
                        initializer=v1.random_normal_initializer(stddev=np.sqrt(1.0 / LATENT)))
    optimizer = v1.train.MomentumOptimizer(learning_rate=10.0, momentum=0.7)

    def per_restart_error(fit):
        return tf.reduce_mean(tf.square(fit - tiled), axis=1)

    def body(i, *unused):
        fit = generator(z)
        error = per_restart_error(fit)
        update = optimizer.minimize(tf.reduce_sum(error), var_list=[z])
        return tf.tuple([i + 1, tf.reduce_sum(error), error, fit], control_inputs=[update])

    fit0 = generator(z)
    error0 = per_restart_error(fit0)
    _, _, errors, fits = v1.while_loop(lambda i, *unused: i < STEPS, body,
                                       [step, tf.reduce_sum(error0), error0, fit0], back_prop=True)
    best = [fits[i * RESTARTS + tf.cast(tf.argmin(errors[i * RESTARTS:(i + 1) * RESTARTS]), tf.int32)]
            for i in range(IMAGES)]
    projected = tf.stack(best)
    return images, tf.matmul(projected, cls_w), tf.matmul(images, cls_w)


def fgsm_gradient(images, logits):
    """cleverhans' FGSM loss (cross-entropy against the model's own prediction) and its input gradient."""
    label = tf.stop_gradient(tf.one_hot(tf.argmax(logits, 1), CLASSES))
    loss = tf.compat.v1.losses.softmax_cross_entropy(label, logits, reduction="none")
    return tf.gradients(loss, images)[0]


def describe(gradient) -> str:
    if gradient is None:
        return "None (no path from the input to the output)"
    magnitude = float(np.abs(gradient).max())
    return "all zeros" if magnitude == 0 else f"nonzero, max |g| = {magnitude:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    v1 = tf.compat.v1
    v1.disable_eager_execution()
    v1.disable_control_flow_v2()
    v1.disable_resource_variables()
    images, defended_logits, bare_logits = build(args.seed)
    through_projection = fgsm_gradient(images, defended_logits)
    bare = fgsm_gradient(images, bare_logits)
    x = np.random.default_rng(args.seed + 2).uniform(size=(IMAGES, PIXELS)).astype(np.float32)
    with v1.Session() as session:
        session.run([v1.global_variables_initializer(), v1.local_variables_initializer()])
        bare_value = session.run(bare, {images: x})
        projected_value = None if through_projection is None else session.run(through_projection, {images: x})
    rows = [("input gradient of the bare classifier's FGSM loss", describe(bare_value)),
            ("input gradient through the projection layer (what whitebox.py's FGSM uses)", describe(projected_value))]
    if projected_value is not None:
        sign_changes = float(np.mean(np.sign(projected_value) != 0))
        rows.append(("fraction of pixels FGSM would move (sign(g) != 0)", f"{sign_changes:.3f}"))
    lines = [f"# {__doc__.splitlines()[0]}", "",
             f"TensorFlow {tf.__version__} in TF1 graph mode (ref variables, control flow v1), "
             f"{platform.machine()}, seed {args.seed}; a random linear-sigmoid generator ({LATENT} -> {PIXELS}), "
             f"a linear classifier ({CLASSES} classes), {IMAGES} images x {RESTARTS} restarts, {STEPS} momentum "
             "steps (lr 10, momentum 0.7). Command: `python benchmarks/defensegan_gradient_probe.py`.", "",
             "| quantity | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
