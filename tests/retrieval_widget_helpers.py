"""Shared by the retrieval explorer's tests (test_retrieval_widget*.py): a tiny model (8x8 grid
at 64 px), a gallery of 12 synthetic scenes, a 13th scene as a query outside it, explorers closed
after each test, and a gate that blocks the background job's explanations until a test opens it."""

from __future__ import annotations

import threading

import pytest

import simviz_widgets as sv
from simviz_widgets.datasets.synthetic import random_scenes
from simviz_widgets.retrieval import Gallery
from simviz_widgets.widgets import RetrievalExplorer, retrieval_state

__all__ = ["K", "tiny", "scenes", "gallery", "outsider", "explorers", "gate", "open_explorer"]

K = 8


@pytest.fixture(scope="module")
def tiny():
    return sv.load_model("tiny_test")


@pytest.fixture(scope="module")
def scenes():
    return [s.image for s in random_scenes(13, seed=1)]


@pytest.fixture(scope="module")
def gallery(tiny, scenes):
    return Gallery.build(tiny, scenes[:12], show_progress=False)


@pytest.fixture(scope="module")
def outsider(scenes):
    """A query that is not in the gallery (nothing is left out of its results)."""
    return scenes[12]


@pytest.fixture
def explorers():
    made = []
    yield made
    for explorer in made:
        explorer.close()


def open_explorer(made, *args, **kwargs) -> RetrievalExplorer:
    explorer = RetrievalExplorer(*args, **kwargs)
    made.append(explorer)
    return explorer


@pytest.fixture
def gate(monkeypatch):
    """The job's per-result explanation, blocked while the returned Event is clear (set at first)."""
    release = threading.Event()
    release.set()
    original = retrieval_state.explain_hit

    def gated(model, query, gallery, index):
        if not release.wait(30):
            raise RuntimeError("the test never released the gate")
        return original(model, query, gallery, index)

    monkeypatch.setattr(retrieval_state, "explain_hit", gated)
    yield release
    release.set()

