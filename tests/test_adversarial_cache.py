"""The oblivious adversarial-image cache: another generator's evaluation reads the images instead of crafting them."""
import copy

import pytest
import torch

from defense_hgan import scoring
from defense_hgan.adversarial_cache import cacheable
from defense_hgan.defense import gan_defense
from defense_hgan.evaluation import evaluate
from tests.test_attacks import blobs, trained_classifier
from tests.test_evaluate import FAST, PROJECTION, without_seconds
from tests.test_projection import TinyGenerator


@pytest.fixture(scope="module")
def classifier():
    return trained_classifier()


def evaluated(classifier, generator_seed: int, cache, threats="oblivious", out=None):
    images, labels = blobs(2)
    return evaluate(classifier, gan_defense(TinyGenerator(generator_seed), **PROJECTION, seed=0), images, labels,
                    dataset="mnist", attacks="fgsm,pgd", threats=threats, settings=FAST, seed=3, chunk=10,
                    progress=False, adversarial_cache=cache, out=out)


def crafting_forbidden(monkeypatch):
    """Make any crafting fail, so a row that still crafts shows itself."""
    def refuse(*args, **kwargs):
        raise AssertionError("crafted although the cache holds these images")
    monkeypatch.setattr(scoring, "craft", refuse)


def test_another_generator_reads_the_oblivious_images_and_scores_as_a_fresh_run(classifier, tmp_path, monkeypatch):
    uncached = evaluated(classifier, 1, cache=None)
    evaluated(classifier, 0, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2 * 2  # fgsm, pgd x two chunks of 10
    crafting_forbidden(monkeypatch)
    cached = evaluated(classifier, 1, cache=tmp_path / "cache", out=tmp_path / "out")
    assert [row.pop("cached_images", 0) for row in cached["rows"]] == [0, 20, 20]  # none, fgsm, pgd
    assert without_seconds(cached["rows"]) == without_seconds(uncached["rows"])
    assert cached["rows"][1]["accuracy_undefended"] < 0.5  # the cached FGSM images still fool the bare classifier
    assert ("read from the adversarial cache, not crafted: fgsm/oblivious (20 of 20 images), pgd/oblivious (20 of 20 "
            "images); those rows' seconds are the scoring's alone") in (tmp_path / "out/results.md").read_text()


def test_only_attacks_that_ignore_the_defense_are_cached():
    assert cacheable("fgsm", "oblivious") and cacheable("cw", "oblivious")
    assert not cacheable("autoattack", "oblivious")  # its worst case keeps what the deployed defense gets right
    assert not cacheable("none", "none") and not cacheable("pgd", "bpda") and not cacheable("pgd", "bpda-eot")


def test_adaptive_rows_are_never_cached(classifier, tmp_path):
    evaluated(classifier, 0, cache=tmp_path / "cache", threats="oblivious,bpda")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2 * 2  # the oblivious rows' chunks only


def test_another_classifier_crafts_its_own(classifier, tmp_path, monkeypatch):
    evaluated(classifier, 0, cache=tmp_path / "cache")
    other = copy.deepcopy(classifier)
    with torch.no_grad():
        next(other.parameters())[0, 0] += 1e-3
    crafting_forbidden(monkeypatch)
    with pytest.raises(AssertionError, match="crafted although"):
        evaluated(other, 0, cache=tmp_path / "cache")


def test_an_unreadable_cache_file_is_refused_with_its_path(classifier, tmp_path):
    evaluated(classifier, 0, cache=tmp_path / "cache")
    broken = sorted((tmp_path / "cache").glob("*.pt"))[0]
    broken.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=f"adversarial cache: checkpoint {broken} could not be read .*delete it"):
        evaluated(classifier, 0, cache=tmp_path / "cache")


def test_a_cache_file_of_another_chunk_is_refused(classifier, tmp_path):
    evaluated(classifier, 0, cache=tmp_path / "cache")
    first, second = sorted((tmp_path / "cache").glob("*.pt"))[:2]
    first.write_bytes(second.read_bytes())  # the right format, another chunk's key and images
    with pytest.raises(ValueError, match=f"adversarial cache file {first} is not this chunk's cached images"):
        evaluated(classifier, 0, cache=tmp_path / "cache")
