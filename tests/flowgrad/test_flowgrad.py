"""The deprecated ``flowgrad`` package: the FlowGrad README's form keeps working and warns."""

from __future__ import annotations

import importlib
import sys
import warnings
import xml.etree.ElementTree as ET
from types import ModuleType

import pytest
import torch


def _import_flowgrad() -> ModuleType:
    for name in [m for m in sys.modules if m == "flowgrad" or m.startswith("flowgrad.")]:
        del sys.modules[name]
    return importlib.import_module("flowgrad")


@pytest.fixture
def flowgrad() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _import_flowgrad()


def test_importing_flowgrad_warns_that_it_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="'flowgrad' package is deprecated"):
        _import_flowgrad()


def test_gradtracer_alone_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        importlib.reload(importlib.import_module("gradtracer"))


def _train_a_few_rows(tracker: object, emb: torch.nn.Embedding, steps: int = 30) -> None:
    """Only rows 0..9 of the table get gradients: the rest are never exposed."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(emb.parameters(), lr=0.05)
    target = torch.randn(32, emb.embedding_dim, generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        rows = torch.randint(0, 10, (32,), generator=gen)
        loss = (emb(rows) - target).pow(2).mean()
        loss.backward()
        tracker.step()  # type: ignore[attr-defined]
        opt.step()


def test_readme_form_embedding_tracker_to_agent_xml(flowgrad: ModuleType) -> None:
    import gradtracer
    from gradtracer.export.agent_xml import to_agent_xml

    torch.manual_seed(0)
    emb = torch.nn.Embedding(500, 8)
    tracker = flowgrad.EmbeddingTracker(emb)  # the README: EmbeddingTracker(model.item_emb)
    assert isinstance(tracker, gradtracer.EmbeddingTracker)
    _train_a_few_rows(tracker, emb)

    text = tracker.to_agent_xml()
    root = ET.fromstring(text)
    assert root.tag == "flowgrad_embedding_report" and root.get("layer") == tracker.name
    models = root.findall("causal_model")
    types = [m.get("type") for m in models]
    assert "DEAD_EMBEDDINGS" in types  # 490 of 500 rows never received a gradient
    for m in models:
        assert [c.tag for c in m] == [
            "premise",
            "implies",
            "action",
            "expected_effect",
            "confidence",
        ]
        assert 0.0 <= float(m.findtext("confidence") or "nan") <= 1.0
    # the same document as gradtracer's agent XML, under FlowGrad's root name
    assert text == to_agent_xml(tracker).replace("gradtracer_embedding_report", root.tag)


def test_the_other_readme_trackers_render_flowgrad_xml(flowgrad: ModuleType) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    flow = flowgrad.FlowTracker(model, name="mlp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(6):
        opt.zero_grad()
        loss = model(torch.randn(16, 4)).pow(2).mean()
        loss.backward()
        flow.step(loss=loss.item())
        opt.step()
    assert ET.fromstring(flow.to_agent_xml()).tag == "flowgrad_flow_report"

    manager = flowgrad.FlowManager("towers")
    emb = torch.nn.Embedding(50, 4)
    manager.add_tracker("item", flowgrad.EmbeddingTracker(emb, name="item_emb"))
    _train_a_few_rows(manager, emb, steps=5)
    root = ET.fromstring(manager.to_agent_xml())
    assert root.tag == "flowgrad_manager_report"
    child = root.find("flowgrad_embedding_report")
    assert child is not None and child.get("key") == "item"
    assert flowgrad.BoostingTracker.__mro__[1].__name__ == "_AgentXml"
    assert callable(flowgrad.FeatureAnalyzer().to_agent_xml)


def test_unknown_names_raise_attribute_error(flowgrad: ModuleType) -> None:
    with pytest.raises(AttributeError, match="no attribute 'SaliencyAnalyzer'"):
        flowgrad.SaliencyAnalyzer  # noqa: B018
