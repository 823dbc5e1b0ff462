"""The GQA and VQAv2 readers on the sample files and on broken ones, and the context they make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visinstruct.core.errors import DataError
from visinstruct.core.export.validate import check_record
from visinstruct.core.pipeline.short_answer import short_answer_pairs
from visinstruct.core.records import Fact, Image, Relation, SceneObject
from visinstruct.core.text.context import render_context
from visinstruct.core.text.prompts import generation_messages, load_prompt
from visinstruct.dataset import sample
from visinstruct.dataset.gqa import read_gqa_questions, read_scene_graphs
from visinstruct.dataset.vqa import read_vqa

FORMAT = "Answer the question using a single word or phrase."


def test_scene_graphs_stream_with_normalised_boxes_and_relations() -> None:
    scenes = {s.image_id: s for s in read_scene_graphs(sample.gqa_scene_graphs_path())}
    assert list(scenes) == ["2390001", "2390002", "n990003", "2390004"]
    park = scenes["2390002"]
    assert (park.width, park.height, park.location, park.weather) == (640, 480, "park", "sunny")
    dog = park.objects[1]
    assert dog == SceneObject("3900022", "dog", (0.156, 0.625, 0.406, 0.875), ("black", "small"))
    assert Relation(1, "to the left of", 2) in park.relations


def test_gqa_questions_keep_file_order_and_read_a_folder_of_parts(tmp_path: Path) -> None:
    facts = list(read_gqa_questions(sample.gqa_questions_path()))
    assert facts[0] == Fact("2390001", "09900101", "What color is the laptop?", "silver", "gqa")
    assert len(facts) == 11
    data = json.loads(sample.gqa_questions_path().read_text())
    items = list(data.items())
    folder = tmp_path / "train_all_questions"
    folder.mkdir()
    # Part 10 must come after part 2 (numeric order, not by name).
    for number, chunk in ((10, items[6:]), (2, items[:6])):
        (folder / f"train_all_questions_{number}.json").write_text(json.dumps(dict(chunk)))
    assert [f.question_id for f in read_gqa_questions(folder)] == [f.question_id for f in facts]


def test_vqa_joins_questions_with_their_multiple_choice_answer() -> None:
    facts = list(read_vqa(sample.vqa_questions_path(), sample.vqa_annotations_path()))
    assert len(facts) == 10
    assert facts[0] == Fact(990001, "990001000", "What vegetable is being cut?", "carrots", "vqa")
    only = list(read_vqa(sample.vqa_questions_path(), sample.vqa_annotations_path(),
                         only={990008}))
    assert [f.answer for f in only] == ["cat", "yes"]


@pytest.mark.parametrize(("text", "fix"), [
    ('[]', "not a JSON object"),
    ('{"1": {"width": 0, "height": 5, "objects": {}}}', "zero size"),
    ('{"1": {"width": 5, "height": 5}}', "'objects'"),
    (('{"1": {"width": 5, "height": 5, "objects": {"a": {"name": "x", "x": 1, "y": 1, "w": 1, '
     '"h": "big"}}}}'), "h='big'"),
])
def test_bad_scene_graphs_raise_naming_the_file(tmp_path: Path, text: str, fix: str) -> None:
    path = tmp_path / "val_sceneGraphs.json"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        list(read_scene_graphs(path))
    assert str(path) in str(caught.value) and fix in str(caught.value)


def test_bad_vqa_files_raise_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no .annotations. list"):
        list(read_vqa(sample.vqa_questions_path(), sample.vqa_questions_path()))
    empty = tmp_path / "q.json"
    empty.write_text('{"info": {}}')
    with pytest.raises(DataError) as caught:
        list(read_vqa(empty, sample.vqa_annotations_path()))
    assert str(empty) in str(caught.value) and "'questions'" in str(caught.value)
    with pytest.raises(DataError, match="file not found"):
        list(read_vqa(tmp_path / "missing.json", sample.vqa_annotations_path()))


def gqa_image() -> Image:
    laptop = SceneObject("1", "laptop", (0.08, 0.4, 0.44, 0.72), ("silver", "open"))
    tree = SceneObject("2", "tree", (0.5, 0.0, 0.9, 0.8), ("tall",))
    return Image(1_000_000_001, "2390001.jpg", 500, 375, source="gqa", source_id="2390001",
                 objects=(laptop, tree), relations=(Relation(0, "to the left of", 1),),
                 facts=(Fact("2390001", "q1", "What color is the laptop?", "silver", "gqa"),),
                 location="office")


def test_gqa_context_holds_objects_attributes_boxes_relations_and_facts() -> None:
    assert render_context(gqa_image(), include_boxes=True) == (
        "Place: office\n\n"
        "Objects:\nlaptop (silver, open): [0.080, 0.400, 0.440, 0.720]\n"
        "tree (tall): [0.500, 0.000, 0.900, 0.800]\n\n"
        "Relations:\nsilver open laptop to the left of tall tree\n\n"
        "Known answers:\nQ: What color is the laptop? A: silver")
    without_boxes = render_context(gqa_image(), include_boxes=False)
    assert "laptop (silver, open)\ntree (tall)\n" in without_boxes and "[0.0" not in without_boxes


def test_prompts_say_what_a_scene_graph_context_holds_only_when_there_is_one() -> None:
    template = load_prompt("conversation")
    user = generation_messages(template, gqa_image())[1].content
    assert template.scene_graph_guide in user and template.facts_guide in user
    coco = Image(5, "5.jpg", 10, 10, ("A dog on a couch.",))
    assert "scene graph" not in generation_messages(template, coco)[1].content


def test_short_answer_pairs_put_the_formatting_prompt_after_the_first_question_only() -> None:
    facts = tuple(Fact(7, str(n), q, a, "vqa") for n, (q, a) in enumerate(
        [("What is it?", "cat"), ("Is it asleep?", "yes")]))
    pairs = short_answer_pairs(Image(7, "7.jpg", 1, 1, facts=facts), FORMAT)
    assert [(p.question, p.answer) for p in pairs] == [
        (f"What is it?\n{FORMAT}", "cat"), ("Is it asleep?", "yes")]
    assert short_answer_pairs(Image(8, "8.jpg", 1, 1), FORMAT) == ()


def test_validator_accepts_gqa_records_and_checks_their_id() -> None:
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]
    assert check_record({"id": "2354786", "image": "gqa/images/2354786.jpg",
                         "conversations": turns}) == []
    assert check_record({"id": "n161313", "image": "gqa/images/n161313.jpg",
                         "conversations": turns}) == []
    wrong = check_record({"id": "2354786", "image": "gqa/images/1.jpg", "conversations": turns})
    assert [v.rule for v in wrong] == ["image-path"]
    assert [v.rule for v in check_record({"id": "1", "image": "gqa/1.png",
                                          "conversations": turns})] == ["image-path"]


@pytest.mark.parametrize(("body", "fix"), [
    ('gqa_questions = "{q}"', "needs [source].gqa_scene_graphs"),
    ('vqa_questions = "{v}"', "go together"),
    ('gqa_scene_graphs = "missing.json"', "[source].gqa_scene_graphs file not found"),
    ('gqa_images_dir = "nowhere"', "[source].gqa_images_dir is not a directory"),
])
def test_source_keys_are_checked(tmp_path: Path, body: str, fix: str) -> None:
    from visinstruct.core.config import load_config
    from visinstruct.core.errors import ConfigError

    config = tmp_path / "run.toml"
    config.write_text("[source]\n" + body.format(q=sample.gqa_questions_path(),
                                                 v=sample.vqa_questions_path()) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert fix in str(caught.value) and str(config) in str(caught.value)


def test_short_answer_is_a_task_and_source_paths_are_relative_to_the_config(
        tmp_path: Path) -> None:
    from visinstruct.core.config import load_config

    (tmp_path / "g.json").write_text("{}")
    config = tmp_path / "run.toml"
    config.write_text('[source]\ngqa_scene_graphs = "g.json"\n'
                      '[generation]\ntasks = ["short_answer", "detail"]\n')
    loaded = load_config(config)
    assert loaded.source.gqa_scene_graphs == tmp_path / "g.json"
    assert loaded.generation.tasks == ("short_answer", "detail")
